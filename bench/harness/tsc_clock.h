// Cheap timestamps for round trips. On x86-64 with an invariant TSC
// (constant_tsc, nonstop_tsc) rdtsc costs a few ns against ~20 ns for
// steady_clock::now(); ticks are converted to ns with a rate calibrated
// against steady_clock over the measured run itself. Elsewhere, ticks are
// steady_clock nanoseconds.
#pragma once

#include <chrono>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace sluice::bench {

inline uint64_t tsc_now() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  return __rdtsc();
#else
  return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
}

inline int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Brackets a measured interval with both clocks; ns_per_tick() is the rate
// over it (the longer the interval, the better the estimate).
class TscCalibration {
 public:
  void start() noexcept {
    ns0_ = steady_ns();
    t0_ = tsc_now();
  }
  void stop() noexcept {
    t1_ = tsc_now();
    ns1_ = steady_ns();
  }
  double ns_per_tick() const noexcept {
    return t1_ > t0_ ? static_cast<double>(ns1_ - ns0_) / static_cast<double>(t1_ - t0_) : 1.0;
  }

 private:
  int64_t ns0_ = 0, ns1_ = 0;
  uint64_t t0_ = 0, t1_ = 0;
};

}  // namespace sluice::bench
