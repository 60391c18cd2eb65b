#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <string>
#include <vector>

#include "support/test_support.h"

namespace sluice {
namespace {

TopicOptions small_topic(uint32_t partitions) {
  TopicOptions o;
  o.partitions = partitions;
  o.segment_bytes = 64 << 10;
  o.index_interval_bytes = 256;
  return o;
}

TEST(Log, ProducedRecordsAreConsumedInOrderWithKeysValuesAndHeaders) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus) << bus.error().to_string();
  ASSERT_TRUE(bus->create_topic("orders", small_topic(1)));
  auto producer = bus->create_producer("orders");
  ASSERT_TRUE(producer);
  Header hdrs[] = {{"trace", "abc"}, {"type", "created"}};
  for (int i = 0; i < 100; ++i) {
    std::string v = "value-" + std::to_string(i);
    SendResult r = producer->send(Message{"key", v, hdrs});
    ASSERT_TRUE(r.ok()) << producer->last_error().to_string();
    EXPECT_EQ(r.offset, static_cast<uint64_t>(i));
  }
  auto consumer = bus->create_consumer("orders", "g1");
  ASSERT_TRUE(consumer);
  std::vector<RecordView> out(16);
  int seen = 0;
  while (seen < 100) {
    auto n = consumer->poll(out, 1'000'000'000);
    ASSERT_TRUE(n) << n.error().to_string();
    ASSERT_GT(*n, 0u);
    for (size_t i = 0; i < *n; ++i, ++seen) {
      EXPECT_EQ(out[i].offset, static_cast<uint64_t>(seen));
      EXPECT_EQ(out[i].key, "key");
      EXPECT_EQ(out[i].value, "value-" + std::to_string(seen));
      EXPECT_EQ(out[i].headers.size(), 2);
      EXPECT_EQ(out[i].headers.find("type"), "created");
    }
  }
  auto n = consumer->try_poll(out);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 0u);
}

TEST(Log, SegmentsRollAndOffsetsStayDense) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus->create_topic("t", small_topic(1)));
  auto producer = bus->create_producer("t");
  std::string value(1000, 'x');
  for (int i = 0; i < 500; ++i) ASSERT_TRUE(producer->send(Message{"", value}, 0).ok());
  auto d = bus->describe_topic("t");
  ASSERT_TRUE(d);
  EXPECT_GT(d->partitions[0].segments.size(), 5u);
  EXPECT_EQ(d->partitions[0].end_offset, 500u);
  auto consumer = bus->create_consumer("t", "");
  std::vector<RecordView> out(64);
  uint64_t expect = 0;
  while (expect < 500) {
    auto n = consumer->poll(out, 1'000'000'000);
    ASSERT_TRUE(n && *n > 0);
    for (size_t i = 0; i < *n; ++i) EXPECT_EQ(out[i].offset, expect++);
  }
  auto v = bus->verify("t");
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok()) << v->issues[0].what;
  EXPECT_EQ(v->records, 500u);
}

TEST(Log, CommittedOffsetSurvivesReopen) {
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus->create_topic("t", small_topic(2)));
    auto producer = bus->create_producer("t");
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(producer->send(Message{"k" + std::to_string(i), "v"}).ok());
    ConsumerOptions co;
    co.auto_commit = false;
    auto consumer = bus->create_consumer("t", "g", co);
    std::vector<RecordView> out(4);
    auto n = consumer->poll(out, 1'000'000'000);
    ASSERT_TRUE(n && *n > 0);
    ASSERT_TRUE(consumer->commit_sync());
  }
  auto bus = Bus::open(dir.path());
  auto d = bus->describe_group("g");
  ASSERT_TRUE(d) << d.error().to_string();
  uint64_t committed = 0, lag = 0;
  for (auto& p : d->partitions) {
    if (p.committed != kNoOffset) committed += p.committed;
    lag += p.lag_records;
  }
  EXPECT_EQ(committed + lag, 10u);
  EXPECT_GT(committed, 0u);
}

}  // namespace
}  // namespace sluice
