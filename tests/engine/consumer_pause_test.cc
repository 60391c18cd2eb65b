// Consumer::pause / resume (Kafka's): a paused partition hands out nothing
// and keeps its position while the others flow; resume continues from that
// position, with no gap and no repeat; commits keep committing what was
// handed out; seeks move a paused partition and leave it paused.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <string>
#include <vector>

#include "support/clocked_bus.h"

namespace sluice {
namespace {

constexpr char kTopic[] = "t";
constexpr char kGroup[] = "g";

struct ConsumerPause : test::ClockedBusTest {
  std::optional<Producer> producer;
  std::vector<ConsumerEvent> events;

  void SetUp() override {
    ClockedBusTest::SetUp();
    if (HasFatalFailure()) return;
    TopicOptions t;
    t.partitions = 3;
    t.segment_bytes = 1 << 20;
    ASSERT_TRUE(bus->create_topic(kTopic, t));
    auto p = bus->create_producer(kTopic);
    ASSERT_TRUE(p) << p.error().to_string();
    producer.emplace(std::move(*p));
  }

  // "v<partition>-<i>" for i in [from, to).
  void send(uint32_t partition, int from, int to) {
    for (int i = from; i < to; ++i) {
      const std::string v = "v" + std::to_string(partition) + "-" + std::to_string(i);
      ASSERT_TRUE(producer->send(Message{"", v}, partition).ok());
    }
  }

  Consumer consumer(std::vector<uint32_t> partitions = {}, std::string_view group = kGroup) {
    ConsumerOptions o;
    o.auto_commit = false;
    o.partitions = std::move(partitions);
    o.on_event = [this](const ConsumerEvent& e) { events.push_back(e); };
    auto c = bus->create_consumer(kTopic, group, o);
    EXPECT_TRUE(c) << c.error().to_string();
    return std::move(*c);
  }

