#include <fcntl.h>
#include <gtest/gtest.h>
#include <sluice/sluice.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ipc/file_header.h"
#include "support/clocked_bus.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kSec = 1'000 * kMs;

// A bus on a manual clock, so that leases, retries and sweeps move only when
// the test says so.
struct QueueFixture : test::ClockedBusTest {
  QueueOptions options() const {
    QueueOptions o;
    o.segment_bytes = 1 << 20;
    o.max_depth_bytes = 4 << 20;
    o.lease_ns = 30 * kSec;
    o.retry.max_receives = 3;
    o.retry.base_delay_ns = 1 * kSec;
    o.retry.multiplier = 2.0;
    o.retry.max_delay_ns = 60 * kSec;
    o.retry.jitter_ns = 0;
    return o;
  }

  void publish(std::string_view queue, std::string_view value, uint32_t priority = 0, int64_t at = 0) {
    auto p = bus->create_queue_publisher(queue);
    ASSERT_TRUE(p) << p.error().to_string();
    QueueMessage m;
    m.value = value;
    m.priority = priority;
    m.deliver_at_unix_ns = at;
    ASSERT_TRUE(p->publish(m).ok()) << p->last_error().to_string();
  }

  // Moves the clock past the sweep interval, so the next receive sweeps.
  void tick(int64_t ns = 2 * kMs) { clock.advance_ns(ns); }
};

TEST_F(QueueFixture, MessagesAreDeliveredInOrderAndAckedOnce) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));
  for (const char* v : {"a", "b", "c"}) publish("jobs", v);
  Worker w = worker("jobs");
  for (const char* want : {"a", "b", "c"}) {
    Delivery d = take(w);
    ASSERT_TRUE(d.valid());
    EXPECT_EQ(d.value(), want);
    EXPECT_EQ(d.attempt(), 1u);
    ASSERT_TRUE(d.ack());
    EXPECT_FALSE(d.ack()) << "a second ack of the same delivery";
  }
  EXPECT_FALSE(take(w).valid());
  auto s = bus->queue_stats("jobs");
  ASSERT_TRUE(s);
  const QueueLevelStats t = s->total();
  EXPECT_EQ(t.published, 3u);
  EXPECT_EQ(t.acked, 3u);
  EXPECT_EQ(t.depth, 0u);
  EXPECT_EQ(t.settled_below, 3u);
}

TEST_F(QueueFixture, AnExclusivePublisherOwnsItsLevelsUntilItCloses) {
  QueueOptions o = options();
  o.priorities = 2;
  ASSERT_TRUE(bus->create_queue("jobs", o));
  QueuePublisherOptions xo;
  xo.exclusive = true;
  auto made = bus->create_queue_publisher("jobs", xo);
  ASSERT_TRUE(made) << made.error().to_string();
  std::optional<QueuePublisher> only(std::move(*made));
  for (int i = 0; i < 100; ++i) {
    const std::string v = "m" + std::to_string(i);
    QueueMessage m;
    m.value = v;
    ASSERT_TRUE(only->publish(m).ok()) << only->last_error().to_string();
  }
  // Level 0 is taken; level 1, which it never published to, is not.
  auto other = bus->create_queue_publisher("jobs");
  ASSERT_TRUE(other);
  QueueMessage m;
  m.value = "shared";
  EXPECT_EQ(other->publish(m).status, SendStatus::kBusy);
  EXPECT_EQ(other->last_error().code, Errc::kBusy);
  m.priority = 1;
  EXPECT_TRUE(other->publish(m).ok()) << other->last_error().to_string();
  Worker w = worker("jobs");
  Delivery first = take(w);
  ASSERT_TRUE(first.valid());
  EXPECT_EQ(first.value(), "shared");  // the higher level first
  ASSERT_TRUE(first.ack());
  for (int i = 0; i < 100; ++i) {
    Delivery d = take(w);
    ASSERT_TRUE(d.valid()) << "message " << i;
    EXPECT_EQ(d.value(), "m" + std::to_string(i));
    ASSERT_TRUE(d.ack());
  }
  only.reset();
  m.priority = 0;
  m.value = "after";
  auto later = bus->create_queue_publisher("jobs");
  ASSERT_TRUE(later);
  EXPECT_TRUE(later->publish(m).ok()) << later->last_error().to_string();
  Delivery d = take(w);
  ASSERT_TRUE(d.valid());
  EXPECT_EQ(d.value(), "after");
}

TEST_F(QueueFixture, CompetingWorkersNeverGetTheSameMessage) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));
  for (int i = 0; i < 100; ++i) publish("jobs", "m" + std::to_string(i));
  Worker a = worker("jobs"), b = worker("jobs");
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    Delivery d = take(i % 3 == 0 ? b : a);
    ASSERT_TRUE(d.valid()) << i;
    EXPECT_TRUE(seen.insert(std::string(d.value())).second) << d.value() << " delivered twice";
    ASSERT_TRUE(d.ack());
  }
  EXPECT_FALSE(take(a).valid());
  EXPECT_FALSE(take(b).valid());
  EXPECT_EQ(a.stats().acked + b.stats().acked, 100u);
}

