// The hot paths allocate nothing: after a warm-up (the first send maps the
// segment and takes the writer lock, the first poll positions the cursor),
// N = 10000 calls of Producer::send, send_batch, try_claim + commit and
// Consumer::try_poll perform zero heap allocations (counted by
// alloc_counter.h, which sees operator new and the malloc family). Segments
// are 64 MiB, so no roll (which may allocate) happens inside a window.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "alloc_counter.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr int kCalls = 10000;
constexpr uint32_t kValueBytes = 64;

using test::AllocationWindow;

// The counters are not vacuous: they see both kinds of allocation.
TEST(AllocationCounter, SeesOperatorNewAndMalloc) {
  static void* volatile sink;
  AllocationWindow w;
  sink = ::operator new(32);  // a direct call: never elided, unlike a new-expression
  ::operator delete(sink);
  sink = std::malloc(32);     // escapes through the volatile: not elided
  std::free(sink);
  w.stop();
  EXPECT_EQ(w.news(), 1u);
  EXPECT_EQ(w.mallocs(), 1u);
  EXPECT_TRUE(w.recorded_first_stack());
}

class NoAlloc : public ::testing::Test {
 protected:
  void SetUp() override {
    AllocationWindow::warm_up_unwinder();
    auto bus = Bus::open(dir_.path());
    ASSERT_TRUE(bus) << bus.error().to_string();
    bus_.emplace(std::move(*bus));
    TopicOptions t;
    t.partitions = 1;
    t.segment_bytes = 64u << 20;
    ASSERT_TRUE(bus_->create_topic("t", t));
  }

  Producer producer(bool exclusive = false) {
    ProducerOptions o;
    o.exclusive = exclusive;
    auto p = bus_->create_producer("t", o);
    EXPECT_TRUE(p) << p.error().to_string();
    return std::move(*p);
  }

  test::TempDir dir_;
  std::optional<Bus> bus_;
  const std::string value_ = std::string(kValueBytes, 'a');
};

TEST_F(NoAlloc, SendAllocatesNothingPerRecord) {
  Producer p = producer();
  ASSERT_TRUE(p.send(Message{{}, value_}).ok());  // warm-up: maps the segment
  AllocationWindow w;
  for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(p.send(Message{{}, value_}).ok());
  EXPECT_NO_ALLOCATIONS(w);
}

TEST_F(NoAlloc, SendWithKeyAndHeadersAllocatesNothingPerRecord) {
  Producer p = producer();
  const Header headers[] = {{"trace", "0123456789abcdef"}, {"type", "order"}};
  ASSERT_TRUE(p.send(Message{"key-1", value_, headers}).ok());
  AllocationWindow w;
  for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(p.send(Message{"key-1", value_, headers}).ok());
  EXPECT_NO_ALLOCATIONS(w);
}

TEST_F(NoAlloc, ExclusiveSendAllocatesNothingPerRecord) {
  Producer p = producer(true);
  ASSERT_TRUE(p.send(Message{{}, value_}).ok());
  AllocationWindow w;
  for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(p.send(Message{{}, value_}).ok());
  EXPECT_NO_ALLOCATIONS(w);
}

TEST_F(NoAlloc, IdempotentSendAndSendSequencedAllocateNothingPerRecord) {
  ProducerOptions o;
  o.idempotent = true;
  o.producer_name = "ingest";
  for (bool exclusive : {false, true}) {
    o.exclusive = exclusive;
    auto p = bus_->create_producer("t", o);  // fences the previous round's instance
    ASSERT_TRUE(p) << p.error().to_string();
    ASSERT_TRUE(p->send(Message{{}, value_}).ok());  // warm-up: the takeover walk
    AllocationWindow w;
    for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(p->send(Message{{}, value_}).ok());
    uint32_t next = *p->next_sequence(0);
    for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(p->send_sequenced(Message{{}, value_}, next++, 0).ok());
    EXPECT_NO_ALLOCATIONS(w);
  }
}

TEST_F(NoAlloc, SendBatchAllocatesNothingPerBatch) {
  Producer p = producer();
  std::array<Message, 16> batch;
  for (Message& m : batch) m.value = value_;
  ASSERT_TRUE(p.send_batch(batch).ok());
  AllocationWindow w;
  for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(p.send_batch(batch).ok());
  EXPECT_NO_ALLOCATIONS(w);
}

TEST_F(NoAlloc, ClaimAndCommitAllocateNothingPerRecord) {
  Producer p = producer();
  ClaimSpec spec;
  spec.value_bytes = kValueBytes;
  Claim claim;
  ASSERT_EQ(p.try_claim(spec, claim), SendStatus::kOk);
  ASSERT_EQ(claim.commit(), SendStatus::kOk);
  AllocationWindow w;
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_EQ(p.try_claim(spec, claim), SendStatus::kOk);
    std::memcpy(claim.value().data(), value_.data(), kValueBytes);
    ASSERT_EQ(claim.commit(), SendStatus::kOk);
  }
  EXPECT_NO_ALLOCATIONS(w);
}

