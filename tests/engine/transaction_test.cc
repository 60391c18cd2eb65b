// Transactions (docs/exactly-once.md, section 4): all or nothing across
// partitions, topics and group offsets for read-committed readers; aborts
// give their sequences back; a transaction past its deadline is aborted by
// the reader that waits at it; a decided one is carried out by any reader.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sluice/sluice.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "producer_format.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr int64_t kMs = 1'000'000;

class Transactions : public ::testing::Test {
 protected:
  void SetUp() override {
    BusOptions bo;
    bo.clock = &clock_;
    auto b = Bus::open(dir_.path(), bo);
    ASSERT_TRUE(b) << b.error().to_string();
    bus_.emplace(std::move(*b));
    TopicOptions t;
    t.partitions = 2;
    t.segment_bytes = 64 << 10;
    ASSERT_TRUE(bus_->create_topic("a", t));
    t.partitions = 1;
    ASSERT_TRUE(bus_->create_topic("b", t));
  }

  TransactionalProducer tx(std::string name = "xform", int64_t timeout_ns = 10'000 * kMs) {
    TransactionOptions o;
    o.timeout_ns = timeout_ns;
    auto t = bus_->create_transactional_producer(name, o);
    EXPECT_TRUE(t) << t.error().to_string();
    return std::move(*t);
  }

  Consumer reader(std::string_view topic, Isolation isolation, std::string_view group = "") {
    ConsumerOptions o;
    o.isolation = isolation;
    o.auto_commit = false;
    auto c = bus_->create_consumer(topic, group, o);
    EXPECT_TRUE(c) << c.error().to_string();
    return std::move(*c);
  }

  // Values a few non-blocking polls return; the clock moves past the stall
  // check between polls, so a reader waiting at a frame gets to resolve it.
  std::vector<std::string> drain(Consumer& c) {
    std::vector<std::string> got;
    std::vector<RecordView> out(64);
    for (int polls = 0; polls < 6; ++polls) {
      auto n = c.try_poll(out);
      EXPECT_TRUE(n) << n.error().to_string();
      if (!n) break;
      for (size_t k = 0; k < *n; ++k) got.emplace_back(out[k].value);
      clock_.advance_ns(2 * kMs);
    }
    return got;
  }

  // Rewrites the state bits of the identity's control word in the producer
  // table, as a holder that died at that point would have left them.
  void set_slot_state(uint64_t pid, format::ProducerSlotState state, uint16_t epoch_bump = 0) {
    test::set_producer_state(dir_.path(), pid, state, epoch_bump);
  }

  test::TempDir dir_;
  ManualClock clock_;
  std::optional<Bus> bus_;
};

TEST_F(Transactions, ACommitShowsEveryRecordAcrossPartitionsAndTopicsAtOnce) {
  TransactionalProducer t = tx();
  Producer* a = *t.producer("a");
  Producer* b = *t.producer("b");
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE(a->send(Message{"", "a0"}, 0).ok());
  ASSERT_TRUE(a->send(Message{"", "a1"}, 1).ok());
  ASSERT_TRUE(b->send(Message{"", "b0"}, 0).ok());
  Consumer ra = reader("a", Isolation::kReadCommitted);
  Consumer rb = reader("b", Isolation::kReadCommitted);
  Consumer dirty = reader("a", Isolation::kReadUncommitted);
  EXPECT_TRUE(drain(ra).empty());
  EXPECT_TRUE(drain(rb).empty());
  EXPECT_EQ(drain(dirty).size(), 2u) << "read-uncommitted sees the undecided records";
  ASSERT_TRUE(t.commit());
  auto got = drain(ra);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{"a0", "a1"}));
  EXPECT_EQ(drain(rb), std::vector<std::string>{"b0"});
}

TEST_F(Transactions, AnAbortIsNeverSeenReadCommittedAndGivesItsSequencesBack) {
  TransactionalProducer t = tx();
  Producer* a = *t.producer("a");
  ASSERT_TRUE(t.begin());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(a->send(Message{"", "gone"}, 0).ok());
  ASSERT_TRUE(t.abort());
  ASSERT_TRUE(t.begin());
  const SendResult r = a->send(Message{"", "kept"}, 0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.sequence, 0u) << "the aborted sequences are given again";
  ASSERT_TRUE(t.commit());
  Consumer ra = reader("a", Isolation::kReadCommitted);
  EXPECT_EQ(drain(ra), std::vector<std::string>{"kept"});
  EXPECT_EQ(a->send(Message{"", "outside"}, 0).status, SendStatus::kError) << "sends belong in a transaction";
  EXPECT_EQ(a->last_error().code, Errc::kInvalidArgument);
}