TEST_F(QueueFixture, AnExpiredLeaseIsRedeliveredAndTheLateAckFails) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));
  publish("jobs", "x");
  Worker a = worker("jobs"), b = worker("jobs");
  Delivery first = take(a);
  ASSERT_TRUE(first.valid());
  tick();
  EXPECT_FALSE(take(b).valid()) << "leased messages are invisible";
  clock.advance_ns(31 * kSec);
  Delivery again = take(b);
  ASSERT_TRUE(again.valid());
  EXPECT_EQ(again.value(), "x");
  EXPECT_EQ(again.attempt(), 2u);
  auto late = first.ack();
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, Errc::kLeaseLost);
  ASSERT_TRUE(again.ack());
  auto s = bus->queue_stats("jobs");
  EXPECT_EQ(s->total().redelivered, 1u);
  EXPECT_EQ(s->total().lease_lost, 1u);
}

TEST_F(QueueFixture, ExtendingALeaseKeepsTheMessage) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));
  publish("jobs", "x");
  Worker a = worker("jobs"), b = worker("jobs");
  Delivery d = take(a);
  ASSERT_TRUE(d.valid());
  clock.advance_ns(20 * kSec);
  ASSERT_TRUE(d.extend(30 * kSec));
  clock.advance_ns(20 * kSec);  // 40 s after the receive, 20 s after the extension
  EXPECT_FALSE(take(b).valid());
  ASSERT_TRUE(d.ack());
}

TEST_F(QueueFixture, ANackIsRetriedAfterTheBackoffNotBefore) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));
  publish("jobs", "x");
  publish("jobs", "y");
  Worker w = worker("jobs");
  Delivery d = take(w);
  ASSERT_EQ(d.value(), "x");
  ASSERT_TRUE(d.nack());  // attempt 1 failed: base delay, 1 s
  // Other messages keep flowing meanwhile.
  Delivery y = take(w);
  ASSERT_EQ(y.value(), "y");
  ASSERT_TRUE(y.ack());
  clock.advance_ns(900 * kMs);
  EXPECT_FALSE(take(w).valid()) << "retried before its delay";
  clock.advance_ns(200 * kMs);
  Delivery r = take(w);
  ASSERT_TRUE(r.valid());
  EXPECT_EQ(r.value(), "x");
  EXPECT_EQ(r.attempt(), 2u);
  ASSERT_TRUE(r.nack());  // attempt 2 failed: 2 s
  clock.advance_ns(1900 * kMs);
  EXPECT_FALSE(take(w).valid());
  clock.advance_ns(200 * kMs);
  Delivery r3 = take(w);
  ASSERT_TRUE(r3.valid());
  EXPECT_EQ(r3.attempt(), 3u);
  ASSERT_TRUE(r3.ack());
}

TEST_F(QueueFixture, TheLastFailedReceiveDeadLettersWithItsMetadata) {
  ASSERT_TRUE(bus->create_queue("orders", options()));  // max_receives 3
  publish("orders", "payload");
  Worker w = worker("orders");
  for (uint32_t attempt = 1; attempt <= 3; ++attempt) {
    Delivery d = take(w);
    ASSERT_TRUE(d.valid()) << attempt;
    ASSERT_EQ(d.attempt(), attempt);
    ASSERT_TRUE(d.nack());
    clock.advance_ns(10 * kSec);
  }
  EXPECT_FALSE(take(w).valid());
  auto s = bus->queue_stats("orders");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->dead_letter_queue, "orders.dlq");
  EXPECT_EQ(s->total().dead_lettered, 1u);
  EXPECT_EQ(s->total().depth, 0u);

  Worker dw = worker("orders.dlq");
  Delivery dead = take(dw);
  ASSERT_TRUE(dead.valid());
  EXPECT_EQ(dead.value(), "payload");
  const HeadersView& h = dead.headers();
  EXPECT_EQ(h.find("sluice.dlq.error_type"), "MaxReceivesExceeded");
  EXPECT_EQ(h.find("sluice.dlq.source"), "queue:orders");
  EXPECT_EQ(h.find("sluice.dlq.source_partition"), "0");
  EXPECT_EQ(h.find("sluice.dlq.source_offset"), "0");
  EXPECT_EQ(h.find("sluice.dlq.attempts"), "3");
  EXPECT_EQ(h.find("sluice.dlq.failed_at").size(), std::string_view("2023-11-14T22:13:20.000Z").size());
  EXPECT_FALSE(h.find("sluice.dlq.pid").empty());
}

TEST_F(QueueFixture, ARejectDeadLettersAtOnceWithTheErrorGiven) {
  ASSERT_TRUE(bus->create_queue("orders", options()));
  publish("orders", "bad");
  Worker w = worker("orders");
  Delivery d = take(w);
  ASSERT_TRUE(d.reject(Failure{"SchemaMismatch", "field x missing", "frame 0"}));
  Worker dw = worker("orders.dlq");
  Delivery dead = take(dw);
  ASSERT_TRUE(dead.valid());
  EXPECT_EQ(dead.headers().find("sluice.dlq.error_type"), "SchemaMismatch");
  EXPECT_EQ(dead.headers().find("sluice.dlq.error_message"), "field x missing");
  EXPECT_EQ(dead.headers().find("sluice.dlq.stack_trace"), "frame 0");
  EXPECT_EQ(dead.headers().find("sluice.dlq.attempts"), "1");
}

