#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <filesystem>
#include <string>
#include <vector>

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

TEST(SegmentRecycling, RetiredSegmentsAreRecycledSoTheFileCountStaysBoundedAndDataStaysIntact) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  TopicOptions t;
  t.segment_bytes = kSegment;
  t.index_interval_bytes = 1024;
  t.retention_bytes = 2 * kSegment;
  ASSERT_TRUE(bus->create_topic("t", t));
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

}  // namespace
}  // namespace sluice
