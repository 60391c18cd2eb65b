// Retention by bytes and by age, the reset a consumer left behind by it
// gets, and the back-pressure mode that holds producers instead of deleting.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "segment_format.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr char kTopic[] = "t";
constexpr uint32_t kSegment = 64 << 10;
constexpr uint32_t kValueBytes = 1024;
// One record per frame, no key, no headers.
constexpr uint32_t kFrame = format::kFrameHeaderBytes + format::align_up(format::record_bytes(0, 0, kValueBytes));

std::string value_of(uint64_t i) {
  std::string v = std::to_string(i) + ":";
  v.resize(kValueBytes, '.');
  return v;
}

TopicOptions retained_topic(int64_t retention_bytes, int64_t retention_ms = -1) {
  TopicOptions o;
  o.partitions = 1;
  o.segment_bytes = kSegment;
  o.index_interval_bytes = 1024;
  o.retention_bytes = retention_bytes;
  o.retention_ms = retention_ms;
  return o;
}

// A bus in `dir` with the topic, retained by bytes.
std::optional<Bus> retained_bus(const test::TempDir& dir, int64_t retention_bytes) {
  auto bus = Bus::open(dir.path());
  if (!bus || !bus->create_topic(kTopic, retained_topic(retention_bytes))) return std::nullopt;
  return std::move(*bus);
}

void produce(Bus& bus, uint64_t from, uint64_t to) {
  auto producer = bus.create_producer(kTopic);
  ASSERT_TRUE(producer);
  for (uint64_t i = from; i < to; ++i) {
    SendResult r = producer->send(Message{"", value_of(i)}, 0);
    ASSERT_TRUE(r.ok()) << producer->last_error().to_string();
    ASSERT_EQ(r.offset, i);
  }
}

size_t segment_files(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/topics/" + kTopic + "/0"))
    n += e.path().extension() == ".seg";
  return n;
}

struct Polled {
  std::vector<uint64_t> offsets;
  std::vector<ConsumerEvent> events;
};

// Polls until `last` was read (or 200 polls), checking every value.
void poll_through(Consumer& c, uint64_t last, std::vector<uint64_t>* offsets) {
  std::vector<RecordView> out(64);
  for (int polls = 0; polls < 200 && (offsets->empty() || offsets->back() < last); ++polls) {
    auto n = c.poll(out, 50'000'000);
    ASSERT_TRUE(n) << n.error().to_string();
    for (size_t i = 0; i < *n; ++i) {
      ASSERT_EQ(out[i].value, value_of(out[i].offset));
      offsets->push_back(out[i].offset);
    }
  }
}

ConsumerOptions recording(std::vector<ConsumerEvent>* events) {
  ConsumerOptions o;
  o.auto_commit = false;
  o.on_event = [events](const ConsumerEvent& e) { events->push_back(e); };
  return o;
}

TEST(Retention, ByBytesDeletesTheOldestSegmentsAndKeepsTheWindow) {
  test::TempDir dir;
  const int64_t window = 2 * kSegment;
  std::optional<Bus> bus = retained_bus(dir, window);
  ASSERT_TRUE(bus);
  produce(*bus, 0, 600);  // about ten segments
  ASSERT_TRUE(bus->housekeep());
  auto d = bus->describe_topic(kTopic);
  ASSERT_TRUE(d);
  const PartitionInfo& p = d->partitions[0];
  EXPECT_GT(p.start_offset, 0u);
  EXPECT_EQ(p.end_offset, 600u);
  EXPECT_EQ(p.start_offset, p.segments.front().base_offset);
  EXPECT_GE(p.bytes, static_cast<uint64_t>(window)) << "retention deleted more than it had to";
  EXPECT_LT(p.bytes, static_cast<uint64_t>(window) + kSegment) << "retention kept too much";
  EXPECT_EQ(segment_files(dir.path()), p.segments.size()) << "deleted segments are still on disk";
  auto v = bus->verify(kTopic);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok()) << v->issues.front().what;
  EXPECT_EQ(v->records, 600u - p.start_offset);
}

