#include "demo_processes.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace sluice::cli::demo {

namespace {

int ms_until(Deadline deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return left.count() <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left.count(), 50));
}

}  // namespace

Result<WorkerProcess> WorkerProcess::start(std::string name, const std::function<void()>& child) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return errno_error(errno, "pipe for worker " + name);
  // What is buffered now would otherwise be written twice, by both processes.
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return errno_error(err, "fork of worker " + name);
  }
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);  // the duplicate does not inherit O_CLOEXEC
    ::close(fds[0]);
    ::close(fds[1]);
    child();
    ::_exit(127);  // `child` does not return
  }
  ::close(fds[1]);
  return WorkerProcess(std::move(name), pid, fds[0]);
}

Result<WorkerProcess> WorkerProcess::spawn(std::string name, const std::vector<std::string>& args) {
  // Build argv before fork: the child only calls async-signal-safe functions.
  std::vector<std::string> storage = args;
  std::vector<char*> argv;
  static char self_name[] = "sluice";
  argv.push_back(self_name);
  for (std::string& s : storage) argv.push_back(s.data());
  argv.push_back(nullptr);
  return start(std::move(name), [&argv] {
    ::execv("/proc/self/exe", argv.data());
    static const char msg[] = "sluice: demo worker: exec of /proc/self/exe failed\n";
    (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
  });
}

Result<WorkerProcess> WorkerProcess::fork_call(std::string name, const std::function<int()>& body) {
  return start(std::move(name), [&body] {
    int code = 99;
    try {
      code = body();
    } catch (...) {
    }
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(code);
  });
}

WorkerProcess::WorkerProcess(WorkerProcess&& o) noexcept
    : name_(std::move(o.name_)),
      pid_(o.pid_),
      fd_(o.fd_),
      output_(std::move(o.output_)),
      scanned_(o.scanned_),
      exited_(o.exited_),
      exit_code_(o.exit_code_) {
  o.pid_ = -1;
  o.fd_ = -1;
  o.exited_ = true;
}

WorkerProcess::~WorkerProcess() {
  if (pid_ > 0 && !exited_) kill_now(SIGKILL);
  if (fd_ >= 0) ::close(fd_);
}

bool WorkerProcess::read_some(int timeout_ms) {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN, 0};
  const int r = ::poll(&p, 1, timeout_ms);
  if (r <= 0) return true;  // timeout (or EINTR): still open
  char buf[4096];
  const ssize_t n = ::read(fd_, buf, sizeof buf);
  if (n > 0) {
    output_.append(buf, static_cast<size_t>(n));
    return true;
  }
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  ::close(fd_);
  fd_ = -1;
  return false;
}

void WorkerProcess::reap(bool block) {
  if (exited_ || pid_ <= 0) return;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  if (r != pid_) return;
  exited_ = true;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}

bool WorkerProcess::wait_line(std::string_view prefix, Deadline deadline, std::string* line) {
  for (;;) {
    // Look at every complete line not yet looked at.
    size_t nl;
    while ((nl = output_.find('\n', scanned_)) != std::string::npos) {
      std::string_view l(output_.data() + scanned_, nl - scanned_);
      scanned_ = nl + 1;
      if (l.starts_with(prefix)) {
        *line = std::string(l);
        return true;
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (!read_some(ms_until(deadline))) {
      // EOF: one more pass over what arrived last.
      if (output_.find('\n', scanned_) == std::string::npos) return false;
    }
  }
}

bool WorkerProcess::wait_exit(Deadline deadline) {
  for (;;) {
    reap(false);
    if (exited_) {
      while (read_some(0)) {
      }  // drain what it wrote before exiting
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      kill_now(SIGKILL);
      return false;
    }
    if (!read_some(ms_until(deadline))) {
      // stdout closed: it is exiting; wait for it without spinning.
      ::usleep(1000);
    }
  }
}

void WorkerProcess::kill_now(int signal) {
  if (pid_ <= 0 || exited_) return;
  ::kill(pid_, signal);
  reap(true);
}

void WorkerProcess::send_signal(int signal) {
  if (pid_ > 0 && !exited_) ::kill(pid_, signal);
}

bool WorkerProcess::poll_exit() {
  while (fd_ >= 0) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) break;
    if (!read_some(0)) break;
  }
  reap(false);
  // What it wrote before exiting (bounded: a descendant may hold the pipe).
  for (int i = 0; exited_ && i < 64 && read_some(0); ++i) {
  }
  return exited_;
}

std::string WorkerProcess::last_line(std::string_view prefix) const {
  std::string found;
  size_t start = 0;
  while (start < output_.size()) {
    size_t nl = output_.find('\n', start);
    if (nl == std::string::npos) nl = output_.size();
    std::string_view l(output_.data() + start, nl - start);
    if (l.starts_with(prefix)) found = std::string(l);
    start = nl + 1;
  }
  return found;
}

bool wait_all(std::vector<WorkerProcess*> workers, Deadline deadline) {
  bool all = true;
  for (WorkerProcess* w : workers) all = w->wait_exit(deadline) && all;
  return all;
}

}  // namespace sluice::cli::demo
