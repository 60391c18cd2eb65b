#include "bench/harness/process_group.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

namespace sluice::bench {

namespace {

std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  return cpus;
}

// Member 0 on the first CPU, the others round-robin over the rest.
int cpu_of(const std::vector<int>& cpus, int member) {
  if (member == 0) return cpus[0];
  return cpus[1 + static_cast<size_t>(member - 1) % (cpus.size() - 1)];
}

bool pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return ::sched_setaffinity(0, sizeof set, &set) == 0;
}

std::string exit_text(int member, int status) {
  return "member " + std::to_string(member) +
         (WIFSIGNALED(status) ? " died from signal " + std::to_string(WTERMSIG(status))
                              : " exited with code " + std::to_string(WEXITSTATUS(status)));
}

}  // namespace

GroupRegion::GroupRegion(uint64_t user_bytes) {
  const uint64_t bytes = kGroupUserOffset + ((user_bytes + 4095) & ~uint64_t{4095});
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;
  base_ = static_cast<std::byte*>(p);
  bytes_ = bytes;
}

GroupRegion::~GroupRegion() {
  if (base_ != nullptr) ::munmap(base_, bytes_);
}

void GroupRegion::prefault() const noexcept {
  if (base_ == nullptr) return;
  if (::madvise(base_, bytes_, MADV_POPULATE_WRITE) == 0) return;
  // Older kernels: touch the user pages only (others may be writing the control page).
  for (uint64_t off = kGroupUserOffset; off < bytes_; off += 4096) {
    volatile std::byte* p = base_ + off;
    *p = *p;
  }
}

bool GroupChannel::failed() const noexcept {
  // acquire: pairs with the release store in fail(); the message is readable.
  return region_->control().failed.load(std::memory_order_acquire) != 0;
}

bool GroupChannel::fail(std::string_view message) {
  GroupControl& c = region_->control();
  uint32_t expected = 0;
  // As PairChannel::fail: 2 claims the message buffer, 1 publishes it.
  if (c.failed.compare_exchange_strong(expected, 2, std::memory_order_acquire, std::memory_order_relaxed)) {
    const std::string text = "member " + std::to_string(member_) + ": " + std::string(message);
    const size_t n = std::min(text.size(), sizeof c.error - 1);
    std::memcpy(c.error, text.data(), n);
    c.error[n] = '\0';
    c.failed.store(1, std::memory_order_release);
  }
  return false;
}

bool GroupChannel::should_abort() {
  if (region_->control().failed.load(std::memory_order_relaxed) != 0) return true;
  if (std::chrono::steady_clock::now() >= deadline_) {
    fail("timed out");
    return true;
  }
  if (member_ == 0) {
    for (size_t i = 0; i < children_->size(); ++i) {
      pid_t& pid = (*children_)[i];
      if (pid <= 0) continue;
      int status;
      if (::waitpid(pid, &status, WNOHANG) != pid) continue;
      pid = -1;  // reaped here
      // A member exits 0 only after its last barrier: not a failure.
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
      fail(exit_text(static_cast<int>(i) + 1, status));
      return true;
    }
  } else if (::getppid() != parent_) {
    fail("member 0 died");
    return true;
  }
  return false;
}

bool GroupChannel::sync(uint32_t phase) {
  GroupControl& c = region_->control();
  // release: pairs with the others' acquire loads below (see PairChannel::sync).
  c.reached[member_].phase.store(phase, std::memory_order_release);
  GroupSpinBudget budget(*this);
  for (int m = 0; m < members_; ++m) {
    // acquire: pairs with member m's release store above.
    while (c.reached[m].phase.load(std::memory_order_acquire) < phase) {
      if (!budget.keep_going()) return false;
      // Members may share a CPU: let the others run (barriers are not timed).
      std::this_thread::yield();
    }
  }
  return !failed();
}