// Fills the topic with warm-up + kCalls records (allocating as it likes),
// then reads them one per try_poll.
void expect_polls_allocate_nothing(Bus& bus, Producer& p, const std::string& value, std::string_view group,
                                   ConsumerOptions options) {
  for (int i = 0; i < kCalls + 1; ++i) ASSERT_TRUE(p.send(Message{{}, value}).ok());
  auto c = bus.create_consumer("t", group, options);
  ASSERT_TRUE(c) << c.error().to_string();
  std::array<RecordView, 1> out;
  auto n = c->try_poll(out);  // warm-up: positions the cursor
  ASSERT_TRUE(n && *n == 1);
  uint64_t got = 0, empty = 0;
  AllocationWindow w;
  for (int i = 0; i < kCalls; ++i) {
    n = c->try_poll(out);
    ASSERT_TRUE(n);
    got += *n;
  }
  for (int i = 0; i < kCalls; ++i) {  // at the end: empty polls
    n = c->try_poll(out);
    ASSERT_TRUE(n);
    empty += *n == 0;
  }
  EXPECT_NO_ALLOCATIONS(w);
  EXPECT_EQ(got, static_cast<uint64_t>(kCalls));
  EXPECT_EQ(empty, static_cast<uint64_t>(kCalls));
}

TEST_F(NoAlloc, TryPollAllocatesNothingPerRecordOrWhenEmpty) {
  Producer p = producer();
  ConsumerOptions o;
  o.wait = WaitStrategy::kBusySpin;
  expect_polls_allocate_nothing(*bus_, p, value_, "", o);
}

TEST_F(NoAlloc, PollWithATimeoutAllocatesNothingWhenRecordsAreReady) {
  Producer p = producer();
  for (int i = 0; i < kCalls + 1; ++i) ASSERT_TRUE(p.send(Message{{}, value_}).ok());
  ConsumerOptions o;
  o.wait = WaitStrategy::kBlock;
  auto c = bus_->create_consumer("t", "", o);
  ASSERT_TRUE(c) << c.error().to_string();
  std::array<RecordView, 1> out;
  ASSERT_TRUE(c->poll(out, 1'000'000));
  uint64_t got = 0;
  AllocationWindow w;
  for (int i = 0; i < kCalls; ++i) {
    auto n = c->poll(out, 1'000'000);
    ASSERT_TRUE(n);
    got += *n;
  }
  EXPECT_NO_ALLOCATIONS(w);
  EXPECT_EQ(got, static_cast<uint64_t>(kCalls));
}

TEST_F(NoAlloc, TryPollInAGroupWithAutoCommitAllocatesNothing) {
  Producer p = producer();
  ConsumerOptions o;
  o.wait = WaitStrategy::kBusySpin;
  o.auto_commit = true;
  o.auto_commit_interval_ns = 0;  // commit on every poll: the commit path is measured too
  expect_polls_allocate_nothing(*bus_, p, value_, "g", o);
}

}  // namespace
}  // namespace sluice

// The queue's publish -> receive -> ack path: after a warm-up (maps, cursor,
// the sweeps' owner cache), 10000 rounds of publish, receive and ack
// allocate nothing. Sweeps run inside the window (the system clock moves),
// and so does the floor's commit.
namespace sluice {
namespace {

TEST_F(NoAlloc, QueuePublishReceiveAndAckAllocateNothingPerMessage) {
  QueueOptions o;
  o.segment_bytes = 64u << 20;
  o.max_depth_bytes = 256u << 20;
  ASSERT_TRUE(bus_->create_queue("q", o));
  auto pub = bus_->create_queue_publisher("q");
  auto worker = bus_->create_worker("q");
  ASSERT_TRUE(pub && worker);
  const std::string value(kValueBytes, 'q');
  const Header headers[] = {{"type", "job"}};
  QueueMessage m;
  m.value = value;
  m.headers = headers;
  std::array<Delivery, 4> d;
  for (int i = 0; i < 100; ++i) {  // warm-up
    ASSERT_TRUE(pub->publish(m).ok());
    auto n = worker->receive(d, 0);
    ASSERT_TRUE(n && *n == 1);
    ASSERT_TRUE(d[0].ack());
  }
  AllocationWindow w;
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(pub->publish(m).ok());
    auto n = worker->receive(d, 0);
    ASSERT_TRUE(n && *n == 1);
    ASSERT_TRUE(d[0].ack());
  }
  EXPECT_NO_ALLOCATIONS(w);
}

}  // namespace
}  // namespace sluice
