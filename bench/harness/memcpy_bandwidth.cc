// memcpy bandwidth: the ceiling for moving 4 KiB values, in one process.
// One hot source block is copied block after block over a buffer much larger
// than the last-level cache (as a producer fills a log), wrapping around.
#include <sys/mman.h>

#include <cstring>
#include <vector>

#include "bench/harness/tsc_clock.h"
#include "bench/harness/workloads.h"

namespace sluice::bench {

MemcpyResult run_memcpy_bandwidth(uint32_t block_bytes, uint64_t buffer_bytes, uint64_t total_bytes) {
  MemcpyResult r;
  r.block_bytes = block_bytes;
  r.buffer_bytes = buffer_bytes;
  buffer_bytes -= buffer_bytes % block_bytes;
  void* p = ::mmap(nullptr, buffer_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return r;
  auto* dst = static_cast<std::byte*>(p);
  std::memset(dst, 1, buffer_bytes);  // fault every page in before timing
  std::vector<std::byte> src(block_bytes, std::byte{7});
  const uint64_t blocks = total_bytes / block_bytes;
  uint64_t pos = 0;
  const int64_t t0 = steady_ns();
  for (uint64_t i = 0; i < blocks; ++i) {
    std::memcpy(dst + pos, src.data(), block_bytes);
    // Keeps the copy: the compiler must assume the asm reads the buffer.
    asm volatile("" : : "r"(dst) : "memory");
    pos += block_bytes;
    if (pos == buffer_bytes) pos = 0;
  }
  const int64_t t1 = steady_ns();
  ::munmap(p, buffer_bytes);
  r.ran = true;
  r.total_bytes = blocks * block_bytes;
  r.gb_per_s = t1 > t0 ? static_cast<double>(r.total_bytes) / static_cast<double>(t1 - t0) : 0;
  return r;
}

}  // namespace sluice::bench
