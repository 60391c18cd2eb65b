// Queue publishes inside transactions (docs/exactly-once.md, section 4,
// "Queues", plan step 7): a bound publisher's messages are PREPARED frames
// of the transaction, and workers read queue levels read-committed. On a
// manual clock: an aborted transaction's messages are settled and never
// delivered; a committed one's are delivered once, together with its topic
// records; a worker waits at an undecided message while other levels flow;
// a transaction past its timeout is aborted by the worker waiting at it;
// de-duplication ids, delays, priorities and FIFO groups behave as for
// plain publishes; a de-duplication id held by a transaction that is over
// (fenced by a newer instance, aborted at its timeout, or committed by a
// decision its stopped holder did not carry out) is taken over or answered
// at once by the next publisher of the id, although the holder's process
// lives (docs/exactly-once.md, section 11). A holder killed by SIGKILL, and
// one SIGSTOPped, are in tests/process/transaction_queue_process_test.cc.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sluice/sluice.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "producer_format.h"
#include "support/clocked_bus.h"
#include "support/test_support.h"

namespace sluice {
namespace {

using test::queue_message;

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kSec = 1'000 * kMs;

struct TransactionalQueue : test::ClockedBusTest {
  void SetUp() override {
    ClockedBusTest::SetUp();
    if (HasFatalFailure()) return;
    QueueOptions o = test::two_level_queue();
    o.retry.jitter_ns = 0;
    ASSERT_TRUE(bus->create_queue("mail", o));
    TopicOptions t;
    t.partitions = 1;
    t.segment_bytes = 64 << 10;
    ASSERT_TRUE(bus->create_topic("invoices", t));
    auto w = bus->create_worker("mail");
    ASSERT_TRUE(w) << w.error().to_string();
    worker.emplace(std::move(*w));
  }

  std::optional<Worker> worker;

  TransactionalProducer tx(std::string name = "xform", int64_t timeout_ns = 10 * kSec) {
    TransactionOptions o;
    o.timeout_ns = timeout_ns;
    auto t = bus->create_transactional_producer(name, o);
    EXPECT_TRUE(t) << t.error().to_string();
    return std::move(*t);
  }

  // Begins a transaction of `t` and publishes `m` in it through the
  // transaction's publisher of "mail".
  PublishResult begin_and_publish(TransactionalProducer& t, const QueueMessage& m) {
    auto q = t.queue("mail");
    EXPECT_TRUE(q) << q.error().to_string();
    if (!q) return {};
    EXPECT_TRUE(t.begin());
    const PublishResult r = (*q)->publish(m);
    EXPECT_TRUE(r.ok()) << (*q)->last_error().to_string();
    return r;
  }

  // `t`'s commit is refused with `code`.
  static void expect_commit_refused(TransactionalProducer& t, Errc code) {
    auto c = t.commit();
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, code) << c.error().to_string();
  }

  // `m`'s id answers for the message at `offset`, which the queue delivers
  // once.
  void expect_once(const QueueMessage& m, uint64_t offset) {
    const PublishResult again = publish_plain(m);
    EXPECT_TRUE(again.duplicate);
    EXPECT_EQ(again.offset, offset);
    EXPECT_EQ(drain(), (std::vector<std::string>{std::string(m.value)}));
  }

  // Publishes `m` with a plain publisher of "mail", which must succeed (it
  // must not wait for another publisher of its id and get kBusy).
  PublishResult publish_plain(const QueueMessage& m) {
    auto p = bus->create_queue_publisher("mail");
    EXPECT_TRUE(p) << p.error().to_string();
    if (!p) return {};
    const PublishResult r = p->publish(m);
    EXPECT_TRUE(r.ok()) << "status " << static_cast<int>(r.status) << ": " << p->last_error().to_string();
    return r;
  }

  void publish_plain(std::string_view value, uint32_t priority = 0) {
    publish_plain(queue_message(value, priority));
  }

  // What the worker receives in a few non-blocking receives, acking each
  // unless told not to; the clock moves past the stall check (1 ms) and the
  // sweep interval between them, so a worker waiting at an undecided
  // message gets to resolve it.
  std::vector<std::string> drain(bool ack = true, std::vector<Delivery>* kept = nullptr) {
    std::vector<std::string> got;
    for (int empty = 0; empty < 4;) {
      Delivery d[1];
      auto n = worker->receive(d, 0);
      EXPECT_TRUE(n) << n.error().to_string();
      if (!n) break;
      if (*n == 0) {
        ++empty;
        clock.advance_ns(2 * kMs);
        continue;
      }
      got.emplace_back(d[0].value());
      if (ack)
        EXPECT_TRUE(d[0].ack());
      else if (kept)
        kept->push_back(std::move(d[0]));
    }
    return got;
  }

