// Replay and group positions: seeking a consumer or a whole group to the
// beginning, the end, an offset or a time; lag in records, bytes and age;
// at-most-once against at-least-once delivery.
#include <gtest/gtest.h>
#include <sluice/sluice.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <vector>

#include "ipc/file_lock.h"
#include "segment.h"
#include "segment_format.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr char kTopic[] = "t";
constexpr uint64_t kRecords = 300;   // in partition 0, three per frame
constexpr uint64_t kRecords1 = 50;   // in partition 1, one per frame
constexpr int64_t kMs = 1'000'000;

std::string value_of(uint64_t i) {
  std::string v = "v-" + std::to_string(i) + "-";
  v.resize(300, '.');
  return v;
}

// A bus on a manual clock whose partition 0 holds kRecords records stamped
// T + i ms, sent in batches of three (so that seeks land inside frames)
// across two segments, and partition 1 kRecords1 records stamped alike.
class Replay : public ::testing::Test {
 protected:
  void SetUp() override {
    BusOptions bo;
    bo.clock = &clock_;
    auto bus = Bus::open(dir_.path(), bo);
    ASSERT_TRUE(bus);
    bus_.emplace(std::move(*bus));
    TopicOptions o;
    o.partitions = 2;
    o.segment_bytes = 64 << 10;
    o.index_interval_bytes = 512;
    ASSERT_TRUE(bus_->create_topic(kTopic, o));
    auto producer = bus_->create_producer(kTopic);
    ASSERT_TRUE(producer);
    for (uint64_t i = 0; i < kRecords; i += 3) {
      std::string values[3];
      Message batch[3];
      for (uint64_t k = 0; k < 3; ++k) {
        values[k] = value_of(i + k);
        batch[k] = Message{"", values[k], {}, stamp(i + k)};
      }
      SendResult r = producer->send_batch(batch, 0);
      ASSERT_TRUE(r.ok());
      ASSERT_EQ(r.offset, i);
    }
    for (uint64_t i = 0; i < kRecords1; ++i)
      ASSERT_TRUE(producer->send(Message{"", value_of(i), {}, stamp(i)}, 1).ok());
    ASSERT_GE(bus_->describe_topic(kTopic)->partitions[0].segments.size(), 2u);
  }

  int64_t stamp(uint64_t i) const { return t0_ + static_cast<int64_t>(i) * kMs; }

  Consumer consumer(const char* group, std::vector<uint32_t> partitions = {0}) {
    ConsumerOptions o;
    o.auto_commit = false;
    o.partitions = std::move(partitions);
    o.on_event = [this](const ConsumerEvent& e) { events_.push_back(e); };
    auto c = bus_->create_consumer(kTopic, group, o);
    EXPECT_TRUE(c) << c.error().to_string();
    return std::move(*c);
  }

  // The offsets of what one poll returns (checking values).
  std::vector<uint64_t> poll_offsets(Consumer& c, size_t max = 64) {
    std::vector<RecordView> out(max);
    auto n = c.poll(out, 100'000'000);
    EXPECT_TRUE(n) << n.error().to_string();
    std::vector<uint64_t> offsets;
    for (size_t i = 0; n && i < *n; ++i) {
      EXPECT_EQ(out[i].value, value_of(out[i].offset));
      offsets.push_back(out[i].offset);
    }
    return offsets;
  }
  uint64_t next_read(Consumer& c) {
    auto o = poll_offsets(c, 1);
    return o.empty() ? kNoOffset : o[0];
  }
  uint64_t committed(const char* group, uint32_t partition) {
    auto d = bus_->describe_group(group);
    EXPECT_TRUE(d);
    for (const auto& p : d->partitions)
      if (p.partition == partition) return p.committed;
    return kNoOffset;
  }

  test::TempDir dir_;
  ManualClock clock_;
  const int64_t t0_ = clock_.now_ns();
  std::optional<Bus> bus_;
  std::vector<ConsumerEvent> events_;
};

TEST_F(Replay, ConsumerSeeksToAnOffsetTheBeginningAndTheEnd) {
  Consumer c = consumer("");
  c.seek(0, 157);  // the second record of a batch
  EXPECT_EQ(c.position(0), 157u);
  std::vector<uint64_t> all;
  for (int polls = 0; polls < 20 && (all.empty() || all.back() < kRecords - 1); ++polls)
    for (uint64_t o : poll_offsets(c)) all.push_back(o);
  ASSERT_EQ(all.size(), kRecords - 157);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i], 157 + i);

  c.seek_to_beginning();
  EXPECT_EQ(next_read(c), 0u);
  c.seek(0, 250);  // in the second segment
  EXPECT_EQ(next_read(c), 250u);
  c.seek_to_end();
  EXPECT_EQ(c.position(0), kRecords);
  EXPECT_TRUE(poll_offsets(c).empty());
  c.seek(0, 0);
  EXPECT_EQ(next_read(c), 0u);
}