GroupOutcome run_process_group(GroupRegion& region, int members, const GroupBody& body, int64_t timeout_ms) {
  GroupOutcome out;
  if (!region.ok()) {
    out.error = "cannot map the shared region";
    return out;
  }
  if (members < 2 || members > kMaxGroupMembers) {
    out.error = "a group has 2 to " + std::to_string(kMaxGroupMembers) + " members";
    return out;
  }
  // relaxed: before fork(); the children start from this memory as it is.
  GroupControl& control = region.control();
  for (PhaseWord& w : control.reached) w.phase.store(0, std::memory_order_relaxed);
  control.failed.store(0, std::memory_order_relaxed);
  control.pinned.store(0, std::memory_order_relaxed);
  control.error[0] = '\0';
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  const std::vector<int> cpus = allowed_cpus();
  const bool can_pin = cpus.size() >= 2;
  if (can_pin) {
    out.placement = "member 0 on CPU " + std::to_string(cpus[0]) + ", ";
    if (members == 2)
      out.placement += "member 1 on CPU " + std::to_string(cpus[1]);
    else if (cpus.size() == 2)
      out.placement += "members 1-" + std::to_string(members - 1) + " share CPU " + std::to_string(cpus[1]);
    else
      out.placement += "members 1-" + std::to_string(members - 1) + " round-robin over " +
                       std::to_string(cpus.size() - 1) + " other CPUs";
  } else {
    out.placement = "not pinned (fewer than two CPUs allowed)";
  }
  cpu_set_t saved;
  const bool saved_ok = ::sched_getaffinity(0, sizeof saved, &saved) == 0;
  const pid_t parent = ::getpid();
  std::vector<pid_t> children;
  GroupChannel ch(region, 0, members, parent, &children, deadline);
  std::fflush(stdout);
  std::fflush(stderr);
  for (int m = 1; m < members; ++m) {
    const pid_t child = ::fork();
    if (child < 0) {
      ch.fail(std::string("fork: ") + std::strerror(errno));
      break;
    }
    if (child == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(3);
      // relaxed: read by member 0 after waitpid(), which orders it.
      if (can_pin && pin_to_cpu(cpu_of(cpus, m))) region.control().pinned.fetch_add(1, std::memory_order_relaxed);
      region.prefault();
      GroupChannel mine(region, m, members, parent, nullptr, deadline);
      bool ok = false;
      try {
        ok = body(mine);
      } catch (const std::exception& e) {
        ok = mine.fail(std::string("exception: ") + e.what());
      }
      if (!ok && !mine.failed()) mine.fail("failed");
      std::fflush(stdout);
      std::fflush(stderr);
      ::_exit(ok ? 0 : 1);
    }
    children.push_back(child);
  }
  bool ok0 = false;
  if (!ch.failed()) {
    if (can_pin && pin_to_cpu(cpu_of(cpus, 0))) region.control().pinned.fetch_add(1, std::memory_order_relaxed);
    region.prefault();
    try {
      ok0 = body(ch);
    } catch (const std::exception& e) {
      ok0 = ch.fail(std::string("exception: ") + e.what());
    }
    if (!ok0 && !ch.failed()) ch.fail("failed");
  }
  // Wait for the children: a little longer than the workload deadline.
  const auto kill_at = std::max(deadline, std::chrono::steady_clock::now() + std::chrono::seconds(5));
  for (;;) {
    bool waiting = false;
    for (size_t i = 0; i < children.size(); ++i) {
      pid_t& pid = children[i];
      if (pid <= 0) continue;
      int status = 0;
      const pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == 0) {
        waiting = true;
        continue;
      }
      pid = -1;
      if (r == -1) continue;
      if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) && !ch.failed())
        ch.fail(exit_text(static_cast<int>(i) + 1, status));
    }
    if (!waiting) break;
    if (std::chrono::steady_clock::now() >= kill_at) {
      for (size_t i = 0; i < children.size(); ++i) {
        if (children[i] <= 0) continue;
        ::kill(children[i], SIGKILL);
        int status;
        ::waitpid(children[i], &status, 0);
        children[i] = -1;
        ch.fail("member " + std::to_string(i + 1) + " did not finish; killed");
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (saved_ok) (void)::sched_setaffinity(0, sizeof saved, &saved);
  out.pinned = can_pin && region.control().pinned.load(std::memory_order_relaxed) == static_cast<uint32_t>(members);
  out.ok = ok0 && !ch.failed();
  if (ch.failed()) out.error = region.control().error;
  return out;
}

}  // namespace sluice::bench
