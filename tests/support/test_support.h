// Helpers shared by the test suites: a fresh bus directory per test, and
// child processes with bounded waits.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

namespace sluice::test {

// A fresh, empty directory under $SLUICE_TEST_TMP (default /dev/shm),
// removed when the object is destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Runs `body` in a forked child; the child's exit code is body's return
// value (and 99 if it throws). Returns the child's pid.
pid_t fork_child(const std::function<int()>& body);
// Waits up to timeout_ms for `pid`. Returns its exit code, 128 + signal when
// killed, or -1 on timeout (the child is then SIGKILLed and reaped).
int wait_child(pid_t pid, int timeout_ms);

// Rewrites the control word of identity `pid` in the bus's producer table
// through the file (as a holder that died at some point, or a helper, would
// have left it): `change` maps the old word to the new. A gtest failure if the
// table cannot be read or written.
void rewrite_producer_control(const std::string& bus_dir, uint64_t pid,
                              const std::function<uint64_t(uint64_t)>& change);
// The same, setting the state bits (and moving the epoch by `epoch_bump`).
void set_producer_state(const std::string& bus_dir, uint64_t pid, uint8_t state, uint16_t epoch_bump = 0);

// Whether the data region of the newest segment file in `partition_dir` is
// all zero from byte `from` on, read through the file. (Lazily recycled
// segments hold stale bytes past their writer's tail.)
bool newest_segment_zero_from(const std::string& partition_dir, size_t from);

}  // namespace sluice::test