  // The group's committed offset of invoices/0 (kNoOffset: none).
  uint64_t committed(std::string_view group) {
    auto g = bus->describe_group(group);
    EXPECT_TRUE(g) << g.error().to_string();
    for (const PartitionLag& p : g->partitions)
      if (p.topic == "invoices" && p.partition == 0) return p.committed;
    return kNoOffset;
  }

  // Makes the group's offsets file (a consumer of the group does) at 0.
  void make_group(std::string_view group) {
    ConsumerOptions co;
    co.auto_commit = false;
    auto c = bus->create_consumer("invoices", group, co);
    ASSERT_TRUE(c) << c.error().to_string();
    ASSERT_TRUE(c->commit(0, 0, true));
  }

  // Rewrites the state bits of the identity's control word in the producer
  // table, as a holder that died at that point would have left them.
  void set_slot_state(uint64_t pid, format::ProducerSlotState state) { test::set_producer_state(dir.path(), pid, state); }

  QueueLevelStats level(uint32_t l) {
    auto s = bus->queue_stats("mail");
    EXPECT_TRUE(s) << s.error().to_string();
    return s->levels.at(l);
  }
};

TEST_F(TransactionalQueue, MessagesOfAnAbortedTransactionAreNeverDelivered) {
  make_group("billing");
  TransactionalProducer t = tx();
  auto q = t.queue("mail");
  ASSERT_TRUE(q) << q.error().to_string();
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE((*q)->publish(queue_message("aborted-1")).ok()) << (*q)->last_error().to_string();
  ASSERT_TRUE((*q)->publish(queue_message("aborted-2")).ok());
  ASSERT_TRUE(t.add_offset("billing", "invoices", 0, 7));
  EXPECT_TRUE(drain().empty()) << "undecided";
  ASSERT_TRUE(t.abort());
  EXPECT_EQ(committed("billing"), 0u) << "nor its offsets";
  publish_plain("plain");
  EXPECT_EQ(drain(), (std::vector<std::string>{"plain"}));
  const QueueLevelStats l = level(0);
  EXPECT_EQ(l.published, 3u);
  EXPECT_EQ(l.settled_below, 3u) << "the aborted publishes are settled, the floor passes them";
  EXPECT_EQ(l.depth, 0u);
  EXPECT_EQ(l.received, 1u);
}

TEST_F(TransactionalQueue, MessagesOfACommittedTransactionAreDeliveredOnceWithItsRecordsAndOffsets) {
  TransactionalProducer t = tx();
  auto q = t.queue("mail");
  ASSERT_TRUE(q);
  auto out = t.producer("invoices");
  ASSERT_TRUE(out);
  ConsumerOptions co;
  co.auto_commit = false;
  auto reader = bus->create_consumer("invoices", "", co);
  ASSERT_TRUE(reader);
  std::vector<RecordView> records(8);

  make_group("billing");
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE((*out)->send(Message{"", "invoice-1"}).ok());
  ASSERT_TRUE((*q)->publish(queue_message("mail-1")).ok());
  ASSERT_TRUE((*q)->publish(queue_message("mail-2")).ok());
  ASSERT_TRUE(t.add_offset("billing", "invoices", 0, 7));
  EXPECT_TRUE(drain().empty());
  EXPECT_EQ(*reader->try_poll(records), 0u);
  EXPECT_EQ(committed("billing"), 0u);
  ASSERT_TRUE(t.commit());
  EXPECT_EQ(committed("billing"), 7u);

  EXPECT_EQ(*reader->try_poll(records), 1u);
  EXPECT_EQ(drain(), (std::vector<std::string>{"mail-1", "mail-2"}));
  clock.advance_ns(60 * kSec);  // past any lease: nothing comes back
  EXPECT_TRUE(drain().empty());
  const QueueLevelStats l = level(0);
  EXPECT_EQ(l.received, 2u);
  EXPECT_EQ(l.acked, 2u);
  EXPECT_EQ(l.depth, 0u);
}

TEST_F(TransactionalQueue, AWorkerDoesNotPassAnUndecidedMessageButOtherLevelsFlow) {
  TransactionalProducer t = tx();
  ASSERT_TRUE(begin_and_publish(t, queue_message("txn-low", 0)).ok());
  publish_plain("plain-low", 0);   // committed, but behind the undecided one
  publish_plain("plain-high", 1);  // another level
  EXPECT_EQ(drain(), (std::vector<std::string>{"plain-high"}));
  EXPECT_EQ(level(0).received, 0u) << "deliver_next stays at the undecided message";
  ASSERT_TRUE(t.commit());
  EXPECT_EQ(drain(), (std::vector<std::string>{"txn-low", "plain-low"})) << "in publish order";
}

TEST_F(TransactionalQueue, ATransactionPastItsTimeoutIsAbortedByTheWorkerWaitingAtIt) {
  TransactionalProducer t = tx("late", 100 * kMs);
  ASSERT_TRUE(begin_and_publish(t, queue_message("late")).ok());
  publish_plain("behind");
  EXPECT_TRUE(drain().empty());
  clock.advance_ns(200 * kMs);
  EXPECT_EQ(drain(), (std::vector<std::string>{"behind"})) << "the worker aborted it and moved on";
  expect_commit_refused(t, Errc::kAborted);
  EXPECT_EQ(level(0).settled_below, 2u);
}

TEST_F(TransactionalQueue, AWorkerCarriesOutADecidedCommitWhoseHolderStopped) {
  TransactionalProducer t = tx();
  auto q = t.queue("mail");
  ASSERT_TRUE(q);
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE((*q)->publish(queue_message("low", 0)).ok());
  ASSERT_TRUE((*q)->publish(queue_message("high", 1)).ok());
  // As if the holder died right after its decision CAS, before any flip.
  set_slot_state(t.producer_id(), format::kProducerCommitting);
  EXPECT_EQ(drain(), (std::vector<std::string>{"high", "low"}));
}

TEST_F(TransactionalQueue, ADedupIdCountsOnlyOnceItsTransactionCommits) {
  TransactionalProducer t = tx();
  auto q = t.queue("mail");
  ASSERT_TRUE(q);
  const QueueMessage m = queue_message("order-7", 0, "order-7");

  const PublishResult first = begin_and_publish(t, m);
  EXPECT_FALSE(first.duplicate);
  const PublishResult again = (*q)->publish(m);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again.duplicate) << "the same id twice in one transaction";
  EXPECT_EQ(again.offset, first.offset);
  ASSERT_TRUE(t.abort());

