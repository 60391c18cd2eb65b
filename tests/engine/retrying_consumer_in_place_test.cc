// RetryMode::kInPlace (docs/queues.md, section 7): a failing record is
// retried where it is, its partition paused and the others flowing; the
// backoff runs on the bus's manual clock, so each poll() shows exactly what
// is due.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "engine/retrying_consumer_fixture.h"

namespace sluice {
namespace {

using test::kMs;
using test::kSec;

struct RetryInPlace : test::InPlaceRetryFixture {};

TEST_F(RetryInPlace, APartitionKeepsItsOrderAcrossTransientFailures) {
  const Header trace[] = {{"trace", "t-1"}};
  send("a");
  send("b", 0, "key-b", trace);
  send("c");
  send("d");
  RetryingConsumer c = helper(in_place());
  EXPECT_EQ(c.mode(), RetryMode::kInPlace);
  EXPECT_EQ(c.retry_queue(), "");
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if ((r.value == "b" && r.attempt < 3) || (r.value == "c" && r.attempt < 2))
      throw TransientError("database overloaded");
  });
  const int64_t t0 = clock.now_ns();

  EXPECT_EQ(poll(c, h), 2u);
  EXPECT_EQ(seen_in(0), (Strings{"a/1", "b/1"})) << "nothing after b until b is settled";
  EXPECT_EQ(committed(0), 1u) << "the group's offset stays at the record retried";
  ASSERT_EQ(c.stats().paused.size(), 1u);
  const PausedPartition p = c.stats().paused[0];
  EXPECT_EQ(p.partition, 0u);
  EXPECT_EQ(p.offset, 1u);
  EXPECT_EQ(p.failed_attempts, 1u);
  EXPECT_EQ(p.retry_at_ns, t0 + 1 * kSec);
  EXPECT_EQ(p.paused_since_ns, t0);
  EXPECT_TRUE(c.stats().is_paused(0));
  EXPECT_FALSE(c.stats().is_paused(1));

  clock.advance_ns(900 * kMs);
  EXPECT_EQ(poll(c, h), 0u) << "retried before its backoff";
  clock.advance_ns(200 * kMs);
  EXPECT_EQ(poll(c, h), 1u);
  EXPECT_EQ(committed(0), 1u);
  EXPECT_EQ(c.stats().paused.at(0).failed_attempts, 2u);
  clock.advance_ns(1900 * kMs);
  EXPECT_EQ(poll(c, h), 0u) << "retried before its backoff (2 s after attempt 2)";
  clock.advance_ns(200 * kMs);
  EXPECT_EQ(poll(c, h), 2u) << "b succeeds, then c fails and pauses the partition again";
  EXPECT_EQ(committed(0), 2u);
  ASSERT_TRUE(c.stats().is_paused(0));
  EXPECT_EQ(c.stats().paused.at(0).offset, 2u);
  clock.advance_ns(1100 * kMs);
  EXPECT_EQ(poll(c, h), 2u);
  EXPECT_EQ(poll(c, h), 0u);

  EXPECT_EQ(seen_in(0), (Strings{"a/1", "b/1", "b/2", "b/3", "c/1", "c/2", "d/1"}));
  EXPECT_EQ(committed(0), 4u);
  for (const test::Seen& s : seen) {
    if (s.value != "b") continue;
    // Every attempt reads the record from the log again, as it was written.
    EXPECT_EQ(s.offset, 1u);
    EXPECT_EQ(s.key, "key-b");
    EXPECT_EQ(s.timestamp_ns, seen[1].timestamp_ns);
    ASSERT_EQ(s.headers.size(), 1u);
    EXPECT_EQ(s.headers[0], std::make_pair(std::string("trace"), std::string("t-1")));
  }
  const RetryingConsumerStats& st = c.stats();
  EXPECT_EQ(st.records, 4u);
  EXPECT_EQ(st.attempts, 7u);
  EXPECT_EQ(st.retried, 3u);
  EXPECT_EQ(st.succeeded_after_retry, 2u);
  EXPECT_EQ(st.dead_lettered, 0u);
  EXPECT_EQ(st.pauses, 2u);
  EXPECT_EQ(st.paused_ns, 3200 * kMs + 1100 * kMs);
  EXPECT_TRUE(st.paused.empty());
  EXPECT_FALSE(bus->queue_stats("orders.billing.retry")) << "in place: no retry queue";
}

