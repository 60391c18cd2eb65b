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
// only a consumer about to park raises the `parked` flag. The handshake is the
// classic store-buffering pair, ordered by seq_cst operations on both sides:
//
//   producer                          consumer (about to park)
//   publish X (seq_cst RMW)           s0 = seq; parked = 1  (seq_cst)
//   parked.load()  (seq_cst)          fence(seq_cst); check X (acquire)
//   if 1 and exchange(parked, 0) = 1: if not ready: futex_wait(seq, s0)
//     seq++, futex_wake_all
//
// In the single total order of seq_cst operations either the producer's load
// sees the flag (and wakes), or the consumer's check sees X (and does not
// sleep). `seq` is read before the flag is raised, so a wake after it changes
// `seq` and makes futex_wait return at once. A later value the producer may
// read instead is a 0 stored by another producer's exchange, which came after
// our flag and so woke us. The exchange makes one producer wake everyone
// parked, once per parking: a wake-up takes 25-30 us here, and while a
// counter of parked consumers stayed raised, a producer publishing every
// 0.1 us made a futex_wake system call for every message of those 30 us.
// A consumer leaves the flag raised when it did not sleep or timed out:
// the next publish then makes one wake-up call for nobody.
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
  std::atomic<uint32_t> parked;  // 1: a consumer is in futex_wait (or about to be) since the last wake
  char padding[56];
};
static_assert(sizeof(WakeupWord) == 64);

// Producer side, called after the publishing seq_cst operation.
inline void notify(WakeupWord& w) noexcept {
  // seq_cst (both): see the handshake above. The load is a plain mov on
  // x86; the exchange runs once per parking.
  if (w.parked.load(std::memory_order_seq_cst) != 0 && w.parked.exchange(0, std::memory_order_seq_cst) != 0) {
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
    wakeup->parked.store(1, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (ready()) return true;  // the flag stays: one spare wake-up call at most
    const int64_t left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
    futex_wait(&wakeup->seq, s0, left < opt.max_park_ns ? left : opt.max_park_ns);
  }
}

}  // namespace sluice::ipc
