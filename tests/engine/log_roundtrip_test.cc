#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "segment_format.h"
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

// send() composes frames of up to 256 bytes on the stack and copies them
// in; larger ones are written in place. Values from 0 to 300 bytes, with and
// without a key and headers, land frames on both sides of that size and at
// every 8-byte offset within a line; every record must come back as sent,
// checksum verified, from both writer modes, and the topic must verify.
TEST(Log, RecordsAroundTheStagedFrameSizeRoundTripAtEveryLineOffset) {
  for (const bool exclusive : {false, true}) {
    SCOPED_TRACE(exclusive ? "exclusive" : "shared");
    test::TempDir dir;
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    ASSERT_TRUE(bus->create_topic("t", small_topic(1)));
    ProducerOptions po;
    po.exclusive = exclusive;
    auto producer = bus->create_producer("t", po);
    ASSERT_TRUE(producer);
    Header hdrs[] = {{"h", "v"}};
    std::vector<std::string> sent;
    for (uint32_t size = 0; size <= 300; ++size) {
      // Every byte differs from its neighbours: a small copy that moves or
      // skips bytes shows.
      std::string value(size, '\0');
      for (uint32_t j = 0; j < size; ++j) value[j] = static_cast<char>('a' + (j * 7 + size) % 26);
      const bool with_key = size % 3 == 0;
      SendResult r = producer->send(with_key ? Message{"k" + std::to_string(size), value, hdrs} : Message{"", value}, 0);
      ASSERT_TRUE(r.ok()) << producer->last_error().to_string();
      ASSERT_EQ(r.offset, sent.size());
      sent.push_back(value);
    }
    ConsumerOptions co;
    co.verify_checksums = true;
    auto consumer = bus->create_consumer("t", "", co);
    ASSERT_TRUE(consumer);
    std::vector<RecordView> out(64);
    size_t seen = 0;
    while (seen < sent.size()) {
      auto n = consumer->poll(out, 1'000'000'000);
      ASSERT_TRUE(n) << n.error().to_string();
      ASSERT_GT(*n, 0u);
      for (size_t i = 0; i < *n; ++i, ++seen) {
        ASSERT_EQ(out[i].offset, seen);
        ASSERT_EQ(out[i].value, sent[seen]);
        ASSERT_EQ(out[i].key, seen % 3 == 0 ? "k" + std::to_string(seen) : "");
        ASSERT_EQ(out[i].headers.size(), seen % 3 == 0 ? 1u : 0u);
      }
    }
    auto v = bus->verify("t");
    ASSERT_TRUE(v);
    EXPECT_TRUE(v->ok()) << v->issues[0].what;
    EXPECT_EQ(v->records, sent.size());
  }
}

// send() takes a straight-line path for a small record of a plain producer;
// send_batch() of one record takes the general one (reserve, write in place,
// publish). Both must leave the same bytes (past the file header's creation
// time): frames, checksums, padding, index slots, hint, across rolls.
void expect_send_writes_the_bytes_the_general_path_writes(bool exclusive) {
  SCOPED_TRACE(exclusive ? "exclusive" : "shared");
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  TopicOptions t = small_topic(1);
  t.segment_bytes = 64 << 10;  // the smallest: several rolls
  ASSERT_TRUE(bus->create_topic("fast", t));
  ASSERT_TRUE(bus->create_topic("general", t));
  ProducerOptions po;
  po.exclusive = exclusive;
  auto fast = bus->create_producer("fast", po);
  auto general = bus->create_producer("general", po);
  ASSERT_TRUE(fast && general);
  Header hdrs[] = {{"trace", "abc"}, {"n", ""}};
  for (uint32_t i = 0; i < 2000; ++i) {
    const std::string value(i % 230, static_cast<char>('a' + i % 26));
    const std::string key = i % 4 == 0 ? "key-" + std::to_string(i) : "";
    Message m{key, value};
    if (i % 5 == 0) m.headers = hdrs;
    m.timestamp_ns = 1'700'000'000'000'000'000 + int64_t{i} * 1000;
    const SendResult a = fast->send(m);
    const SendResult b = general->send_batch({&m, 1});
    ASSERT_TRUE(a.ok() && b.ok()) << fast->last_error().to_string() << general->last_error().to_string();
    ASSERT_EQ(a.offset, i);
    ASSERT_EQ(b.offset, i);
    ASSERT_EQ(a.partition, b.partition);
  }
  auto segments = [&](const std::string& topic) {
    std::vector<std::pair<std::string, std::string>> files;
    for (auto& e : std::filesystem::directory_iterator(dir.sub("topics/" + topic + "/0"))) {
      if (e.path().extension() != ".seg") continue;
      std::ifstream f(e.path(), std::ios::binary);
      files.emplace_back(e.path().filename().string(),
                         std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>()));
    }
    std::sort(files.begin(), files.end());
    // How far an owner of the tail announced it may write (the straight
    // line's owned append does, the general path's claims do not) is not
    // part of what the paths must agree on.
    constexpr size_t kDirtyEnd = format::kControlOffset + offsetof(format::SegmentControl, owner_dirty_end);
    for (auto& [name, bytes] : files)
      if (bytes.size() >= kDirtyEnd + 4) std::fill_n(bytes.begin() + kDirtyEnd, 4, '\0');
    return files;
  };
  const auto a = segments("fast");
  const auto b = segments("general");
  ASSERT_EQ(a.size(), b.size());
  ASSERT_GT(a.size(), 3u);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    ASSERT_EQ(a[i].second.size(), b[i].second.size());
    // From the file header's parameters on: its creation time and checksum differ.
    size_t diff = 48;
    while (diff < a[i].second.size() && a[i].second[diff] == b[i].second[diff]) ++diff;
    EXPECT_EQ(diff, a[i].second.size()) << a[i].first << " differs from byte " << diff;
  }
  if (!exclusive) {
    // The shared producer, alone on its topic, came to own the tail: the
    // bytes above are those of the owned append (docs/architecture.md).
    uint64_t tail;
    std::memcpy(&tail, a.back().second.data() + format::kControlOffset, sizeof tail);
    EXPECT_TRUE(format::tail_owned(tail));
  }
  auto v = bus->verify("fast");
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok());
  EXPECT_EQ(v->records, 2000u);
}

TEST(Log, AnExclusiveSendWritesTheBytesTheGeneralPathWrites) {
  expect_send_writes_the_bytes_the_general_path_writes(true);
}
TEST(Log, ASharedSendWritesTheBytesTheGeneralPathWrites) {
  expect_send_writes_the_bytes_the_general_path_writes(false);
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
