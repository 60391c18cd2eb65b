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
//
// Release publishers. A producer that publishes with a plain release store
// (the exclusive log writer: an xchg there stalled it on every record, until
// the lines it had written reached its core) has no barrier of its own
// between that store and its load of `parked`, and x86 may perform the load
// first. The consumer supplies the barrier: before its check it calls
// membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED), which runs a full barrier on
// every CPU running a thread of a process registered for it (and a thread
// not running has passed through the scheduler's barriers). Each such
// producer thread is then either past its barrier point with X stored, so
// the consumer's check sees X, or before it, so its later load of `parked`
// sees 1 (the asymmetric form of the pair above, as in liburcu's
// membarrier flavour):
//
//   producer (registered)             consumer (about to park)
//   publish X (release store)         s0 = seq; parked = 1  (seq_cst)
//   compiler barrier                  membarrier(GLOBAL_EXPEDITED)
//   parked.load() (relaxed)           check X (acquire)
//
// A process publishes this way only once it registered
// (register_release_publisher()). A consumer whose membarrier fails (a
// seccomp filter, say) falls back to the fence and re-checks every
// kUncoveredParkNs while parked, since such a producer may then miss it.
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

// Wakes everyone parked, once per parking (the exchange).
inline void wake_parked(WakeupWord& w) noexcept {
  // seq_cst: see the handshake above; it runs once per parking.
  if (w.parked.exchange(0, std::memory_order_seq_cst) != 0) {
    // relaxed: the futex syscall orders it for the sleeper; seq only has to
    // differ from the value the sleeper read.
    w.seq.fetch_add(1, std::memory_order_relaxed);
    futex_wake_all(&w.seq);
  }
}

// Producer side, called after the publishing seq_cst operation.
inline void notify(WakeupWord& w) noexcept {
  // seq_cst: see the handshake above. A plain mov on x86.
  if (w.parked.load(std::memory_order_seq_cst) != 0) wake_parked(w);
}

// Producer side after a release-store publish, in a process that
// register_release_publisher() accepted ("Release publishers" above).
inline void notify_after_release(WakeupWord& w) noexcept {
  // A compiler barrier only: the load stays after the publishing store in
  // program order; the parking consumer's membarrier orders the two.
  std::atomic_signal_fence(std::memory_order_seq_cst);
  // relaxed: ordered by that membarrier, see above.
  if (w.parked.load(std::memory_order_relaxed) != 0) wake_parked(w);
}

// Registers this process for the consumers' membarrier, once per process.
// true: its producers may publish with release stores and
// notify_after_release(). false (no membarrier, or refused): they must
// publish with seq_cst operations and notify().
bool register_release_publisher() noexcept;
// membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED): a full barrier on every CPU
// running a thread of a registered process. false: the kernel lacks it or
// refused it (nothing was done).
bool global_barrier() noexcept;
// The consumer's barrier between raising `parked` and its check: membarrier
// when the kernel allows it (true), else a seq_cst fence (false: a release
// publisher may not see the flag, so park for at most kUncoveredParkNs).
bool park_barrier() noexcept;
inline constexpr int64_t kUncoveredParkNs = 1'000'000;

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
    const int64_t max_park = park_barrier() || opt.max_park_ns < kUncoveredParkNs ? opt.max_park_ns
                                                                                : kUncoveredParkNs;
    if (ready()) return true;  // the flag stays: one spare wake-up call at most
    const int64_t left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
    futex_wait(&wakeup->seq, s0, left < max_park ? left : max_park);
  }
}

}  // namespace sluice::ipc
