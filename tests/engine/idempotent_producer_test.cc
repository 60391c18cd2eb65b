// Idempotent producers (docs/exactly-once.md, sections 1-3): identities,
// sequences per partition, duplicates, fencing, and the takeover that
// rebuilds a partition's state from the log.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sluice/sluice.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include "ipc/process_registry.h"
#include "producer_format.h"
#include "producer_table.h"
#include "support/test_support.h"

namespace sluice {
namespace {

class IdempotentProducer : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = Bus::open(dir_.path());
    ASSERT_TRUE(b) << b.error().to_string();
    bus_.emplace(std::move(*b));
    TopicOptions t;
    t.partitions = 2;
    t.segment_bytes = 64 << 10;
    ASSERT_TRUE(bus_->create_topic("t", t));
  }

  Producer producer(std::string name, bool exclusive = false) {
    ProducerOptions o;
    o.idempotent = true;
    o.producer_name = std::move(name);
    o.exclusive = exclusive;
    auto p = bus_->create_producer("t", o);
    EXPECT_TRUE(p) << p.error().to_string();
    return std::move(*p);
  }

  uint64_t end_offset(uint32_t partition) {
    auto d = bus_->describe_topic("t");
    EXPECT_TRUE(d);
    return d->partitions.at(partition).end_offset;
  }

  // Every record of a partition: (producer id, sequence, value).
  struct Seen {
    uint64_t pid;
    uint32_t sequence;
    std::string value;
  };
  std::vector<Seen> read(uint32_t partition) {
    ConsumerOptions o;
    o.partitions = {partition};
    o.auto_commit = false;
    auto c = bus_->create_consumer("t", "", o);
    EXPECT_TRUE(c);
    std::vector<Seen> out;
    std::vector<RecordView> v(64);
    for (;;) {
      auto n = c->try_poll(v);
      EXPECT_TRUE(n);
      if (!n || *n == 0) break;
      for (size_t i = 0; i < *n; ++i) out.push_back({v[i].producer_id, v[i].sequence, std::string(v[i].value)});
    }
    return out;
  }

  test::TempDir dir_;
  std::optional<Bus> bus_;
};

TEST_F(IdempotentProducer, RecordsCarryTheIdentityAndDenseSequencesPerPartition) {
  Producer p = producer("billing");
  ASSERT_NE(p.producer_id(), 0u);
  for (int i = 0; i < 3; ++i) {
    const SendResult r = p.send(Message{"", "a" + std::to_string(i)}, 0);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.sequence, static_cast<uint32_t>(i));
  }
  EXPECT_EQ(p.send(Message{"", "b0"}, 1).sequence, 0u) << "sequences are per partition";
  const std::vector<Message> batch{{"", "a3"}, {"", "a4"}, {"", "a5"}};
  const SendResult b = p.send_batch(batch, 0);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b.sequence, 3u);
  EXPECT_EQ(*p.next_sequence(0), 6u);
  const auto seen = read(0);
  ASSERT_EQ(seen.size(), 6u);
  for (uint32_t i = 0; i < 6; ++i) {
    EXPECT_EQ(seen[i].pid, p.producer_id());
    EXPECT_EQ(seen[i].sequence, i);
  }
}

TEST_F(IdempotentProducer, ADuplicateSequenceAppendsNothingAndReturnsTheOriginalOffset) {
  Producer p = producer("billing");
  std::vector<uint64_t> offsets;
  for (int i = 0; i < 5; ++i) offsets.push_back(p.send(Message{"", "v" + std::to_string(i)}, 0).offset);
  const SendResult dup = p.send_sequenced(Message{"", "v2 again"}, 2, 0);
  ASSERT_TRUE(dup.ok());
  EXPECT_TRUE(dup.duplicate);
  EXPECT_EQ(dup.offset, offsets[2]);
  EXPECT_EQ(end_offset(0), 5u);
  const SendResult next = p.send_sequenced(Message{"", "v5"}, 5, 0);
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next.duplicate);
  EXPECT_EQ(next.offset, 5u);
  const SendResult gap = p.send_sequenced(Message{"", "v7"}, 7, 0);
  EXPECT_EQ(gap.status, SendStatus::kOutOfOrderSequence);
  EXPECT_EQ(p.last_error().code, Errc::kOutOfOrderSequence);
  EXPECT_EQ(end_offset(0), 6u);
}

