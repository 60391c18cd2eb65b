// Two real processes for one workload: this one (side A) and a forked child
// (side B), pinned to two different CPUs when the affinity mask allows it,
// sharing one anonymous MAP_SHARED region. The region starts with a
// PairControl (start barrier, failure flag and message) and the workload's
// own bytes follow at PairRegion::user().
//
// Nothing opened before fork() is used by the child: each side opens its own
// sluice::Bus after the fork.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace sluice::bench {

struct alignas(64) PhaseWord {
  std::atomic<uint32_t> phase;
  char padding[60];
};
static_assert(sizeof(PhaseWord) == 64);  // each side spins on the other's line only

struct PairControl {
  PhaseWord reached[2];  // the last phase each side arrived at
  alignas(64) std::atomic<uint32_t> failed;
  std::atomic<uint32_t> b_pinned;  // side B pinned itself (read after it exited)
  char error[512];       // written by the side whose CAS set `failed`
};

inline constexpr uint64_t kPairUserOffset = 4096;

// An anonymous shared mapping, zero-filled; unmapped on destruction.
class PairRegion {
 public:
  explicit PairRegion(uint64_t user_bytes);
  ~PairRegion();
  PairRegion(const PairRegion&) = delete;
  PairRegion& operator=(const PairRegion&) = delete;

  bool ok() const noexcept { return base_ != nullptr; }
  // Maps every page into this process's page tables now, so that first
  // touches inside a measurement take no page fault. fork() does not copy
  // the page tables of shared mappings: each side calls it.
  void prefault() const noexcept;
  PairControl& control() const noexcept { return *reinterpret_cast<PairControl*>(base_); }
  std::byte* user() const noexcept { return base_ + kPairUserOffset; }
  uint64_t user_bytes() const noexcept { return bytes_ - kPairUserOffset; }

 private:
  std::byte* base_ = nullptr;
  uint64_t bytes_ = 0;
};

// What a side's body sees: its side, the shared bytes, and the barrier.
class PairChannel {
 public:
  PairChannel(PairRegion& region, int side, pid_t peer, std::chrono::steady_clock::time_point deadline)
      : region_(&region), side_(side), peer_(peer), deadline_(deadline) {}

  int side() const noexcept { return side_; }  // 0: A (parent), 1: B (child)
  std::byte* user() const noexcept { return region_->user(); }
  PairRegion& region() const noexcept { return *region_; }

  // Arrives at `phase` (1, 2, ...) and waits until the other side has too.
  // False if either side failed, the peer died, or the deadline passed.
  bool sync(uint32_t phase);
  // Records a failure (the first one's message wins) and releases the peer
  // from every wait. Returns false, for `return ch.fail(...)`.
  bool fail(std::string_view message);
  // Whether waiting should stop: a failure, a dead peer or the deadline.
  // Costs a clock read and (side A) a waitpid; call it every few thousand spins.
  bool should_abort();
  bool failed() const noexcept;

 private:
  PairRegion* region_;
  int side_;
  pid_t peer_;  // side A: the child's pid; side B: the parent's
  std::chrono::steady_clock::time_point deadline_;
};

// Counts spins of a wait loop and asks the channel whether to give up every
// 4096 of them, so the hot loop costs an increment and a test.
class SpinBudget {
 public:
  explicit SpinBudget(PairChannel& ch) : ch_(&ch) {}
  // False once the wait should stop.
  bool keep_going() {
    if ((++spins_ & 4095) != 0) return true;
    return !ch_->should_abort();
  }

 private:
  PairChannel* ch_;
  uint64_t spins_ = 0;
};

struct PairOutcome {
  bool ok = false;
  bool pinned = false;  // both sides ran pinned to distinct CPUs
  std::string error;
};

using PairBody = std::function<bool(PairChannel&)>;

// Forks. Both sides prefault the region first. Side B runs `b` in the child (which then _exit()s: no destructor of
// the parent's objects runs there), side A runs `a` here. Both are pinned
// when possible; A's previous affinity is restored afterwards. The child is
// killed if it outlives A by more than a few seconds or `timeout_ms` in all.
PairOutcome run_process_pair(PairRegion& region, const PairBody& a, const PairBody& b, int64_t timeout_ms);

}  // namespace sluice::bench