  const PublishResult retry = begin_and_publish(t, m);
  EXPECT_FALSE(retry.duplicate) << "an aborted publish does not answer for its id";
  EXPECT_GT(retry.offset, first.offset);
  ASSERT_TRUE(t.commit());
  expect_once(m, retry.offset);
}

// A de-duplication id held by a transaction whose process lives on (a
// SIGSTOPped zombie) is judged by its transaction, not by the liveness of
// its process: once the transaction is over, a second publisher of the id
// takes it over (aborted) or is answered with it (committed) at once, where
// it used to wait the full 5 s and get kBusy.
TEST_F(TransactionalQueue, AFencedHolderDoesNotMakeItsReplacementWaitForItsDedupIds) {
  const QueueMessage m = queue_message("order-9", 0, "order-9");
  TransactionalProducer zombie = tx();
  begin_and_publish(zombie, m);
  TransactionalProducer current = tx();  // fences the zombie: its transaction is aborted, its process alive
  const PublishResult r = begin_and_publish(current, m);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.duplicate) << "the zombie's publish was aborted: it does not answer for the id";
  // The zombie wakes up: its commit fails, and its release of the id must
  // not free the entry the replacement now holds.
  expect_commit_refused(zombie, Errc::kFenced);
  ASSERT_TRUE(current.commit());
  expect_once(m, r.offset);
}

TEST_F(TransactionalQueue, ADedupIdOfATransactionPastItsTimeoutIsTakenOverByTheNextPublisher) {
  const QueueMessage m = queue_message("order-10", 0, "order-10");
  TransactionalProducer late = tx("late", 100 * kMs);
  begin_and_publish(late, m);
  clock.advance_ns(200 * kMs);
  const PublishResult r = publish_plain(m);  // aborts the late transaction, as a worker waiting at it would
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.duplicate);
  expect_commit_refused(late, Errc::kAborted);
  expect_once(m, r.offset);  // the late holder's release did not free the new entry
}

