#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ipc/file_lock.h"
#include "partition.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr uint32_t kSegment = 64 << 10;

size_t count_files(const std::string& dir, std::string_view prefix_or_suffix, bool suffix) {
  size_t n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename();
    if (suffix ? name.ends_with(prefix_or_suffix) : name.starts_with(prefix_or_suffix)) ++n;
  }
  return n;
}

// Topic "t" of 64 KiB segments on a bus in `dir`.
std::optional<Bus> bus_with_small_segments(const test::TempDir& dir, int64_t retention_bytes) {
  auto bus = Bus::open(dir.path());
  if (!bus) return std::nullopt;
  TopicOptions t;
  t.segment_bytes = kSegment;
  t.index_interval_bytes = 1024;
  t.retention_bytes = retention_bytes;
  if (!bus->create_topic("t", t)) return std::nullopt;
  return std::move(*bus);
}

TEST(SegmentRecycling, RetiredSegmentsAreRecycledSoTheFileCountStaysBoundedAndDataStaysIntact) {
  test::TempDir dir;
  auto bus = bus_with_small_segments(dir, 2 * kSegment);
  ASSERT_TRUE(bus);
  auto producer = bus->create_producer("t");
  auto consumer = bus->create_consumer("t", "g");
  ASSERT_TRUE(producer && consumer);
  std::vector<RecordView> out(64);
  const std::string value(400, 'v');
  uint64_t next = 0;
  const std::string part_dir = dir.sub("topics/t/0");
  size_t max_files = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::string v = std::to_string(i) + value;
    SendResult r = producer->send(Message{"", v}, 0);
    ASSERT_TRUE(r.ok()) << producer->last_error().to_string();
    ASSERT_EQ(r.offset, static_cast<uint64_t>(i));
    // The consumer keeps up, so retired segments are released and recyclable.
    auto n = consumer->try_poll(out);
    ASSERT_TRUE(n) << n.error().to_string();
    for (size_t k = 0; k < *n; ++k, ++next) {
      ASSERT_EQ(out[k].offset, next);
      ASSERT_EQ(out[k].value.substr(0, std::to_string(next).size()), std::to_string(next));
    }
    max_files = std::max(max_files, count_files(part_dir, ".seg", true));
  }
  EXPECT_EQ(next, 3000u);
  // 3000 x ~460 B is ~21 segments of 64 KiB; with recycling the directory
  // holds the retained segments, the newest and at most four spares.
  EXPECT_LE(max_files, 7u);
  EXPECT_GE(count_files(part_dir, ".spare", true), 1u);
  auto v = bus->verify("t");
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok()) << v->issues.front().what;
}

// Small segments roll often, so a spare is more often still open somewhere
// (a reader that has not run since): up to 4 are kept, within 32 MiB.
TEST(SegmentRecycling, SmallSegmentsKeepMoreSparesWithin32MiB) {
  TopicOptions o;
  for (auto [bytes, spares] : {std::pair<uint32_t, size_t>{64u << 10, 4}, {4u << 20, 4}, {8u << 20, 4},
                               {16u << 20, 2}, {64u << 20, 2}, {1u << 30, 2}}) {
    o.segment_bytes = bytes;
    EXPECT_EQ(Partition::max_spares(o), spares) << bytes << "-byte segments";
  }
}

TEST(SegmentRecycling, SegmentStillReadByAConsumerIsNotRecycledUnderIt) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  TopicOptions t;
  t.segment_bytes = kSegment;
  t.index_interval_bytes = 1024;
  t.retention_bytes = kSegment;
  ASSERT_TRUE(bus->create_topic("t", t));
  auto producer = bus->create_producer("t");
  const std::string value(400, 'v');
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(producer->send(Message{"", std::to_string(i) + value}, 0).ok());
  // A slow consumer holds the first segment and a view into it.
  ConsumerOptions co;
  co.auto_commit = false;
  auto slow = bus->create_consumer("t", "slow", co);
  std::vector<RecordView> one(1);
  auto n = slow->try_poll(one);
  ASSERT_TRUE(n && *n == 1);
  const std::string first(one[0].value);
  // The producer runs far ahead: retention retires the slow consumer's
  // segment and later rolls look for spares to recycle.
  for (int i = 100; i < 2000; ++i) ASSERT_TRUE(producer->send(Message{"", std::to_string(i) + value}, 0).ok());
  EXPECT_EQ(std::string(one[0].value), first) << "a segment in use was rewritten";
  EXPECT_EQ(first.substr(0, 1), "0");
}

