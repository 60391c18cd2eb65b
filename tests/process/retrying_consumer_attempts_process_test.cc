// RetryMode::kInPlace's attempt count and backoff across SIGKILL
// (docs/queues.md, section 7): the attempts begun on a record, and when the
// next is due, are kept in the group's offsets file, so a member killed
// inside the handler on the record's last attempt is followed by one that
// dead-letters the record without running it again, and then handles what
// follows it; and one killed in a backoff is followed by one that waits out
// the rest of it.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "process_helpers.h"

namespace sluice {
namespace {

constexpr char kTopic[] = "orders";
constexpr char kGroup[] = "billing";

// One handler call, reported by a member.
struct Call {
  uint64_t offset;
  uint32_t attempt;
};

RetryingConsumerOptions in_place() {
  RetryingConsumerOptions o;
  o.mode = RetryMode::kInPlace;
  o.retry.max_receives = 2;
  o.retry.base_delay_ns = 0;  // the retry is due at once, on a clock that stands still
  o.retry.jitter_ns = 0;
  o.queue.segment_bytes = 1 << 20;
  o.queue.max_depth_bytes = 4 << 20;
  return o;
}

// A member on a clock that never moves. It reports every handler call; on
// "k1" it fails attempt 1 transiently and hangs in attempt 2 (until killed,
// at most 30 s). Polls until `polls` polls are done.
int member_main(const std::string& dir, int report_fd, int polls) {
  ManualClock clock;
  BusOptions bo;
  bo.clock = &clock;
  auto bus = Bus::open(dir, bo);
  if (!bus) return 10;
  auto c = RetryingConsumer::create(*bus, kTopic, kGroup, in_place());
  if (!c) return 11;
  bool write_failed = false;
  const RecordHandler handler = [&](const StreamRecord& r) {
    const Call call{r.offset, r.attempt};
    write_failed |= !test::write_all(report_fd, &call, sizeof call);
    if (r.value != "k1") return;
    if (r.attempt == 1) throw TransientError("database overloaded");
    ::sleep(30);  // killed here, inside its last attempt
    std::_Exit(16);
  };
  for (int i = 0; i < polls; ++i)
    if (!c->poll(handler)) return 12;
  return write_failed ? 13 : 0;
}

// Runs `member` (given the write end of its report pipe) in a child to its
// exit, which must be 0, and returns the calls it reported.
std::vector<Call> run_to_the_end(test::Children& children, const std::function<int(int)>& member) {
  test::Pipe report;
  const pid_t pid = children.spawn([&] { return member(report.write_end()); });
  EXPECT_GT(pid, 0);
  report.close_write();
  EXPECT_EQ(children.wait(pid, 20'000), 0);
  std::vector<Call> calls;
  Call call;
  while (test::read_exact(report.read_end(), &call, sizeof call, 1'000)) calls.push_back(call);
  return calls;
}

// A topic of one partition holding k0, k1, k2.
void make_topic(const std::string& dir) {
  auto bus = Bus::open(dir);
  ASSERT_TRUE(bus);
  TopicOptions t;
  t.partitions = 1;
  t.segment_bytes = 1 << 20;
  ASSERT_TRUE(bus->create_topic(kTopic, t));
  auto p = bus->create_producer(kTopic);
  ASSERT_TRUE(p);
  for (const char* v : {"k0", "k1", "k2"}) ASSERT_TRUE(p->send(Message{"", v}, 0).ok());
}

TEST(RetryInPlaceAttemptsProcesses, AMemberKilledInTheLastAttemptIsFollowedByOneThatDeadLettersTheRecordUnrun) {
  test::TempDir dir;
  ASSERT_NO_FATAL_FAILURE(make_topic(dir.path()));
  test::Children children;

  // The first member: k0, k1 (fails), then k1's second and last attempt,
  // in which it is killed.
  {
    test::Pipe report;
    const pid_t first = children.spawn([&] { return member_main(dir.path(), report.write_end(), 3); });
    ASSERT_GT(first, 0);
    report.close_write();
    std::vector<Call> calls(3);
    for (Call& call : calls) ASSERT_TRUE(test::read_exact(report.read_end(), &call, sizeof call, 20'000));
    EXPECT_EQ(calls[0].offset, 0u);
    EXPECT_EQ(calls[1].offset, 1u);
    EXPECT_EQ(calls[1].attempt, 1u);
    EXPECT_EQ(calls[2].offset, 1u);
    EXPECT_EQ(calls[2].attempt, 2u);
    EXPECT_EQ(children.kill(first), 128 + SIGKILL);
  }

  // Its replacement does not run k1 a third time: it dead-letters it, then
  // handles k2.
  {
    const std::vector<Call> calls = run_to_the_end(children, [&](int fd) { return member_main(dir.path(), fd, 2); });
    ASSERT_EQ(calls.size(), 1u);
    EXPECT_EQ(calls[0].offset, 2u);
    EXPECT_EQ(calls[0].attempt, 1u);
  }

  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  auto g = bus->describe_group(kGroup);
  ASSERT_TRUE(g);
  ASSERT_EQ(g->partitions.size(), 1u);
  EXPECT_EQ(g->partitions[0].committed, 3u);
  auto dw = bus->create_worker("orders.dlq");
  ASSERT_TRUE(dw);
  Delivery d[2];
  auto n = dw->receive(d, 0);
  ASSERT_TRUE(n) << n.error().to_string();
  ASSERT_EQ(*n, 1u) << "one dead letter";
  EXPECT_EQ(d[0].value(), "k1");
  EXPECT_EQ(d[0].headers().find("sluice.dlq.source_offset"), "1");
  EXPECT_EQ(d[0].headers().find("sluice.dlq.attempts"), "2");
  EXPECT_EQ(d[0].headers().find("sluice.dlq.error_type"), "MaxReceivesExceeded");
}

constexpr int64_t kBackoffNs = 10'000'000'000;
constexpr Call kPolled{~uint64_t{0}, 1};      // reported after a member's first poll
constexpr Call kClockMoved{~uint64_t{0}, 0};  // reported when a member moves its clock

// A member whose handler fails k1's first attempt (the next is due
// kBackoffNs later), on a clock that stands at the same time in every
// member. It reports every handler call; `then_sleep`: after one poll it
// reports kPolled and sleeps (until killed, at most 30 s); otherwise it
// polls three times, reports kClockMoved, moves its clock by kBackoffNs and
// polls twice more.
int backoff_member_main(const std::string& dir, int report_fd, bool then_sleep) {
  ManualClock clock;
  BusOptions bo;
  bo.clock = &clock;
  auto bus = Bus::open(dir, bo);
  if (!bus) return 10;
  RetryingConsumerOptions o = in_place();
  o.retry.max_receives = 3;
  o.retry.base_delay_ns = kBackoffNs;
  auto c = RetryingConsumer::create(*bus, kTopic, kGroup, o);
  if (!c) return 11;
  bool write_failed = false;
  const RecordHandler handler = [&](const StreamRecord& r) {
    const Call call{r.offset, r.attempt};
    write_failed |= !test::write_all(report_fd, &call, sizeof call);
    if (r.value == "k1" && r.attempt == 1) throw TransientError("database overloaded");
  };
  if (!c->poll(handler)) return 12;
  if (then_sleep) {
    if (!test::write_all(report_fd, &kPolled, sizeof kPolled) || write_failed) return 13;
    ::sleep(30);  // killed here, in k1's backoff
    return 16;
  }
  for (int i = 0; i < 2; ++i)
    if (!c->poll(handler)) return 12;
  write_failed |= !test::write_all(report_fd, &kClockMoved, sizeof kClockMoved);
  clock.advance_ns(kBackoffNs);
  for (int i = 0; i < 2; ++i)
    if (!c->poll(handler)) return 12;
  return write_failed ? 13 : 0;
}

TEST(RetryInPlaceAttemptsProcesses, AMemberKilledInABackoffIsFollowedByOneThatWaitsOutTheRest) {
  test::TempDir dir;
  ASSERT_NO_FATAL_FAILURE(make_topic(dir.path()));
  test::Children children;
  {
    test::Pipe report;
    const pid_t first = children.spawn([&] { return backoff_member_main(dir.path(), report.write_end(), true); });
    ASSERT_GT(first, 0);
    report.close_write();
    std::vector<Call> calls(3);
    for (Call& call : calls) ASSERT_TRUE(test::read_exact(report.read_end(), &call, sizeof call, 20'000));
    EXPECT_EQ(calls[1].offset, 1u);
    EXPECT_EQ(calls[1].attempt, 1u);
    EXPECT_EQ(calls[2].attempt, kPolled.attempt) << "k1 failed in its first poll";
    EXPECT_EQ(children.kill(first), 128 + SIGKILL);
  }
  // Its replacement, at the same clock reading, runs nothing until its
  // clock has moved by the backoff; then k1's second attempt, and k2.
  const std::vector<Call> calls =
      run_to_the_end(children, [&](int fd) { return backoff_member_main(dir.path(), fd, false); });
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_TRUE(calls[0].offset == kClockMoved.offset && calls[0].attempt == kClockMoved.attempt)
      << "k1 ran before its backoff was over";
  EXPECT_EQ(calls[1].offset, 1u);
  EXPECT_EQ(calls[1].attempt, 2u);
  EXPECT_EQ(calls[2].offset, 2u);
  EXPECT_EQ(calls[2].attempt, 1u);
}

}  // namespace
}  // namespace sluice
