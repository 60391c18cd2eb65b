#include "bench/harness/bench_main.h"

#include <cstdio>

namespace sluice::bench {

int run(int, char**) {
  std::fprintf(stderr, "sluice bench: not built yet\n");
  return 2;
}

}  // namespace sluice::bench