TEST_F(IdempotentProducer, AReopenedNameContinuesItsSequencesAndStillKnowsItsDuplicates) {
  uint64_t pid = 0;
  uint16_t epoch = 0;
  {
    Producer p = producer("billing");
    pid = p.producer_id();
    epoch = p.producer_epoch();
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(p.send(Message{"", "v"}, 0).ok());
    const std::vector<Message> batch{{"", "b"}, {"", "b"}, {"", "b"}};
    ASSERT_TRUE(p.send_batch(batch, 0).ok());  // sequences 4..6 at offsets 4..6
  }
  // Another bus handle: as a restarted process would.
  auto other = Bus::open(dir_.path());
  ASSERT_TRUE(other);
  ProducerOptions o;
  o.idempotent = true;
  o.producer_name = "billing";
  auto q = other->create_producer("t", o);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->producer_id(), pid);
  EXPECT_EQ(q->producer_epoch(), epoch + 1);
  EXPECT_EQ(*q->next_sequence(0), 7u);
  EXPECT_EQ(*q->next_sequence(1), 0u);
  const SendResult dup = q->send_sequenced(Message{"", "again"}, 5, 0);
  EXPECT_TRUE(dup.duplicate);
  EXPECT_EQ(dup.offset, 5u) << "inside a batch: its base offset plus the index";
  EXPECT_EQ(end_offset(0), 7u);
}

TEST_F(IdempotentProducer, OpeningTheNameAgainFencesTheOldInstance) {
  Producer old = producer("billing");
  ASSERT_TRUE(old.send(Message{"", "before"}, 0).ok());
  Producer fresh = producer("billing");
  const SendResult r = old.send(Message{"", "zombie"}, 0);
  EXPECT_EQ(r.status, SendStatus::kFenced);
  EXPECT_EQ(old.last_error().code, Errc::kFenced);
  EXPECT_EQ(old.send(Message{"", "zombie again"}, 1).status, SendStatus::kFenced) << "fenced for good";
  const SendResult ok = fresh.send(Message{"", "after"}, 0);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.sequence, 1u);
  // The zombie's claimed frame was aborted, never delivered.
  const auto seen = read(0);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].value, "before");
  EXPECT_EQ(seen[1].value, "after");
}

TEST_F(IdempotentProducer, AFencedExclusiveInstanceLetsTheNewOneHaveThePartition) {
  Producer old = producer("ingest", true);
  ASSERT_TRUE(old.send(Message{"", "a"}, 0).ok());
  Producer fresh = producer("ingest", true);
  EXPECT_EQ(fresh.send(Message{"", "b"}, 0).status, SendStatus::kBusy) << "the old instance still holds the writer lock";
  EXPECT_EQ(fresh.send_sequenced(Message{"", "b"}, 1, 0).status, SendStatus::kBusy);
  EXPECT_EQ(fresh.last_error().code, Errc::kBusy);
  EXPECT_EQ(old.send(Message{"", "zombie"}, 0).status, SendStatus::kFenced);
  const SendResult r = fresh.send(Message{"", "b"}, 0);
  ASSERT_TRUE(r.ok()) << fresh.last_error().to_string();
  EXPECT_EQ(r.sequence, 1u);
  const auto seen = read(0);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].value, "b");
}

TEST_F(IdempotentProducer, UnnamedIdentitiesAreDistinctAndTheirSlotsComeBackWithANewGeneration) {
  ProducerOptions o;
  o.idempotent = true;
  uint64_t first = 0;
  {
    auto a = bus_->create_producer("t", o);
    auto b = bus_->create_producer("t", o);
    ASSERT_TRUE(a && b);
    EXPECT_NE(a->producer_id(), b->producer_id());
    first = a->producer_id();
  }
  auto c = bus_->create_producer("t", o);
  ASSERT_TRUE(c);
  EXPECT_NE(c->producer_id(), first) << "a reused slot is a new identity";
  EXPECT_EQ(format::pid_slot(c->producer_id()), format::pid_slot(first)) << "the freed slot was reused";
  EXPECT_EQ(*c->next_sequence(0), 0u);
}

TEST_F(IdempotentProducer, AReclaimedNameComesBackAsANewIdentityWithFreshSequences) {
  // A two-slot table on a manual clock, made before the bus makes its own.
  ManualClock clock;
  auto table = ProducerTable::open(dir_.path(), clock, 2);
  ASSERT_TRUE(table);
  auto me = ipc::ProcessRegistry::attach(dir_.path() + "/procs");
  ASSERT_TRUE(me);
  uint64_t old_pid = 0;
  {
    auto gone = Bus::open(dir_.path());  // the handle of a process that dies
    ASSERT_TRUE(gone);
    ProducerOptions o;
    o.idempotent = true;
    o.producer_name = "billing";
    auto p = gone->create_producer("t", o);
    ASSERT_TRUE(p);
    old_pid = p->producer_id();
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(p->send(Message{"", "old"}, 0).ok());
  }
  Producer filler = producer("filler");
  // Full: the first try sees "billing" idle; a week later a new identity
  // (unnamed, so that it frees the slot again at its close) takes its slot.
  auto busy = (*table)->open_identity("", *me);
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code, Errc::kBusy);
  clock.advance_ns(kProducerIdleExpirationMs * 1'000'000);
  auto unnamed = (*table)->open_identity("", *me);
  ASSERT_TRUE(unnamed) << unnamed.error().to_string();
  EXPECT_EQ(unnamed->slot, format::pid_slot(old_pid));
  (*table)->close_identity(*unnamed);

  Producer p = producer("billing");
  EXPECT_NE(p.producer_id(), old_pid) << "the name was forgotten: a new identity";
  EXPECT_EQ(*p.next_sequence(0), 0u) << "and fresh sequences";
  const SendResult r = p.send(Message{"", "new"}, 0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.sequence, 0u);
  EXPECT_FALSE(r.duplicate);
  const auto seen = read(0);
  ASSERT_EQ(seen.size(), 4u) << "the old pid's frames stay in the log";
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(seen[i].pid, old_pid);
    EXPECT_EQ(seen[i].sequence, static_cast<uint32_t>(i));
  }
  EXPECT_EQ(seen[3].pid, p.producer_id());
  EXPECT_EQ(seen[3].sequence, 0u);
}