  // The values one non-blocking poll of at most `max` records hands out.
  static std::vector<std::string> poll(Consumer& c, size_t max = 64) {
    std::vector<RecordView> out(max);
    auto n = c.try_poll(out);
    EXPECT_TRUE(n) << n.error().to_string();
    std::vector<std::string> values;
    for (size_t i = 0; n && i < *n; ++i) values.emplace_back(out[i].value);
    return values;
  }
  // Polls until a poll returns nothing (bounded).
  static std::vector<std::string> drain(Consumer& c) {
    std::vector<std::string> all;
    for (int i = 0; i < 100; ++i) {
      auto got = poll(c);
      if (got.empty()) break;
      all.insert(all.end(), got.begin(), got.end());
    }
    return all;
  }
  static std::vector<std::string> only(const std::vector<std::string>& values, uint32_t partition) {
    std::vector<std::string> out;
    const std::string prefix = "v" + std::to_string(partition) + "-";
    for (const std::string& v : values)
      if (v.starts_with(prefix)) out.push_back(v);
    return out;
  }
  uint64_t committed(uint32_t partition) {
    auto g = bus->describe_group(kGroup);
    EXPECT_TRUE(g) << g.error().to_string();
    for (const PartitionLag& p : g->partitions)
      if (p.topic == kTopic && p.partition == partition) return p.committed;
    return kNoOffset;
  }
  using Strings = std::vector<std::string>;
};

TEST_F(ConsumerPause, APausedPartitionHandsOutNothingWhileTheOthersFlow) {
  send(0, 0, 3);
  send(1, 0, 3);
  send(2, 0, 3);
  Consumer c = consumer();
  ASSERT_TRUE(c.pause(1));
  EXPECT_TRUE(c.is_paused(1));
  EXPECT_FALSE(c.is_paused(0));
  EXPECT_EQ(c.paused(), (std::vector<uint32_t>{1}));
  const Strings got = drain(c);
  EXPECT_EQ(only(got, 0), (Strings{"v0-0", "v0-1", "v0-2"}));
  EXPECT_EQ(only(got, 2), (Strings{"v2-0", "v2-1", "v2-2"}));
  EXPECT_TRUE(only(got, 1).empty());
  EXPECT_EQ(c.position(1), 0u);
  send(1, 3, 5);
  send(2, 3, 4);
  EXPECT_EQ(poll(c), (Strings{"v2-3"})) << "records appended to a paused partition wait";
  EXPECT_EQ(c.stats().records, 7u);
}

TEST_F(ConsumerPause, ResumeContinuesAtThePositionWithNoGapAndNoRepeat) {
  send(0, 0, 10);
  Consumer c = consumer({0});
  EXPECT_EQ(poll(c, 3), (Strings{"v0-0", "v0-1", "v0-2"}));
  ASSERT_TRUE(c.pause(0));
  send(0, 10, 15);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(poll(c).empty()) << i;
  EXPECT_EQ(c.position(0), 3u);
  ASSERT_TRUE(c.resume(0));
  EXPECT_TRUE(c.paused().empty());
  Strings want;
  for (int i = 3; i < 15; ++i) want.push_back("v0-" + std::to_string(i));
  EXPECT_EQ(drain(c), want);
  EXPECT_EQ(c.stats().records, 15u) << "each record handed out once";
}

TEST_F(ConsumerPause, PauseAndResumeAreIdempotentAndTakeSeveralPartitions) {
  send(0, 0, 2);
  send(1, 0, 2);
  send(2, 0, 2);
  Consumer c = consumer();
  ASSERT_TRUE(c.pause({2, 0}));
  ASSERT_TRUE(c.pause(0)) << "pausing a paused partition does nothing";
  EXPECT_EQ(c.paused(), (std::vector<uint32_t>{0, 2}));
  EXPECT_EQ(drain(c), (Strings{"v1-0", "v1-1"}));
  ASSERT_TRUE(c.resume(1)) << "resuming a flowing partition does nothing";
  ASSERT_TRUE(c.resume(c.assignment()));
  EXPECT_TRUE(c.paused().empty());
  const std::vector<uint32_t> list = {1};
  ASSERT_TRUE(c.pause(list));
  ASSERT_TRUE(c.resume(list));
  const Strings got = drain(c);
  EXPECT_EQ(only(got, 0), (Strings{"v0-0", "v0-1"}));
  EXPECT_EQ(only(got, 2), (Strings{"v2-0", "v2-1"}));
  EXPECT_TRUE(only(got, 1).empty());
}

TEST_F(ConsumerPause, CommitsOfAPausedPartitionCommitWhatWasHandedOut) {
  send(0, 0, 6);
  send(1, 0, 2);
  Consumer c = consumer({0, 1});
  EXPECT_EQ(poll(c, 2), (Strings{"v0-0", "v0-1"}));
  EXPECT_EQ(poll(c, 2), (Strings{"v1-0", "v1-1"}));  // round-robin: the next poll starts at partition 1
  ASSERT_TRUE(c.pause(0));
  ASSERT_TRUE(c.commit_sync());
  EXPECT_EQ(committed(0), 2u);
  EXPECT_EQ(committed(1), 2u);
  ASSERT_TRUE(c.commit(0, 1, true)) << "an explicit commit of a paused partition";
  EXPECT_EQ(committed(0), 1u);
  EXPECT_TRUE(c.is_paused(0));
  c.commit_async();
  EXPECT_EQ(committed(0), 2u) << "the position handed out, not past it";

  // Auto-commit on a poll commits a paused partition's handed-out position too.
  ConsumerOptions o;
  o.partitions = {0};
  o.auto_commit_interval_ns = 0;
  auto auto_c = bus->create_consumer(kTopic, kGroup, o);
  ASSERT_TRUE(auto_c);
  std::vector<RecordView> out(1);
  ASSERT_EQ(auto_c->try_poll(out).value_or(0), 1u);
  EXPECT_EQ(out[0].offset, 2u);
  ASSERT_TRUE(auto_c->pause(0));
  ASSERT_EQ(auto_c->try_poll(out).value_or(99), 0u);
  EXPECT_EQ(committed(0), 3u);
}

TEST_F(ConsumerPause, PausingAPartitionNotAssignedIsAnError) {
  Consumer c = consumer({0, 2});
  auto not_assigned = c.pause(1);
  ASSERT_FALSE(not_assigned);
  EXPECT_EQ(not_assigned.error().code, Errc::kInvalidArgument);
  EXPECT_NE(not_assigned.error().message.find("partition 1 of topic t is not assigned"), std::string::npos)
      << not_assigned.error().message;
  auto out_of_range = c.pause(7);
  ASSERT_FALSE(out_of_range);
  EXPECT_EQ(out_of_range.error().code, Errc::kInvalidArgument);
  EXPECT_NE(out_of_range.error().message.find("out of range"), std::string::npos) << out_of_range.error().message;
  EXPECT_FALSE(c.resume(1));
  EXPECT_FALSE(c.resume(7));
  EXPECT_FALSE(c.is_paused(1));
  EXPECT_FALSE(c.is_paused(7));

  // All or nothing: one bad partition pauses none of the others.
  const std::vector<uint32_t> mixed = {0, 1};
  EXPECT_FALSE(c.pause(mixed));
  EXPECT_TRUE(c.paused().empty());
  ASSERT_TRUE(c.pause(c.assignment()));
  const std::vector<uint32_t> bad_resume = {0, 9};
  EXPECT_FALSE(c.resume(bad_resume));
  EXPECT_EQ(c.paused(), (std::vector<uint32_t>{0, 2}));
}

TEST_F(ConsumerPause, ASeekMovesAPausedPartitionAndLeavesItPaused) {
  send(0, 0, 10);
  Consumer c = consumer({0});
  EXPECT_EQ(poll(c, 2), (Strings{"v0-0", "v0-1"}));
  ASSERT_TRUE(c.pause(0));
  c.seek(0, 6);
  EXPECT_TRUE(c.is_paused(0));
  EXPECT_EQ(c.position(0), 6u);
  EXPECT_TRUE(poll(c).empty());
  ASSERT_TRUE(c.resume(0));
  EXPECT_EQ(drain(c), (Strings{"v0-6", "v0-7", "v0-8", "v0-9"}));
}

TEST_F(ConsumerPause, AGroupSeekMovesAPausedPartitionAndLeavesItPaused) {
  send(0, 0, 10);
  Consumer c = consumer({0});
  EXPECT_EQ(poll(c, 2), (Strings{"v0-0", "v0-1"}));
  ASSERT_TRUE(c.pause(0));
  ASSERT_TRUE(bus->seek_group(kGroup, kTopic, SeekTarget::offset(7), 0));
  EXPECT_TRUE(poll(c).empty());
  ASSERT_EQ(events.size(), 1u) << "the seek is noticed while paused";
  EXPECT_EQ(events[0].kind, ConsumerEvent::Kind::kGroupSeek);
  EXPECT_EQ(events[0].to_offset, 7u);
  EXPECT_EQ(c.position(0), 7u);
  EXPECT_TRUE(c.is_paused(0));
  ASSERT_TRUE(c.resume(0));
  EXPECT_EQ(drain(c), (Strings{"v0-7", "v0-8", "v0-9"}));
}

TEST_F(ConsumerPause, APositionRetentionRemovedWhilePausedIsResetAfterTheResume) {
  TopicOptions t;
  t.partitions = 1;
  t.segment_bytes = 64 << 10;
  t.retention_bytes = 2 * (64 << 10);
  ASSERT_TRUE(bus->create_topic("retained", t));
  auto p = bus->create_producer("retained");
  ASSERT_TRUE(p);
  const std::string value(1024, 'x');
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(p->send(Message{"", value}, 0).ok());
  ConsumerOptions o;
  o.auto_commit = false;
  o.offset_reset = OffsetReset::kEarliest;
  o.on_event = [this](const ConsumerEvent& e) { events.push_back(e); };
  auto c = bus->create_consumer("retained", kGroup, o);
  ASSERT_TRUE(c);
  std::vector<RecordView> out(64);
  ASSERT_EQ(c->try_poll(out).value_or(0), 10u);
  ASSERT_TRUE(c->pause(0));
  for (int i = 0; i < 600; ++i) ASSERT_TRUE(p->send(Message{"", value}, 0).ok());  // about ten segments
  ASSERT_TRUE(bus->housekeep());
  const uint64_t start = bus->describe_topic("retained")->partitions[0].start_offset;
  ASSERT_GT(start, 10u);
  EXPECT_EQ(c->try_poll(out).value_or(99), 0u);
  EXPECT_TRUE(events.empty()) << "nothing is read, so nothing is reset, while paused";
  EXPECT_EQ(c->position(0), 10u);
  ASSERT_TRUE(c->resume(0));
  auto n = c->try_poll(out);
  ASSERT_TRUE(n) << n.error().to_string();
  ASSERT_GT(*n, 0u);
  EXPECT_EQ(out[0].offset, start);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ConsumerEvent::Kind::kOffsetReset);
  EXPECT_EQ(events[0].from_offset, 10u);
  EXPECT_EQ(events[0].to_offset, start);
}

TEST_F(ConsumerPause, AnEventHandlerMayResumeThePartitionItReportsOn) {
  send(0, 0, 4);
  ConsumerOptions o;
  o.auto_commit = false;
  o.partitions = {0};
  Consumer* self = nullptr;
  o.on_event = [&](const ConsumerEvent& e) {
    if (e.kind == ConsumerEvent::Kind::kGroupSeek) {
      EXPECT_TRUE(self->resume(e.partition));
    }
  };
  auto c = bus->create_consumer(kTopic, kGroup, o);
  ASSERT_TRUE(c);
  self = &*c;
  ASSERT_TRUE(c->pause(0));
  ASSERT_TRUE(bus->seek_group(kGroup, kTopic, SeekTarget::offset(2), 0));
  EXPECT_EQ(poll(*c), (Strings{"v0-2", "v0-3"})) << "resumed by the handler, read in the same poll";
}

TEST_F(ConsumerPause, AConsumerWithEveryPartitionPausedWaitsOutItsTimeoutEmpty) {
  send(0, 0, 2);
  Consumer c = consumer({0});
  ASSERT_TRUE(c.pause(0));
  std::vector<RecordView> out(4);
  auto n = c.poll(out, 1'000'000);  // 1 ms
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(*n, 0u);
}

TEST_F(ConsumerPause, AConsumerWithoutAGroupPausesToo) {
  send(0, 0, 3);
  ConsumerOptions o;
  o.partitions = {0};
  auto c = bus->create_consumer(kTopic, "", o);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->pause(0));
  EXPECT_TRUE(poll(*c).empty());
  ASSERT_TRUE(c->resume(0));
  EXPECT_EQ(drain(*c), (Strings{"v0-0", "v0-1", "v0-2"}));
}

TEST_F(ConsumerPause, ANewConsumerOfTheGroupStartsWithNothingPaused) {
  send(0, 0, 3);
  {
    Consumer c = consumer({0});
    EXPECT_EQ(poll(c, 1), (Strings{"v0-0"}));
    ASSERT_TRUE(c.pause(0));
    ASSERT_TRUE(c.commit_sync());
  }
  Consumer again = consumer({0});
  EXPECT_TRUE(again.paused().empty()) << "pausing is a Consumer's state, not the group's";
  EXPECT_EQ(drain(again), (Strings{"v0-1", "v0-2"}));
}

}  // namespace
}  // namespace sluice