TEST_F(RetryInPlace, OtherPartitionsFlowWhileOneIsPaused) {
  send("p0-0", 0);
  send("p0-1", 0);
  send("p1-0", 1);
  RetryingConsumer c = helper(in_place());
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value == "p0-0" && r.attempt < 3) throw TransientError("down");
  });
  EXPECT_EQ(poll(c, h), 2u);
  EXPECT_EQ(seen_in(0), (Strings{"p0-0/1"}));
  EXPECT_EQ(seen_in(1), (Strings{"p1-0/1"}));

  // Written during the pause: partition 1's are handled and committed at
  // once; partition 0's wait behind its retried record.
  send("p1-1", 1);
  send("p0-2", 0);
  send("p1-2", 1);
  EXPECT_EQ(poll(c, h), 2u);
  EXPECT_EQ(seen_in(1), (Strings{"p1-0/1", "p1-1/1", "p1-2/1"}));
  EXPECT_EQ(committed(1), 3u);
  EXPECT_EQ(committed(0), 0u);
  EXPECT_EQ(poll(c, h), 0u) << "a paused partition is not polled busily";
  EXPECT_TRUE(c.stats().is_paused(0));

  clock.advance_ns(1100 * kMs);
  send("p1-3", 1);
  EXPECT_EQ(poll(c, h), 2u) << "the retry and the other partition in one poll";
  EXPECT_EQ(committed(1), 4u);
  EXPECT_EQ(committed(0), 0u);
  clock.advance_ns(2100 * kMs);
  EXPECT_EQ(poll(c, h), 3u);
  EXPECT_EQ(seen_in(0), (Strings{"p0-0/1", "p0-0/2", "p0-0/3", "p0-1/1", "p0-2/1"}));
  EXPECT_EQ(seen_in(1), (Strings{"p1-0/1", "p1-1/1", "p1-2/1", "p1-3/1"}));
  EXPECT_EQ(committed(0), 3u);
  EXPECT_EQ(committed(1), 4u);
  EXPECT_FALSE(c.stats().is_paused(0));
  EXPECT_EQ(c.stats().records, 7u) << "a record read past during a pause is not counted twice";
}

TEST_F(RetryInPlace, ARecordFailingEveryAttemptIsDeadLetteredThenThePartitionResumes) {
  const Header trace[] = {{"trace", "t-7"}};
  send("x", 1);
  send("poison", 1, "key-p", trace);
  send("after", 1);
  RetryingConsumer c = helper(in_place());
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value == "poison") throw std::runtime_error("bad row " + std::to_string(r.attempt));
  });
  EXPECT_EQ(poll(c, h), 2u);
  clock.advance_ns(1100 * kMs);
  EXPECT_EQ(poll(c, h), 1u);
  EXPECT_EQ(committed(1), 1u);
  clock.advance_ns(2100 * kMs);
  EXPECT_EQ(poll(c, h), 2u) << "attempt 3 fails and is dead-lettered; the next record follows";
  EXPECT_EQ(seen_in(1), (Strings{"x/1", "poison/1", "poison/2", "poison/3", "after/1"}));
  EXPECT_EQ(committed(1), 3u);
  EXPECT_FALSE(c.stats().is_paused(1));
  EXPECT_EQ(c.stats().retried, 2u);
  EXPECT_EQ(c.stats().dead_lettered, 1u);

  Worker dw = worker("orders.dlq");
  Delivery dead = take(dw);
  ASSERT_TRUE(dead.valid());
  EXPECT_EQ(dead.value(), "poison");
  const HeadersView& hv = dead.headers();
  EXPECT_EQ(hv.find("sluice.dlq.source"), "topic:orders");
  EXPECT_EQ(hv.find("sluice.dlq.source_partition"), "1");
  EXPECT_EQ(hv.find("sluice.dlq.source_offset"), "1");
  EXPECT_EQ(hv.find("sluice.dlq.consumer_group"), "billing");
  EXPECT_EQ(hv.find("sluice.dlq.attempts"), "3");
  EXPECT_EQ(hv.find("sluice.dlq.error_type"), "MaxReceivesExceeded");
  EXPECT_NE(hv.find("sluice.dlq.error_message").find("std::runtime_error: bad row 3"), std::string_view::npos)
      << hv.find("sluice.dlq.error_message");
  EXPECT_EQ(hv.find("trace"), "t-7");
  EXPECT_EQ(hv.find("sluice.stream.key"), "key-p");
  EXPECT_FALSE(take(dw).valid()) << "one dead letter";
}

