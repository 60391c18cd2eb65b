#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/retrying_consumer_fixture.h"
#include "support/test_support.h"

namespace sluice {
namespace {

using test::kMs;
using test::kSec;
using test::RetryingConsumerFixture;
using test::Seen;

TEST_F(RetryingConsumerFixture, TheQueuesAreNamedAfterTheTopicAndGroup) {
  RetryingConsumer c = helper();
  EXPECT_EQ(c.retry_queue(), "orders.billing.retry");
  EXPECT_EQ(c.dead_letter_queue(), "orders.dlq");
  auto s = bus->queue_stats("orders.billing.retry");
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(s->dead_letter_queue, "orders.dlq") << "a member dying with a retry dead-letters it to the same DLQ";
}

TEST_F(RetryingConsumerFixture, ATransientFailureIsRetriedWithBackoffWhileTheGroupMovesOn) {
  const Header trace[] = {{"trace", "t-1"}};
  send("a", 0, "key-a", trace);
  send("b");
  send("c");
  RetryingConsumer c = helper();
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value == "a" && r.attempt < 3) throw TransientError("database overloaded");
  });

  EXPECT_EQ(poll(c, h), 3u);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].value, "a");
  EXPECT_EQ(seen[1].value, "b") << "the group moves on at once";
  EXPECT_EQ(seen[2].value, "c");
  EXPECT_EQ(committed(0), 3u) << "committed past the failed record too: its retry is in the retry queue";

  // Backoff after attempt 1: 1 s.
  clock.advance_ns(900 * kMs);
  EXPECT_EQ(poll(c, h), 0u) << "retried before its backoff";
  clock.advance_ns(200 * kMs);
  EXPECT_EQ(poll(c, h), 1u);
  // After attempt 2: 2 s.
  clock.advance_ns(1900 * kMs);
  EXPECT_EQ(poll(c, h), 0u) << "retried before its backoff";
  clock.advance_ns(200 * kMs);
  EXPECT_EQ(poll(c, h), 1u);
  clock.advance_ns(60 * kSec);
  EXPECT_EQ(poll(c, h), 0u) << "a success settles the retry";

  std::vector<uint32_t> attempts_of_a;
  for (const Seen& s : seen) {
    if (s.value != "a") continue;
    attempts_of_a.push_back(s.attempt);
    // Every attempt sees the record as the topic has it.
    EXPECT_EQ(s.partition, 0u);
    EXPECT_EQ(s.offset, 0u);
    EXPECT_EQ(s.key, "key-a");
    EXPECT_EQ(s.timestamp_ns, seen[0].timestamp_ns);
    ASSERT_EQ(s.headers.size(), 1u) << "the helper's sluice.stream.* headers are not the handler's";
    EXPECT_EQ(s.headers[0], std::make_pair(std::string("trace"), std::string("t-1")));
  }
  EXPECT_EQ(attempts_of_a, (std::vector<uint32_t>{1, 2, 3}));

  const RetryingConsumerStats& st = c.stats();
  EXPECT_EQ(st.records, 3u);
  EXPECT_EQ(st.attempts, 5u);
  EXPECT_EQ(st.retried, 2u);
  EXPECT_EQ(st.succeeded_after_retry, 1u);
  EXPECT_EQ(st.dead_lettered, 0u);
  const QueueLevelStats q = queue_stats("orders.billing.retry");
  EXPECT_EQ(q.published, 1u);
  EXPECT_EQ(q.acked, 1u);
  EXPECT_EQ(q.depth, 0u);
  EXPECT_EQ(queue_stats("orders.dlq").published, 0u);
}

TEST_F(RetryingConsumerFixture, APermanentFailureIsDeadLetteredAtOnceWithItsSource) {
  const Header trace[] = {{"trace", "t-9"}};
  send("fine", 1);
  send("bad", 1, "key-b", trace);
  send("after", 1);
  RetryingConsumer c = helper();
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value == "bad") throw PermanentError("schema mismatch");
  });
  EXPECT_EQ(poll(c, h), 3u);
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ(c.stats().dead_lettered, 1u);
  EXPECT_EQ(c.stats().retried, 0u);
  EXPECT_EQ(committed(1), 3u);
  EXPECT_EQ(queue_stats("orders.billing.retry").published, 0u) << "a permanent failure is not retried";

  Worker dw = worker("orders.dlq");
  Delivery dead = take(dw);
  ASSERT_TRUE(dead.valid());
  EXPECT_EQ(dead.value(), "bad");
  const HeadersView& hv = dead.headers();
  EXPECT_EQ(hv.find("sluice.dlq.source"), "topic:orders");
  EXPECT_EQ(hv.find("sluice.dlq.source_partition"), "1");
  EXPECT_EQ(hv.find("sluice.dlq.source_offset"), "1");
  EXPECT_EQ(hv.find("sluice.dlq.consumer_group"), "billing");
  EXPECT_EQ(hv.find("sluice.dlq.error_type"), "PermanentError");
  EXPECT_EQ(hv.find("sluice.dlq.error_message"), "schema mismatch");
  EXPECT_FALSE(hv.find("sluice.dlq.stack_trace").empty());
  EXPECT_EQ(hv.find("sluice.dlq.attempts"), "1");
  EXPECT_EQ(hv.find("sluice.dlq.failed_at").size(), std::string_view("2023-11-14T22:13:20.000Z").size());
  EXPECT_FALSE(hv.find("sluice.dlq.pid").empty());
  // The record itself, for a replay: its headers and key.
  EXPECT_EQ(hv.find("trace"), "t-9");
  EXPECT_EQ(hv.find("sluice.stream.key"), "key-b");
  EXPECT_FALSE(take(dw).valid()) << "one dead letter";
}

