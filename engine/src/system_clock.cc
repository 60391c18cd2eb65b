// The system clock: CLOCK_REALTIME, read through the TSC where that is safe.
#include <sluice/clock.h>

#include <time.h>

#include <cstdlib>
#include <string>

#include "ipc/filesystem.h"

namespace sluice {
namespace {

[[gnu::noinline]] int64_t read_clock(clockid_t id) noexcept {
  timespec ts;
  ::clock_gettime(id, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

#if defined(__x86_64__)
// Whether the TSC ticks at one rate on every core, in every power state
// (constant_tsc, nonstop_tsc): then it can stand in for CLOCK_REALTIME.
bool tsc_is_reliable() {
  const std::string info = ipc::read_file("/proc/cpuinfo").value_or("");
  return info.find(" constant_tsc") != std::string::npos && info.find(" nonstop_tsc") != std::string::npos;
}

// CLOCK_REALTIME from the TSC. clock_gettime costs 37 ns on the VMs sluice
// is measured on, half of a 64-byte append; rdtsc about 13. Each thread
// anchors (tsc, realtime) pairs and measures the TSC's rate over the last
// window; between anchors, time is the anchor plus ticks times that rate.
// Windows are about 10 ms, so the error stays far below a microsecond
// and NTP slewing is followed. Until a rate is known, clock_gettime is used.
// A (tsc, realtime) pair read within this many ticks (~1-2 us) is tight.
constexpr uint64_t kTightPairTicks = 4000;
// The rate is measured over at least this many ticks (a few milliseconds), so
// a pair's jitter of a microsecond is a relative error of ~1e-4 at most.
constexpr uint64_t kMinWindowTicks = 5'000'000;

struct TscAnchor {
  uint64_t tsc = 0;
  int64_t real = 0;
  double ns_per_tick = 0;
  uint64_t reanchor_at = 0;
};
thread_local TscAnchor tsc_anchor;

// The slow path of tsc_realtime_ns(): the first window, or a new anchor.
[[gnu::noinline]] int64_t tsc_reanchor(uint64_t now) noexcept {
  TscAnchor& a = tsc_anchor;
  if (now < a.reanchor_at) return read_clock(CLOCK_REALTIME);  // first window: the rate is not known yet
  // An anchor is only as good as the pair is tight: bracket the realtime
  // read between two TSC reads and retry if we were preempted in between.
  int64_t real = 0;
  uint64_t tsc = 0;
  for (int attempt = 0;; ++attempt) {
    const uint64_t before = __builtin_ia32_rdtsc();
    real = read_clock(CLOCK_REALTIME);
    const uint64_t after = __builtin_ia32_rdtsc();
    tsc = before + (after - before) / 2;
    if (after - before < kTightPairTicks) break;
    if (attempt == 8) {  // persistently disturbed: no estimate this window
      a = TscAnchor{};
      return real;
    }
  }
  if (a.tsc != 0 && tsc - a.tsc >= kMinWindowTicks && real > a.real) {
    const double rate = static_cast<double>(real - a.real) / static_cast<double>(tsc - a.tsc);
    if (rate > 0.01 && rate < 100) a.ns_per_tick = rate;
  }
  a.tsc = tsc;
  a.real = real;
  // The first window (rate unknown) is ~10M ticks, a few milliseconds.
  a.reanchor_at = tsc + (a.ns_per_tick > 0 ? static_cast<uint64_t>(10'000'000 / a.ns_per_tick) : 10'000'000);
  return real;
}

// Inline, with the slow path out of line, so that a timestamp costs the
// producer no register saves: each store it makes waits in the store
// buffer behind the frame's stores into the mapping (docs/architecture.md,
// "Stores per record").
inline int64_t tsc_realtime_ns() noexcept {
  const TscAnchor& a = tsc_anchor;
  const uint64_t now = __builtin_ia32_rdtsc();
  if (now < a.reanchor_at && a.ns_per_tick > 0) [[likely]]
    return a.real + static_cast<int64_t>(static_cast<double>(static_cast<int64_t>(now - a.tsc)) * a.ns_per_tick);
  return tsc_reanchor(now);
}
#endif

class SystemClock final : public Clock {
 public:
  int64_t now_ns() const noexcept override {
#if defined(__x86_64__)
    if (use_tsc_) return tsc_realtime_ns();
#endif
    return read_clock(CLOCK_REALTIME);
  }
  int64_t coarse_now_ns() const noexcept override { return read_clock(CLOCK_REALTIME_COARSE); }

 private:
#if defined(__x86_64__)
  const bool use_tsc_ = tsc_is_reliable() && std::getenv("SLUICE_NO_TSC_CLOCK") == nullptr;
#endif
};

}  // namespace

const Clock& Clock::system() noexcept {
  static const SystemClock clock;
  return clock;
}

}  // namespace sluice