TEST_F(QueueFixture, RunMapsHandlerOutcomesToAckNackAndDeadLetter) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));
  for (const char* v : {"ok", "transient", "permanent"}) publish("jobs", v);
  Worker w = worker("jobs");
  auto handled = w.run(
      [](const Delivery& d) {
        if (d.value() == "transient") throw TransientError("database overloaded");
        if (d.value() == "permanent") throw PermanentError("validation failed");
      },
      {}, 3);
  ASSERT_TRUE(handled);
  EXPECT_EQ(*handled, 3u);
  EXPECT_EQ(w.stats().acked, 1u);
  EXPECT_EQ(w.stats().nacked, 1u);
  EXPECT_EQ(w.stats().dead_lettered, 1u);
  Worker dw = worker("jobs.dlq");
  Delivery dead = take(dw);
  ASSERT_TRUE(dead.valid());
  EXPECT_EQ(dead.value(), "permanent");
  EXPECT_EQ(dead.headers().find("sluice.dlq.error_type"), "PermanentError");
  EXPECT_EQ(dead.headers().find("sluice.dlq.error_message"), "validation failed");
  EXPECT_FALSE(dead.headers().find("sluice.dlq.stack_trace").empty());
  // The transient one comes back after its backoff.
  clock.advance_ns(2 * kSec);
  Delivery again = take(w);
  ASSERT_TRUE(again.valid());
  EXPECT_EQ(again.value(), "transient");
  EXPECT_EQ(again.attempt(), 2u);
}

TEST_F(QueueFixture, ADelayedMessageWaitsForItsTime) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));
  publish("jobs", "later", 0, clock.now_ns() + 5 * kSec);
  publish("jobs", "now");
  Worker w = worker("jobs");
  Delivery d = take(w);
  ASSERT_TRUE(d.valid());
  EXPECT_EQ(d.value(), "now");
  ASSERT_TRUE(d.ack());
  clock.advance_ns(4 * kSec);
  EXPECT_FALSE(take(w).valid());
  clock.advance_ns(2 * kSec);
  Delivery later = take(w);
  ASSERT_TRUE(later.valid());
  EXPECT_EQ(later.value(), "later");
  EXPECT_EQ(later.attempt(), 1u);
  ASSERT_TRUE(later.ack());
}

TEST_F(QueueFixture, HigherPrioritiesAreServedFirst) {
  QueueOptions o = options();
  o.priorities = 3;
  ASSERT_TRUE(bus->create_queue("jobs", o));
  publish("jobs", "low", 0);
  publish("jobs", "mid", 1);
  publish("jobs", "high", 2);
  Worker w = worker("jobs");
  for (const char* want : {"high", "mid", "low"}) {
    Delivery d = take(w);
    ASSERT_TRUE(d.valid());
    EXPECT_EQ(d.value(), want);
    ASSERT_TRUE(d.ack());
  }
}

TEST_F(QueueFixture, CompetingWorkersBothServeHigherPrioritiesFirstAndNeitherTakesADelayedMessageEarly) {
  QueueOptions o = options();
  o.priorities = 3;
  ASSERT_TRUE(bus->create_queue("jobs", o));
  publish("jobs", "later", 2, clock.now_ns() + 5 * kSec);
  for (int i = 0; i < 4; ++i) {
    publish("jobs", "low" + std::to_string(i), 0);
    publish("jobs", "high" + std::to_string(i), 2);
  }
  Worker a = worker("jobs");
  Worker b = worker("jobs");
  // The workers alternate; whichever asks gets the best message waiting.
  std::vector<std::string> order;
  for (int i = 0; i < 8; ++i) {
    Delivery d = take(i % 2 == 0 ? a : b);
    ASSERT_TRUE(d.valid()) << "receive " << i;
    order.emplace_back(d.value());
    ASSERT_TRUE(d.ack());
  }
  EXPECT_EQ(order, (std::vector<std::string>{"high0", "high1", "high2", "high3", "low0", "low1", "low2", "low3"}));
  // The delayed message has the highest priority but is not due.
  EXPECT_FALSE(take(a).valid());
  EXPECT_FALSE(take(b).valid());
  clock.advance_ns(5 * kSec + 2 * kMs);
  Delivery later = take(b);
  ASSERT_TRUE(later.valid());
  EXPECT_EQ(later.value(), "later");
  EXPECT_FALSE(take(a).valid()) << "a due message goes to one worker only";
  ASSERT_TRUE(later.ack());
  EXPECT_EQ(bus->queue_stats("jobs")->total().acked, 9u);
}

TEST_F(QueueFixture, AMessageLargerThanASegmentIsRefusedAndTheQueueGoesOn) {
  QueueOptions o = options();
  o.segment_bytes = 64 << 10;
  o.max_depth_bytes = 256 << 10;
  ASSERT_TRUE(bus->create_queue("jobs", o));
  auto p = bus->create_queue_publisher("jobs");
  ASSERT_TRUE(p) << p.error().to_string();
  const std::string huge(o.segment_bytes, 'x');
  QueueMessage m;
  m.value = huge;
  EXPECT_FALSE(p->publish(m).ok());
  EXPECT_EQ(p->last_error().code, Errc::kTooLarge) << p->last_error().to_string();
  EXPECT_NE(p->last_error().message.find("segment"), std::string::npos) << p->last_error().message;
  publish("jobs", "small");
  Worker w = worker("jobs");
  Delivery d = take(w);
  ASSERT_TRUE(d.valid());
  EXPECT_EQ(d.value(), "small");
  ASSERT_TRUE(d.ack());
  EXPECT_FALSE(take(w).valid()) << "the refused message left nothing behind";
  EXPECT_EQ(bus->queue_stats("jobs")->total().acked, 1u);
}

