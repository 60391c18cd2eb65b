// XXH3-64 with a seed, as every record's checksum is computed (producer) and
// verified (consumer): record_checksum() in engine/src/record_codec.cc.
#include <xxhash.h>

#include <vector>

#include "micro_bus.h"

namespace sluice::micro {
namespace {

void checksum_loop(benchmark::State& state, size_t bytes) {
  std::vector<unsigned char> buf(bytes, 0x3c);
  uint64_t seed = 1;
  for (auto _ : state) {
    seed = XXH3_64bits_withSeed(buf.data(), bytes, seed);
    benchmark::DoNotOptimize(seed);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}

[[maybe_unused]] const bool registered = [] {
  benchmark::RegisterBenchmark("BM_Checksum_XXH3/64B", [](benchmark::State& s) { checksum_loop(s, 64); });
  benchmark::RegisterBenchmark("BM_Checksum_XXH3/4KiB", [](benchmark::State& s) { checksum_loop(s, 4096); });
  return true;
}();

}  // namespace
}  // namespace sluice::micro
