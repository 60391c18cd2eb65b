// main() of sluice_micro_bench: Google Benchmark's, plus removing the last
// benchmark's bus directory before exit.
#include <benchmark/benchmark.h>

#include "micro_bus.h"

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  sluice::micro::MicroBus::release();
  benchmark::Shutdown();
  return 0;
}
