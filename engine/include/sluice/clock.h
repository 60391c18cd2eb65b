// Time as sluice sees it, injectable so that tests of timeouts, retention and
// auto-commit never sleep.
#pragma once

#include <atomic>
#include <cstdint>

namespace sluice {

class Clock {
 public:
  virtual ~Clock() = default;
  // Nanoseconds since the Unix epoch.
  virtual int64_t now_ns() const noexcept = 0;
  // The same, at millisecond-ish resolution but cheap enough to read on
  // every spin of a waiting loop (CLOCK_REALTIME_COARSE for the system clock).
  // Used for stall and timeout detection, never for record timestamps.
  virtual int64_t coarse_now_ns() const noexcept { return now_ns(); }
  // The process-wide system clock (CLOCK_REALTIME).
  static const Clock& system() noexcept;
};

// A clock that moves only when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ns = 1'700'000'000'000'000'000) : now_(start_ns) {}
  int64_t now_ns() const noexcept override { return now_.load(std::memory_order_acquire); }
  void advance_ns(int64_t delta) noexcept { now_.fetch_add(delta, std::memory_order_acq_rel); }
  void set_ns(int64_t t) noexcept { now_.store(t, std::memory_order_release); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace sluice