TEST_F(RetryingConsumerFixture, AFailureOnEveryAttemptIsDeadLetteredAfterMaxReceives) {
  send("x");
  send("poison", 0, "key-p");
  RetryingConsumer c = helper();
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value == "poison") throw std::runtime_error("bad row " + std::to_string(r.attempt));
  });
  EXPECT_EQ(poll(c, h), 2u);
  clock.advance_ns(1100 * kMs);
  EXPECT_EQ(poll(c, h), 1u);
  clock.advance_ns(2100 * kMs);
  EXPECT_EQ(poll(c, h), 1u);
  clock.advance_ns(300 * kSec);
  EXPECT_EQ(poll(c, h), 0u) << "no attempt after max_receives";

  std::vector<uint32_t> attempts;
  for (const Seen& s : seen)
    if (s.value == "poison") attempts.push_back(s.attempt);
  EXPECT_EQ(attempts, (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(c.stats().retried, 2u);
  EXPECT_EQ(c.stats().dead_lettered, 1u);
  EXPECT_EQ(committed(0), 2u);

  // The helper made the final decision, not the queue.
  const QueueLevelStats q = queue_stats("orders.billing.retry");
  EXPECT_EQ(q.dead_lettered, 0u);
  EXPECT_EQ(q.acked, 1u);
  EXPECT_EQ(q.depth, 0u);
  Worker dw = worker("orders.dlq");
  Delivery dead = take(dw);
  ASSERT_TRUE(dead.valid());
  EXPECT_EQ(dead.value(), "poison");
  const HeadersView& hv = dead.headers();
  EXPECT_EQ(hv.find("sluice.dlq.source"), "topic:orders");
  EXPECT_EQ(hv.find("sluice.dlq.source_partition"), "0");
  EXPECT_EQ(hv.find("sluice.dlq.source_offset"), "1");
  EXPECT_EQ(hv.find("sluice.dlq.attempts"), "3");
  EXPECT_EQ(hv.find("sluice.dlq.error_type"), "MaxReceivesExceeded");
  EXPECT_NE(hv.find("sluice.dlq.error_message").find("std::runtime_error: bad row 3"), std::string_view::npos)
      << hv.find("sluice.dlq.error_message");
  EXPECT_EQ(hv.find("sluice.stream.key"), "key-p");
  EXPECT_FALSE(take(dw).valid());
}

TEST_F(RetryingConsumerFixture, ALastAttemptWhoseHolderDiedIsDeadLetteredWithItsStreamSource) {
  send("poison");
  RetryingConsumer c = helper();
  const RecordHandler h = recorder([](const StreamRecord&) { throw TransientError("down"); });
  EXPECT_EQ(poll(c, h), 1u);
  clock.advance_ns(1100 * kMs);
  EXPECT_EQ(poll(c, h), 1u);  // attempt 2
  clock.advance_ns(2100 * kMs);
  {
    // Another member takes attempt 3 and dies holding it.
    Worker other = worker("orders.billing.retry");
    Delivery held = take(other);
    ASSERT_TRUE(held.valid());
    EXPECT_EQ(held.attempt(), 2u) << "the queue's second receive is the record's third attempt";
  }
  clock.advance_ns(11 * kSec);  // the lease runs out
  EXPECT_EQ(poll(c, h), 1u);
  EXPECT_EQ(seen.size(), 2u) << "an attempt beyond max_receives is not run";
  EXPECT_EQ(queue_stats("orders.billing.retry").depth, 0u);
  Worker dw = worker("orders.dlq");
  Delivery dead = take(dw);
  ASSERT_TRUE(dead.valid());
  EXPECT_EQ(dead.headers().find("sluice.dlq.source"), "topic:orders");
  EXPECT_EQ(dead.headers().find("sluice.dlq.source_offset"), "0");
  EXPECT_EQ(dead.headers().find("sluice.dlq.error_type"), "MaxReceivesExceeded");
}

TEST_F(RetryingConsumerFixture, ARetryWhoseHoldersAllDiedIsDeadLetteredByTheQueue) {
  send("poison");
  RetryingConsumer c = helper();
  const RecordHandler h = recorder([](const StreamRecord&) { throw TransientError("down"); });
  EXPECT_EQ(poll(c, h), 1u);
  clock.advance_ns(1100 * kMs);
  EXPECT_EQ(poll(c, h), 1u);  // attempt 2
  clock.advance_ns(2100 * kMs);
  Worker other = worker("orders.billing.retry");
  for (int deaths = 0; deaths < 2; ++deaths) {
    Delivery held = take(other);  // dropped unsettled: its holder "died"
    ASSERT_TRUE(held.valid()) << deaths;
    clock.advance_ns(11 * kSec);
  }
  EXPECT_EQ(poll(c, h), 0u);
  EXPECT_FALSE(take(other).valid());
  // Nothing lost: the queue dead-lettered it to the same DLQ, the source
  // still in its headers.
  EXPECT_EQ(queue_stats("orders.billing.retry").dead_lettered, 1u);
  Worker dw = worker("orders.dlq");
  Delivery dead = take(dw);
  ASSERT_TRUE(dead.valid());
  EXPECT_EQ(dead.value(), "poison");
  EXPECT_EQ(dead.headers().find("sluice.dlq.source"), "queue:orders.billing.retry");
  EXPECT_EQ(dead.headers().find("sluice.stream.topic"), "orders");
  EXPECT_EQ(dead.headers().find("sluice.stream.partition"), "0");
  EXPECT_EQ(dead.headers().find("sluice.stream.offset"), "0");
}

TEST_F(RetryingConsumerFixture, ARetryQueueThatRefusesKeepsTheRecordUncommitted) {
  RetryingConsumerOptions o = options();
  o.queue.segment_bytes = 64 << 10;
  o.queue.max_depth_bytes = 64 << 10;
  RetryingConsumer c = helper(o);
  const std::string big(20 << 10, 'v');
  for (int i = 0; i < 6; ++i) send(big + std::to_string(i));
  const RecordHandler h = recorder([](const StreamRecord&) { throw TransientError("down"); });
  auto n = c.poll(h);
  ASSERT_FALSE(n) << "six 20 KiB retries cannot fit a 64 KiB retry queue";
  const uint64_t accepted = queue_stats("orders.billing.retry").published;
  ASSERT_GT(accepted, 0u);
  ASSERT_LT(accepted, 6u);
  EXPECT_EQ(committed(0), accepted) << "committed up to the first record not handed on";
  EXPECT_EQ(c.consumer().position(0), accepted) << "and read again from there";
}

TEST_F(RetryingConsumerFixture, RunStopsAfterMaxRecordsOrWhenTold) {
  for (const char* v : {"a", "b", "c", "d"}) send(v);
  RetryingConsumer c = helper();
  const RecordHandler h = recorder([](const StreamRecord&) {});
  auto n = c.run(h, {}, 3);
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(*n, 3u);
  EXPECT_EQ(committed(0), 3u);
  n = c.run(h, [] { return true; });
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 0u);
  int idle_checks = 0;
  n = c.run(h, [&] { return seen.size() == 4 && ++idle_checks > 1; }, 0, 1 * kMs);
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(committed(0), 4u);
}

TEST_F(RetryingConsumerFixture, BadOptionsAreRefused) {
  EXPECT_FALSE(RetryingConsumer::create(*bus, "orders", "", options())) << "a group is required";
  EXPECT_FALSE(RetryingConsumer::create(*bus, "nope", "billing", options()));
  auto queues = bus->list_queues();
  ASSERT_TRUE(queues);
  EXPECT_TRUE(queues->empty()) << "nothing is created for a consumer that cannot be";
  RetryingConsumerOptions o = options();
  o.retry.max_receives = 0;
  EXPECT_FALSE(RetryingConsumer::create(*bus, "orders", "billing", o));
  // A retry queue that dead-letters elsewhere would lose the "same DLQ" promise.
  QueueOptions q;
  q.dead_letter_queue = "elsewhere";
  ASSERT_TRUE(bus->create_queue("orders.audit.retry", q));
  auto r = RetryingConsumer::create(*bus, "orders", "audit", options());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
}

}  // namespace
}  // namespace sluice
