// The demo's child processes: this very binary started again (fork + exec
// of /proc/self/exe) with a hidden `demo-worker` subcommand, its stdout on a
// pipe the orchestrator reads its reports from. Every wait has a deadline.
// The chaos run uses them too, and its test forks a function instead of
// exec'ing (fork_call).
#pragma once

#include <sluice/status.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace sluice::cli::demo {

using Deadline = std::chrono::steady_clock::time_point;

class WorkerProcess {
 public:
  // Starts `/proc/self/exe args...` with stdout on a pipe; stderr is shared
  // with ours so a worker's error line reaches the user.
  static Result<WorkerProcess> spawn(std::string name, const std::vector<std::string>& args);
  // Forks a child that runs `body` with stdout on the pipe and exits with
  // its return value (_exit: nothing of the parent's is destroyed there).
  // For tests, whose binary has no worker subcommand to exec.
  static Result<WorkerProcess> fork_call(std::string name, const std::function<int()>& body);
  WorkerProcess(WorkerProcess&&) noexcept;
  WorkerProcess& operator=(WorkerProcess&&) = delete;
  ~WorkerProcess();  // a worker still running is killed and reaped

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }
  // Waits for a line starting with `prefix` on its stdout. False when the
  // deadline passes or the worker closes stdout (exits) first.
  bool wait_line(std::string_view prefix, Deadline deadline, std::string* line);
  // Waits for it to exit, reading its stdout meanwhile. False on timeout
  // (it is then killed). exit_code(): its code, or 128 + signal.
  bool wait_exit(Deadline deadline);
  void kill_now(int signal);  // sends `signal`, then reaps
  // Sends `signal` and returns (SIGSTOP, SIGCONT, SIGTERM).
  void send_signal(int signal);
  // Reads what its stdout holds now and reaps it if it exited, without
  // blocking. Returns exited().
  bool poll_exit();
  bool exited() const { return exited_; }
  int exit_code() const { return exit_code_; }
  // The last line starting with `prefix` it printed, or "".
  std::string last_line(std::string_view prefix) const;

 private:
  WorkerProcess(std::string name, pid_t pid, int fd) : name_(std::move(name)), pid_(pid), fd_(fd) {}
  // Forks a child with stdout on a new pipe (the read end is ours) that runs
  // `child`, which must not return (it execs or _exits). `child` is built
  // before the fork, so calling it allocates nothing.
  static Result<WorkerProcess> start(std::string name, const std::function<void()>& child);
  bool read_some(int timeout_ms);  // false at EOF
  void reap(bool block);

  std::string name_;
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string output_;
  size_t scanned_ = 0;  // wait_line() has looked at output_[0, scanned_)
  bool exited_ = false;
  int exit_code_ = -1;
};

// Waits for every worker to exit by `deadline`; false if any had to be killed.
bool wait_all(std::vector<WorkerProcess*> workers, Deadline deadline);

}  // namespace sluice::cli::demo