TEST_F(IdempotentProducer, AnOpenClaimHoldsTheNextSequence) {
  Producer p = producer("billing");
  Claim claim;
  ClaimSpec spec;
  spec.value_bytes = 4;
  spec.partition = 0;
  ASSERT_EQ(p.try_claim(spec, claim), SendStatus::kOk);
  EXPECT_EQ(p.send(Message{"", "x"}, 0).status, SendStatus::kError);
  EXPECT_EQ(p.last_error().code, Errc::kInvalidArgument);
  claim.abort();
  EXPECT_EQ(*p.next_sequence(0), 0u) << "an aborted claim gives its sequence back";
  ASSERT_EQ(p.try_claim(spec, claim), SendStatus::kOk);
  std::memcpy(claim.value().data(), "abcd", 4);
  ASSERT_EQ(claim.commit(), SendStatus::kOk);
  EXPECT_EQ(*p.next_sequence(0), 1u);
  const auto seen = read(0);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].sequence, 0u);
}

TEST_F(IdempotentProducer, TheTakeoverWalksTheLogWhenTheEntryLostItsLastFrames) {
  {
    Producer p = producer("billing");
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(p.send(Message{"", "v"}, 0).ok());
  }
  // As if the writer died between its commits and its entry updates: the
  // entry remembers nothing (head 0), only its origin.
  const std::string path = dir_.path() + "/topics/t/0/producers";
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  for (uint32_t i = 0; i < format::kProducerEntriesDefault; ++i) {
    const off_t at = static_cast<off_t>(format::kProducerEntriesOffset + i * sizeof(format::ProducerEntry));
    uint64_t pid = 0;
    ASSERT_EQ(::pread(fd, &pid, sizeof pid, at), 8);
    if (pid == 0) continue;
    const uint64_t zero = 0;
    ASSERT_EQ(::pwrite(fd, &zero, sizeof zero, at + offsetof(format::ProducerEntry, head)), 8);
  }
  ::close(fd);
  Producer q = producer("billing");
  EXPECT_EQ(*q.next_sequence(0), 10u);
  const SendResult dup = q.send_sequenced(Message{"", "v"}, 9, 0);
  EXPECT_TRUE(dup.duplicate);
  EXPECT_EQ(dup.offset, 9u) << "the walk refilled the entry";
}

TEST_F(IdempotentProducer, AnAsyncProducerBatchesCarryDenseSequences) {
  AsyncProducerOptions o;
  o.producer.idempotent = true;
  o.producer.producer_name = "async";
  o.max_batch_records = 16;
  std::vector<uint32_t> completed;
  {
    auto a = AsyncProducer::create(*bus_, "t", o);
    ASSERT_TRUE(a) << a.error().to_string();
    for (int i = 0; i < 500; ++i)
      ASSERT_EQ(a->send(Message{"", "v"}, 0, [&](const SendResult& r) { completed.push_back(r.sequence); }),
                SendStatus::kOk);
    ASSERT_TRUE(a->flush(10'000'000'000));
  }
  ASSERT_EQ(completed.size(), 500u);
  for (uint32_t i = 0; i < 500; ++i) EXPECT_EQ(completed[i], i);
  const auto seen = read(0);
  ASSERT_EQ(seen.size(), 500u);
  for (uint32_t i = 0; i < 500; ++i) EXPECT_EQ(seen[i].sequence, i);
  Producer again = producer("async");
  EXPECT_EQ(*again.next_sequence(0), 500u) << "the same identity continues after the async producer";
}

TEST_F(IdempotentProducer, BadUseIsRefusedWithAClearError) {
  ProducerOptions o;
  o.producer_name = "x";
  EXPECT_EQ(bus_->create_producer("t", o).error().code, Errc::kInvalidArgument) << "a name without idempotence";
  o.idempotent = true;
  o.producer_name = "a/b";
  EXPECT_EQ(bus_->create_producer("t", o).error().code, Errc::kInvalidName);
  auto plain = bus_->create_producer("t");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->producer_id(), 0u);
  EXPECT_FALSE(plain->next_sequence(0));
  EXPECT_EQ(plain->send_sequenced(Message{"", "v"}, 0, 0).status, SendStatus::kError);
  Producer p = producer("billing");
  EXPECT_FALSE(p.next_sequence(7)) << "partition out of range";
}

}  // namespace
}  // namespace sluice