TEST_F(RetryInPlace, APermanentFailureIsDeadLetteredAtOnceWithoutPausing) {
  send("fine");
  send("bad", 0, "key-b");
  send("after");
  RetryingConsumer c = helper(in_place());
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value == "bad") throw PermanentError("schema mismatch");
  });
  EXPECT_EQ(poll(c, h), 3u);
  EXPECT_EQ(seen_in(0), (Strings{"fine/1", "bad/1", "after/1"}));
  EXPECT_EQ(committed(0), 3u);
  EXPECT_EQ(c.stats().pauses, 0u);
  EXPECT_EQ(c.stats().retried, 0u);
  EXPECT_EQ(c.stats().dead_lettered, 1u);
  Worker dw = worker("orders.dlq");
  Delivery dead = take(dw);
  ASSERT_TRUE(dead.valid());
  const HeadersView& hv = dead.headers();
  EXPECT_EQ(hv.find("sluice.dlq.source"), "topic:orders");
  EXPECT_EQ(hv.find("sluice.dlq.source_partition"), "0");
  EXPECT_EQ(hv.find("sluice.dlq.source_offset"), "1");
  EXPECT_EQ(hv.find("sluice.dlq.consumer_group"), "billing");
  EXPECT_EQ(hv.find("sluice.dlq.error_type"), "PermanentError");
  EXPECT_EQ(hv.find("sluice.dlq.error_message"), "schema mismatch");
  EXPECT_EQ(hv.find("sluice.dlq.attempts"), "1");
}

TEST_F(RetryInPlace, APermanentFailureOnARetryIsDeadLetteredAtOnce) {
  send("flaky");
  send("next");
  RetryingConsumer c = helper(in_place());
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value != "flaky") return;
    if (r.attempt == 1) throw TransientError("timeout");
    throw PermanentError("now it is invalid");
  });
  EXPECT_EQ(poll(c, h), 1u);
  clock.advance_ns(1100 * kMs);
  EXPECT_EQ(poll(c, h), 2u);
  EXPECT_EQ(seen_in(0), (Strings{"flaky/1", "flaky/2", "next/1"}));
  EXPECT_EQ(committed(0), 2u);
  Worker dw = worker("orders.dlq");
  Delivery dead = take(dw);
  ASSERT_TRUE(dead.valid());
  EXPECT_EQ(dead.headers().find("sluice.dlq.error_type"), "PermanentError");
  EXPECT_EQ(dead.headers().find("sluice.dlq.attempts"), "2");
}

TEST_F(RetryInPlace, TheCommittedOffsetNeverPassesThePausedRecord) {
  for (int i = 0; i < 10; ++i) send("r" + std::to_string(i));
  RetryingConsumerOptions o = in_place();
  // The consumer's own auto-commit keeps the paused record too: its
  // position in the paused partition is the record.
  o.consumer.auto_commit = true;
  o.consumer.auto_commit_interval_ns = 0;
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value == "r3") throw TransientError("down");
  });
  {
    RetryingConsumer c = helper(o);
    EXPECT_EQ(poll(c, h), 4u);
    EXPECT_EQ(committed(0), 3u);
    for (int i = 0; i < 5; ++i) {
      clock.advance_ns(100 * kMs);
      EXPECT_EQ(poll(c, h), 0u);
      EXPECT_EQ(committed(0), 3u) << i;
    }
    // run() commits synchronously when it stops: the same rule.
    int polls = 0;
    auto n = c.run(h, [&] { return ++polls > 3; }, 0, 1 * kMs);
    ASSERT_TRUE(n) << n.error().to_string();
    EXPECT_EQ(*n, 0u);
    EXPECT_EQ(committed(0), 3u);
  }  // the helper goes away paused: its consumer commits nothing past r3 either
  EXPECT_EQ(committed(0), 3u);

  // A new member (a restart) takes the record again when its backoff is
  // over, at attempt 2: the group's offsets file keeps the attempts begun
  // on it and when the next is due.
  seen.clear();
  RetryingConsumer again = helper(in_place());
  const RecordHandler ok = recorder([](const StreamRecord&) {});
  EXPECT_EQ(poll(again, ok), 0u) << "r3's backoff has 500 ms to go";
  EXPECT_EQ(committed(0), 3u);
  clock.advance_ns(500 * kMs);
  EXPECT_EQ(poll(again, ok), 7u);
  EXPECT_EQ(seen_in(0), (Strings{"r3/2", "r4/1", "r5/1", "r6/1", "r7/1", "r8/1", "r9/1"}));
  EXPECT_EQ(committed(0), 10u);
}

