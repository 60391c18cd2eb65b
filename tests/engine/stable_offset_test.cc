// The last stable offset and what holds it (docs/exactly-once.md, section
// 5): `describe_topic` and `describe_group` name the transaction whose first
// undecided record holds a partition (identity, epoch, state, whether its
// process is alive, how long on the bus clock), resolve nothing themselves,
// and give a group's lag to the LSO next to its lag to the end.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sluice/sluice.h>
#include <unistd.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ipc/process_registry.h"
#include "producer_format.h"
#include "support/clocked_bus.h"

namespace sluice {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kTimeoutNs = 10'000 * kMs;

class StableOffset : public test::ClockedBusTest {
 protected:
  void SetUp() override {
    ClockedBusTest::SetUp();
    if (HasFatalFailure()) return;
    TopicOptions t;
    t.partitions = 2;
    t.segment_bytes = 64 << 10;  // small files: quick to make, and a few records fill one
    ASSERT_TRUE(bus->create_topic("a", t));
    plain_.emplace(*bus->create_producer("a"));
  }

  TransactionalProducer tx(std::string_view name) {
    TransactionOptions o;
    o.timeout_ns = kTimeoutNs;
    auto t = bus->create_transactional_producer(name, o);
    EXPECT_TRUE(t) << t.error().to_string();
    return std::move(*t);
  }

  // A read-committed member of `group` that commits nothing (it makes the
  // group's offsets file, so describe_group lists the topic).
  Consumer member(std::string_view group, Isolation isolation = Isolation::kReadCommitted) {
    ConsumerOptions o;
    o.isolation = isolation;
    o.auto_commit = false;
    auto c = bus->create_consumer("a", group, o);
    EXPECT_TRUE(c) << c.error().to_string();
    return std::move(*c);
  }

  void send_plain(std::string value, uint32_t partition = 0) {
    ASSERT_TRUE(plain_->send(Message{"", std::move(value)}, partition).ok());
  }

  PartitionInfo topic_partition(uint32_t p) {
    auto d = bus->describe_topic("a");
    EXPECT_TRUE(d) << d.error().to_string();
    return d && p < d->partitions.size() ? d->partitions[p] : PartitionInfo{};
  }

  PartitionLag group_partition(std::string_view group, uint32_t p) {
    auto d = bus->describe_group(group);
    EXPECT_TRUE(d) << d.error().to_string();
    for (const PartitionLag& l : d ? d->partitions : std::vector<PartitionLag>{})
      if (l.topic == "a" && l.partition == p) return l;
    ADD_FAILURE() << "no row for a/" << p;
    return {};
  }

  // Rewrites the identity's control word in the producer table, as a holder
  // that died (or a helper) would have left it.
  void rewrite_control(uint64_t pid, const std::function<uint64_t(uint64_t)>& change) {
    test::rewrite_producer_control(dir.path(), pid, change);
  }

  // An OwnerId of this bus that is dead: a registry slot taken and released.
  ipc::OwnerId dead_owner() const {
    auto r = ipc::ProcessRegistry::attach(dir.path() + "/procs");
    EXPECT_TRUE(r);
    return r->self();
  }

