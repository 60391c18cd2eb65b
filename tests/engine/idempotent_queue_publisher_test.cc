// Idempotent queue publishers (docs/exactly-once.md, section 2 and plan step
// 4): a queue level is a partition of the queue's internal topic, so a
// publisher with QueuePublisherOptions::idempotent numbers its messages per
// level under a producer identity, and a publish repeated after an unknown
// outcome is appended once, across restarts of the publisher; a newer
// instance of the name fences the older one.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <string>
#include <vector>

#include "support/clocked_bus.h"
#include "support/test_support.h"

namespace sluice {
namespace {

using test::queue_message;

struct IdempotentQueuePublisher : test::ClockedBusTest {
  void SetUp() override {
    ClockedBusTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(bus->create_queue("jobs", test::two_level_queue()));
  }

  QueuePublisher publisher(std::string name = "billing") {
    QueuePublisherOptions o;
    o.idempotent = true;
    o.producer_name = std::move(name);
    auto p = bus->create_queue_publisher("jobs", o);
    EXPECT_TRUE(p) << p.error().to_string();
    return std::move(*p);
  }

  // Every message the queue delivers now, acked, by level then offset.
  std::vector<std::string> drain() {
    auto w = bus->create_worker("jobs");
    EXPECT_TRUE(w) << w.error().to_string();
    std::vector<std::string> got;
    for (int i = 0; i < 100; ++i) {
      Delivery d[1];
      auto n = w->receive(d, 0);
      EXPECT_TRUE(n) << n.error().to_string();
      if (!n || *n == 0) break;
      got.emplace_back(d[0].value());
      EXPECT_TRUE(d[0].ack());
    }
    return got;
  }
};

TEST_F(IdempotentQueuePublisher, APublishRetriedAfterALostResultIsAppendedOnce) {
  QueuePublisher p = publisher();
  EXPECT_NE(p.producer_id(), 0u);
  const PublishResult first = p.publish(queue_message("charge-1"));
  ASSERT_TRUE(first.ok()) << p.last_error().to_string();
  EXPECT_FALSE(first.duplicate);
  EXPECT_EQ(first.sequence, 0u);
  // The result was "lost": the application repeats the publish with the
  // sequence it had been given (or reads next_sequence after a restart).
  const PublishResult retry = p.publish_sequenced(queue_message("charge-1"), first.sequence);
  ASSERT_TRUE(retry.ok()) << p.last_error().to_string();
  EXPECT_TRUE(retry.duplicate);
  EXPECT_EQ(retry.offset, first.offset);
  auto next = p.next_sequence(0);
  ASSERT_TRUE(next) << next.error().to_string();
  EXPECT_EQ(*next, 1u);
  EXPECT_EQ(drain(), (std::vector<std::string>{"charge-1"}));
}

TEST_F(IdempotentQueuePublisher, SequencesArePerPriorityLevel) {
  QueuePublisher p = publisher();
  EXPECT_EQ(p.publish(queue_message("a", 0)).sequence, 0u);
  EXPECT_EQ(p.publish(queue_message("b", 0)).sequence, 1u);
  const PublishResult hi = p.publish(queue_message("c", 1));
  ASSERT_TRUE(hi.ok());
  EXPECT_EQ(hi.sequence, 0u);
  EXPECT_EQ(hi.priority, 1u);
  EXPECT_EQ(*p.next_sequence(0), 2u);
  EXPECT_EQ(*p.next_sequence(1), 1u);
  EXPECT_EQ(drain(), (std::vector<std::string>{"c", "a", "b"}));
}

TEST_F(IdempotentQueuePublisher, ADuplicateAcrossAPublisherRestartReturnsTheOriginalOffset) {
  std::vector<uint64_t> offsets;
  {
    QueuePublisher p = publisher();
    for (const char* v : {"m0", "m1", "m2"}) {
      const PublishResult r = p.publish(queue_message(v));
      ASSERT_TRUE(r.ok()) << p.last_error().to_string();
      offsets.push_back(r.offset);
    }
  }  // "restarted": the identity and its sequences are in the bus
  QueuePublisher again = publisher();
  auto next = again.next_sequence(0);
  ASSERT_TRUE(next) << next.error().to_string();
  EXPECT_EQ(*next, 3u);
  const PublishResult dup = again.publish_sequenced(queue_message("m1"), 1);
  ASSERT_TRUE(dup.ok()) << again.last_error().to_string();
  EXPECT_TRUE(dup.duplicate);
  EXPECT_EQ(dup.offset, offsets[1]);
  const PublishResult gap = again.publish_sequenced(queue_message("m5"), 5);
  EXPECT_EQ(gap.status, SendStatus::kOutOfOrderSequence);
  EXPECT_EQ(again.last_error().code, Errc::kOutOfOrderSequence);
  const PublishResult fresh = again.publish_sequenced(queue_message("m3"), 3);
  ASSERT_TRUE(fresh.ok()) << again.last_error().to_string();
  EXPECT_FALSE(fresh.duplicate);
  EXPECT_EQ(drain(), (std::vector<std::string>{"m0", "m1", "m2", "m3"}));
}

TEST_F(IdempotentQueuePublisher, AZombiePublisherIsFenced) {
  QueuePublisher zombie = publisher();
  ASSERT_TRUE(zombie.publish(queue_message("before")).ok());
  QueuePublisher current = publisher();
  EXPECT_NE(current.producer_epoch(), zombie.producer_epoch());
  const PublishResult late = zombie.publish(queue_message("zombie"));
  EXPECT_EQ(late.status, SendStatus::kFenced);
  EXPECT_EQ(zombie.last_error().code, Errc::kFenced);
  EXPECT_NE(zombie.last_error().message.find("fenced"), std::string::npos) << zombie.last_error().message;
  EXPECT_EQ(zombie.publish_sequenced(queue_message("zombie"), 1).status, SendStatus::kFenced);
  const PublishResult r = current.publish(queue_message("after"));
  ASSERT_TRUE(r.ok()) << current.last_error().to_string();
  EXPECT_EQ(r.sequence, 1u) << "the new instance continues the identity's sequences";
  EXPECT_EQ(drain(), (std::vector<std::string>{"before", "after"}));
}

TEST_F(IdempotentQueuePublisher, AnUnnamedIdentityDeduplicatesWithinItsLife) {
  QueuePublisherOptions o;
  o.idempotent = true;
  auto p = bus->create_queue_publisher("jobs", o);
  ASSERT_TRUE(p) << p.error().to_string();
  const PublishResult r = p->publish(queue_message("x"));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(p->publish_sequenced(queue_message("x"), r.sequence).duplicate);
  EXPECT_EQ(drain(), (std::vector<std::string>{"x"}));
}

TEST_F(IdempotentQueuePublisher, ADedupIdAndASequenceBothHold) {
  QueuePublisher p = publisher();
  QueueMessage m = queue_message("once");
  m.dedup_id = "order-7";
  const PublishResult r = p.publish(m);
  ASSERT_TRUE(r.ok());
  const PublishResult by_id = p.publish(m);
  EXPECT_TRUE(by_id.duplicate);
  EXPECT_EQ(by_id.offset, r.offset);
  const PublishResult by_seq = p.publish_sequenced(queue_message("once"), r.sequence);
  EXPECT_TRUE(by_seq.duplicate);
  EXPECT_EQ(by_seq.offset, r.offset);
  EXPECT_EQ(drain(), (std::vector<std::string>{"once"}));
}

TEST_F(IdempotentQueuePublisher, MisuseIsRefusedWithAClearError) {
  QueuePublisherOptions named_only;
  named_only.producer_name = "billing";
  auto p = bus->create_queue_publisher("jobs", named_only);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, Errc::kInvalidArgument);
  EXPECT_NE(p.error().message.find("idempotent"), std::string::npos) << p.error().message;

