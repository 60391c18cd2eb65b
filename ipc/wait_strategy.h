// How a consumer waits for data: chosen per consumer, every wait bounded.
//
//   kBusySpin   never leaves the CPU; lowest latency, one core at 100%.
//   kSpinYield  spins, then sched_yield()s; the core stays busy but shares.
//   kBlock      spins briefly, yields briefly, then parks on a futex in
//               shared memory until a producer wakes it. An idle consumer
//               costs nothing; a wake-up costs a system call on both sides.
//
// Wakeups. A WakeupWord sits in shared memory (one per topic). Producers call
// notify() after publishing; it costs one load when nobody is parked, because
// only a parked consumer raises `parked`. The handshake is the classic
// store-buffering pair, ordered by seq_cst operations on both sides:
//
//   producer                          consumer (about to park)
//   publish X (seq_cst RMW)           parked.fetch_add(1)   (seq_cst)
//   parked.load()  (seq_cst)          fence(seq_cst); check X (acquire)
//   if > 0: seq++, futex_wake         if not ready: futex_wait(seq, s0)
//
// In the single total order of seq_cst operations either the producer's load
// sees parked > 0 (and wakes), or the consumer's check sees X (and does not
// sleep). `seq` is read before the check, so a wake between the check and
// futex_wait changes `seq` and makes futex_wait return at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "ipc/futex.h"

namespace sluice::ipc {

enum class WaitStrategy : uint8_t { kBusySpin, kSpinYield, kBlock };

struct alignas(64) WakeupWord {
  std::atomic<uint32_t> seq;     // futex word, bumped by a waking producer
  std::atomic<uint32_t> parked;  // consumers inside futex_wait (or about to be)
  char padding[56];
};
static_assert(sizeof(WakeupWord) == 64);

// Producer side, called after the publishing seq_cst operation.
inline void notify(WakeupWord& w) noexcept {
  // seq_cst: see the handshake above; a plain mov on x86.
  if (w.parked.load(std::memory_order_seq_cst) != 0) {
    // relaxed: the futex syscall orders it for the sleeper; seq only has to
    // differ from the value the sleeper read.
    w.seq.fetch_add(1, std::memory_order_relaxed);
    futex_wake_all(&w.seq);
  }
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

struct WaitOptions {
  WaitStrategy strategy = WaitStrategy::kBlock;
  uint32_t spin_iterations = 2000;   // kBlock / kSpinYield: spins before yielding
  uint32_t yield_iterations = 50;    // kBlock: yields before parking
  int64_t max_park_ns = 100'000'000; // re-check at least this often while parked
};

// Waits until ready() is true or `timeout_ns` passed. Returns ready()'s last
// value. `wakeup` may be null for the spinning strategies.
template <class Ready>
bool wait_until(Ready&& ready, int64_t timeout_ns, const WaitOptions& opt, WakeupWord* wakeup) {
  if (ready()) return true;
  if (timeout_ns <= 0) return false;
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::nanoseconds(timeout_ns);
  uint64_t spins = 0;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
    spins += 64;
    const auto now = clock::now();
    if (now >= deadline) return ready();
    if (opt.strategy == WaitStrategy::kBusySpin || spins < opt.spin_iterations) continue;
    if (opt.strategy == WaitStrategy::kSpinYield || wakeup == nullptr ||
        spins < opt.spin_iterations + 64ull * opt.yield_iterations) {
      std::this_thread::yield();
      continue;
    }
    // Park. See the handshake in the file comment.
    const uint32_t s0 = wakeup->seq.load(std::memory_order_acquire);
    wakeup->parked.fetch_add(1, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (ready()) {
      wakeup->parked.fetch_sub(1, std::memory_order_relaxed);
      return true;
    }
    const int64_t left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
    futex_wait(&wakeup->seq, s0, left < opt.max_park_ns ? left : opt.max_park_ns);
    // relaxed: only a count; producers read it with seq_cst loads.
    wakeup->parked.fetch_sub(1, std::memory_order_relaxed);
  }
}

}  // namespace sluice::ipc