// A ".recycling-" file is a spare a process took for its roll, locked until
// it is published: another roll leaves it while it is locked, and reclaims
// it once nobody holds it (its taker died).
TEST(SegmentRecycling, ARollLeavesALockedRecyclingFileAndReclaimsOneWhoseTakerDied) {
  test::TempDir dir;
  auto bus = bus_with_small_segments(dir, -1);
  ASSERT_TRUE(bus);
  auto producer = bus->create_producer("t");
  ASSERT_TRUE(producer);
  ASSERT_TRUE(producer->send(Message{"", "first"}, 0).ok());
  const std::string part_dir = dir.sub("topics/t/0");
  const std::string taken = part_dir + "/.recycling-1-" + segment_file_name(0).substr(0, 20) + ".spare";
  std::filesystem::copy_file(part_dir + "/" + segment_file_name(0), taken);  // a spare's size
  const std::string value(1000, 'v');
  auto roll = [&] {
    const size_t before = count_files(part_dir, ".seg", true);
    while (count_files(part_dir, ".seg", true) == before) ASSERT_TRUE(producer->send(Message{"", value}, 0).ok());
  };
  {
    auto held = ipc::FileLock::try_lock_existing(taken, ipc::FileLock::Mode::kExclusive);  // its live taker
    ASSERT_TRUE(held);
    roll();
    EXPECT_TRUE(std::filesystem::exists(taken)) << "a roll took a .recycling- file its taker holds";
  }
  roll();
  EXPECT_FALSE(std::filesystem::exists(taken)) << "a dead taker's .recycling- file was not reclaimed";
  EXPECT_EQ(count_files(part_dir, ".recycling-", false), 0u);
  auto v = bus->verify("t");
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok()) << v->issues.front().what;
}

// An exclusive writer's roll recycles a spare zeroed only 64 KiB deep and
// zeroes ahead of its tail as it goes (docs/architecture.md, "Recycling
// without zeroing"). Small records take the chunked path, large ones
// (>= 1 KiB frames) zero only the word after them.
class LazyRecycling : public ::testing::Test {
 protected:
  static constexpr uint32_t kLazySegment = 256 << 10;

  void SetUp() override {
    auto b = Bus::open(dir_.path());
    ASSERT_TRUE(b);
    bus_.emplace(std::move(*b));
    TopicOptions t;
    t.segment_bytes = kLazySegment;
    t.index_interval_bytes = 4096;
    t.retention_bytes = 2 * kLazySegment;
    ASSERT_TRUE(bus_->create_topic("t", t));
    ConsumerOptions co;
    co.auto_commit = false;
    auto c = bus_->create_consumer("t", "g", co);
    ASSERT_TRUE(c);
    consumer_.emplace(std::move(*c));
  }

  // Record i: its number, then filler of a size that cycles through small
  // and large frames.
  static std::string value_of(uint64_t i) {
    static const size_t sizes[] = {40, 300, 1500, 90, 3000, 8};
    return std::to_string(i) + ":" + std::string(sizes[i % 6], static_cast<char>('a' + i % 26));
  }

  // Sends records until `count` were sent in all, the consumer keeping up
  // (so retired segments are released and recycled) and checking each.
  void send_and_read(Producer& p, uint64_t count) {
    std::vector<RecordView> out(64);
    while (sent_ < count) {
      SendResult r = p.send(Message{"", value_of(sent_)}, 0);
      ASSERT_TRUE(r.ok()) << p.last_error().to_string();
      ASSERT_EQ(r.offset, sent_);
      ++sent_;
      drain(out);
    }
  }
  void drain(std::vector<RecordView>& out) {
    for (;;) {
      auto n = consumer_->try_poll(out);
      ASSERT_TRUE(n) << n.error().to_string();
      if (*n == 0) return;
      for (size_t k = 0; k < *n; ++k, ++read_) {
        ASSERT_EQ(out[k].offset, read_);
        ASSERT_EQ(std::string(out[k].value), value_of(read_)) << "offset " << read_;
      }
      consumer_->commit_async();
    }
  }

  bool zero_past(size_t from) const { return test::newest_segment_zero_from(dir_.sub("topics/t/0"), from); }
  // Sends until the writer has just rolled into a recycled spare: the newest
  // segment holds only a few of our records and stale bytes further on.
  void send_until_fresh_roll(Producer& p) {
    for (int sends = 0; sends < 2000; ++sends) {
      const uint64_t before = newest().base_offset;
      send_and_read(p, sent_ + 1);
      if (newest().base_offset != before && !zero_past(128 << 10)) return;
    }
    FAIL() << "no roll into a lazily recycled spare";
  }
  PartitionInfo partition() const {
    auto d = bus_->describe_topic("t");
    return d ? d->partitions[0] : PartitionInfo{};
  }
  SegmentInfo newest() const {
    PartitionInfo p = partition();
    return p.segments.empty() ? SegmentInfo{} : p.segments.back();
  }