  QueuePublisherOptions bad_name;
  bad_name.idempotent = true;
  bad_name.producer_name = "no/slashes";
  EXPECT_FALSE(bus->create_queue_publisher("jobs", bad_name));

  QueuePublisherOptions ok;
  ok.idempotent = true;
  auto unknown = bus->create_queue_publisher("nope", ok);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, Errc::kNotFound);

  auto plain = bus->create_queue_publisher("jobs");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->producer_id(), 0u);
  EXPECT_EQ(plain->publish_sequenced(queue_message("x"), 0).status, SendStatus::kError);
  EXPECT_EQ(plain->last_error().code, Errc::kInvalidArgument);
  auto seq = plain->next_sequence(0);
  ASSERT_FALSE(seq);
  EXPECT_EQ(seq.error().code, Errc::kInvalidArgument);

  QueuePublisher idem = publisher();
  auto out_of_range = idem.next_sequence(2);
  ASSERT_FALSE(out_of_range);
  EXPECT_EQ(out_of_range.error().code, Errc::kInvalidArgument);
  const PublishResult r = idem.publish_sequenced(queue_message("x", 7), 0);
  EXPECT_EQ(r.status, SendStatus::kError);
  EXPECT_EQ(idem.last_error().code, Errc::kInvalidArgument);
  EXPECT_TRUE(drain().empty());
}

}  // namespace
}  // namespace sluice