// The exclusive writer runs the retention of its roll at its next send or at
// its close (docs/architecture.md, "What a roll costs"): here the last send
// rolls, and nothing else runs retention.
TEST(Retention, AnExclusiveWriterEnforcesItAfterItsLastRollWhenItCloses) {
  test::TempDir dir;
  const int64_t window = 2 * kSegment;
  std::optional<Bus> bus = retained_bus(dir, window);
  ASSERT_TRUE(bus);
  constexpr uint64_t kPerSegment = kSegment / kFrame;
  const uint64_t records = 10 * kPerSegment + 1;  // the last one rolls
  {
    ProducerOptions o;
    o.exclusive = true;
    auto producer = bus->create_producer(kTopic, o);
    ASSERT_TRUE(producer);
    for (uint64_t i = 0; i < records; ++i) ASSERT_TRUE(producer->send(Message{"", value_of(i)}, 0).ok());
    auto d = bus->describe_topic(kTopic);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->partitions[0].segments.back().base_offset, records - 1) << "the last send did not roll";
  }
  auto d = bus->describe_topic(kTopic);
  ASSERT_TRUE(d);
  const PartitionInfo& p = d->partitions[0];
  EXPECT_EQ(p.end_offset, records);
  EXPECT_LT(p.bytes, static_cast<uint64_t>(window) + kSegment) << "retention kept too much";
  EXPECT_EQ(segment_files(dir.path()), p.segments.size());
}

TEST(Retention, StopsAtASegmentHoldingAnUndecidedTransaction) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->create_topic(kTopic, retained_topic(2 * kSegment)));
  produce(*bus, 0, 10);
  auto tx = bus->create_transactional_producer("slow");
  ASSERT_TRUE(tx);
  ASSERT_TRUE(tx->begin());
  const SendResult open = (*tx->producer(kTopic))->send(Message{"", value_of(10)}, 0);  // offset 10, segment 0
  ASSERT_TRUE(open.ok());
  produce(*bus, 11, 600);  // about ten segments behind it
  ASSERT_TRUE(bus->housekeep());
  auto d = bus->describe_topic(kTopic);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->partitions[0].start_offset, 0u) << "the segment of the open transaction's frame is kept";
  ASSERT_TRUE(tx->commit());
  ConsumerOptions o;
  o.auto_commit = false;
  auto c = bus->create_consumer(kTopic, "", o);
  ASSERT_TRUE(c);
  std::vector<uint64_t> offsets;
  poll_through(*c, 10, &offsets);
  ASSERT_GE(offsets.size(), 11u);
  EXPECT_EQ(offsets[10], 10u) << "the committed record is readable";
  ASSERT_TRUE(bus->housekeep());
  d = bus->describe_topic(kTopic);
  EXPECT_GT(d->partitions[0].start_offset, 10u) << "decided: retention goes on";
}

TEST(Retention, AbortsATransactionPastItsDeadlineThatHeldIt) {
  test::TempDir dir;
  ManualClock clock;
  BusOptions bo;
  bo.clock = &clock;
  auto bus = Bus::open(dir.path(), bo);
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->create_topic(kTopic, retained_topic(2 * kSegment)));
  TransactionOptions to;
  to.timeout_ns = 1'000'000'000;
  auto tx = bus->create_transactional_producer("stalled", to);
  ASSERT_TRUE(tx);
  ASSERT_TRUE(tx->begin());
  ASSERT_TRUE((*tx->producer(kTopic))->send(Message{"", value_of(0)}, 0).ok());
  produce(*bus, 1, 600);
  ASSERT_TRUE(bus->housekeep());
  EXPECT_EQ(bus->describe_topic(kTopic)->partitions[0].start_offset, 0u);
  clock.advance_ns(1'000'000'000);
  ASSERT_TRUE(bus->housekeep());  // housekeeping aborts it, then retires the segment
  EXPECT_GT(bus->describe_topic(kTopic)->partitions[0].start_offset, 0u);
  EXPECT_EQ(tx->commit().error().code, Errc::kAborted);
}

// Commits `offset` for group `g` and closes the consumer.
void commit_at(Bus& bus, const char* group, uint64_t offset) {
  ConsumerOptions o;
  o.auto_commit = false;
  auto c = bus.create_consumer(kTopic, group, o);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->commit(0, offset, true));
}

// A bus whose group "slow" committed offset 10, which retention then
// deleted (600 records, a window of two segments).
void open_with_slow_group_past_retention(const test::TempDir& dir, std::optional<Bus>* bus) {
  auto b = Bus::open(dir.path());
  ASSERT_TRUE(b);
  ASSERT_TRUE(b->create_topic(kTopic, retained_topic(2 * kSegment)));
  produce(*b, 0, 20);
  commit_at(*b, "slow", 10);
  produce(*b, 20, 600);
  ASSERT_TRUE(b->housekeep());
  bus->emplace(std::move(*b));
}

