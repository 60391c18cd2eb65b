// How the queue workload uses its baseline, Boost.Interprocess
// message_queue: a named queue (shm_open, under /dev/shm) created by one
// process after the fork and opened by the others, removed afterwards. Its
// send and receive block on a process-shared pthread mutex and condition
// variables inside the mapping (Linux: BOOST_INTERPROCESS_POSIX_PROCESS_SHARED).
//
// Every wait is bounded: the harness calls timed_send/timed_receive with a
// deadline that is read from the clock only every 1024 calls (or after it
// passed), so that a clock read is not added to every message; a timeout
// asks the channel whether the run should stop.
#pragma once

#include <unistd.h>

#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/ipc/message_queue.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::bench {

namespace bip = boost::interprocess;

// A name unique to this process and call; the queue of that name is removed
// when the object is made (a leftover of a crashed run) and destroyed.
class BoostMqName {
 public:
  explicit BoostMqName(std::string_view what) {
    static std::atomic<uint32_t> counter{0};
    // relaxed: only uniqueness within this process matters.
    name_ = "sluice-bench-" + std::string(what) + "-" + std::to_string(::getpid()) + "-" +
            std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
    bip::message_queue::remove(name_.c_str());
  }
  ~BoostMqName() { bip::message_queue::remove(name_.c_str()); }
  BoostMqName(const BoostMqName&) = delete;
  BoostMqName& operator=(const BoostMqName&) = delete;
  const char* c_str() const noexcept { return name_.c_str(); }

 private:
  std::string name_;
};

// The absolute time timed_send/timed_receive may wait until: 200 ms ahead,
// re-read every 1024 uses. A message_queue looks at it only when it has to
// block, so a stale deadline costs nothing while messages flow.
class BoostDeadline {
 public:
  const boost::posix_time::ptime& next() {
    if ((uses_++ & 1023) == 0) refresh();
    return at_;
  }
  void refresh() {
    at_ = boost::posix_time::microsec_clock::universal_time() + boost::posix_time::milliseconds(200);
  }

 private:
  boost::posix_time::ptime at_;
  uint64_t uses_ = 0;
};

// A blocking send; false once the run should stop (Channel: PairChannel or
// GroupChannel).
template <class Channel>
bool mq_send(bip::message_queue& mq, const void* data, size_t bytes, BoostDeadline& deadline, Channel& ch) {
  for (;;) {
    if (mq.timed_send(data, bytes, 0, deadline.next())) return true;
    if (ch.should_abort()) return false;
    deadline.refresh();
  }
}

// A blocking receive into `buffer` (at least the queue's message size);
// false once the run should stop.
template <class Channel>
bool mq_receive(bip::message_queue& mq, void* buffer, size_t capacity, size_t* received, BoostDeadline& deadline,
                Channel& ch) {
  bip::message_queue::size_type got = 0;
  unsigned int priority = 0;
  for (;;) {
    if (mq.timed_receive(buffer, capacity, got, priority, deadline.next())) {
      *received = static_cast<size_t>(got);
      return true;
    }
    if (ch.should_abort()) return false;
    deadline.refresh();
  }
}

}  // namespace sluice::bench