TEST_F(QueueFixture, AtMostOnceWorkersHaveMessagesAckedOnReceipt) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));
  publish("jobs", "x");
  WorkerOptions wo;
  wo.guarantee = Guarantee::kAtMostOnce;
  Worker w = worker("jobs", wo);
  Delivery d = take(w);
  ASSERT_TRUE(d.valid());
  clock.advance_ns(60 * kSec);  // long past the lease: nothing comes back
  EXPECT_FALSE(take(w).valid());
  EXPECT_EQ(bus->queue_stats("jobs")->total().acked, 1u);
}

TEST_F(QueueFixture, AFullWindowHoldsNewMessagesUntilTheOldestIsSettled) {
  QueueOptions o = options();
  o.window = 64;
  ASSERT_TRUE(bus->create_queue("jobs", o));
  for (int i = 0; i < 65; ++i) publish("jobs", std::to_string(i));
  Worker w = worker("jobs");
  std::vector<Delivery> held;
  for (int i = 0; i < 64; ++i) {
    held.push_back(take(w));
    ASSERT_TRUE(held.back().valid()) << i;
  }
  EXPECT_FALSE(take(w).valid()) << "65 in flight with a window of 64";
  ASSERT_TRUE(held[1].ack());
  EXPECT_FALSE(take(w).valid()) << "the oldest is still in flight";
  ASSERT_TRUE(held[0].ack());
  Delivery d = take(w);
  ASSERT_TRUE(d.valid());
  EXPECT_EQ(d.value(), "64");
}

TEST_F(QueueFixture, TheSettledFloorIsCommittedSoRetentionCanFreeSegments) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));
  Worker w = worker("jobs");
  const std::string big(4000, 'v');
  for (int i = 0; i < 2000; ++i) {  // ~8 MB through 1 MiB segments, 4 MiB deep at most
    publish("jobs", big);
    Delivery d = take(w);
    ASSERT_TRUE(d.valid()) << i;
    ASSERT_TRUE(d.ack());
  }
  auto s = bus->queue_stats("jobs");
  EXPECT_EQ(s->total().settled_below, 2000u);
  EXPECT_EQ(s->total().depth, 0u);
  // Settled segments are retired at once, not kept up to max_depth_bytes
  // (4 MiB here): ~8 MB went through 1 MiB segments.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path() + "/topics/@queue.jobs/0"))
    files += e.path().extension() == ".seg" || e.path().extension() == ".spare";
  EXPECT_LE(files, 4);
}

// FIFO groups (SQS MessageGroupId): one group's messages in order and never
// two at once, while other groups go to other workers.
TEST_F(QueueFixture, AGroupHasOneMessageInFlightAndKeepsItsOrder) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));
  auto p = bus->create_queue_publisher("jobs");
  ASSERT_TRUE(p);
  auto put = [&](std::string_view v, std::string_view group) {
    QueueMessage m;
    m.value = v;
    m.group = group;
    ASSERT_TRUE(p->publish(m).ok());
  };
  put("a1", "A");
  put("b1", "B");
  put("a2", "A");
  put("n1", "");
  put("a3", "A");
  Worker w1 = worker("jobs"), w2 = worker("jobs");
  Delivery a1 = take(w1);
  Delivery b1 = take(w2);
  Delivery n1 = take(w1);
  ASSERT_EQ(a1.value(), "a1");
  ASSERT_EQ(b1.value(), "b1");
  EXPECT_EQ(n1.value(), "n1") << "a2 must wait for a1";
  EXPECT_FALSE(take(w2).valid()) << "group A has a1 in flight";
  ASSERT_TRUE(n1.ack());
  ASSERT_TRUE(b1.ack());
  // A nack keeps the group's head: a2 still waits, through the retry.
  ASSERT_TRUE(a1.nack());
  EXPECT_FALSE(take(w2).valid());
  clock.advance_ns(2 * kSec);
  Delivery again = take(w2);
  ASSERT_EQ(again.value(), "a1");
  EXPECT_EQ(again.attempt(), 2u);
  EXPECT_FALSE(take(w1).valid());
  ASSERT_TRUE(again.ack());
  Delivery a2 = take(w1);
  ASSERT_EQ(a2.value(), "a2");
  EXPECT_FALSE(take(w2).valid());
  ASSERT_TRUE(a2.reject(Failure{"Bad", "a2 cannot be done", ""}));  // settled by dead-lettering
  Delivery a3 = take(w2);
  ASSERT_EQ(a3.value(), "a3");
  ASSERT_TRUE(a3.ack());
  EXPECT_EQ(bus->queue_stats("jobs")->total().depth, 0u);
  // The dead letter keeps its group as data, not as a live group.
  Worker dw = worker("jobs.dlq");
  Delivery dead = take(dw);
  ASSERT_TRUE(dead.valid());
  EXPECT_EQ(dead.headers().find("sluice.dlq.group"), "A");
  EXPECT_TRUE(dead.headers().find("sluice.group").empty());
}

// A worker that dies holding a group's head: its lease comes back, and the
// rest of the group follows in order. Here the lease simply expires.
TEST_F(QueueFixture, AGroupMovesOnAfterItsHeadsLeaseExpires) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));
  auto p = bus->create_queue_publisher("jobs");
  for (const char* v : {"g1", "g2"}) {
    QueueMessage m;
    m.value = v;
    m.group = "G";
    ASSERT_TRUE(p->publish(m).ok());
  }
  Worker w = worker("jobs");
  Delivery lost = take(w);
  ASSERT_EQ(lost.value(), "g1");
  clock.advance_ns(31 * kSec);
  Delivery g1 = take(w);
  ASSERT_EQ(g1.value(), "g1");
  EXPECT_EQ(g1.attempt(), 2u);
  ASSERT_TRUE(g1.ack());
  Delivery g2 = take(w);
  ASSERT_EQ(g2.value(), "g2");
  ASSERT_TRUE(g2.ack());
}

