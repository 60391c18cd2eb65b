// A stand-alone driver for the bench harness: `sluice_bench_driver [options]`
// behaves as `sluice bench [options]`, without building the command line.
#include <vector>

#include "bench/harness/bench_main.h"

int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  static char name[] = "bench";
  args[0] = name;
  return sluice::bench::run(static_cast<int>(args.size()), args.data());
}
