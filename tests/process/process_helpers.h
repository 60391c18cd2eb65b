// Helpers of the multi-process tests: pipes with bounded reads, and a guard
// that kills and reaps the children a test started if it leaves early (a
// failed ASSERT), so no test leaves processes behind or blocks forever.
#pragma once

#include <poll.h>
#include <sluice/options.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <functional>
#include <vector>

#include <sluice/sluice.h>

#include <string>

#include "support/test_support.h"

namespace sluice::test {

// One partition of small segments (64 KiB) indexed every 512 bytes, so that
// crash tests roll segments and resynchronise through the index quickly.
inline TopicOptions small_topic() {
  TopicOptions o;
  o.partitions = 1;
  o.segment_bytes = 64 << 10;
  o.index_interval_bytes = 512;
  return o;
}

// Creates queue `name` with `options` in the bus at `dir` and publishes
// "m0" .. "m<n-1>" to it, in that order.
inline void fill_queue(const std::string& dir, const std::string& name, const QueueOptions& options, int n) {
  auto bus = Bus::open(dir);
  ASSERT_TRUE(bus) << bus.error().to_string();
  ASSERT_TRUE(bus->create_queue(name, options));
  auto p = bus->create_queue_publisher(name);
  ASSERT_TRUE(p);
  for (int i = 0; i < n; ++i) {
    const std::string v = "m" + std::to_string(i);
    QueueMessage m;
    m.value = v;
    ASSERT_TRUE(p->publish(m).ok());
  }
}

struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() {
    if (::pipe(fd) != 0) fd[0] = fd[1] = -1;
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  int read_end() const { return fd[0]; }
  int write_end() const { return fd[1]; }
  void close_read() {
    if (fd[0] >= 0) ::close(fd[0]);
    fd[0] = -1;
  }
  void close_write() {
    if (fd[1] >= 0) ::close(fd[1]);
    fd[1] = -1;
  }
};

// Reads exactly `n` bytes within `timeout_ms`. False on timeout, EOF or error.
inline bool read_exact(int fd, void* buf, size_t n, int timeout_ms) {
  auto* p = static_cast<char*>(buf);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (n > 0) {
    using std::chrono::milliseconds;
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd pfd{fd, POLLIN, 0};
    const int rc = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return false;
    const ssize_t got = ::read(fd, p, n);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

inline bool write_all(int fd, const void* buf, size_t n) {
  const auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    const ssize_t put = ::write(fd, p, n);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) return false;
    p += put;
    n -= static_cast<size_t>(put);
  }
  return true;
}

// The children of one test. Every child not waited for is SIGKILLed and
// reaped when the guard goes out of scope.
class Children {
 public:
  Children() = default;
  Children(const Children&) = delete;
  Children& operator=(const Children&) = delete;
  ~Children() {
    for (pid_t pid : pids_) {
      ::kill(pid, SIGKILL);
      int status;
      ::waitpid(pid, &status, 0);
    }
  }
  pid_t spawn(const std::function<int()>& body) {
    const pid_t pid = fork_child(body);
    if (pid > 0) pids_.push_back(pid);
    return pid;
  }
  // wait_child() for one of ours; it is forgotten afterwards.
  int wait(pid_t pid, int timeout_ms) {
    forget(pid);
    return wait_child(pid, timeout_ms);
  }
  // SIGKILLs one child and reaps it. Returns wait_child()'s code.
  int kill(pid_t pid) {
    ::kill(pid, SIGKILL);
    return wait(pid, 10'000);
  }
  const std::vector<pid_t>& pids() const { return pids_; }

 private:
  void forget(pid_t pid) { pids_.erase(std::remove(pids_.begin(), pids_.end(), pid), pids_.end()); }
  std::vector<pid_t> pids_;
};

// A consumed record, copied out of the mapping.
struct Copied {
  uint32_t partition = 0;
  uint64_t offset = 0;
  std::string key;
  std::string value;
};

// Reads partition `partition` of `topic` with a standalone consumer until
// nothing new arrives for `idle_ms` (at most `max_ms` in all). An Error from
// poll ends the read and is returned.
inline Result<std::vector<Copied>> read_partition(Bus& bus, std::string_view topic, uint32_t partition,
                                                  int idle_ms = 200, int max_ms = 20'000) {
  ConsumerOptions o;
  o.partitions = {partition};
  auto consumer = bus.create_consumer(topic, "", o);
  if (!consumer) return std::unexpected(consumer.error());
  std::vector<Copied> got;
  std::vector<RecordView> out(128);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(max_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    auto n = consumer->poll(out, int64_t{idle_ms} * 1'000'000);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) break;
    for (size_t i = 0; i < *n; ++i)
      got.push_back({out[i].partition, out[i].offset, std::string(out[i].key), std::string(out[i].value)});
  }
  return got;
}

}  // namespace sluice::test
