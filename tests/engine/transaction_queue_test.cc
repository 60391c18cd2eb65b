// Queue publishes inside transactions (docs/exactly-once.md, section 4,
// "Queues", plan step 7): a bound publisher's messages are PREPARED frames
// of the transaction, and workers read queue levels read-committed. On a
// manual clock: an aborted transaction's messages are settled and never
// delivered; a committed one's are delivered once, together with its topic
// records; a worker waits at an undecided message while other levels flow;
// a transaction past its timeout is aborted by the worker waiting at it;
// de-duplication ids, delays, priorities and FIFO groups behave as for
// plain publishes. A holder killed by SIGKILL is in
// tests/process/transaction_queue_process_test.cc.
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

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kSec = 1'000 * kMs;

struct TransactionalQueue : test::ClockedBusTest {
  void SetUp() override {
    ClockedBusTest::SetUp();
    if (HasFatalFailure()) return;
    QueueOptions o;
    o.priorities = 2;
    o.segment_bytes = 1 << 20;
    o.max_depth_bytes = 4 << 20;
    o.lease_ns = 30 * kSec;
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

  static QueueMessage message(std::string_view value, uint32_t priority = 0) {
    QueueMessage m;
    m.value = value;
    m.priority = priority;
    return m;
  }

  void publish_plain(std::string_view value, uint32_t priority = 0) {
    auto p = bus->create_queue_publisher("mail");
    ASSERT_TRUE(p) << p.error().to_string();
    ASSERT_TRUE(p->publish(message(value, priority)).ok()) << p->last_error().to_string();
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
  void set_slot_state(uint64_t pid, format::ProducerSlotState state) {
    const std::string path = dir.path() + "/producers/table";
    const int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    const off_t at =
        static_cast<off_t>(format::kProducerSlotsOffset + format::pid_slot(pid) * sizeof(format::ProducerSlot));
    uint64_t c = 0;
    ASSERT_EQ(::pread(fd, &c, sizeof c, at), 8);
    c = format::make_producer_control(state, format::producer_epoch(c), format::producer_owner(c),
                                      format::producer_txn(c));
    ASSERT_EQ(::pwrite(fd, &c, sizeof c, at), 8);
    ::close(fd);
  }

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
  ASSERT_TRUE((*q)->publish(message("aborted-1")).ok()) << (*q)->last_error().to_string();
  ASSERT_TRUE((*q)->publish(message("aborted-2")).ok());
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
  ASSERT_TRUE((*q)->publish(message("mail-1")).ok());
  ASSERT_TRUE((*q)->publish(message("mail-2")).ok());
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
  auto q = t.queue("mail");
  ASSERT_TRUE(q);
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE((*q)->publish(message("txn-low", 0)).ok());
  publish_plain("plain-low", 0);   // committed, but behind the undecided one
  publish_plain("plain-high", 1);  // another level
  EXPECT_EQ(drain(), (std::vector<std::string>{"plain-high"}));
  EXPECT_EQ(level(0).received, 0u) << "deliver_next stays at the undecided message";
  ASSERT_TRUE(t.commit());
  EXPECT_EQ(drain(), (std::vector<std::string>{"txn-low", "plain-low"})) << "in publish order";
}

TEST_F(TransactionalQueue, ATransactionPastItsTimeoutIsAbortedByTheWorkerWaitingAtIt) {
  TransactionalProducer t = tx("late", 100 * kMs);
  auto q = t.queue("mail");
  ASSERT_TRUE(q);
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE((*q)->publish(message("late")).ok());
  publish_plain("behind");
  EXPECT_TRUE(drain().empty());
  clock.advance_ns(200 * kMs);
  EXPECT_EQ(drain(), (std::vector<std::string>{"behind"})) << "the worker aborted it and moved on";
  auto c = t.commit();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::kAborted) << c.error().to_string();
  EXPECT_EQ(level(0).settled_below, 2u);
}

TEST_F(TransactionalQueue, AWorkerCarriesOutADecidedCommitWhoseHolderStopped) {
  TransactionalProducer t = tx();
  auto q = t.queue("mail");
  ASSERT_TRUE(q);
  ASSERT_TRUE(t.begin());
  ASSERT_TRUE((*q)->publish(message("low", 0)).ok());
  ASSERT_TRUE((*q)->publish(message("high", 1)).ok());
  // As if the holder died right after its decision CAS, before any flip.
  set_slot_state(t.producer_id(), format::kProducerCommitting);
  EXPECT_EQ(drain(), (std::vector<std::string>{"high", "low"}));
}

TEST_F(TransactionalQueue, ADedupIdCountsOnlyOnceItsTransactionCommits) {
  TransactionalProducer t = tx();
  auto q = t.queue("mail");
  ASSERT_TRUE(q);
  QueueMessage m = message("order-7");
  m.dedup_id = "order-7";

  ASSERT_TRUE(t.begin());
  const PublishResult first = (*q)->publish(m);
  ASSERT_TRUE(first.ok()) << (*q)->last_error().to_string();
  EXPECT_FALSE(first.duplicate);
  const PublishResult again = (*q)->publish(m);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again.duplicate) << "the same id twice in one transaction";
  EXPECT_EQ(again.offset, first.offset);
  ASSERT_TRUE(t.abort());