TEST_F(Transactions, GroupOffsetsCommitWithTheTransactionAndOnlyThen) {
  { Consumer g = reader("a", Isolation::kReadCommitted, "in"); }  // makes the group's offsets
  TransactionalProducer t = tx();
  Producer* b = *t.producer("b");
  auto committed = [&] {
    auto d = bus_->describe_group("in");
    EXPECT_TRUE(d);
    for (const auto& p : d->partitions)
      if (p.topic == "a" && p.partition == 0) return p.committed;
    return kNoOffset;
  };
  const uint64_t before = committed();
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE(b->send(Message{"", "out"}, 0).ok());
  ASSERT_TRUE(t.add_offset("in", "a", 0, 42));
  ASSERT_TRUE(t.abort());
  EXPECT_EQ(committed(), before);
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE(b->send(Message{"", "out"}, 0).ok());
  ASSERT_TRUE(t.add_offset("in", "a", 0, 42));
  EXPECT_EQ(committed(), before);
  ASSERT_TRUE(t.commit());
  EXPECT_EQ(committed(), 42u);
  EXPECT_FALSE(t.add_offset("nope", "a", 0, 1)) << "outside a transaction";
  // The offset is applied as a CAS from the value seen at add_offset: if the
  // group moved meanwhile (here an admin seek; a late helper's replay is the
  // case that matters), the transaction does not move it back.
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE(t.add_offset("in", "a", 0, 50));
  ASSERT_TRUE(bus_->seek_group("in", "a", SeekTarget::beginning()));
  const uint64_t seeked = committed();
  ASSERT_TRUE(t.commit());
  EXPECT_EQ(committed(), seeked);
}

TEST_F(Transactions, AReaderAbortsATransactionPastItsDeadlineAndTheHolderIsFenced) {
  TransactionalProducer t = tx("slow", 1'000 * kMs);
  Producer* a = *t.producer("a");
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE(a->send(Message{"", "late"}, 0).ok());
  Producer plain = *bus_->create_producer("a");
  ASSERT_TRUE(plain.send(Message{"", "after"}, 0).ok());
  Consumer ra = reader("a", Isolation::kReadCommitted);
  EXPECT_TRUE(drain(ra).empty()) << "held at the open transaction (the last stable offset)";
  clock_.advance_ns(1'000 * kMs);
  EXPECT_EQ(drain(ra), std::vector<std::string>{"after"}) << "the reader aborted it at its deadline";
  const SendResult late = a->send(Message{"", "later"}, 0);
  EXPECT_EQ(late.status, SendStatus::kAborted) << "aborted by a helper, not fenced by a newer instance";
  EXPECT_EQ(a->last_error().code, Errc::kAborted);
  auto c = t.commit();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::kAborted) << c.error().to_string();
  EXPECT_EQ(t.begin().error().code, Errc::kFenced);
  TransactionalProducer again = tx("slow");
  ASSERT_TRUE(again.begin()) << "a new instance goes on";
  ASSERT_TRUE((*again.producer("a"))->send(Message{"", "new"}, 0).ok());
  ASSERT_TRUE(again.commit());
  EXPECT_EQ(drain(ra), std::vector<std::string>{"new"});
}

TEST_F(Transactions, AReaderCarriesOutADecidedCommitWhoseHolderStopped) {
  TransactionalProducer t = tx();
  Producer* a = *t.producer("a");
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE(a->send(Message{"", "x"}, 0).ok());
  ASSERT_TRUE(a->send(Message{"", "y"}, 1).ok());
  // As if the holder died right after its decision CAS, before any flip.
  set_slot_state(t.producer_id(), format::kProducerCommitting);
  Consumer ra = reader("a", Isolation::kReadCommitted);
  auto got = drain(ra);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{"x", "y"}));
}

