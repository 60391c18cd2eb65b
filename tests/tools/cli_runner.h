// Runs the `sluice` binary (SLUICE_CLI_PATH) as a child process with a
// bounded wait, feeding stdin and capturing stdout, stderr and the exit
// code. Header-only: shared by the tool tests, not a test itself.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "support/test_support.h"

#ifndef SLUICE_CLI_PATH
#error "SLUICE_CLI_PATH must name the sluice binary"
#endif

namespace sluice::test {

struct CliResult {
  int code = -1;  // exit code; 128 + signal if killed; -1 on timeout
  std::string out, err;
  // The stderr lines (an error must be exactly one) and the stdout lines.
  std::vector<std::string> err_lines() const { return lines_of(err); }
  std::vector<std::string> out_lines() const { return lines_of(out); }

 private:
  static std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < text.size()) {
      size_t nl = text.find('\n', start);
      if (nl == std::string::npos) nl = text.size();
      lines.push_back(text.substr(start, nl - start));
      start = nl + 1;
    }
    return lines;
  }
};

// The command line's exit codes (tools/sluice/cli_common.h).
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

// A failed command says why in exactly one line, "sluice: ...", containing `needle`.
inline void expect_one_error_line(const CliResult& r, const std::string& needle) {
  const auto lines = r.err_lines();
  ASSERT_EQ(lines.size(), 1u) << "stderr: " << r.err;
  EXPECT_EQ(lines[0].rfind("sluice: ", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find(needle), std::string::npos) << lines[0];
}

struct CliOptions {
  std::string input;           // stdin
  std::string sluice_dir_env;  // SLUICE_DIR for the child; empty: unset
  int timeout_ms = 20'000;
};

// The whitespace-separated words of the line of `text` that starts with
// `first` (as a word), or {} if none does: a row of a command's table.
inline std::vector<std::string> row(const std::string& text, const std::string& first) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream in(line);
    std::vector<std::string> words;
    for (std::string w; in >> w;) words.push_back(w);
    if (!words.empty() && words[0] == first) return words;
  }
  return {};
}

inline CliOptions with_input(std::string input) {
  CliOptions o;
  o.input = std::move(input);
  return o;
}
inline CliOptions with_timeout_ms(int ms) {
  CliOptions o;
  o.timeout_ms = ms;
  return o;
}

inline CliResult run_cli(const std::vector<std::string>& args, const CliOptions& options = {}) {
  ::signal(SIGPIPE, SIG_IGN);  // a child that exits before reading all its stdin must not kill the test
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC)) return {};
  std::vector<std::string> storage = args;
  std::vector<char*> argv;
  static char name[] = "sluice";
  argv.push_back(name);
  for (auto& s : storage) argv.push_back(s.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    if (options.sluice_dir_env.empty())
      ::unsetenv("SLUICE_DIR");
    else
      ::setenv("SLUICE_DIR", options.sluice_dir_env.c_str(), 1);
    ::execv(SLUICE_CLI_PATH, argv.data());
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  CliResult r;
  size_t written = 0;
  int in_fd = in[1];
  if (options.input.empty()) {
    ::close(in_fd);
    in_fd = -1;
  } else {
    ::fcntl(in_fd, F_SETFL, O_NONBLOCK);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options.timeout_ms);
  int out_fd = out[0], err_fd = err[0];
  bool timed_out = false;
  while (out_fd >= 0 || err_fd >= 0) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd fds[3];
    int n = 0;
    if (out_fd >= 0) fds[n++] = {out_fd, POLLIN, 0};
    if (err_fd >= 0) fds[n++] = {err_fd, POLLIN, 0};
    if (in_fd >= 0) fds[n++] = {in_fd, POLLOUT, 0};
    if (::poll(fds, n, static_cast<int>(std::min<int64_t>(left.count(), 100))) <= 0) continue;
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in_fd) {
        const ssize_t w = ::write(in_fd, options.input.data() + written, options.input.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN) written = options.input.size();
        if (written == options.input.size()) {
          ::close(in_fd);
          in_fd = -1;
        }
        continue;
      }
      char buf[4096];
      const ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      std::string& sink = fds[i].fd == out_fd ? r.out : r.err;
      if (got > 0) {
        sink.append(buf, static_cast<size_t>(got));
      } else {
        ::close(fds[i].fd);
        (fds[i].fd == out_fd ? out_fd : err_fd) = -1;
      }
    }
  }
  for (int fd : {in_fd, out_fd, err_fd})
    if (fd >= 0) ::close(fd);
  int status = 0;
  if (timed_out) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    r.code = -1;
    return r;
  }
  // Both outputs closed: the child is exiting. Bound the reap anyway.
  for (int i = 0; i < 5000; ++i) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return r;
    }
    ::usleep(1000);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  r.code = -1;
  return r;
}

// Runs with `--dir dir` in front of `args`.
inline CliResult run_cli_in(const std::string& dir, std::vector<std::string> args, const CliOptions& options = {}) {
  args.insert(args.begin(), {"--dir", dir});
  return run_cli(args, options);
}

// The fixture of most tool tests: one bus directory, initialised by
// `sluice init`, and the command line run on it.
class CliBusTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(run_cli_in(dir_.path(), {"init"}).code, 0); }

  // `sluice --dir <bus> args...`, with `input` on stdin.
  CliResult cli(std::vector<std::string> args, std::string input = "") {
    return run_cli_in(dir_.path(), std::move(args), with_input(std::move(input)));
  }
  // The same, expecting success and a silent stderr.
  CliResult ok(std::vector<std::string> args, std::string input = "") {
    CliResult r = cli(args, std::move(input));
    EXPECT_EQ(r.code, 0) << args[0] << (args.size() > 1 ? " " + args[1] : "") << ": " << r.err;
    EXPECT_TRUE(r.err.empty()) << r.err;
    return r;
  }

  TempDir dir_;
};

}  // namespace sluice::test