TEST(Retention, GroupWhoseOffsetWasDeletedResumesAtTheEarliestWithAnEvent) {
  test::TempDir dir;
  std::optional<Bus> bus;
  ASSERT_NO_FATAL_FAILURE(open_with_slow_group_past_retention(dir, &bus));
  const uint64_t start = bus->describe_topic(kTopic)->partitions[0].start_offset;
  ASSERT_GT(start, 10u);

  std::vector<ConsumerEvent> events;
  auto c = bus->create_consumer(kTopic, "slow", recording(&events));
  ASSERT_TRUE(c) << c.error().to_string();
  std::vector<uint64_t> offsets;
  poll_through(*c, 599, &offsets);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ConsumerEvent::Kind::kOffsetReset);
  EXPECT_EQ(events[0].from_offset, 10u);
  EXPECT_EQ(events[0].to_offset, start);
  EXPECT_EQ(c->stats().offset_resets, 1u);
  ASSERT_FALSE(offsets.empty());
  for (size_t i = 0; i < offsets.size(); ++i) ASSERT_EQ(offsets[i], start + i);
  EXPECT_EQ(offsets.back(), 599u);
}

TEST(Retention, GroupWhoseOffsetWasDeletedJumpsToTheEndUnderTheLatestPolicy) {
  test::TempDir dir;
  std::optional<Bus> bus;
  ASSERT_NO_FATAL_FAILURE(open_with_slow_group_past_retention(dir, &bus));

  std::vector<ConsumerEvent> events;
  ConsumerOptions o = recording(&events);
  o.offset_reset = OffsetReset::kLatest;
  auto c = bus->create_consumer(kTopic, "slow", o);
  ASSERT_TRUE(c) << c.error().to_string();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ConsumerEvent::Kind::kOffsetReset);
  EXPECT_EQ(events[0].to_offset, 600u);
  std::vector<RecordView> out(8);
  auto n = c->poll(out, 10'000'000);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 0u) << "the latest policy must skip what is there";
  produce(*bus, 600, 601);
  n = c->poll(out, 1'000'000'000);
  ASSERT_TRUE(n);
  ASSERT_EQ(*n, 1u);
  EXPECT_EQ(out[0].offset, 600u);
}

TEST(Retention, GroupWhoseOffsetWasDeletedFailsUnderTheFailPolicy) {
  test::TempDir dir;
  std::optional<Bus> bus;
  ASSERT_NO_FATAL_FAILURE(open_with_slow_group_past_retention(dir, &bus));
  ConsumerOptions o;
  o.offset_reset = OffsetReset::kFail;
  auto c = bus->create_consumer(kTopic, "slow", o);
  if (!c) {
    EXPECT_EQ(c.error().code, Errc::kOffsetOutOfRange) << c.error().to_string();
    return;
  }
  std::vector<RecordView> out(8);
  auto n = c->poll(out, 10'000'000);
  ASSERT_FALSE(n) << "records handed out from a deleted position";
  EXPECT_EQ(n.error().code, Errc::kOffsetOutOfRange);
}

// The consumer is attached, positioned in the oldest segment, when
// retention deletes it: on its next polls it gets the reset event and
// carries on from the new start, never a corruption error.
TEST(Retention, RunningConsumerLeftBehindByRetentionIsResetAndCarriesOn) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->create_topic(kTopic, retained_topic(2 * kSegment)));
  produce(*bus, 0, 20);
  std::vector<ConsumerEvent> events;
  auto c = bus->create_consumer(kTopic, "slow", recording(&events));
  ASSERT_TRUE(c);
  std::vector<RecordView> out(10);
  auto n = c->poll(out, 1'000'000'000);
  ASSERT_TRUE(n);
  ASSERT_EQ(*n, 10u);
  produce(*bus, 20, 600);
  ASSERT_TRUE(bus->housekeep());
  const uint64_t start = bus->describe_topic(kTopic)->partitions[0].start_offset;
  ASSERT_GT(start, 10u);

  std::vector<uint64_t> offsets;
  poll_through(*c, 599, &offsets);
  ASSERT_FALSE(offsets.empty());
  EXPECT_EQ(offsets.back(), 599u);
  ASSERT_EQ(events.size(), 1u) << "no reset event for a position retention removed";
  EXPECT_EQ(events[0].kind, ConsumerEvent::Kind::kOffsetReset);
  EXPECT_EQ(events[0].to_offset, start);
  // From the reset on, dense to the end.
  auto it = std::find(offsets.begin(), offsets.end(), start);
  ASSERT_NE(it, offsets.end());
  for (uint64_t o = start; it != offsets.end(); ++it, ++o) ASSERT_EQ(*it, o);
}