TEST_F(QueueFixture, ADuplicateIdWithinTheWindowAppendsNothing) {
  QueueOptions o = options();
  o.dedup_window_ns = 60 * kSec;
  ASSERT_TRUE(bus->create_queue("jobs", o));
  auto p = bus->create_queue_publisher("jobs");
  ASSERT_TRUE(p);
  auto put = [&](std::string_view v, std::string_view id) {
    QueueMessage m;
    m.value = v;
    m.dedup_id = id;
    return p->publish(m);
  };
  const PublishResult first = put("order 1", "id-1");
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first.duplicate);
  const PublishResult again = put("order 1, resent", "id-1");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.offset, first.offset);
  ASSERT_TRUE(put("order 2", "id-2").ok());
  ASSERT_TRUE(put("no id", "").ok());
  clock.advance_ns(61 * kSec);  // the window has passed: id-1 is new again
  const PublishResult later = put("order 1, much later", "id-1");
  ASSERT_TRUE(later.ok());
  EXPECT_FALSE(later.duplicate);
  Worker w = worker("jobs");
  std::vector<std::string> got;
  for (Delivery d = take(w); d.valid(); d = take(w)) {
    got.emplace_back(d.value());
    ASSERT_TRUE(d.ack());
  }
  EXPECT_EQ(got, (std::vector<std::string>{"order 1", "order 2", "no id", "order 1, much later"}));
}

TEST_F(QueueFixture, AFullDedupBucketIsBusyNotASilentMiss) {
  QueueOptions o = options();
  o.dedup_capacity = 8;  // one bucket of 8 ways
  ASSERT_TRUE(bus->create_queue("jobs", o));
  auto p = bus->create_queue_publisher("jobs");
  for (int i = 0; i < 8; ++i) {
    const std::string id = "id-" + std::to_string(i);
    QueueMessage m;
    m.value = "v";
    m.dedup_id = id;
    ASSERT_TRUE(p->publish(m).ok()) << i;
  }
  QueueMessage m;
  m.value = "v";
  m.dedup_id = "id-8";
  const PublishResult r = p->publish(m);
  EXPECT_EQ(r.status, SendStatus::kBusy);
  EXPECT_EQ(p->last_error().code, Errc::kBusy);
  m.dedup_id = "id-3";  // a known one is still found
  EXPECT_TRUE(p->publish(m).duplicate);
}

// Every bucket takes ids. The table once placed an id by (hash | 1) %
// buckets, and with a power-of-two bucket count only the odd buckets were
// used: with two buckets of 8 ways, the ninth id was refused. These twelve
// ids (no more than 8 of them hash to either bucket) must all fit now.
TEST_F(QueueFixture, DedupIdsSpreadOverEveryBucket) {
  QueueOptions o = options();
  o.dedup_capacity = 16;  // two buckets of 8 ways
  ASSERT_TRUE(bus->create_queue("jobs", o));
  auto p = bus->create_queue_publisher("jobs");
  ASSERT_TRUE(p);
  for (int i = 0; i < 12; ++i) {
    const std::string id = "id-" + std::to_string(i);
    QueueMessage m;
    m.value = "v";
    m.dedup_id = id;
    const PublishResult r = p->publish(m);
    ASSERT_TRUE(r.ok()) << id << ": " << p->last_error().to_string();
    EXPECT_FALSE(r.duplicate) << id;
  }
}

// The seed's circuit breaker: after K transient failures in a window the
// worker stops taking messages for a cool-down, then lets one through.
TEST_F(QueueFixture, ACircuitBreakerOpensCoolsDownAndTriesOneMessage) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));
  for (int i = 0; i < 10; ++i) publish("jobs", "m" + std::to_string(i));
  WorkerOptions wo;
  wo.breaker.failures = 3;
  wo.breaker.window_ns = 10 * kSec;
  wo.breaker.cooldown_ns = 5 * kSec;
  Worker w = worker("jobs", wo);
  for (int i = 0; i < 3; ++i) {
    Delivery d = take(w);
    ASSERT_TRUE(d.valid());
    ASSERT_TRUE(d.nack(60 * kSec));  // an outage: every call fails
  }
  EXPECT_EQ(w.stats().breaker, BreakerStatus::kOpen);
  EXPECT_EQ(w.stats().breaker_opened, 1u);
  EXPECT_FALSE(take(w).valid()) << "open: no messages although seven wait";
  clock.advance_ns(4 * kSec);
  EXPECT_FALSE(take(w).valid());
  clock.advance_ns(2 * kSec);
  std::vector<Delivery> batch(4);
  auto n = w.receive(batch, 0);
  ASSERT_TRUE(n);
  ASSERT_EQ(*n, 1u) << "half-open lets exactly one through";
  EXPECT_EQ(w.stats().breaker, BreakerStatus::kHalfOpen);
  EXPECT_FALSE(take(w).valid()) << "while the trial is out";
  ASSERT_TRUE(batch[0].nack(60 * kSec));  // the trial fails: open again
  EXPECT_EQ(w.stats().breaker, BreakerStatus::kOpen);
  clock.advance_ns(6 * kSec);
  Delivery trial = take(w);
  ASSERT_TRUE(trial.valid());
  ASSERT_TRUE(trial.ack());  // recovered: closed
  EXPECT_EQ(w.stats().breaker, BreakerStatus::kClosed);
  n = w.receive(batch, 0);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 4u);
}