TEST_F(TransactionalQueue, ADedupIdOfACommitDecidedByAStoppedHolderAnswersForItself) {
  const QueueMessage m = queue_message("order-11", 0, "order-11");
  TransactionalProducer t = tx();
  const PublishResult first = begin_and_publish(t, m);
  ASSERT_TRUE(first.ok());
  // As if the holder stopped right after its commit decision, before it
  // completed the id.
  set_slot_state(t.producer_id(), format::kProducerCommitting);
  const PublishResult r = publish_plain(m);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.duplicate) << "the committed publish answers for its id";
  expect_once(m, first.offset);
}

TEST_F(TransactionalQueue, DelaysPrioritiesAndGroupsHoldForTransactionalPublishes) {
  TransactionalProducer t = tx();
  auto q = t.queue("mail");
  ASSERT_TRUE(q);
  ASSERT_TRUE(t.begin());
  QueueMessage a = queue_message("g-a");
  a.group = "customer-1";
  QueueMessage b = queue_message("g-b");
  b.group = "customer-1";
  QueueMessage later = queue_message("later");
  later.deliver_at_unix_ns = clock.now_ns() + 10 * kSec;
  ASSERT_TRUE((*q)->publish(later).ok());
  ASSERT_TRUE((*q)->publish(a).ok());
  ASSERT_TRUE((*q)->publish(b).ok());
  ASSERT_TRUE((*q)->publish(queue_message("urgent", 1)).ok());
  ASSERT_TRUE(t.commit());

  std::vector<Delivery> held;
  EXPECT_EQ(drain(false, &held), (std::vector<std::string>{"urgent", "g-a"}))
      << "the high level first; the group's second waits for its first; the delayed one for its time";
  for (Delivery& d : held) ASSERT_TRUE(d.ack());
  EXPECT_EQ(drain(), (std::vector<std::string>{"g-b"}));
  clock.advance_ns(10 * kSec);
  EXPECT_EQ(drain(), (std::vector<std::string>{"later"}));
}

TEST_F(TransactionalQueue, PublishesOutsideATransactionAndUnknownQueuesAreRefused) {
  TransactionalProducer t = tx();
  auto unknown = t.queue("nope");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, Errc::kNotFound);
  auto bad = t.queue("no/slash");
  EXPECT_FALSE(bad);
  auto q = t.queue("mail");
  ASSERT_TRUE(q);
  auto same = t.queue("mail");
  ASSERT_TRUE(same);
  EXPECT_EQ(*same, *q) << "made once";
  EXPECT_EQ((*q)->producer_id(), t.producer_id());
  const PublishResult r = (*q)->publish(queue_message("outside"));
  EXPECT_EQ(r.status, SendStatus::kError);
  EXPECT_EQ((*q)->last_error().code, Errc::kInvalidArgument);
  EXPECT_NE((*q)->last_error().message.find("begin()"), std::string::npos) << (*q)->last_error().message;
  EXPECT_TRUE(drain().empty());
}

TEST_F(TransactionalQueue, ANewInstanceOfTheNameAbortsTheOpenTransactionAndFencesTheOld) {
  TransactionalProducer old = tx();
  auto q = old.queue("mail");
  ASSERT_TRUE(q);
  ASSERT_TRUE(old.begin());
  ASSERT_TRUE((*q)->publish(queue_message("zombie")).ok());
  TransactionalProducer current = tx();  // settles the open transaction: aborted
  publish_plain("plain");
  EXPECT_EQ(drain(), (std::vector<std::string>{"plain"}));
  EXPECT_EQ((*q)->publish(queue_message("zombie-2")).status, SendStatus::kFenced);
  expect_commit_refused(old, Errc::kFenced);
  auto q2 = current.queue("mail");
  ASSERT_TRUE(q2);
  ASSERT_TRUE(current.begin());
  ASSERT_TRUE((*q2)->publish(queue_message("current")).ok());
  ASSERT_TRUE(current.commit());
  EXPECT_EQ(drain(), (std::vector<std::string>{"current"}));
  // zombie, plain, zombie-2 (claimed, then aborted by its fenced writer), current
  EXPECT_EQ(level(0).settled_below, 4u);
}

TEST_F(TransactionalQueue, DestroyingTheProducerAbortsItsOpenTransaction) {
  const QueueMessage m = queue_message("gone", 0, "gone");
  {
    TransactionalProducer t = tx();
    begin_and_publish(t, m);
  }
  publish_plain("plain");
  EXPECT_EQ(drain(), (std::vector<std::string>{"plain"}));
  const PublishResult r = publish_plain(m);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.duplicate) << "the aborted publish released its id";
}

}  // namespace
}  // namespace sluice