// A reading consumer's seeks start from the segment it stands in, or the
// newest, before listing the partition: every landing must be the same.
TEST_F(Replay, AReadingConsumerSeeksForwardAndBackInsideAndAcrossSegments) {
  Consumer c = consumer("");
  ASSERT_EQ(next_read(c), 0u);
  std::vector<uint64_t> targets;
  for (uint64_t o = 1; o < kRecords; o += 7) targets.push_back(o);  // inside frames, into the next segment
  for (uint64_t o = kRecords - 1; o > 11; o -= 11) targets.push_back(o);  // and back
  for (uint64_t o : targets) {
    c.seek(0, o);
    ASSERT_EQ(next_read(c), o) << "after a seek to " << o;
  }
  // Past the end of the newest segment: the consumer waits there for it.
  c.seek(0, kRecords);
  EXPECT_TRUE(poll_offsets(c).empty());
  auto producer = bus_->create_producer(kTopic);
  ASSERT_TRUE(producer);
  ASSERT_TRUE(producer->send(Message{"", value_of(kRecords), {}, stamp(kRecords)}, 0).ok());
  EXPECT_EQ(next_read(c), kRecords);
}

// A process keeps a use lock on every segment it has open, and a segment in
// use cannot be recycled. A seek past a segment lets go of it as reading
// past its end does, so that recycling finds it free.
TEST_F(Replay, ASeekPastASegmentLetsGoOfIt) {
  bus_.reset();  // the fixture's producer had the first segment open
  auto other = Bus::open(dir_.path());
  ASSERT_TRUE(other);
  ConsumerOptions o;
  o.auto_commit = false;
  o.partitions = {0};
  auto c = other->create_consumer(kTopic, "", o);
  ASSERT_TRUE(c);
  std::vector<RecordView> out(1);
  ASSERT_EQ(c->poll(out, 100'000'000).value_or(0), 1u);
  ASSERT_EQ(out[0].offset, 0u);
  const std::string first = dir_.path() + "/topics/" + kTopic + "/0/" + segment_file_name(0);
  EXPECT_FALSE(ipc::FileLock::try_lock_existing(first, ipc::FileLock::Mode::kExclusive))
      << "a segment being read is in use";
  c->seek(0, 250);  // in the second segment
  ASSERT_EQ(c->poll(out, 100'000'000).value_or(0), 1u);
  ASSERT_EQ(out[0].offset, 250u);
  c->seek(0, 251);  // the views of the first segment are gone with this poll
  ASSERT_EQ(c->poll(out, 100'000'000).value_or(0), 1u);
  EXPECT_TRUE(ipc::FileLock::try_lock_existing(first, ipc::FileLock::Mode::kExclusive))
      << "the consumer still holds the segment it seeked past";
}

