#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <string>
#include <vector>

#include "support/test_support.h"

namespace sluice {
namespace {

// Interleaved shared writers of small records each walk from the segment's
// tail hint over the other's frames; they must get dense, distinct offsets
// in send order, and the end offset must see every claim, across segment
// rolls too and for a writer that joins late.
TEST(ClaimWalk, InterleavedSharedWritersGetDenseOffsetsInSendOrder) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  TopicOptions t;
  t.partitions = 1;
  t.segment_bytes = 64 << 10;  // ~900 of these frames: the run rolls 3 times
  ASSERT_TRUE(bus->create_topic("t", t));
  auto a = bus->create_producer("t");
  auto b = bus->create_producer("t");
  ASSERT_TRUE(a && b);
  std::vector<std::string> sent;
  for (int i = 0; i < 3000; ++i) {
    // Uneven runs of each writer.
    Producer& p = (i % 7 < 4) ? *a : *b;
    sent.push_back((&p == &*a ? "a" : "b") + std::to_string(i));
    const SendResult r = p.send(Message{{}, sent.back()});
    ASSERT_TRUE(r.ok()) << i;
    ASSERT_EQ(r.offset, static_cast<uint64_t>(i));
    if (i == 1500) {  // a writer that joins late
      auto c = bus->create_producer("t");
      ASSERT_TRUE(c);
      sent.push_back("c");
      const SendResult rc = c->send(Message{{}, sent.back()});
      ASSERT_TRUE(rc.ok());
      ASSERT_EQ(rc.offset, 1501u);
      ++i;
    }
  }
  auto desc = bus->describe_topic("t");
  ASSERT_TRUE(desc);
  EXPECT_EQ(desc->partitions.at(0).end_offset, sent.size());

  auto consumer = bus->create_consumer("t", "");
  ASSERT_TRUE(consumer);
  std::vector<RecordView> out(64);
  size_t got = 0;
  while (got < sent.size()) {
    auto n = consumer->try_poll(out);
    ASSERT_TRUE(n);
    ASSERT_GT(*n, 0u) << "stopped at " << got;
    for (size_t k = 0; k < *n; ++k, ++got) {
      EXPECT_EQ(out[k].offset, got);
      EXPECT_EQ(out[k].value, sent[got]);
    }
  }
}

}  // namespace
}  // namespace sluice
