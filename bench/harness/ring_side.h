// How the workloads use the baseline ring: its size, and waiting for a
// message or for room with the configured wait strategy.
#pragma once

#include <cstdint>

#include "bench/harness/bench_options.h"
#include "bench/harness/process_pair.h"
#include "bench/harness/spsc_ring.h"

namespace sluice::bench {

// About half the L3 of the machines this runs on: large enough that the
// producer is rarely stopped by a full ring, small enough to stay cached.
inline constexpr uint64_t kRingBytes = 16u << 20;

// The region size of one ring for `value_bytes` messages, page-rounded.
inline uint64_t ring_bytes_for(uint32_t value_bytes) {
  const uint64_t b = ring_region_bytes(value_bytes, ring_slot_count(value_bytes, kRingBytes));
  return (b + 4095) & ~uint64_t{4095};
}

// The next message, waiting per options.wait; nullptr once the pair aborts.
inline const std::byte* ring_wait_front(SpscConsumer& rx, SpscRingHeader* ring, uint32_t* length,
                                        const BenchOptions& options, PairChannel& ch, SpinBudget& budget) {
  for (;;) {
    if (const std::byte* m = rx.try_front(length)) return m;
    if (options.wait == ipc::WaitStrategy::kBusySpin) {
      if (!budget.keep_going()) return nullptr;
      ipc::cpu_relax();
      continue;
    }
    ipc::WaitOptions w;
    w.strategy = options.wait;
    if (!ipc::wait_until([&] { return rx.ready(); }, 1'000'000, w, &ring->wakeup) && ch.should_abort())
      return nullptr;
  }
}

// Room for a message; spins while the ring is full. nullptr once the pair aborts.
inline std::byte* ring_wait_claim(SpscProducer& tx, uint32_t length, SpinBudget& budget) {
  for (;;) {
    if (std::byte* slot = tx.try_claim(length)) return slot;
    if (!budget.keep_going()) return nullptr;
    ipc::cpu_relax();
  }
}

}  // namespace sluice::bench
