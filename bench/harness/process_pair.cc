#include "bench/harness/process_pair.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "ipc/wait_strategy.h"

namespace sluice::bench {

namespace {

// The first two CPUs this process may run on; false if fewer than two.
bool pick_cpus(int* a, int* b) {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return false;
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c)
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  if (cpus.size() < 2) return false;
  *a = cpus[0];
  *b = cpus[1];
  return true;
}

bool pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return ::sched_setaffinity(0, sizeof set, &set) == 0;
}

}  // namespace

PairRegion::PairRegion(uint64_t user_bytes) {
  const uint64_t bytes = kPairUserOffset + ((user_bytes + 4095) & ~uint64_t{4095});
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;
  base_ = static_cast<std::byte*>(p);
  bytes_ = bytes;
}

void PairRegion::prefault() const noexcept {
  if (base_ == nullptr) return;
  if (::madvise(base_, bytes_, MADV_POPULATE_WRITE) == 0) return;
  // Older kernels: touch one byte per page of the user bytes (a read would
  // map the zero page). Not the control page: the peer may be writing it.
  for (uint64_t off = kPairUserOffset; off < bytes_; off += 4096) {
    volatile std::byte* p = base_ + off;
    *p = *p;
  }
}

PairRegion::~PairRegion() {
  if (base_ != nullptr) ::munmap(base_, bytes_);
}

bool PairChannel::failed() const noexcept {
  // acquire: pairs with the release CAS in fail(); the message is readable.
  return region_->control().failed.load(std::memory_order_acquire) != 0;
}

bool PairChannel::fail(std::string_view message) {
  PairControl& c = region_->control();
  uint32_t expected = 0;
  // The first failure claims the message buffer with the CAS (acquire:
  // nothing to read; 2 marks "being written"), writes it, then publishes it
  // with the release store of 1 (pairs with failed()'s acquire load).
  if (c.failed.compare_exchange_strong(expected, 2, std::memory_order_acquire, std::memory_order_relaxed)) {
    const std::string text = (side_ == 0 ? "side A: " : "side B: ") + std::string(message);
    const size_t n = std::min(text.size(), sizeof c.error - 1);
    std::memcpy(c.error, text.data(), n);
    c.error[n] = '\0';
    c.failed.store(1, std::memory_order_release);
  }
  return false;
}

bool PairChannel::should_abort() {
  if (region_->control().failed.load(std::memory_order_relaxed) != 0) return true;
  if (std::chrono::steady_clock::now() >= deadline_) {
    fail("timed out");
    return true;
  }
  if (side_ == 0) {
    int status;
    if (::waitpid(peer_, &status, WNOHANG) == peer_) {
      // Reaped here: record it so run_process_pair() does not wait for it.
      peer_ = -1;
      fail(WIFSIGNALED(status) ? "side B died from signal " + std::to_string(WTERMSIG(status))
                               : "side B exited early with code " + std::to_string(WEXITSTATUS(status)));
      return true;
    }
  } else if (::getppid() != peer_) {
    fail("side A died");
    return true;
  }
  return false;
}

bool PairChannel::sync(uint32_t phase) {
  PairControl& c = region_->control();
  // release: pairs with the peer's acquire load below; everything this side
  // set up before arriving (shared bytes, files it created) is visible to
  // the peer once it sees the phase.
  c.reached[side_].phase.store(phase, std::memory_order_release);
  SpinBudget budget(*this);
  // acquire: pairs with the peer's release store above.
  while (c.reached[1 - side_].phase.load(std::memory_order_acquire) < phase) {
    if (!budget.keep_going()) return false;
    ipc::cpu_relax();
  }
  return !failed();
}

PairOutcome run_process_pair(PairRegion& region, const PairBody& a, const PairBody& b, int64_t timeout_ms) {
  PairOutcome out;
  if (!region.ok()) {
    out.error = "cannot map the shared region";
    return out;
  }
  // relaxed: before fork(); the child starts from this memory as it is.
  PairControl& control = region.control();
  for (PhaseWord& w : control.reached) w.phase.store(0, std::memory_order_relaxed);
  control.failed.store(0, std::memory_order_relaxed);
  control.b_pinned.store(0, std::memory_order_relaxed);
  control.error[0] = '\0';
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  int cpu_a = -1, cpu_b = -1;
  const bool can_pin = pick_cpus(&cpu_a, &cpu_b);
  cpu_set_t saved;
  const bool saved_ok = ::sched_getaffinity(0, sizeof saved, &saved) == 0;
  const pid_t parent = ::getpid();
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t child = ::fork();
  if (child < 0) {
    out.error = std::string("fork: ") + std::strerror(errno);
    return out;
  }
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(3);
    // relaxed: read by side A after waitpid(), which orders it.
    if (can_pin && pin_to_cpu(cpu_b)) region.control().b_pinned.store(1, std::memory_order_relaxed);
    region.prefault();
    PairChannel ch(region, 1, parent, deadline);
    bool ok = false;
    try {
      ok = b(ch);
    } catch (const std::exception& e) {
      ok = ch.fail(std::string("exception: ") + e.what());
    }
    if (!ok && !ch.failed()) ch.fail("failed");
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(ok ? 0 : 1);
  }
  const bool pinned_a = can_pin && pin_to_cpu(cpu_a);
  region.prefault();
  PairChannel ch(region, 0, child, deadline);
  bool ok_a = false;
  try {
    ok_a = a(ch);
  } catch (const std::exception& e) {
    ok_a = ch.fail(std::string("exception: ") + e.what());
  }
  if (!ok_a && !ch.failed()) ch.fail("failed");
  // Wait for the child: a little longer than the workload deadline.
  int status = 0;
  bool reaped = false;
  const auto kill_at = std::max(deadline, std::chrono::steady_clock::now() + std::chrono::seconds(5));
  for (;;) {
    const pid_t r = ::waitpid(child, &status, WNOHANG);
    if (r == child) {
      reaped = true;
      break;
    }
    if (r < 0) break;  // already reaped by should_abort()
    if (std::chrono::steady_clock::now() >= kill_at) {
      ::kill(child, SIGKILL);
      ::waitpid(child, &status, 0);
      ch.fail("side B did not finish; killed");
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (reaped && !(WIFEXITED(status) && WEXITSTATUS(status) == 0) && !ch.failed())
    ch.fail(WIFSIGNALED(status) ? "side B died from signal " + std::to_string(WTERMSIG(status))
                                : "side B exited with code " + std::to_string(WEXITSTATUS(status)));
  if (saved_ok) (void)::sched_setaffinity(0, sizeof saved, &saved);
  out.pinned = pinned_a && region.control().b_pinned.load(std::memory_order_relaxed) != 0;
  out.ok = ok_a && !ch.failed();
  if (ch.failed()) out.error = region.control().error;
  return out;
}

}  // namespace sluice::bench