  test::TempDir dir_;
  std::optional<Bus> bus_;
  std::optional<Consumer> consumer_;
  uint64_t sent_ = 0;
  uint64_t read_ = 0;
};

TEST_F(LazyRecycling, AnExclusiveWriterRecyclesWithoutZeroingAndReadersSeeOnlyItsRecords) {
  ProducerOptions po;
  po.exclusive = true;
  auto producer = bus_->create_producer("t", po);
  ASSERT_TRUE(producer);
  send_and_read(*producer, 2000);  // about 12 segments: the spares go round
  send_until_fresh_roll(*producer);
  // Stale bytes of the spare's last life lie past our tail (the chunk the
  // roll zeroed is 64 KiB), yet reads, seeks and verify see our frames only.
  EXPECT_FALSE(zero_past(128 << 10)) << "the spare was zeroed whole: the lazy path was not taken";
  send_and_read(*producer, sent_ + 3000);
  // Seeks go through the index and walk frames: all over again.
  consumer_->seek_to_beginning();
  read_ = partition().start_offset;
  std::vector<RecordView> out(64);
  drain(out);
  EXPECT_EQ(read_, sent_);
  auto v = bus_->verify("t");
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok()) << v->issues.front().what;
}

// The roll's spare is taken ahead, half-way through the segment, under a
// name only the writer's process knows (docs/architecture.md, "What a roll
// costs"); the roll publishes it, and a writer closed holding one gives it
// back.
TEST_F(LazyRecycling, AnExclusiveWriterTakesItsNextSpareHalfWayAndGivesItBackWhenItCloses) {
  const std::string part_dir = dir_.sub("topics/t/0");
  auto taken = [&] { return count_files(part_dir, ".recycling-", false); };
  ProducerOptions po;
  po.exclusive = true;
  std::optional<Producer> producer;
  {
    auto p = bus_->create_producer("t", po);
    ASSERT_TRUE(p);
    producer.emplace(std::move(*p));
  }
  send_and_read(*producer, 2000);  // the spares go round
  send_until_fresh_roll(*producer);
  EXPECT_EQ(taken(), 0u) << "the roll published the spare it had taken";
  const uint64_t base = newest().base_offset;
  while (taken() == 0 && newest().base_offset == base) send_and_read(*producer, sent_ + 1);
  ASSERT_EQ(newest().base_offset, base) << "no spare was taken before the roll";
  EXPECT_GE(partition().bytes % kLazySegment, kLazySegment / 2 - 4096) << "taken before half-way";
  while (newest().base_offset == base) send_and_read(*producer, sent_ + 1);
  EXPECT_EQ(taken(), 0u);
  while (taken() == 0) send_and_read(*producer, sent_ + 1);
  // ".recycling-<pid>-<spare name>"
  std::string spare;
  for (auto& e : std::filesystem::directory_iterator(part_dir))
    if (const std::string n = e.path().filename(); n.starts_with(".recycling-")) spare = n.substr(n.find('-', 11) + 1);
  producer.reset();
  EXPECT_EQ(taken(), 0u) << "the closed writer kept its taken spare";
  EXPECT_TRUE(std::filesystem::exists(part_dir + "/" + spare)) << spare << " was not given back";
}

TEST_F(LazyRecycling, AWriterAfterAnExclusiveOneThatClosedFindsZerosPastTheTail) {
  {
    ProducerOptions po;
    po.exclusive = true;
    auto producer = bus_->create_producer("t", po);
    ASSERT_TRUE(producer);
    send_and_read(*producer, 2000);
    send_until_fresh_roll(*producer);
    ASSERT_FALSE(zero_past(128 << 10));
  }  // closed: it zeroes the rest of its segment
  EXPECT_TRUE(zero_past(newest().bytes_used)) << "stale bytes left past the tail at close";
  // Shared writers walk and claim at zero words: across the rest of the
  // segment and into the next ones.
  auto shared = bus_->create_producer("t");
  ASSERT_TRUE(shared);
  send_and_read(*shared, sent_ + 3000);
  auto v = bus_->verify("t");
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok()) << v->issues.front().what;
}

}  // namespace
}  // namespace sluice
