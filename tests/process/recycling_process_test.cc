// Segment recycling across processes: a segment another process still uses
// must never be rewritten under it, and a log whose readers keep up must
// recycle its retired segments instead of allocating new ones.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <sys/stat.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "process/process_helpers.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr uint32_t kSegment = 64 << 10;
constexpr int kRecords = 3000;  // ~21 segments of 64 KiB with 400-byte values

TopicOptions recycled_topic() {
  TopicOptions t;
  t.segment_bytes = kSegment;
  t.index_interval_bytes = 1024;
  t.retention_bytes = kSegment;
  return t;
}

std::string value_of(int i) { return std::to_string(i) + ":" + std::string(400, 'v'); }

TEST(RecyclingAcrossProcesses, ViewHeldByAnotherProcessSurvivesAProducerFarAhead) {
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    ASSERT_TRUE(bus->create_topic("t", recycled_topic()));
    auto producer = bus->create_producer("t");
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(producer->send(Message{"", value_of(i)}, 0).ok());
  }
  test::Pipe holding, go;
  test::Children children;
  // The reader takes one view into the first segment and keeps it while the
  // producer (this process) retires and recycles segment after segment.
  const pid_t reader = children.spawn([&] {
    auto bus = Bus::open(dir.path());
    if (!bus) return 10;
    auto consumer = bus->create_consumer("t", "");
    if (!consumer) return 11;
    std::vector<RecordView> one(1);
    auto n = consumer->poll(one, 2'000'000'000);
    if (!n || *n != 1) return 12;
    const std::string copy(one[0].value);
    char c = 1;
    if (!test::write_all(holding.write_end(), &c, 1)) return 13;
    if (!test::read_exact(go.read_end(), &c, 1, 20'000)) return 14;
    return std::string(one[0].value) == copy && copy == value_of(0) ? 0 : 15;
  });
  char c;
  ASSERT_TRUE(test::read_exact(holding.read_end(), &c, 1, 20'000));
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  auto producer = bus->create_producer("t");
  for (int i = 50; i < kRecords; ++i) ASSERT_TRUE(producer->send(Message{"", value_of(i)}, 0).ok());
  c = 1;
  ASSERT_TRUE(test::write_all(go.write_end(), &c, 1));
  EXPECT_EQ(children.wait(reader, 20'000), 0) << "the reader's view changed under it (or it failed)";
}

TEST(RecyclingAcrossProcesses, ReaderThatKeepsUpLetsTheProducerRecycle) {
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    TopicOptions t = recycled_topic();
    // The producer waits for the reader's group, so the reader never loses
    // records to retention however the two processes are scheduled.
    t.retention_mode = RetentionMode::kBackPressure;
    t.retention_bytes = 2 * kSegment;
    ASSERT_TRUE(bus->create_topic("t", t));
  }
  test::Pipe ready;
  test::Children children;
  const pid_t reader = children.spawn([&] {
    auto bus = Bus::open(dir.path());
    if (!bus) return 10;
    ConsumerOptions co;
    co.auto_commit = false;
    auto consumer = bus->create_consumer("t", "g", co);
    if (!consumer) return 11;
    char c = 1;
    if (!test::write_all(ready.write_end(), &c, 1)) return 15;
    std::vector<RecordView> out(64);
    int next = 0;
    for (int idle = 0; next < kRecords && idle < 200;) {
      auto n = consumer->poll(out, 50'000'000);
      if (!n) return 12;
      if (*n == 0) ++idle;
      for (size_t k = 0; k < *n; ++k, ++next)
        if (out[k].value != value_of(next)) return 13;
      consumer->commit_async();
    }
    return next == kRecords ? 0 : 14;
  });
  char c;
  ASSERT_TRUE(test::read_exact(ready.read_end(), &c, 1, 20'000));
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  ProducerOptions po;
  po.back_pressure_timeout_ns = 20'000'000'000;
  auto producer = bus->create_producer("t", po);
  ASSERT_TRUE(producer);
  // Distinct files (inodes) that ever held a segment: with recycling the log
  // keeps reusing a handful; with plain deletion there would be one per roll.
  std::set<ino_t> inodes;
  const std::string part = dir.sub("topics/t/0");
  for (int i = 0; i < kRecords; ++i) {
    ASSERT_TRUE(producer->send(Message{"", value_of(i)}, 0).ok()) << producer->last_error().to_string();
    if (i % 20 == 0) {
      for (auto& e : std::filesystem::directory_iterator(part)) {
        struct stat st;
        if (e.path().extension() == ".seg" && ::stat(e.path().c_str(), &st) == 0) inodes.insert(st.st_ino);
      }
    }
  }
  EXPECT_EQ(children.wait(reader, 30'000), 0);
  auto d = bus->describe_topic("t");
  ASSERT_TRUE(d);
  const uint64_t rolls = d->partitions[0].segments.back().base_offset > 0 ? kRecords * 460ull / kSegment : 0;
  EXPECT_GE(rolls, 15u);
  EXPECT_LE(inodes.size(), 8u) << "segments were allocated anew instead of recycled";
  auto v = bus->verify("t");
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok()) << v->issues.front().what;
}

}  // namespace
}  // namespace sluice
