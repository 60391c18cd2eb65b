// Queues and exactly-once producing with real processes and SIGKILL
// (docs/exactly-once.md, plan steps 4 and 7): a transaction holder killed
// with queue messages open on two levels leaves the workers nothing of it,
// and they move on as soon as they see it dead, not at its timeout; worker
// processes blocked at its messages are released too; an idempotent queue
// publisher killed again and again while publishing, and restarted from
// next_sequence() with a resend of its last message, leaves each message in
// the queue exactly once, in order; a SIGSTOPped zombie holding de-duplication
// ids in an open transaction does not hold up its replacement, which
// republishes the ids at once, each delivered once, and the zombie woken up
// afterwards neither commits nor frees the ids.
#include <gtest/gtest.h>
#include <signal.h>
#include <sluice/sluice.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "process_helpers.h"
#include "support/clocked_bus.h"

namespace sluice {
namespace {

QueueOptions two_levels() {
  QueueOptions o = test::two_level_queue();
  o.max_depth_bytes = 8 << 20;
  return o;
}

// Child: opens a transaction that publishes `n` messages to each level of
// "mail" and a record to "invoices", reports on `ready` and waits to be killed.
int hold_open_transaction(const std::string& dir, int ready_fd, uint32_t n) {
  auto bus = Bus::open(dir);
  if (!bus) return 10;
  auto tx = bus->create_transactional_producer("mailer");  // 10 s timeout: the kill must release it sooner
  if (!tx) return 11;
  auto q = tx->queue("mail");
  auto out = tx->producer("invoices");
  if (!q || !out) return 12;
  if (!tx->begin()) return 13;
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t level = 0; level < 2; ++level) {
      QueueMessage m;
      const std::string v = "txn-" + std::to_string(level) + "-" + std::to_string(i);
      const std::string group = "customer-" + std::to_string(i % 2);
      m.value = v;
      m.priority = level;
      if (i % 3 == 0) m.group = group;
      if (!(*q)->publish(m).ok()) return 14;
    }
  if (!(*out)->send(Message{"", "invoice"}).ok()) return 15;
  const char b = 1;
  if (!test::write_all(ready_fd, &b, 1)) return 16;
  ::pause();  // killed here, the transaction open
  return 17;
}

// Makes "mail" (two levels) and "invoices" in `dir`, starts a child holding
// an open transaction of `n` messages per level (hold_open_transaction) and
// waits until it has published them.
void start_holder(const test::TempDir& dir, test::Children& children, uint32_t n, pid_t* holder) {
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    ASSERT_TRUE(bus->create_queue("mail", two_levels()));
    ASSERT_TRUE(bus->create_topic("invoices", test::small_topic()));
  }
  test::Pipe ready;
  *holder = children.spawn([&] { return hold_open_transaction(dir.path(), ready.write_end(), n); });
  char b;
  ASSERT_TRUE(test::read_exact(ready.read_end(), &b, 1, 30'000));
}

// The values of every message `worker` delivers until it finds none for
// 50 ms, each acked.
std::vector<std::string> receive_all(Worker& worker) {
  std::vector<std::string> got;
  Delivery d[64];
  for (;;) {
    auto n = worker.receive(d, 50'000'000);
    EXPECT_TRUE(n) << n.error().to_string();
    if (!n || *n == 0) return got;
    for (size_t k = 0; k < *n; ++k) {
      got.emplace_back(d[k].value());
      EXPECT_TRUE(d[k].ack());
    }
  }
}

TEST(TransactionQueueProcess, AKilledHolderLeavesWorkersNothingOfItAndDoesNotHoldThem) {
  test::TempDir dir;
  test::Children children;
  pid_t holder = 0;
  ASSERT_NO_FATAL_FAILURE(start_holder(dir, children, 50, &holder));

  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  auto plain = bus->create_queue_publisher("mail");
  ASSERT_TRUE(plain);
  for (uint32_t level = 0; level < 2; ++level) {
    QueueMessage m;
    m.value = "after";
    m.priority = level;
    m.group = "customer-0";  // a group the dead transaction used, too
    ASSERT_TRUE(plain->publish(m).ok()) << plain->last_error().to_string();
  }
  WorkerOptions wo;
  wo.wait = WaitStrategy::kBlock;
  auto worker = bus->create_worker("mail", wo);
  ASSERT_TRUE(worker) << worker.error().to_string();
  Delivery d[4];
  auto n = worker->receive(d, 20'000'000);
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(*n, 0u) << "both levels wait at the open transaction";

  ASSERT_EQ(children.kill(holder), 128 + SIGKILL);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> got;
  while (got.size() < 2 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5)) {
    // A long wait: a parked worker must look again by itself, since a dead
    // holder wakes no one.
    n = worker->receive(d, 5'000'000'000);
    ASSERT_TRUE(n) << n.error().to_string();
    for (size_t k = 0; k < *n; ++k) {
      got.emplace_back(d[k].value());
      EXPECT_TRUE(d[k].ack());
    }
  }
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(got, (std::vector<std::string>{"after", "after"}));
  EXPECT_LT(waited, std::chrono::seconds(1)) << "released when the holder was seen dead, not at its 10 s timeout "
                                                 "nor at the end of the worker's wait";
  std::printf("  the queue levels moved %.1f ms after the SIGKILL\n",
              std::chrono::duration<double, std::milli>(waited).count());
  n = worker->receive(d, 50'000'000);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 0u) << "nothing of the killed transaction is delivered";
  auto s = bus->queue_stats("mail");
  ASSERT_TRUE(s);
  for (const QueueLevelStats& l : s->levels) {
    EXPECT_EQ(l.published, 51u);
    EXPECT_EQ(l.settled_below, 51u) << "its messages are settled";
    EXPECT_EQ(l.received, 1u);
  }
  ConsumerOptions co;
  co.auto_commit = false;
  auto reader = bus->create_consumer("invoices", "", co);
  ASSERT_TRUE(reader);
  std::vector<RecordView> out(4);
  auto r = reader->poll(out, 20'000'000);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 0u) << "nor its topic record";
}