  ASSERT_TRUE(t.begin());
  const PublishResult retry = (*q)->publish(m);
  ASSERT_TRUE(retry.ok()) << (*q)->last_error().to_string();
  EXPECT_FALSE(retry.duplicate) << "an aborted publish does not answer for its id";
  EXPECT_GT(retry.offset, first.offset);
  ASSERT_TRUE(t.commit());

  auto plain = bus->create_queue_publisher("mail");
  ASSERT_TRUE(plain);
  const PublishResult after = plain->publish(m);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after.duplicate);
  EXPECT_EQ(after.offset, retry.offset);
  EXPECT_EQ(drain(), (std::vector<std::string>{"order-7"}));
}

TEST_F(TransactionalQueue, DelaysPrioritiesAndGroupsHoldForTransactionalPublishes) {
  TransactionalProducer t = tx();
  auto q = t.queue("mail");
  ASSERT_TRUE(q);
  ASSERT_TRUE(t.begin());
  QueueMessage a = message("g-a");
  a.group = "customer-1";
  QueueMessage b = message("g-b");
  b.group = "customer-1";
  QueueMessage later = message("later");
  later.deliver_at_unix_ns = clock.now_ns() + 10 * kSec;
  ASSERT_TRUE((*q)->publish(later).ok());
  ASSERT_TRUE((*q)->publish(a).ok());
  ASSERT_TRUE((*q)->publish(b).ok());
  ASSERT_TRUE((*q)->publish(message("urgent", 1)).ok());
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
  const PublishResult r = (*q)->publish(message("outside"));
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
  ASSERT_TRUE((*q)->publish(message("zombie")).ok());
  TransactionalProducer current = tx();  // settles the open transaction: aborted
  publish_plain("plain");
  EXPECT_EQ(drain(), (std::vector<std::string>{"plain"}));
  EXPECT_EQ((*q)->publish(message("zombie-2")).status, SendStatus::kFenced);
  auto c = old.commit();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::kFenced);
  auto q2 = current.queue("mail");
  ASSERT_TRUE(q2);
  ASSERT_TRUE(current.begin());
  ASSERT_TRUE((*q2)->publish(message("current")).ok());
  ASSERT_TRUE(current.commit());
  EXPECT_EQ(drain(), (std::vector<std::string>{"current"}));
  // zombie, plain, zombie-2 (claimed, then aborted by its fenced writer), current
  EXPECT_EQ(level(0).settled_below, 4u);
}

TEST_F(TransactionalQueue, DestroyingTheProducerAbortsItsOpenTransaction) {
  {
    TransactionalProducer t = tx();
    auto q = t.queue("mail");
    ASSERT_TRUE(q);
    ASSERT_TRUE(t.begin());
    QueueMessage m = message("gone");
    m.dedup_id = "gone";
    ASSERT_TRUE((*q)->publish(m).ok());
  }
  publish_plain("plain");
  EXPECT_EQ(drain(), (std::vector<std::string>{"plain"}));
  auto p = bus->create_queue_publisher("mail");
  ASSERT_TRUE(p);
  QueueMessage m = message("gone");
  m.dedup_id = "gone";
  const PublishResult r = p->publish(m);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.duplicate) << "the aborted publish released its id";
}

}  // namespace
}  // namespace sluice
