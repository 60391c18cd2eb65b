// RetryMode::kInPlace across a crash: a member SIGKILLed while a record waits
// out its backoff has committed nothing past it, so the member that replaces
// it handles the record again, and only then the records behind it.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <string>
#include <vector>

#include "process_helpers.h"

namespace sluice {
namespace {

constexpr int64_t kSec = 1'000'000'000;
constexpr char kTopic[] = "orders";
constexpr char kGroup[] = "billing";
constexpr uint32_t kDone = UINT32_MAX;  // Call.partition of a member's last report

// One handler call, reported by a member; kDone ends a member's reports.
struct Call {
  uint32_t partition;
  uint32_t attempt;  // kDone: 1 if partition 0 is paused
  uint64_t offset;
};

RetryingConsumerOptions in_place() {
  RetryingConsumerOptions o;
  o.mode = RetryMode::kInPlace;
  o.retry.max_receives = 3;
  o.retry.base_delay_ns = 60 * kSec;
  o.retry.jitter_ns = 0;
  o.queue.segment_bytes = 1 << 20;
  o.queue.max_depth_bytes = 4 << 20;
  return o;
}

// A member on a clock that never moves, `later_ns` after the first
// member's: a record that fails waits out its backoff for as long as the
// member lives. It polls `polls` times, reporting every call, fails "k1"
// transiently if `fail`, reports kDone, then waits to be killed (at most
// 30 s) if `hold_fd` is open.
int member_main(const std::string& dir, int report_fd, int hold_fd, bool fail, int polls, int64_t later_ns = 0) {
  ManualClock clock;
  clock.advance_ns(later_ns);
  BusOptions bo;
  bo.clock = &clock;
  auto bus = Bus::open(dir, bo);
  if (!bus) return 10;
  auto c = RetryingConsumer::create(*bus, kTopic, kGroup, in_place());
  if (!c) return 11;
  bool write_failed = false;
  const RecordHandler handler = [&](const StreamRecord& r) {
    const Call call{r.partition, r.attempt, r.offset};
    write_failed |= !test::write_all(report_fd, &call, sizeof call);
    if (fail && r.value == "k1") throw TransientError("database overloaded");
  };
  for (int i = 0; i < polls; ++i)
    if (!c->poll(handler)) return 12;
  if (write_failed) return 13;
  const Call done{kDone, c->stats().is_paused(0) ? 1u : 0u, 0};
  if (!test::write_all(report_fd, &done, sizeof done)) return 14;
  if (hold_fd < 0) return 0;
  char byte;
  (void)test::read_exact(hold_fd, &byte, 1, 30'000);
  return 15;  // not killed
}

// A member's calls up to its kDone report; false on a timeout.
bool read_calls(int fd, std::vector<Call>* calls, uint32_t* paused) {
  for (;;) {
    Call call;
    if (!test::read_exact(fd, &call, sizeof call, 20'000)) return false;
    if (call.partition == kDone) {
      *paused = call.attempt;
      return true;
    }
    calls->push_back(call);
  }
}

// Opens the bus for each look, so that no Bus of this process is open when
// it forks a member.
uint64_t committed(const std::string& dir, uint32_t partition) {
  auto bus = Bus::open(dir);
  if (!bus) return kNoOffset;
  auto g = bus->describe_group(kGroup);
  if (!g) return kNoOffset;
  for (const PartitionLag& p : g->partitions)
    if (p.topic == kTopic && p.partition == partition) return p.committed;
  return kNoOffset;
}

std::vector<std::string> describe(const std::vector<Call>& calls) {
  std::vector<std::string> out;
  for (const Call& c : calls)
    out.push_back(std::to_string(c.partition) + ":" + std::to_string(c.offset) + "/" + std::to_string(c.attempt));
  return out;
}

TEST(RetryInPlaceProcesses, AMemberKilledDuringTheBackoffIsReplacedByOneThatRetriesTheRecordFirst) {
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    TopicOptions t;
    t.partitions = 2;
    t.segment_bytes = 1 << 20;
    ASSERT_TRUE(bus->create_topic(kTopic, t));
    auto p = bus->create_producer(kTopic);
    ASSERT_TRUE(p);
    for (const char* v : {"k0", "k1", "k2", "k3"}) ASSERT_TRUE(p->send(Message{"", v}, 0).ok());
    for (const char* v : {"j0", "j1"}) ASSERT_TRUE(p->send(Message{"", v}, 1).ok());
  }
  using Strings = std::vector<std::string>;
  test::Children children;

  // The first member: k1 fails, partition 0 waits 60 s (of a clock that
  // stands still); partition 1 is handled. Killed in the backoff.
  {
    test::Pipe report, hold;
    const pid_t first = children.spawn(
        [&] { return member_main(dir.path(), report.write_end(), hold.read_end(), true, 3); });
    ASSERT_GT(first, 0);
    report.close_write();
    std::vector<Call> calls;
    uint32_t paused = 0;
    ASSERT_TRUE(read_calls(report.read_end(), &calls, &paused)) << "the first member did not report";
    EXPECT_EQ(paused, 1u);
    std::vector<Call> p0, p1;
    for (const Call& c : calls) (c.partition == 0 ? p0 : p1).push_back(c);
    EXPECT_EQ(describe(p0), (Strings{"0:0/1", "0:1/1"})) << "nothing after k1 while it waits";
    EXPECT_EQ(describe(p1), (Strings{"1:0/1", "1:1/1"}));
    EXPECT_EQ(committed(dir.path(), 0), 1u) << "committed up to the record retried, not past it";
    EXPECT_EQ(committed(dir.path(), 1), 2u);
    EXPECT_EQ(children.kill(first), 128 + SIGKILL);
  }
  EXPECT_EQ(committed(dir.path(), 0), 1u);

  // Its replacement, once the backoff is over (the group's offsets file
  // keeps its due time: retrying_consumer_attempts_process_test.cc), starts
  // at the group's offsets: k1 again (attempt 2: the file kept the count
  // too), then k2 and k3, in order; nothing of partition 1 again.
  {
    test::Pipe report;
    const pid_t second =
        children.spawn([&] { return member_main(dir.path(), report.write_end(), -1, false, 2, 60 * kSec); });
    ASSERT_GT(second, 0);
    report.close_write();
    std::vector<Call> calls;
    uint32_t paused = 1;
    ASSERT_TRUE(read_calls(report.read_end(), &calls, &paused)) << "the second member did not report";
    EXPECT_EQ(paused, 0u);
    EXPECT_EQ(describe(calls), (Strings{"0:1/2", "0:2/1", "0:3/1"}));
    EXPECT_EQ(children.wait(second, 20'000), 0);
  }
  EXPECT_EQ(committed(dir.path(), 0), 4u);
  EXPECT_EQ(committed(dir.path(), 1), 2u);
}

}  // namespace
}  // namespace sluice