TEST(Retention, ByAgeDeletesSegmentsWhoseNewestRecordIsOlderThanTheLimit) {
  test::TempDir dir;
  ManualClock clock;
  BusOptions bo;
  bo.clock = &clock;
  auto bus = Bus::open(dir.path(), bo);
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->create_topic(kTopic, retained_topic(-1, /*retention_ms=*/1000)));
  // All stamped now; the newest segment keeps room for one more record.
  constexpr uint64_t kPerSegment = kSegment / kFrame;
  constexpr uint64_t kOld = 4 * kPerSegment + kPerSegment / 2;
  produce(*bus, 0, kOld);
  auto before = bus->describe_topic(kTopic);
  ASSERT_EQ(before->partitions[0].segments.size(), 5u);

  clock.advance_ns(900'000'000);  // younger than the limit: kept
  ASSERT_TRUE(bus->housekeep());
  EXPECT_EQ(bus->describe_topic(kTopic)->partitions[0].start_offset, 0u);
  EXPECT_EQ(segment_files(dir.path()), before->partitions[0].segments.size());

  clock.advance_ns(200'000'000);  // 1.1 s: older than the limit
  produce(*bus, kOld, kOld + 1);  // the newest segment gets a young record
  ASSERT_TRUE(bus->housekeep());
  auto after = bus->describe_topic(kTopic);
  const PartitionInfo& p = after->partitions[0];
  // Every segment but the newest went; the newest holds a young record.
  ASSERT_EQ(p.segments.size(), 1u);
  EXPECT_EQ(p.start_offset, before->partitions[0].segments.back().base_offset);
  EXPECT_EQ(segment_files(dir.path()), 1u);

  std::vector<ConsumerEvent> events;
  auto c = bus->create_consumer(kTopic, "", recording(&events));
  ASSERT_TRUE(c);
  std::vector<uint64_t> offsets;
  poll_through(*c, kOld, &offsets);
  ASSERT_FALSE(offsets.empty());
  EXPECT_EQ(offsets.front(), p.start_offset);
  EXPECT_EQ(offsets.back(), kOld);
  EXPECT_EQ(offsets.size(), kOld + 1 - p.start_offset);
}

TopicOptions back_pressured_topic() {
  TopicOptions o = retained_topic(2 * kSegment);
  o.retention_mode = RetentionMode::kBackPressure;
  return o;
}

// Records of kFrame bytes that fit in the window: frame positions are
// contiguous across segment rolls, so the window counts frames only.
constexpr uint64_t kWindowRecords = 2 * kSegment / kFrame;

// A bus in `dir` with kTopic back-pressured.
std::optional<Bus> back_pressured_bus(const test::TempDir& dir) {
  auto bus = Bus::open(dir.path());
  EXPECT_TRUE(bus) << bus.error().to_string();
  if (!bus) return std::nullopt;
  EXPECT_TRUE(bus->create_topic(kTopic, back_pressured_topic()));
  return std::move(*bus);
}

// A consumer of `group` that commits only when told to.
std::optional<Consumer> committing_by_hand(Bus& bus, const std::string& group) {
  ConsumerOptions co;
  co.auto_commit = false;
  auto c = bus.create_consumer(kTopic, group, co);
  EXPECT_TRUE(c) << c.error().to_string();
  if (!c) return std::nullopt;
  return std::move(*c);
}

TEST(BackPressure, ProducerIsBackPressuredWhenTheSlowestGroupIsAWindowBehindAndGoesOnAfterItCommits) {
  test::TempDir dir;
  auto bus = back_pressured_bus(dir);
  ASSERT_TRUE(bus);
  auto fast = committing_by_hand(*bus, "fast");
  auto slow = committing_by_hand(*bus, "slow");
  ASSERT_TRUE(fast && slow);
  auto producer = bus->create_producer(kTopic);
  ASSERT_TRUE(producer);

  uint64_t sent = 0;
  SendResult r;
  for (; sent < 10 * kWindowRecords; ++sent) {
    r = producer->send(Message{"", value_of(sent)}, 0);
    if (!r.ok()) break;
    if (sent % 16 == 0) {  // the fast group keeps up
      ASSERT_TRUE(fast->commit(0, sent + 1, false));
    }
  }
  EXPECT_EQ(r.status, SendStatus::kBackPressured);
  EXPECT_EQ(sent, kWindowRecords);
  auto d = bus->describe_topic(kTopic);
  EXPECT_EQ(d->partitions[0].start_offset, 0u) << "back-pressure mode deleted unconsumed records";
  // Still held while the slow group has not moved, however often we try.
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(producer->send(Message{"", value_of(sent)}, 0).status, SendStatus::kBackPressured);

  std::vector<RecordView> out(64);
  uint64_t read = 0;
  while (read < 64) {
    auto n = slow->poll(std::span(out).first(64 - read), 100'000'000);
    ASSERT_TRUE(n && *n > 0);
    read += *n;
  }
  ASSERT_TRUE(slow->commit_sync());
  r = producer->send(Message{"", value_of(sent)}, 0);
  ASSERT_TRUE(r.ok()) << "still back-pressured after the slow group committed";
  EXPECT_EQ(r.offset, sent);
}