TEST_F(Transactions, AStragglerOfAnEarlierEpochDoesNotHoldReadersBehindTheNextTransaction) {
  TransactionalProducer t = tx();
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE((*t.producer("a"))->send(Message{"", "straggler"}, 0).ok());
  // As if a helper aborted that transaction (epoch + 1) without seeing this
  // frame, and the next instance's transaction is now open and alive.
  set_slot_state(t.producer_id(), format::kProducerOngoing, 1);
  Producer plain = *bus_->create_producer("a");
  ASSERT_TRUE(plain.send(Message{"", "after"}, 0).ok());
  Consumer ra = reader("a", Isolation::kReadCommitted);
  EXPECT_EQ(drain(ra), std::vector<std::string>{"after"});
}

TEST_F(Transactions, ANewInstanceSettlesWhatTheOldOneLeftOpen) {
  TransactionalProducer old = tx();
  ASSERT_TRUE(old.begin());
  ASSERT_TRUE((*old.producer("a"))->send(Message{"", "orphan"}, 0).ok());
  TransactionalProducer fresh = tx();  // aborts the open transaction, fences `old`
  Consumer ra = reader("a", Isolation::kReadCommitted);
  EXPECT_TRUE(drain(ra).empty());
  Consumer dirty = reader("a", Isolation::kReadUncommitted);
  EXPECT_TRUE(drain(dirty).empty()) << "aborted frames are skipped by every reader";
  EXPECT_EQ(old.commit().error().code, Errc::kFenced);
  ASSERT_TRUE(fresh.begin());
  const SendResult r = (*fresh.producer("a"))->send(Message{"", "ok"}, 0);
  EXPECT_EQ(r.sequence, 0u);
  ASSERT_TRUE(fresh.commit());
  EXPECT_EQ(drain(ra), std::vector<std::string>{"ok"});
}

TEST_F(Transactions, TheLastStableOffsetStopsAtTheOpenTransactionUntilItIsDecided) {
  { Consumer g = reader("a", Isolation::kReadCommitted, "watch"); }
  Producer plain = *bus_->create_producer("a");
  ASSERT_TRUE(plain.send(Message{"", "before"}, 0).ok());  // offset 0
  TransactionalProducer t = tx();
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE((*t.producer("a"))->send(Message{"", "open"}, 0).ok());  // offset 1
  ASSERT_TRUE(plain.send(Message{"", "after"}, 0).ok());               // offset 2
  auto lso = [&] {
    auto d = bus_->describe_group("watch");
    EXPECT_TRUE(d);
    for (const auto& p : d->partitions)
      if (p.topic == "a" && p.partition == 0) return std::pair{p.stable_offset, p.end_offset};
    return std::pair{kNoOffset, kNoOffset};
  };
  EXPECT_EQ(lso(), (std::pair<uint64_t, uint64_t>{1, 3}));
  ASSERT_TRUE(t.commit());
  EXPECT_EQ(lso(), (std::pair<uint64_t, uint64_t>{3, 3}));
}

TEST_F(Transactions, EachConsumerStatesItsGuaranteeAndABoundOneIsExactlyOnce) {
  for (Guarantee g : {Guarantee::kAtLeastOnce, Guarantee::kAtMostOnce}) {
    ConsumerOptions o;
    o.guarantee = g;
    o.isolation = Isolation::kReadUncommitted;
    auto c = bus_->create_consumer("b", g == Guarantee::kAtMostOnce ? "amo" : "alo", o);
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->guarantee(), g);
    EXPECT_EQ(c->isolation(), Isolation::kReadUncommitted);
  }
  // Whatever it was asked for, a consumer whose positions commit with the
  // transaction's output is exactly-once within the bus, and read-committed.
  ConsumerOptions asked;
  asked.guarantee = Guarantee::kAtMostOnce;
  asked.isolation = Isolation::kReadUncommitted;
  TransactionalProducer t = tx();
  Consumer* bound = *t.consumer("b", "xform-in", asked);
  EXPECT_EQ(bound->guarantee(), Guarantee::kExactlyOnce);
  EXPECT_EQ(bound->isolation(), Isolation::kReadCommitted);
}