TEST_F(QueueFixture, AQueueWideBreakerStopsEveryWorker) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));
  for (int i = 0; i < 5; ++i) publish("jobs", "m" + std::to_string(i));
  WorkerOptions wo;
  wo.breaker.failures = 2;
  wo.breaker.cooldown_ns = 5 * kSec;
  wo.breaker.queue_wide = true;
  Worker a = worker("jobs", wo), b = worker("jobs", wo);
  for (int i = 0; i < 2; ++i) {
    Delivery d = take(a);
    ASSERT_TRUE(d.valid());
    ASSERT_TRUE(d.nack(60 * kSec));
  }
  EXPECT_FALSE(take(b).valid()) << "a's failures opened the breaker for b too";
  EXPECT_EQ(bus->queue_stats("jobs")->breaker, BreakerStatus::kOpen);
  clock.advance_ns(6 * kSec);
  Delivery trial = take(b);
  ASSERT_TRUE(trial.valid());
  EXPECT_FALSE(take(a).valid()) << "one trial for the whole queue";
  ASSERT_TRUE(trial.ack());
  EXPECT_EQ(bus->queue_stats("jobs")->breaker, BreakerStatus::kClosed);
  EXPECT_TRUE(take(a).valid());
}

// Damaged queue files are refused with an error naming the file, never used.
TEST_F(QueueFixture, DamagedQueueFilesAreRefusedNamingTheFile) {
  auto write_at = [](const std::string& path, uint64_t at, const void* bytes, size_t n) {
    const int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0) << path;
    ASSERT_EQ(::pwrite(fd, bytes, n, static_cast<off_t>(at)), static_cast<ssize_t>(n));
    ::close(fd);
  };
  auto expect_refused = [&](const char* queue, Errc code, const std::string& file) {
    for (auto err : {bus->create_worker(queue).error(), bus->create_queue_publisher(queue).error()}) {
      EXPECT_EQ(err.code, code) << err.to_string();
      EXPECT_NE(err.message.find(file), std::string::npos) << err.to_string();
    }
    EXPECT_FALSE(bus->queue_stats(queue));
  };
  for (const char* q : {"a", "b", "c", "d"}) ASSERT_TRUE(bus->create_queue(q, options()));
  const uint32_t other = ipc::format_versions(ipc::FileKind::kQueueState).current + 1;
  const std::string a_state = dir.path() + "/queues/a/state";
  write_at(a_state, offsetof(ipc::FileHeader, format_version), &other, sizeof other);
  expect_refused("a", Errc::kVersionMismatch, a_state);
  const std::string b_state = dir.path() + "/queues/b/state";
  const uint32_t window = 1000;  // a parameter changed: the header checksum catches it
  write_at(b_state, 48 + 4, &window, sizeof window);
  expect_refused("b", Errc::kCorruption, b_state);
  const std::string c_state = dir.path() + "/queues/c/state";
  ASSERT_EQ(::truncate(c_state.c_str(), 4096), 0);
  expect_refused("c", Errc::kCorruption, c_state);
  const std::string d_dedup = dir.path() + "/queues/d/dedup";
  const char junk[8] = {'n', 'o', 't', ' ', 'o', 'u', 'r', 's'};
  write_at(d_dedup, 0, junk, sizeof junk);
  expect_refused("d", Errc::kCorruption, d_dedup);
}

// SQS-style receipts: a detached lease outlives its process and is settled
// later, by anyone holding the receipt, until it expires.
TEST_F(QueueFixture, ADetachedLeaseIsSettledByReceiptFromElsewhere) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));
  publish("jobs", "x");
  publish("jobs", "y");
  std::string rx, ry;
  {
    WorkerOptions wo;
    wo.detached_leases = true;
    Worker w = worker("jobs", wo);
    Delivery x = take(w), y = take(w);
    ASSERT_TRUE(x.valid() && y.valid());
    rx = x.receipt();
    ry = y.receipt();
  }  // the worker is gone; its leases are not
  tick();
  Worker other = worker("jobs");
  EXPECT_FALSE(take(other).valid()) << "detached leases do not end with their worker";
  ASSERT_TRUE(bus->settle_receipt("jobs", rx, Settle::kAck));
  auto again = bus->settle_receipt("jobs", rx, Settle::kAck);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::kLeaseLost);
  clock.advance_ns(31 * kSec);  // y's lease expires
  Delivery y2 = take(other);
  ASSERT_TRUE(y2.valid());
  EXPECT_EQ(y2.value(), "y");
  EXPECT_EQ(bus->settle_receipt("jobs", ry, Settle::kAck).error().code, Errc::kLeaseLost);
  ASSERT_TRUE(bus->settle_receipt("jobs", y2.receipt(), Settle::kReject, Failure{"Manual", "rejected by hand", ""}));
  EXPECT_EQ(bus->queue_stats("jobs")->total().dead_lettered, 1u);
  EXPECT_EQ(bus->settle_receipt("jobs", "garbage", Settle::kAck).error().code, Errc::kInvalidArgument);
}