TEST(BackPressure, SendWaitsUpToItsTimeoutForTheSlowGroupToCommit) {
  test::TempDir dir;
  auto bus = back_pressured_bus(dir);
  ASSERT_TRUE(bus);
  auto slow = committing_by_hand(*bus, "slow");
  ASSERT_TRUE(slow);
  auto producer = bus->create_producer(kTopic);
  for (uint64_t i = 0; i < kWindowRecords; ++i) ASSERT_TRUE(producer->send(Message{"", value_of(i)}, 0).ok());
  ASSERT_EQ(producer->send(Message{"", value_of(kWindowRecords)}, 0).status, SendStatus::kBackPressured);

  ProducerOptions patient;
  patient.back_pressure_timeout_ns = 20'000'000'000;  // bounded; the commit comes long before
  auto waiting = bus->create_producer(kTopic, patient);
  std::thread committer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    ASSERT_TRUE(slow->commit(0, 32, true));
  });
  const auto t0 = std::chrono::steady_clock::now();
  SendResult r = waiting->send(Message{"", value_of(kWindowRecords)}, 0);
  const auto waited = std::chrono::steady_clock::now() - t0;
  committer.join();
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.offset, kWindowRecords);
  EXPECT_GE(waited, std::chrono::milliseconds(20)) << "send did not wait for the commit";
  EXPECT_LT(waited, std::chrono::seconds(10));
}

// Producers keep the groups' offsets files open between rolls: a group
// registered meanwhile must hold them as soon as it exists, not when they
// next happen to list the groups.
TEST(BackPressure, AGroupRegisteredWhileTheProducerRunsHoldsItFromThen) {
  test::TempDir dir;
  auto bus = back_pressured_bus(dir);
  ASSERT_TRUE(bus);
  auto early = committing_by_hand(*bus, "early");
  ASSERT_TRUE(early);
  auto producer = bus->create_producer(kTopic);
  ASSERT_TRUE(producer);
  uint64_t sent = 0;
  auto send_with_early_keeping_up = [&](uint64_t until) {
    SendResult r;
    for (; sent < until; ++sent) {
      r = producer->send(Message{"", value_of(sent)}, 0);
      if (!r.ok()) return r;
      if (!early->commit(0, sent + 1, false)) ADD_FAILURE() << "commit";
    }
    return r;
  };
  // Three windows: the producer looked at the groups at every roll.
  ASSERT_TRUE(send_with_early_keeping_up(3 * kWindowRecords).ok()) << producer->last_error().to_string();
  auto late = committing_by_hand(*bus, "late");  // from the log's start, nothing committed
  ASSERT_TRUE(late);
  auto d = bus->describe_topic(kTopic);
  ASSERT_TRUE(d);
  // The new group is at the log's start: the producer may go on only up to
  // a window past it, which it is beyond already.
  const uint64_t start = d->partitions[0].start_offset;
  ASSERT_GE(sent, start + kWindowRecords);
  const uint64_t before = sent;
  const SendResult r = send_with_early_keeping_up(sent + 3 * kWindowRecords);
  EXPECT_EQ(r.status, SendStatus::kBackPressured);
  EXPECT_EQ(sent, before) << "the producer went on past a window ahead of the new group";
}

TEST(BackPressure, TopicWithoutGroupsIsNeverBackPressuredAndConsumedSegmentsAreDeleted) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->create_topic(kTopic, back_pressured_topic()));
  produce(*bus, 0, 3 * kWindowRecords);  // no group registered: nobody to wait for
  // Once a group exists and commits everything, old segments may go.
  commit_at(*bus, "g", 3 * kWindowRecords);
  produce(*bus, 3 * kWindowRecords, 4 * kWindowRecords);
  ASSERT_TRUE(bus->housekeep());
  auto d = bus->describe_topic(kTopic);
  EXPECT_GT(d->partitions[0].start_offset, 0u);
  EXPECT_LE(d->partitions[0].bytes, 2u * kSegment + kSegment);
}

}  // namespace
}  // namespace sluice