TEST_F(Transactions, ABoundConsumersOffsetsMoveWithCommitsAndRewindOnAborts) {
  Producer in = *bus_->create_producer("b");
  for (const char* v : {"r0", "r1", "r2", "r3"}) ASSERT_TRUE(in.send(Message{"", v}, 0).ok());
  TransactionalProducer t = tx();
  Consumer* c = *t.consumer("b", "xform-in");
  EXPECT_EQ(*t.consumer("b", "xform-in"), c) << "made once, kept";
  Producer* out = *t.producer("a");
  auto committed = [&] {
    auto d = bus_->describe_group("xform-in");
    EXPECT_TRUE(d);
    return d && !d->partitions.empty() ? d->partitions[0].committed : kNoOffset;
  };
  // Consume, transform, produce; commit: the offset moves with the output.
  auto transform = [&](size_t max) {
    std::vector<RecordView> got(max);
    auto n = c->try_poll(got);
    EXPECT_TRUE(n);
    std::vector<std::string> values;
    for (size_t k = 0; n && k < *n; ++k) {
      values.emplace_back(got[k].value);
      EXPECT_TRUE(out->send(Message{"", "T" + values.back()}, 0).ok());
    }
    return values;
  };
  ASSERT_TRUE(t.begin());
  EXPECT_EQ(transform(2), (std::vector<std::string>{"r0", "r1"}));
  EXPECT_NE(committed(), 2u) << "not before the commit";
  ASSERT_TRUE(t.commit());
  EXPECT_EQ(committed(), 2u);
  // An abort: nothing of it is visible, and the consumer polls its records again.
  ASSERT_TRUE(t.begin());
  EXPECT_EQ(transform(2), (std::vector<std::string>{"r2", "r3"}));
  ASSERT_TRUE(t.abort());
  EXPECT_EQ(committed(), 2u);
  EXPECT_EQ(c->position(0), 2u) << "rewound";
  ASSERT_TRUE(t.begin());
  EXPECT_EQ(transform(4), (std::vector<std::string>{"r2", "r3"}));
  ASSERT_TRUE(t.commit());
  EXPECT_EQ(committed(), 4u);
  Consumer check = reader("a", Isolation::kReadCommitted);
  EXPECT_EQ(drain(check), (std::vector<std::string>{"Tr0", "Tr1", "Tr2", "Tr3"})) << "each input once";
  // A transaction that consumed nothing commits no offset; the consumer's
  // own commits are refused (its offsets move only with transactions).
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE(t.commit());
  EXPECT_EQ(committed(), 4u);
  EXPECT_EQ(c->commit_sync().error().code, Errc::kInvalidArgument);
  EXPECT_EQ(c->commit(0, 0, true).error().code, Errc::kInvalidArgument);
  c->commit_async();
  EXPECT_EQ(committed(), 4u);
  EXPECT_EQ(t.consumer("b", "").error().code, Errc::kInvalidName);
  EXPECT_FALSE(t.consumer("nope", "g"));
}

TEST_F(Transactions, ABoundConsumerRewindsWhenAHelperAbortedItsTransaction) {
  Producer in = *bus_->create_producer("b");
  ASSERT_TRUE(in.send(Message{"", "r0"}, 0).ok());
  TransactionalProducer t = tx("late", 5 * kMs);
  Consumer* c = *t.consumer("b", "late-in");
  ASSERT_TRUE(t.begin());
  std::vector<RecordView> got(4);
  ASSERT_EQ(*c->try_poll(got), 1u);
  ASSERT_TRUE((*t.producer("a"))->send(Message{"", "out"}, 0).ok());
  // Past its deadline, a waiting reader aborts it and fences the holder.
  clock_.advance_ns(10 * kMs);
  Consumer waiting = reader("a", Isolation::kReadCommitted);
  EXPECT_TRUE(drain(waiting).empty());
  EXPECT_EQ(t.commit().error().code, Errc::kAborted);
  EXPECT_EQ(c->position(0), 0u) << "the lost transaction's input is polled again";
}

TEST_F(Transactions, BadUseIsRefused) {
  EXPECT_EQ(bus_->create_transactional_producer("").error().code, Errc::kInvalidName);
  TransactionOptions o;
  o.timeout_ns = 0;
  EXPECT_EQ(bus_->create_transactional_producer("x", o).error().code, Errc::kInvalidArgument);
  TransactionalProducer t = tx();
  EXPECT_FALSE(t.commit());
  EXPECT_FALSE(t.abort());
  EXPECT_FALSE(t.producer("nope"));
  ASSERT_TRUE(t.begin());
  EXPECT_FALSE(t.begin()) << "one transaction at a time";
  Claim claim;
  ClaimSpec spec;
  spec.value_bytes = 4;
  EXPECT_EQ((*t.producer("a"))->try_claim(spec, claim), SendStatus::kError);
}

}  // namespace
}  // namespace sluice