TEST_F(QueueFixture, PurgeSettlesWaitingDelayedAndLeasedMessages) {
  QueueOptions o = options();
  o.window = 64;
  ASSERT_TRUE(bus->create_queue("jobs", o));
  for (int i = 0; i < 100; ++i) publish("jobs", std::to_string(i));  // more than the window
  Worker w = worker("jobs");
  Delivery held = take(w);
  Delivery failed = take(w);
  ASSERT_TRUE(failed.nack(60 * kSec));
  auto removed = bus->purge_queue("jobs");
  ASSERT_TRUE(removed) << removed.error().to_string();
  EXPECT_EQ(*removed, 100u);
  auto s = bus->queue_stats("jobs");
  EXPECT_EQ(s->total().depth, 0u);
  EXPECT_EQ(held.ack().error().code, Errc::kLeaseLost);
  EXPECT_FALSE(take(w).valid());
  publish("jobs", "after");
  Delivery after = take(w);
  ASSERT_TRUE(after.valid());
  EXPECT_EQ(after.value(), "after");
}

TEST_F(QueueFixture, StatsTellTheSettingsAndWhatIsReallyUnsettled) {
  QueueOptions o = options();
  o.priorities = 2;
  o.window = 128;
  ASSERT_TRUE(bus->create_queue("jobs", o));
  publish("jobs", "first");
  publish("jobs", "second");
  Worker w = worker("jobs");
  Delivery first = take(w), second = take(w);
  ASSERT_TRUE(second.ack());  // settled above an unsettled one
  auto s = bus->queue_stats("jobs");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->total().depth, 2u);
  EXPECT_EQ(s->total().unsettled, 1u);
  EXPECT_EQ(s->options.priorities, 2u);
  EXPECT_EQ(s->options.window, 128u);
  EXPECT_EQ(s->options.lease_ns, 30 * kSec);
  EXPECT_EQ(s->options.retry.max_receives, 3u);
  EXPECT_EQ(s->options.dead_letter_queue, "jobs.dlq");
  EXPECT_FALSE(s->is_dead_letter_queue);
  ASSERT_TRUE(first.reject(Failure{"Bad", "no", ""}));
  EXPECT_TRUE(first.dead_lettered());
  EXPECT_TRUE(bus->queue_stats("jobs.dlq")->is_dead_letter_queue);
  EXPECT_EQ(bus->queue_stats("jobs.dlq")->options.dead_letter_queue, "-");
  EXPECT_EQ(bus->create_queue_publisher("jobs")->priorities(), 2u);
}

TEST_F(QueueFixture, ALastNackSaysItDeadLetteredAndANewDeadLetterSupersedesOldMetadata) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));
  auto p = bus->create_queue_publisher("jobs");
  const Header carried[] = {{"sluice.dlq.error_type", "FromAnEarlierLife"}, {"trace", "t-1"}};
  QueueMessage m;
  m.value = "x";
  m.headers = carried;
  ASSERT_TRUE(p->publish(m).ok());
  Worker w = worker("jobs");
  for (uint32_t attempt = 1; attempt <= 3; ++attempt) {
    Delivery d = take(w);
    ASSERT_TRUE(d.valid());
    ASSERT_TRUE(d.nack());
    EXPECT_EQ(d.dead_lettered(), attempt == 3);
    clock.advance_ns(10 * kSec);
  }
  Worker dw = worker("jobs.dlq");
  Delivery dead = take(dw);
  ASSERT_TRUE(dead.valid());
  EXPECT_EQ(dead.headers().find("sluice.dlq.error_type"), "MaxReceivesExceeded");
  EXPECT_EQ(dead.headers().find("trace"), "t-1");
  // The engine's own headers are refused from callers, and a queue cannot
  // be its own dead-letter queue.
  const Header forged[] = {{"sluice.not_before", "0"}};
  m.headers = forged;
  EXPECT_FALSE(p->publish(m).ok());
  EXPECT_EQ(p->last_error().code, Errc::kInvalidArgument);
  QueueOptions self = options();
  self.dead_letter_queue = "loop";
  EXPECT_EQ(bus->create_queue("loop", self).error().code, Errc::kInvalidArgument);
}

// A dead-letter queue has nowhere to send a letter received too often: it
// keeps it. The last failure's details reach the dead letter.
TEST_F(QueueFixture, ADeadLetterQueueNeverDropsALetterAndTheLastFailureIsRecorded) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));  // max_receives 3
  publish("jobs", "x");
  Worker w = worker("jobs");
  for (int i = 0; i < 3; ++i) {
    Delivery d = take(w);
    ASSERT_TRUE(d.nack(Failure{"Timeout", "downstream timed out", "frame 1"}));
    clock.advance_ns(10 * kSec);
  }
  Worker dw = worker("jobs.dlq");
  for (int i = 0; i < 8; ++i) {  // more than any max_receives of the DLQ's
    Delivery letter = take(dw);
    ASSERT_TRUE(letter.valid()) << "receive " << i;
    EXPECT_EQ(letter.headers().find("sluice.dlq.error_message"),
              "failed on each of 3 receives; the last: Timeout: downstream timed out");
    EXPECT_EQ(letter.headers().find("sluice.dlq.stack_trace"), "frame 1");
    ASSERT_TRUE(letter.nack(0));
    EXPECT_FALSE(letter.dead_lettered());
  }
  EXPECT_EQ(bus->queue_stats("jobs.dlq")->total().depth, 1u);
}

