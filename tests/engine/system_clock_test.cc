#include <gtest/gtest.h>
#include <sluice/clock.h>
#include <time.h>

#include <algorithm>
#include <vector>

namespace sluice {
namespace {

int64_t realtime() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// The system clock may be derived from the TSC; it must stay within a few
// microseconds of CLOCK_REALTIME. Samples where this thread was preempted
// between the bracketing reads say nothing and are skipped.
TEST(SystemClock, StaysCloseToRealtimeAcrossManyRecalibrations) {
  const Clock& clock = Clock::system();
  std::vector<int64_t> errors;
  for (int i = 0; i < 400000; ++i) {
    const int64_t lo = realtime();
    const int64_t t = clock.now_ns();
    const int64_t hi = realtime();
    if (hi - lo > 2000) continue;
    errors.push_back(t < lo ? lo - t : t > hi ? t - hi : 0);
  }
  ASSERT_GT(errors.size(), 1000u);
  std::sort(errors.begin(), errors.end());
  EXPECT_LT(errors[errors.size() * 999 / 1000], 20'000) << "p99.9 error in ns";
  EXPECT_LE(clock.coarse_now_ns(), realtime());
}

}  // namespace
}  // namespace sluice