TEST_F(RetryInPlace, AnAdminSeekOfAPausedPartitionEndsThePause) {
  for (int i = 0; i < 4; ++i) send("r" + std::to_string(i));
  RetryingConsumer c = helper(in_place());
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value == "r1") throw TransientError("down");
  });
  EXPECT_EQ(poll(c, h), 2u);
  ASSERT_TRUE(c.stats().is_paused(0));
  // An operator skips the stuck record: the member follows the group.
  ASSERT_TRUE(bus->seek_group("billing", "orders", SeekTarget::offset(2), 0));
  EXPECT_EQ(poll(c, h), 2u);
  EXPECT_EQ(seen_in(0), (Strings{"r0/1", "r1/1", "r2/1", "r3/1"}));
  EXPECT_FALSE(c.stats().is_paused(0));
  EXPECT_EQ(committed(0), 4u);
  clock.advance_ns(10 * kSec);
  EXPECT_EQ(poll(c, h), 0u) << "the abandoned retry does not come back";
}

TEST_F(RetryInPlace, ARefusedDeadLetterIsTriedAgainWithoutRunningTheHandler) {
  RetryingConsumerOptions o = in_place();
  o.queue.segment_bytes = 64 << 10;
  o.queue.max_depth_bytes = 64 << 10;
  RetryingConsumer c = helper(o);
  const std::string big(20 << 10, 'v');
  for (int i = 0; i < 4; ++i) send(big + std::to_string(i));
  const RecordHandler h = recorder([](const StreamRecord&) { throw PermanentError("invalid"); });
  auto n = c.poll(h);
  ASSERT_FALSE(n) << "four 20 KiB letters cannot fit a 64 KiB dead-letter queue";
  const uint64_t accepted = queue_stats("orders.dlq").published;
  ASSERT_GT(accepted, 0u);
  ASSERT_LT(accepted, 4u);
  EXPECT_EQ(committed(0), accepted) << "the group's offset stays at the record whose letter was refused";
  ASSERT_TRUE(c.stats().is_paused(0));
  EXPECT_EQ(c.stats().paused.at(0).offset, accepted);
  const size_t handler_calls = seen.size();
  EXPECT_EQ(handler_calls, accepted + 1);

  // Room again: the letter goes out without another attempt, then the rest.
  Worker dw = worker("orders.dlq");
  for (uint64_t i = 0; i < accepted; ++i) {
    Delivery d = take(dw);
    ASSERT_TRUE(d.valid());
    ASSERT_TRUE(d.ack());
  }
  n = c.poll(h);
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(committed(0), 4u);
  EXPECT_EQ(seen.size(), 4u) << "each record's handler ran once";
  EXPECT_EQ(c.stats().dead_lettered, 4u);
  EXPECT_FALSE(c.stats().is_paused(0));
}

TEST_F(RetryInPlace, AtMostOnceIsRefused) {
  RetryingConsumerOptions o = in_place();
  o.consumer.guarantee = Guarantee::kAtMostOnce;
  auto r = RetryingConsumer::create(*bus, "orders", "billing", o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
}

}  // namespace
}  // namespace sluice