TEST_F(Replay, ConsumerSeeksToTheFirstRecordAtOrAfterATime) {
  Consumer c = consumer("");
  ASSERT_TRUE(c.seek_to_time(stamp(157)));
  EXPECT_EQ(next_read(c), 157u);
  ASSERT_TRUE(c.seek_to_time(stamp(157) + kMs / 2));
  EXPECT_EQ(next_read(c), 158u);
  ASSERT_TRUE(c.seek_to_time(stamp(250)));  // second segment
  EXPECT_EQ(next_read(c), 250u);
  ASSERT_TRUE(c.seek_to_time(stamp(0) - 1'000 * kMs));
  EXPECT_EQ(next_read(c), 0u);
  ASSERT_TRUE(c.seek_to_time(stamp(kRecords) + 1'000 * kMs));
  EXPECT_EQ(c.position(0), kRecords);
  EXPECT_TRUE(poll_offsets(c).empty());
}

TEST_F(Replay, GroupSeekMovesARunningMemberOnItsNextPoll) {
  Consumer c = consumer("g");
  auto first = poll_offsets(c, 10);
  ASSERT_EQ(first.size(), 10u);
  const int64_t t0_ms = t0_ / kMs;

  ASSERT_TRUE(bus_->seek_group("g", kTopic, SeekTarget::offset(200)));
  EXPECT_EQ(committed("g", 0), 200u);
  EXPECT_EQ(next_read(c), 200u);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].kind, ConsumerEvent::Kind::kGroupSeek);
  EXPECT_EQ(events_[0].partition, 0u);
  EXPECT_EQ(events_[0].from_offset, 10u);
  EXPECT_EQ(events_[0].to_offset, 200u);

  ASSERT_TRUE(bus_->seek_group("g", kTopic, SeekTarget::beginning()));
  EXPECT_EQ(next_read(c), 0u);
  ASSERT_TRUE(bus_->seek_group("g", kTopic, SeekTarget::time_ms(t0_ms + 42)));
  EXPECT_EQ(committed("g", 0), 42u);
  EXPECT_EQ(committed("g", 1), 42u);
  EXPECT_EQ(next_read(c), 42u);
  ASSERT_TRUE(bus_->seek_group("g", kTopic, SeekTarget::end()));
  EXPECT_TRUE(poll_offsets(c).empty());
  EXPECT_EQ(c.position(0), kRecords);
  EXPECT_EQ(events_.size(), 4u);

  // The group's offset is persisted: a new member starts there.
  ASSERT_TRUE(bus_->seek_group("g", kTopic, SeekTarget::offset(123)));
  Consumer later = consumer("g");
  EXPECT_EQ(later.position(0), 123u);
  EXPECT_EQ(next_read(later), 123u);
}

TEST_F(Replay, GroupSeekOfOnePartitionLeavesTheOthersAlone) {
  Consumer c = consumer("g", {0, 1});
  ASSERT_TRUE(c.commit(0, 5, true));
  ASSERT_TRUE(c.commit(1, 7, true));
  ASSERT_TRUE(bus_->seek_group("g", kTopic, SeekTarget::offset(20), 1));
  EXPECT_EQ(committed("g", 0), 5u);
  EXPECT_EQ(committed("g", 1), 20u);
  ASSERT_TRUE(bus_->seek_group("g", kTopic, SeekTarget::end()));
  EXPECT_EQ(committed("g", 0), kRecords);
  EXPECT_EQ(committed("g", 1), kRecords1);
  ASSERT_TRUE(bus_->seek_group("g", kTopic, SeekTarget::time_ms(t0_ / kMs + 45), 1));
  EXPECT_EQ(committed("g", 0), kRecords);
  EXPECT_EQ(committed("g", 1), 45u);
}

// ---- lag ---------------------------------------------------------------------

uint64_t frame_bytes(uint64_t value_bytes) {
  return format::kFrameHeaderBytes + format::align_up(format::record_bytes(0, 0, static_cast<uint32_t>(value_bytes)));
}

TEST(Lag, CountsRecordsBytesAndTheAgeOfTheOldestUnconsumedRecord) {
  test::TempDir dir;
  ManualClock clock;
  const int64_t t0 = clock.now_ns();
  BusOptions bo;
  bo.clock = &clock;
  auto bus = Bus::open(dir.path(), bo);
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->create_topic(kTopic, TopicOptions{}));
  ConsumerOptions co;
  co.auto_commit = false;
  auto idle = bus->create_consumer(kTopic, "idle", co);  // registered, never commits
  auto g = bus->create_consumer(kTopic, "g", co);
  ASSERT_TRUE(idle && g);
  auto producer = bus->create_producer(kTopic);
  for (uint64_t i = 0; i < 100; ++i) {
    clock.set_ns(t0 + static_cast<int64_t>(i) * kMs);  // stamped by the bus clock
    ASSERT_TRUE(producer->send(Message{"", std::string(10 + i, 'x')}, 0).ok());
  }
  std::vector<RecordView> out(40);
  size_t got = 0;
  while (got < 40) {
    auto n = g->poll(std::span(out).subspan(got), 100'000'000);
    ASSERT_TRUE(n && *n > 0);
    got += *n;
  }
  ASSERT_TRUE(g->commit_sync());
  const int64_t commit_time = clock.now_ns();
  clock.set_ns(t0 + 1'000 * kMs);

  uint64_t bytes_from_40 = 0, bytes_all = 0;
  for (uint64_t i = 0; i < 100; ++i) {
    bytes_all += frame_bytes(10 + i);
    if (i >= 40) bytes_from_40 += frame_bytes(10 + i);
  }
  auto d = bus->describe_group("g");
  ASSERT_TRUE(d) << d.error().to_string();
  ASSERT_EQ(d->partitions.size(), 1u);
  const PartitionLag& lag = d->partitions[0];
  EXPECT_EQ(lag.topic, kTopic);
  EXPECT_EQ(lag.committed, 40u);
  EXPECT_EQ(lag.end_offset, 100u);
  EXPECT_EQ(lag.lag_records, 60u);
  EXPECT_EQ(lag.lag_bytes, bytes_from_40);
  EXPECT_EQ(lag.oldest_unconsumed_age_ns, 960 * kMs);
  EXPECT_EQ(lag.last_commit_unix_ns, commit_time);
  auto own = g->lag();
  ASSERT_TRUE(own);
  ASSERT_EQ(own->size(), 1u);
  EXPECT_EQ((*own)[0].lag_records, 60u);
  EXPECT_EQ((*own)[0].lag_bytes, bytes_from_40);

  auto never = bus->describe_group("idle");
  ASSERT_TRUE(never);
  EXPECT_EQ(never->partitions[0].committed, kNoOffset);
  EXPECT_EQ(never->partitions[0].lag_records, 100u);
  EXPECT_EQ(never->partitions[0].lag_bytes, bytes_all);
  EXPECT_EQ(never->partitions[0].oldest_unconsumed_age_ns, 1'000 * kMs);

  ASSERT_TRUE(g->commit(0, 100, true));
  auto caught_up = bus->describe_group("g");
  EXPECT_EQ(caught_up->partitions[0].lag_records, 0u);
  EXPECT_EQ(caught_up->partitions[0].lag_bytes, 0u);
  EXPECT_EQ(caught_up->partitions[0].oldest_unconsumed_age_ns, 0);
}

// ---- delivery ----------------------------------------------------------------

class DeliverySemantics : public ::testing::Test {
 protected:
  void SetUp() override {
    auto bus = Bus::open(dir_.path());
    ASSERT_TRUE(bus);
    bus_.emplace(std::move(*bus));
    ASSERT_TRUE(bus_->create_topic(kTopic, TopicOptions{}));
    auto producer = bus_->create_producer(kTopic);
    for (uint64_t i = 0; i < 100; ++i) ASSERT_TRUE(producer->send(Message{"", value_of(i)}, 0).ok());
  }
  // Polls exactly `n` records (one poll with room for n).
  static void take(Consumer& c, size_t n) {
    std::vector<RecordView> out(n);
    auto got = c.poll(out, 1'000'000'000);
    ASSERT_TRUE(got);
    ASSERT_EQ(*got, n);
  }
  uint64_t first_offset_for(const char* group) {
    auto c = bus_->create_consumer(kTopic, group, ConsumerOptions{});
    EXPECT_TRUE(c);
    std::vector<RecordView> out(1);
    auto n = c->poll(out, 1'000'000'000);
    EXPECT_TRUE(n && *n == 1);
    return n && *n == 1 ? out[0].offset : kNoOffset;
  }
  test::TempDir dir_;
  std::optional<Bus> bus_;
};

TEST_F(DeliverySemantics, AtMostOnceCommitsBeforeHandingOutSoAnUnprocessedBatchIsNotSeenAgain) {
  {
    ConsumerOptions o;
    o.guarantee = Guarantee::kAtMostOnce;
    o.auto_commit = false;
    auto c = bus_->create_consumer(kTopic, "g", o);
    ASSERT_TRUE(c);
    take(*c, 10);
  }  // gone without processing or committing anything itself
  EXPECT_EQ(first_offset_for("g"), 10u);
}

TEST_F(DeliverySemantics, AtLeastOnceWithoutACommitRedeliversEverythingHandedOut) {
  {
    ConsumerOptions o;
    o.guarantee = Guarantee::kAtLeastOnce;
    o.auto_commit = false;
    auto c = bus_->create_consumer(kTopic, "g", o);
    ASSERT_TRUE(c);
    take(*c, 10);
  }
  EXPECT_EQ(first_offset_for("g"), 0u);
}

TEST_F(DeliverySemantics, AtLeastOnceAutoCommitCommitsOnlyWhatEarlierPollsHandedOut) {
  // The member crashes (no destructor runs) right after its second poll.
  const int code = test::wait_child(test::fork_child([&] {
                                      ManualClock clock;
                                      BusOptions bo;
                                      bo.clock = &clock;
                                      auto bus = Bus::open(dir_.path(), bo);
                                      if (!bus) return 10;
                                      ConsumerOptions o;
                                      o.auto_commit = true;
                                      o.auto_commit_interval_ns = 1'000 * kMs;
                                      auto c = bus->create_consumer(kTopic, "g", o);
                                      if (!c) return 11;
                                      std::vector<RecordView> out(10);
                                      if (c->poll(out, 1'000'000'000).value_or(0) != 10) return 12;
                                      clock.advance_ns(2'000 * kMs);
                                      if (c->poll(out, 1'000'000'000).value_or(0) != 10) return 13;
                                      ::_exit(0);
                                    }),
                                    20'000);
  ASSERT_EQ(code, 0);
  auto d = bus_->describe_group("g");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->partitions[0].committed, 10u) << "the second batch was never processed";
  EXPECT_EQ(first_offset_for("g"), 10u);
}

TEST_F(DeliverySemantics, ClosingAnAutoCommittingConsumerCommitsWhatItHandedOut) {
  {
    auto c = bus_->create_consumer(kTopic, "g", ConsumerOptions{});
    ASSERT_TRUE(c);
    take(*c, 10);
  }
  EXPECT_EQ(first_offset_for("g"), 10u);
}

}  // namespace
}  // namespace sluice