  std::optional<Producer> plain_;
};

TEST_F(StableOffset, AnOpenTransactionHoldsItAndDescribeNamesItWithItsAgeOnTheBusClock) {
  { Consumer g = member("watch"); }
  send_plain("before");  // offset 0
  TransactionalProducer t = tx("payments-1");
  ASSERT_TRUE(t.begin());
  const int64_t began_ms = clock.now_ns() / kMs;
  ASSERT_TRUE((*t.producer("a"))->send(Message{"", "open"}, 0).ok());  // offset 1
  send_plain("after");                                                // offset 2
  clock.advance_ns(2'100 * kMs);

  const PartitionInfo p0 = topic_partition(0);
  EXPECT_EQ(p0.stable_offset, 1u);
  EXPECT_EQ(p0.end_offset, 3u);
  ASSERT_TRUE(p0.held_by);
  EXPECT_EQ(p0.held_by->name, "payments-1");
  EXPECT_EQ(p0.held_by->pid, t.producer_id());
  EXPECT_EQ(p0.held_by->epoch, t.producer_epoch());
  EXPECT_EQ(p0.held_by->state, "ongoing");
  EXPECT_TRUE(p0.held_by->alive) << "its holder is this test";
  EXPECT_EQ(p0.held_by->held_ns, 2'100 * kMs) << "from the held record's timestamp";
  EXPECT_EQ(p0.held_by->deadline_unix_ms, began_ms + kTimeoutNs / kMs);

  const PartitionLag l0 = group_partition("watch", 0);
  EXPECT_EQ(l0.stable_offset, 1u);
  EXPECT_EQ(l0.lag_records, 3u);
  EXPECT_EQ(l0.lag_stable_records, 1u) << "only 'before' is readable, read committed";
  ASSERT_TRUE(l0.held_by);
  EXPECT_EQ(l0.held_by->name, "payments-1");
  EXPECT_EQ(l0.held_by->held_ns, 2'100 * kMs);
}

TEST_F(StableOffset, OnlyTheHeldPartitionNamesAHolder) {
  { Consumer g = member("watch"); }
  send_plain("p1", 1);
  TransactionalProducer t = tx("payments-1");
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE((*t.producer("a"))->send(Message{"", "open"}, 0).ok());
  const PartitionInfo p1 = topic_partition(1);
  EXPECT_EQ(p1.stable_offset, p1.end_offset);
  EXPECT_EQ(p1.end_offset, 1u);
  EXPECT_FALSE(p1.held_by);
  const PartitionLag l1 = group_partition("watch", 1);
  EXPECT_FALSE(l1.held_by);
  EXPECT_EQ(l1.lag_stable_records, l1.lag_records);
  EXPECT_TRUE(topic_partition(0).held_by);
  EXPECT_TRUE(group_partition("watch", 0).held_by);
}

TEST_F(StableOffset, AfterACommitOrAnAbortTheHolderIsGoneAndTheOffsetIsTheEnd) {
  { Consumer g = member("watch"); }
  TransactionalProducer t = tx("payments-1");
  for (bool commit : {true, false}) {
    ASSERT_TRUE(t.begin());
    ASSERT_TRUE((*t.producer("a"))->send(Message{"", "x"}, 0).ok());
    send_plain("after");
    ASSERT_TRUE(topic_partition(0).held_by);
    ASSERT_TRUE(commit ? t.commit() : t.abort());
    const PartitionInfo p0 = topic_partition(0);
    EXPECT_EQ(p0.stable_offset, p0.end_offset) << (commit ? "commit" : "abort");
    EXPECT_FALSE(p0.held_by);
    const PartitionLag l0 = group_partition("watch", 0);
    EXPECT_EQ(l0.stable_offset, l0.end_offset);
    EXPECT_FALSE(l0.held_by);
    EXPECT_EQ(l0.lag_stable_records, l0.lag_records);
  }
}

TEST_F(StableOffset, ADeadHolderShowsAsDeadUntilAReaderAbortsItsTransaction) {
  TransactionalProducer t = tx("payments-1");
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE((*t.producer("a"))->send(Message{"", "open"}, 0).ok());
  const ipc::OwnerId dead = dead_owner();
  rewrite_control(t.producer_id(), [&](uint64_t c) {
    return format::make_producer_control(format::producer_state(c), format::producer_epoch(c), dead,
                                         format::producer_txn(c));
  });
  for (int i = 0; i < 2; ++i) {  // a describe resolves nothing, however long it looks
    const PartitionInfo p0 = topic_partition(0);
    EXPECT_EQ(p0.stable_offset, 0u);
    ASSERT_TRUE(p0.held_by);
    EXPECT_EQ(p0.held_by->state, "ongoing");
    EXPECT_FALSE(p0.held_by->alive);
    clock.advance_ns(5 * kMs);
  }
  Consumer reader = member("readers");
  std::vector<RecordView> out(8);
  for (int polls = 0; polls < 4; ++polls) {  // the reader waits 1 ms at the frame, then aborts it
    ASSERT_TRUE(reader.try_poll(out));
    clock.advance_ns(2 * kMs);
  }
  const PartitionInfo p0 = topic_partition(0);
  EXPECT_EQ(p0.stable_offset, p0.end_offset);
  EXPECT_FALSE(p0.held_by);
}

TEST_F(StableOffset, AFrameOfAFinishedTransactionShowsAsAStraggler) {
  TransactionalProducer t = tx("payments-1");
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE((*t.producer("a"))->send(Message{"", "late"}, 0).ok());
  // As a helper's abort leaves it: READY under the next epoch, the frame undecided.
  rewrite_control(t.producer_id(), [](uint64_t c) {
    return format::make_producer_control(format::kProducerReady, static_cast<uint16_t>(format::producer_epoch(c) + 1),
                                         format::producer_owner(c), format::producer_txn(c));
  });
  const PartitionInfo p0 = topic_partition(0);
  EXPECT_EQ(p0.stable_offset, 0u);
  ASSERT_TRUE(p0.held_by);
  EXPECT_EQ(p0.held_by->state, "straggler");
  EXPECT_EQ(p0.held_by->pid, t.producer_id());
  EXPECT_EQ(p0.held_by->epoch, t.producer_epoch());
}

TEST_F(StableOffset, AGroupPastTheStableOffsetIsShownThePartitionsOffset) {
  TransactionalProducer t = tx("payments-1");
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE((*t.producer("a"))->send(Message{"", "open"}, 0).ok());  // offset 0
  send_plain("after");                                                // offset 1
  ASSERT_TRUE(bus->seek_group("dirty", "a", SeekTarget::end(), 0));
  const PartitionLag l0 = group_partition("dirty", 0);
  EXPECT_EQ(l0.committed, 2u);
  EXPECT_EQ(l0.stable_offset, 0u) << "the partition's LSO, not a walk from the group's position";
  EXPECT_EQ(l0.lag_stable_records, 0u);
  ASSERT_TRUE(l0.held_by);
  EXPECT_EQ(l0.held_by->name, "payments-1");
}

TEST_F(StableOffset, AHolderInAnOlderSegmentIsFoundPastTheNewerOnes) {
  TransactionalProducer t = tx("payments-1");
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE((*t.producer("a"))->send(Message{"", "open"}, 0).ok());  // offset 0, the first segment
  for (int i = 0; i < 300; ++i) send_plain(std::string(1024, 'x'));
  PartitionInfo p0 = topic_partition(0);
  ASSERT_GE(p0.segments.size(), 4u) << "the walk skips unmarked segments between the held one and the newest two";
  EXPECT_EQ(p0.stable_offset, 0u);
  EXPECT_EQ(p0.end_offset, 301u);
  ASSERT_TRUE(p0.held_by);
  EXPECT_EQ(p0.held_by->name, "payments-1");
  ASSERT_TRUE(t.commit());
  p0 = topic_partition(0);
  EXPECT_EQ(p0.stable_offset, 301u);
  EXPECT_FALSE(p0.held_by);
}

}  // namespace
}  // namespace sluice
