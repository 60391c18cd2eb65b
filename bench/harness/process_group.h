// N real processes for one workload: this one (member 0) and members - 1
// forked children, sharing one anonymous MAP_SHARED region that starts with
// a GroupControl (barrier, failure flag and message); the workload's own
// bytes follow at GroupRegion::user(). The same idea as process_pair.h, for
// one producer and several consumers.
//
// Placement: when at least two CPUs are allowed, member 0 is pinned to the
// first one and the others are spread over the rest (on a two-CPU machine
// every other member shares the second CPU). Nothing opened before fork()
// is used by a child: each member opens what it needs after the fork.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/harness/process_pair.h"  // PhaseWord

namespace sluice::bench {

inline constexpr int kMaxGroupMembers = 16;
inline constexpr uint64_t kGroupUserOffset = 4096;

struct GroupControl {
  PhaseWord reached[kMaxGroupMembers];  // the last phase each member arrived at
  alignas(64) std::atomic<uint32_t> failed;
  std::atomic<uint32_t> pinned;  // members that pinned themselves (read after they exited)
  char error[512];               // written by the member whose CAS set `failed`
};
static_assert(sizeof(GroupControl) <= kGroupUserOffset);

// An anonymous shared mapping, zero-filled; unmapped on destruction.
class GroupRegion {
 public:
  explicit GroupRegion(uint64_t user_bytes);
  ~GroupRegion();
  GroupRegion(const GroupRegion&) = delete;
  GroupRegion& operator=(const GroupRegion&) = delete;

  bool ok() const noexcept { return base_ != nullptr; }
  // Maps every page into this process's page tables (each member calls it).
  void prefault() const noexcept;
  GroupControl& control() const noexcept { return *reinterpret_cast<GroupControl*>(base_); }
  std::byte* user() const noexcept { return base_ + kGroupUserOffset; }

 private:
  std::byte* base_ = nullptr;
  uint64_t bytes_ = 0;
};

// What a member's body sees: who it is, the shared bytes, and the barrier.
class GroupChannel {
 public:
  GroupChannel(GroupRegion& region, int member, int members, pid_t parent, std::vector<pid_t>* children,
               std::chrono::steady_clock::time_point deadline)
      : region_(&region), member_(member), members_(members), parent_(parent), children_(children),
        deadline_(deadline) {}

  int member() const noexcept { return member_; }  // 0: the parent
  int members() const noexcept { return members_; }
  std::byte* user() const noexcept { return region_->user(); }

  // Arrives at `phase` (1, 2, ...) and waits until every member has too.
  // False if a member failed or died, or the deadline passed.
  bool sync(uint32_t phase);
  // Records a failure (the first one's message wins) and releases every
  // member from its waits. Returns false, for `return ch.fail(...)`.
  bool fail(std::string_view message);
  // Whether waiting should stop: a failure, a dead member or the deadline.
  // Costs a clock read and (member 0) a waitpid per child.
  bool should_abort();
  bool failed() const noexcept;

 private:
  GroupRegion* region_;
  int member_;
  int members_;
  pid_t parent_;
  std::vector<pid_t>* children_;  // member 0: the children's pids, -1 once reaped with success
  std::chrono::steady_clock::time_point deadline_;
};

// SpinBudget for a GroupChannel: asks whether to give up every 4096 spins.
class GroupSpinBudget {
 public:
  explicit GroupSpinBudget(GroupChannel& ch) : ch_(&ch) {}
  bool keep_going() {
    if ((++spins_ & 4095) != 0) return true;
    return !ch_->should_abort();
  }

 private:
  GroupChannel* ch_;
  uint64_t spins_ = 0;
};

struct GroupOutcome {
  bool ok = false;
  bool pinned = false;    // every member ran pinned
  std::string placement;  // e.g. "member 0 on CPU 0, members 1-4 on CPU 1"
  std::string error;
};

using GroupBody = std::function<bool(GroupChannel&)>;

// Forks members - 1 children (2 <= members <= kMaxGroupMembers); every member
// runs `body` with its own channel (member 0 here, after which this process's
// previous affinity is restored). Children are killed if they outlive
// member 0 by more than a few seconds or `timeout_ms` in all.
GroupOutcome run_process_group(GroupRegion& region, int members, const GroupBody& body, int64_t timeout_ms);

}  // namespace sluice::bench