TEST(TransactionQueueProcess, WorkerProcessesBlockedAtAKilledTransactionMoveOn) {
  test::TempDir dir;
  test::Children children;
  pid_t holder = 0;
  ASSERT_NO_FATAL_FAILURE(start_holder(dir, children, 10, &holder));
  constexpr uint32_t kAfter = 40;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    auto plain = bus->create_queue_publisher("mail");
    ASSERT_TRUE(plain);
    for (uint32_t i = 0; i < kAfter; ++i) {
      QueueMessage m;
      const std::string v = "after-" + std::to_string(i);
      m.value = v;
      m.priority = i % 2;
      ASSERT_TRUE(plain->publish(m).ok());
    }
  }
  // Two worker processes report every message they receive (one byte per
  // message: 1 for "after-*", 2 for anything else) and exit when idle 1 s.
  test::Pipe seen;
  std::vector<pid_t> workers;
  for (int w = 0; w < 2; ++w)
    workers.push_back(children.spawn([&] {
      auto bus = Bus::open(dir.path());
      if (!bus) return 20;
      WorkerOptions wo;
      wo.wait = WaitStrategy::kBlock;
      auto worker = bus->create_worker("mail", wo);
      if (!worker) return 21;
      Delivery d[1];
      for (int idle = 0; idle < 10;) {
        auto n = worker->receive(d, 100'000'000);
        if (!n) return 22;
        if (*n == 0) {
          ++idle;
          continue;
        }
        idle = 0;
        const char tag = d[0].value().starts_with("after-") ? 1 : 2;
        if (!d[0].ack() || !test::write_all(seen.write_end(), &tag, 1)) return 23;
      }
      return 0;
    }));
  ::usleep(50'000);  // the workers reach the open transaction and park
  ASSERT_EQ(children.kill(holder), 128 + SIGKILL);
  seen.close_write();
  std::vector<char> tags(kAfter);
  ASSERT_TRUE(test::read_exact(seen.read_end(), tags.data(), kAfter, 5'000)) << "the workers were left stuck";
  for (char t : tags) EXPECT_EQ(t, 1) << "a message of the killed transaction was delivered";
  for (pid_t w : workers) EXPECT_EQ(children.wait(w, 10'000), 0);
  char extra;
  EXPECT_FALSE(test::read_exact(seen.read_end(), &extra, 1, 100)) << "more deliveries than messages";
}

// Publishes "<prefix>-i" with de-duplication id "order-i" through `q`, for
// i < n. False at the first failure (see q.last_error()); *fresh counts the
// publishes that were not duplicates.
bool publish_orders(QueuePublisher& q, std::string_view prefix, uint32_t n, uint32_t* fresh) {
  *fresh = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const std::string value = std::string(prefix) + "-" + std::to_string(i);
    const std::string id = "order-" + std::to_string(i);
    const PublishResult r = q.publish(test::queue_message(value, 0, id));
    if (!r.ok()) return false;
    *fresh += r.duplicate ? 0 : 1;
  }
  return true;
}

// Child: opens a transaction under "mailer" that publishes `n` messages
// with de-duplication ids order-0..order-(n-1), reports on `ready`, waits
// for `go` (it is SIGSTOPped and fenced meanwhile), then tries to commit,
// which must fail as fenced. Exit 0 when it did.
int hold_dedup_ids_then_commit(const std::string& dir, int ready_fd, int go_fd, uint32_t n) {
  auto bus = Bus::open(dir);
  if (!bus) return 20;
  auto tx = bus->create_transactional_producer("mailer");
  if (!tx) return 21;
  auto q = tx->queue("mail");
  if (!q || !tx->begin()) return 22;
  uint32_t fresh = 0;
  if (!publish_orders(**q, "zombie", n, &fresh) || fresh != n) return 23;
  char b = 1;
  if (!test::write_all(ready_fd, &b, 1)) return 24;
  if (!test::read_exact(go_fd, &b, 1, 60'000)) return 25;
  auto c = tx->commit();
  if (c) return 26;  // a zombie's commit must not go through
  return c.error().code == Errc::kFenced ? 0 : 27;
}

TEST(TransactionQueueProcess, AReplacementRepublishesTheDedupIdsOfAStoppedZombieAtOnceEachDeliveredOnce) {
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    ASSERT_TRUE(bus->create_queue("mail", two_levels()));
  }
  constexpr uint32_t kIds = 20;
  test::Children children;
  test::Pipe ready, go;
  const pid_t zombie =
      children.spawn([&] { return hold_dedup_ids_then_commit(dir.path(), ready.write_end(), go.read_end(), kIds); });
  char b = 1;
  ASSERT_TRUE(test::read_exact(ready.read_end(), &b, 1, 30'000));
  ASSERT_EQ(::kill(zombie, SIGSTOP), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(zombie, &status, WUNTRACED), zombie);  // it is stopped, alive, holding the ids
  ASSERT_TRUE(WIFSTOPPED(status));

  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  auto tx = bus->create_transactional_producer("mailer");  // fences the zombie, aborting its transaction
  ASSERT_TRUE(tx) << tx.error().to_string();
  auto q = tx->queue("mail");
  ASSERT_TRUE(q);
  ASSERT_TRUE(tx->begin());
  const auto t0 = std::chrono::steady_clock::now();
  uint32_t fresh = 0;
  ASSERT_TRUE(publish_orders(**q, "current", kIds, &fresh)) << (*q)->last_error().to_string();
  EXPECT_EQ(fresh, kIds) << "the zombie's aborted publishes do not answer for the ids";
  ASSERT_TRUE(tx->commit());
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, std::chrono::seconds(2)) << "the stopped zombie's ids were taken over at once, not after 5 s each";
  std::printf("  %u ids of the stopped zombie republished in %.1f ms\n", kIds,
              std::chrono::duration<double, std::milli>(took).count());

  // The zombie wakes up: its commit is refused and its ids stay the replacement's.
  ASSERT_EQ(::kill(zombie, SIGCONT), 0);
  ASSERT_TRUE(test::write_all(go.write_end(), &b, 1));
  EXPECT_EQ(children.wait(zombie, 10'000), 0) << "the zombie committed, or failed otherwise";

  auto worker = bus->create_worker("mail");
  ASSERT_TRUE(worker);
  std::vector<std::string> got = receive_all(*worker);
  std::vector<std::string> want;
  for (uint32_t i = 0; i < kIds; ++i) want.emplace_back("current-" + std::to_string(i));
  std::sort(got.begin(), got.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(got, want) << "each id once, the replacement's";
  auto plain = bus->create_queue_publisher("mail");
  ASSERT_TRUE(plain);
  ASSERT_TRUE(publish_orders(*plain, "again", kIds, &fresh)) << plain->last_error().to_string();
  EXPECT_EQ(fresh, 0u) << "the zombie's wake-up released ids it no longer held";
}

// Child: publishes messages 0..total-1 to "jobs" as sequences 0..total-1
// with an idempotent publisher named "feeder", resuming at next_sequence()
// and first resending the message before it (which must be a duplicate).
int feed(const std::string& dir, uint32_t total, int started_fd) {
  auto bus = Bus::open(dir);
  if (!bus) return 30;
  QueuePublisherOptions o;
  o.idempotent = true;
  o.producer_name = "feeder";
  auto p = bus->create_queue_publisher("jobs", o);
  if (!p) return 31;
  auto next = p->next_sequence(0);
  if (!next) return 32;
  const char b = 1;
  if (!test::write_all(started_fd, &b, 1)) return 35;
  std::string value;
  auto publish = [&](uint32_t i) {
    value = "m" + std::to_string(i);
    QueueMessage m;
    m.value = value;
    return p->publish_sequenced(m, i);
  };
  if (*next > 0) {
    const PublishResult r = publish(*next - 1);
    if (!r.ok() || !r.duplicate) return 33;
  }
  for (uint32_t i = *next; i < total; ++i)
    if (!publish(i).ok()) return 34;
  return 0;
}

TEST(TransactionQueueProcess, AnIdempotentPublisherKilledAgainAndAgainPublishesEachMessageOnce) {
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    QueueOptions o = two_levels();
    o.priorities = 1;
    o.max_depth_bytes = 64 << 20;  // all of it waits for the check
    ASSERT_TRUE(bus->create_queue("jobs", o));
  }
  constexpr uint32_t kTotal = 100'000;
  test::Children children;
  std::mt19937 rng(777);
  int kills = 0;
  for (int round = 0;; ++round) {
    ASSERT_LT(round, 2000);
    test::Pipe started;
    const pid_t p = children.spawn([&] { return feed(dir.path(), kTotal, started.write_end()); });
    char b;
    ASSERT_TRUE(test::read_exact(started.read_end(), &b, 1, 10'000));
    ::usleep(std::uniform_int_distribution<int>(0, 1000)(rng));  // killed while publishing, mostly
    ::kill(p, SIGKILL);
    const int code = children.wait(p, 10'000);
    if (code == 0) break;
    ASSERT_EQ(code, 128 + SIGKILL) << "the feeder failed";
    ++kills;
  }
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  auto worker = bus->create_worker("jobs");
  ASSERT_TRUE(worker);
  const std::vector<std::string> got = receive_all(*worker);
  ASSERT_EQ(got.size(), kTotal) << "after " << kills << " kills";
  for (uint32_t i = 0; i < kTotal; ++i) ASSERT_EQ(got[i], "m" + std::to_string(i)) << "after " << kills << " kills";
  std::printf("  %u messages once each, in order, after %d SIGKILLs of the publisher\n", kTotal, kills);
  EXPECT_GT(kills, 0);
}

}  // namespace
}  // namespace sluice