TEST_F(QueueFixture, AReceiptNamesExactlyOneOffsetAndParsesStrictly) {
  QueueOptions o = options();
  o.window = 64;
  ASSERT_TRUE(bus->create_queue("jobs", o));
  publish("jobs", "x");
  WorkerOptions wo;
  wo.detached_leases = true;
  Worker w = worker("jobs", wo);
  Delivery d = take(w);
  const std::string r = d.receipt();
  const std::string word = r.substr(r.rfind(':') + 1);
  // Offset 64 shares offset 0's slot: its receipt must not settle offset 0.
  EXPECT_EQ(bus->settle_receipt("jobs", "0:64:" + word, Settle::kAck).error().code, Errc::kLeaseLost);
  for (const std::string& bad : std::vector<std::string>{" " + r, "+" + r, r + " ", "0:0x0:" + word, "0:0", "0:0:" + word + ":1"})
    EXPECT_EQ(bus->settle_receipt("jobs", bad, Settle::kAck).error().code, Errc::kInvalidArgument) << bad;
  ASSERT_TRUE(bus->settle_receipt("jobs", r, Settle::kAck));
}

TEST_F(QueueFixture, BrowsingShowsUnsettledMessagesAndChangesNothing) {
  ASSERT_TRUE(bus->create_queue("jobs", options()));
  for (const char* v : {"acked", "leased", "delayed", "waiting"}) publish("jobs", v);
  Worker w = worker("jobs");
  Delivery acked = take(w), leased = take(w), delayed = take(w);
  ASSERT_TRUE(acked.ack());
  ASSERT_TRUE(delayed.nack(60 * kSec));
  const uint64_t received = bus->queue_stats("jobs")->total().received;
  auto entries = bus->browse_queue("jobs", 0);
  ASSERT_TRUE(entries) << entries.error().to_string();
  ASSERT_EQ(entries->size(), 3u);
  EXPECT_EQ((*entries)[0].value, "leased");
  EXPECT_EQ((*entries)[0].state, QueueEntryState::kInFlight);
  EXPECT_EQ((*entries)[0].attempts, 1u);
  EXPECT_EQ((*entries)[1].value, "delayed");
  EXPECT_EQ((*entries)[1].state, QueueEntryState::kDelayed);
  EXPECT_EQ((*entries)[2].value, "waiting");
  EXPECT_EQ((*entries)[2].state, QueueEntryState::kWaiting);
  EXPECT_EQ(bus->queue_stats("jobs")->total().received, received);
  auto from = bus->browse_queue("jobs", 0, 3, 10);
  ASSERT_TRUE(from);
  ASSERT_EQ(from->size(), 1u);
  EXPECT_EQ(from->front().offset, 3u);
  EXPECT_EQ(bus->browse_queue("jobs", 1).error().code, Errc::kInvalidArgument);
  Delivery w4 = take(w);
  EXPECT_EQ(w4.value(), "waiting") << "the browse took nothing";
}

TEST_F(QueueFixture, BadInputIsRefusedWithAClearError) {
  EXPECT_EQ(bus->create_worker("nope").error().code, Errc::kNotFound);
  EXPECT_EQ(bus->create_queue_publisher("nope").error().code, Errc::kNotFound);
  EXPECT_EQ(bus->create_queue("a/b", options()).error().code, Errc::kInvalidName);
  EXPECT_EQ(bus->create_queue("..", options()).error().code, Errc::kInvalidName);
  QueueOptions o = options();
  o.priorities = 11;
  EXPECT_EQ(bus->create_queue("q", o).error().code, Errc::kInvalidArgument);
  o = options();
  o.window = 1000;
  EXPECT_EQ(bus->create_queue("q", o).error().code, Errc::kInvalidArgument);
  o = options();
  o.retry.max_receives = 0;
  EXPECT_EQ(bus->create_queue("q", o).error().code, Errc::kInvalidArgument);
  o = options();
  o.dead_letter_queue = "x/y";
  EXPECT_EQ(bus->create_queue("q", o).error().code, Errc::kInvalidName);
  ASSERT_TRUE(bus->create_queue("q", options()));
  EXPECT_EQ(bus->create_queue("q", options()).error().code, Errc::kAlreadyExists);
  auto p = bus->create_queue_publisher("q");
  ASSERT_TRUE(p);
  QueueMessage m;
  m.value = "v";
  m.priority = 1;
  EXPECT_FALSE(p->publish(m).ok());
  EXPECT_EQ(p->last_error().code, Errc::kInvalidArgument);
  m.priority = 0;
  m.deliver_at_unix_ns = clock.now_ns() + 15LL * 24 * 3600 * kSec;
  EXPECT_FALSE(p->publish(m).ok());
  // The internal topic is not reachable as a topic.
  EXPECT_EQ(bus->create_producer("@queue.q").error().code, Errc::kInvalidName);
  auto topics = bus->list_topics();
  ASSERT_TRUE(topics);
  EXPECT_TRUE(topics->empty());
  auto queues = bus->list_queues();
  ASSERT_TRUE(queues);
  EXPECT_EQ(*queues, std::vector<std::string>{"q"});
  ASSERT_TRUE(bus->delete_queue("q"));
  EXPECT_EQ(bus->create_worker("q").error().code, Errc::kNotFound);
  ASSERT_TRUE(bus->create_queue("q", options())) << "a deleted queue's name is free again";
}

}  // namespace
}  // namespace sluice
