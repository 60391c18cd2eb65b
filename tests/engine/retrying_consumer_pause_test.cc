// RetryMode::kInPlace on the consumer's pause/resume (docs/queues.md,
// section 7, "In place"): a partition waiting out a retry's backoff reads
// nothing, so the records appended meanwhile are read once, after the
// retry; the consumer's own position (and so its commits) stays at the
// record retried. And the attempts begun on a record, and when the next is
// due, kept in the group's offsets file (GroupSlot::retry_attempts,
// retry_at_ns), outlive the member.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <string>
#include <vector>

#include "engine/retrying_consumer_fixture.h"
#include "topic_format.h"

namespace sluice {
namespace {

using test::kMs;
using test::kSec;

struct RetryInPlacePaused : test::InPlaceRetryFixture {

  // The group's retry_attempts and retry_at_ns words of `partition`, read
  // or written in the file as another process would (the bus maps the same
  // pages).
  std::string offsets_path() const { return dir.path() + "/groups/billing/orders.offsets"; }
  static off_t word_at(uint32_t partition, size_t field) {
    return static_cast<off_t>(format::kGroupSlotsOffset + partition * sizeof(format::GroupSlot) + field);
  }
  uint64_t read_word(off_t at) const {
    uint64_t w = ~uint64_t{0};
    const int fd = ::open(offsets_path().c_str(), O_RDONLY);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::pread(fd, &w, sizeof w, at), static_cast<ssize_t>(sizeof w));
    ::close(fd);
    return w;
  }
  void write_word(off_t at, uint64_t w) const {
    const int fd = ::open(offsets_path().c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, &w, sizeof w, at), static_cast<ssize_t>(sizeof w));
    ::close(fd);
  }
  uint64_t attempts_word(uint32_t partition) const {
    return read_word(word_at(partition, offsetof(format::GroupSlot, retry_attempts)));
  }
  void set_attempts_word(uint32_t partition, uint64_t w) const {
    write_word(word_at(partition, offsetof(format::GroupSlot, retry_attempts)), w);
  }
  int64_t deadline_word(uint32_t partition) const {
    return static_cast<int64_t>(read_word(word_at(partition, offsetof(format::GroupSlot, retry_at_ns))));
  }
  void set_deadline_word(uint32_t partition, int64_t t) const {
    write_word(word_at(partition, offsetof(format::GroupSlot, retry_at_ns)), static_cast<uint64_t>(t));
  }
  // A handler that fails r0's first attempt, and a member that sends r0 and
  // r1, fails r0 with it and exits, leaving r0 in its backoff.
  RecordHandler fails_r0_once() {
    return recorder([](const StreamRecord& r) {
      if (r.value == "r0" && r.attempt == 1) throw TransientError("down");
    });
  }
  void leave_r0_in_backoff(const RecordHandler& h) {
    send("r0");
    send("r1");
    RetryingConsumer c = helper(in_place());
    EXPECT_EQ(poll(c, h), 1u);
  }
  // When the helper's paused `partition` retries next; -1 if not paused.
  static int64_t retry_at(const RetryingConsumer& c, uint32_t partition) {
    for (const PausedPartition& p : c.stats().paused)
      if (p.partition == partition) return p.retry_at_ns;
    return -1;
  }
};

TEST_F(RetryInPlacePaused, RecordsAppendedDuringTheBackoffAreReadOnlyOnce) {
  send("a");
  send("b");
  send("q0", 1);
  RetryingConsumer c = helper(in_place());
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value == "b" && r.attempt == 1) throw TransientError("down");
  });
  EXPECT_EQ(poll(c, h), 3u);
  ASSERT_TRUE(c.stats().is_paused(0));
  EXPECT_EQ(c.consumer().stats().records, 3u);

  // Appended while b waits: partition 0's are not read at all (the old
  // helper parked the partition at its end and read, then dropped, each of
  // them); partition 1 flows.
  for (int i = 0; i < 5; ++i) {
    send("n" + std::to_string(i));
    clock.advance_ns(100 * kMs);
    EXPECT_EQ(poll(c, h), 0u) << i;
  }
  send("q1", 1);
  EXPECT_EQ(poll(c, h), 1u);
  EXPECT_EQ(c.consumer().stats().records, 4u) << "the paused partition read nothing while it waited";
  EXPECT_EQ(c.consumer().position(0), 1u) << "the consumer waits at the record retried";

  clock.advance_ns(600 * kMs);
  EXPECT_EQ(poll(c, h), 6u) << "b's second attempt, then n0..n4";
  EXPECT_EQ(seen_in(0), (Strings{"a/1", "b/1", "b/2", "n0/1", "n1/1", "n2/1", "n3/1", "n4/1"}));
  EXPECT_EQ(seen_in(1), (Strings{"q0/1", "q1/1"}));
  // 3 + q1 + b again + five new ones, each once.
  EXPECT_EQ(c.consumer().stats().records, 10u) << "no record was read twice but the one retried";
  EXPECT_EQ(committed(0), 7u);
  EXPECT_EQ(committed(1), 2u);
  EXPECT_FALSE(c.stats().is_paused(0));
}

TEST_F(RetryInPlacePaused, TheConsumersCommitOfAPausedPartitionIsTheRecordRetried) {
  for (int i = 0; i < 4; ++i) send("r" + std::to_string(i));
  RetryingConsumer c = helper(in_place());
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value == "r1") throw TransientError("down");
  });
  EXPECT_EQ(poll(c, h), 2u);
  ASSERT_TRUE(c.stats().is_paused(0));
  EXPECT_EQ(c.consumer().position(0), 1u);
  // Committing through the helper's consumer is safe: its position in the
  // paused partition is the record retried (the old helper's was the end).
  ASSERT_TRUE(c.consumer().commit_sync());
  EXPECT_EQ(committed(0), 1u);
  send("r4");
  EXPECT_EQ(poll(c, h), 0u);
  ASSERT_TRUE(c.consumer().commit_sync());
  EXPECT_EQ(committed(0), 1u);
}

TEST_F(RetryInPlacePaused, TheAttemptCountSurvivesARestartOfTheMember) {
  send("r0");
  send("r1");
  send("r2");
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value == "r1") throw TransientError("down");
  });
  int64_t due = 0;
  {
    RetryingConsumer c = helper(in_place());
    EXPECT_EQ(poll(c, h), 2u);
    EXPECT_EQ(attempts_word(0), format::retry_attempts_word(1, 1));
    EXPECT_EQ(deadline_word(0), clock.now_ns() + 1 * kSec);
    clock.advance_ns(1100 * kMs);
    EXPECT_EQ(poll(c, h), 1u);
    EXPECT_EQ(attempts_word(0), format::retry_attempts_word(1, 2));
    due = clock.now_ns() + 2 * kSec;
    EXPECT_EQ(deadline_word(0), due);
    EXPECT_EQ(committed(0), 1u);
  }  // stops (or dies) in the backoff after attempt 2

  // The member that follows waits out that backoff, then goes on at
  // attempt 3, which is the last: the record is dead-lettered with its
  // three attempts, and the partition moves on.
  RetryingConsumer again = helper(in_place());
  EXPECT_EQ(poll(again, h), 0u);
  EXPECT_EQ(retry_at(again, 0), due);
  clock.set_ns(due);
  EXPECT_EQ(poll(again, h), 2u);
  EXPECT_EQ(seen_in(0), (Strings{"r0/1", "r1/1", "r1/2", "r1/3", "r2/1"}));
  EXPECT_EQ(committed(0), 3u);
  EXPECT_EQ(attempts_word(0), 0u) << "a settled record's count is cleared";
  EXPECT_EQ(deadline_word(0), 0);
  EXPECT_EQ(again.stats().dead_lettered, 1u);
  Worker dw = worker("orders.dlq");
  Delivery dead = take(dw);
  ASSERT_TRUE(dead.valid());
  EXPECT_EQ(dead.headers().find("sluice.dlq.source_offset"), "1");
  EXPECT_EQ(dead.headers().find("sluice.dlq.attempts"), "3");
  EXPECT_EQ(dead.headers().find("sluice.dlq.error_type"), "MaxReceivesExceeded");
}

// A member dropped in a backoff (as a SIGKILL leaves it: the process test
// kills one) is followed by one that waits out the rest of that backoff on
// the bus clock, paused at the record while its other partitions flow.
TEST_F(RetryInPlacePaused, ARestartedMemberWaitsOutItsPredecessorsBackoff) {
  send("r0");
  send("r1");
  send("r2");
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value == "r1" && r.attempt == 1) throw TransientError("down");
  });
  const int64_t due = clock.now_ns() + 1 * kSec;
  {
    RetryingConsumer c = helper(in_place());
    EXPECT_EQ(poll(c, h), 2u);
    ASSERT_EQ(retry_at(c, 0), due);
  }
  clock.advance_ns(400 * kMs);
  seen.clear();
  RetryingConsumer again = helper(in_place());
  EXPECT_EQ(poll(again, h), 0u) << "r1 is not due for another 600 ms";
  EXPECT_TRUE(again.stats().is_paused(0));
  EXPECT_TRUE(again.consumer().is_paused(0));
  EXPECT_EQ(retry_at(again, 0), due);
  EXPECT_EQ(again.consumer().position(0), 1u);
  send("q0", 1);
  clock.set_ns(due - 1);
  EXPECT_EQ(poll(again, h), 1u) << "the other partition flows";
  EXPECT_EQ(seen_in(0), Strings{});
  EXPECT_EQ(committed(0), 1u);
  clock.set_ns(due);
  EXPECT_EQ(poll(again, h), 2u);
  EXPECT_EQ(seen_in(0), (Strings{"r1/2", "r2/1"}));
  EXPECT_EQ(seen_in(1), (Strings{"q0/1"}));
  EXPECT_EQ(again.stats().succeeded_after_retry, 1u);
  EXPECT_FALSE(again.stats().is_paused(0));
  EXPECT_EQ(committed(0), 3u);
  EXPECT_EQ(attempts_word(0), 0u);
  EXPECT_EQ(deadline_word(0), 0);
}

// A clock set back, or a damaged word, may leave a due time far ahead: it
// is never waited for beyond the policy's longest backoff from now.
TEST_F(RetryInPlacePaused, APersistedDueTimeBeyondTheLongestBackoffIsCapped) {
  const RecordHandler h = fails_r0_once();
  leave_r0_in_backoff(h);
  set_deadline_word(0, clock.now_ns() + 3600 * kSec);
  seen.clear();
  RetryingConsumer again = helper(in_place());
  EXPECT_EQ(poll(again, h), 0u);
  const int64_t cap = clock.now_ns() + 60 * kSec;  // max_delay_ns, no jitter
  EXPECT_EQ(retry_at(again, 0), cap);
  EXPECT_EQ(deadline_word(0), cap) << "the capped due time is the one kept";
  clock.set_ns(cap - 1);
  EXPECT_EQ(poll(again, h), 0u);
  clock.set_ns(cap);
  EXPECT_EQ(poll(again, h), 2u);
  EXPECT_EQ(seen_in(0), (Strings{"r0/2", "r1/1"}));
}

// The due time has no record of its own: it counts only with the count
// word, for the record that word names.
TEST_F(RetryInPlacePaused, ADueTimeCountsOnlyForTheRecordItsCountNames) {
  for (int i = 0; i < 4; ++i) send("r" + std::to_string(i));
  const RecordHandler ok = recorder([](const StreamRecord&) {});
  { RetryingConsumer c = helper(in_place()); }  // makes the group's file
  // A count for r2 with its due time: r0 and r1 run at once, r2 waits.
  const int64_t due = clock.now_ns() + 30 * kSec;
  set_attempts_word(0, format::retry_attempts_word(2, 1));
  set_deadline_word(0, due);
  {
    RetryingConsumer c = helper(in_place());
    EXPECT_EQ(poll(c, ok), 2u);
    EXPECT_EQ(seen_in(0), (Strings{"r0/1", "r1/1"}));
    EXPECT_EQ(retry_at(c, 0), due);
    clock.set_ns(due);
    EXPECT_EQ(poll(c, ok), 2u);
    EXPECT_EQ(seen_in(0), (Strings{"r0/1", "r1/1", "r2/2", "r3/1"}));
  }
  // A due time with no count (an admin seek's clear between a member's
  // stores leaves one), or one left beside a count for a record behind:
  // neither holds a record back.
  send("r4");
  set_deadline_word(0, clock.now_ns() + 30 * kSec);
  seen.clear();
  {
    RetryingConsumer c = helper(in_place());
    EXPECT_EQ(poll(c, ok), 1u);
    EXPECT_EQ(seen_in(0), (Strings{"r4/1"}));
  }
  send("r5");
  set_attempts_word(0, format::retry_attempts_word(1, 2));
  set_deadline_word(0, clock.now_ns() + 30 * kSec);
  seen.clear();
  RetryingConsumer c = helper(in_place());
  EXPECT_EQ(poll(c, ok), 1u);
  EXPECT_EQ(seen_in(0), (Strings{"r5/1"}));
  EXPECT_EQ(attempts_word(0), 0u);
  EXPECT_EQ(deadline_word(0), 0) << "dropped with the stale count";
}

TEST_F(RetryInPlacePaused, ASuccessfulRetryClearsTheCount) {
  send("r0");
  send("r1");
  RetryingConsumer c = helper(in_place());
  std::vector<int64_t> deadline_in_handler;
  const RecordHandler h = recorder([&](const StreamRecord& r) {
    deadline_in_handler.push_back(deadline_word(0));
    if (r.value == "r0" && r.attempt == 1) throw TransientError("down");
  });
  EXPECT_EQ(poll(c, h), 1u);
  EXPECT_EQ(attempts_word(0), format::retry_attempts_word(0, 1));
  EXPECT_EQ(deadline_word(0), clock.now_ns() + 1 * kSec);
  clock.advance_ns(1100 * kMs);
  EXPECT_EQ(poll(c, h), 2u);
  EXPECT_EQ(attempts_word(0), 0u);
  EXPECT_EQ(deadline_word(0), 0);
  ASSERT_EQ(deadline_in_handler.size(), 3u);
  EXPECT_EQ(deadline_in_handler[1], 0) << "a retry's own due time is gone once it runs";
  EXPECT_EQ(seen_in(0), (Strings{"r0/1", "r0/2", "r1/1"}));
}

TEST_F(RetryInPlacePaused, ARecordWhoseEveryAttemptWasBegunIsDeadLetteredUnrun) {
  send("r0");
  send("r1");
  send("r2");
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value == "r1") throw TransientError("down");
  });
  {
    RetryingConsumer c = helper(in_place());
    EXPECT_EQ(poll(c, h), 2u);
  }
  // As a member killed inside the handler on the last attempt leaves it.
  set_attempts_word(0, format::retry_attempts_word(1, 3));
  seen.clear();
  RetryingConsumer again = helper(in_place());
  EXPECT_EQ(poll(again, h), 2u);
  EXPECT_EQ(seen_in(0), (Strings{"r2/1"})) << "r1 is not run a fourth time";
  EXPECT_EQ(committed(0), 3u);
  EXPECT_EQ(attempts_word(0), 0u);
  Worker dw = worker("orders.dlq");
  Delivery dead = take(dw);
  ASSERT_TRUE(dead.valid());
  EXPECT_EQ(dead.value(), "r1");
  EXPECT_EQ(dead.headers().find("sluice.dlq.attempts"), "3");
  EXPECT_EQ(dead.headers().find("sluice.dlq.error_type"), "MaxReceivesExceeded");
  EXPECT_NE(dead.headers().find("sluice.dlq.error_message").find("begun 3 times"), std::string_view::npos)
      << dead.headers().find("sluice.dlq.error_message");
}

TEST_F(RetryInPlacePaused, AZeroWordCountsNothingAsBeforeTheWordExisted) {
  const RecordHandler h = fails_r0_once();
  leave_r0_in_backoff(h);
  // A group file of a build without the word holds zero there.
  set_attempts_word(0, 0);
  seen.clear();
  RetryingConsumer again = helper(in_place());
  EXPECT_EQ(poll(again, h), 1u) << "attempt 1 again, which fails";
  EXPECT_EQ(seen_in(0), (Strings{"r0/1"}));
  EXPECT_TRUE(again.stats().is_paused(0));
}

TEST_F(RetryInPlacePaused, AStaleCountForAnotherRecordIsIgnoredAndDropped) {
  for (int i = 0; i < 4; ++i) send("r" + std::to_string(i));
  const RecordHandler ok = recorder([](const StreamRecord&) {});
  {
    RetryingConsumer c = helper(in_place());
    EXPECT_EQ(poll(c, ok), 4u);
  }
  // Left by a member that failed r1 twice before the group was moved past
  // it (or before a member of an older build settled it).
  set_attempts_word(0, format::retry_attempts_word(1, 2));
  send("r4");
  seen.clear();
  RetryingConsumer again = helper(in_place());
  EXPECT_EQ(poll(again, ok), 1u);
  EXPECT_EQ(seen_in(0), (Strings{"r4/1"}));
  EXPECT_EQ(attempts_word(0), 0u) << "a count behind the records handled is dropped";
  // So a rewind to r1 starts it afresh.
  ASSERT_TRUE(bus->seek_group("billing", "orders", SeekTarget::offset(1), 0));
  EXPECT_EQ(poll(again, ok), 4u);
  EXPECT_EQ(seen_in(0), (Strings{"r4/1", "r1/1", "r2/1", "r3/1", "r4/1"}));
}

TEST_F(RetryInPlacePaused, AnAdminSeekOfAPausedPartitionClearsItsCount) {
  for (int i = 0; i < 4; ++i) send("r" + std::to_string(i));
  RetryingConsumer c = helper(in_place());
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value == "r1") throw TransientError("down");
  });
  EXPECT_EQ(poll(c, h), 2u);
  ASSERT_TRUE(c.stats().is_paused(0));
  EXPECT_TRUE(c.consumer().is_paused(0));
  EXPECT_NE(attempts_word(0), 0u);
  ASSERT_TRUE(bus->seek_group("billing", "orders", SeekTarget::offset(2), 0));
  EXPECT_EQ(poll(c, h), 2u) << "the member follows the group at once";
  EXPECT_EQ(attempts_word(0), 0u);
  EXPECT_FALSE(c.consumer().is_paused(0));
  EXPECT_EQ(seen_in(0), (Strings{"r0/1", "r1/1", "r2/1", "r3/1"}));
}

// With no member running to notice it, an admin seek back to the very
// record that was in retry starts its count afresh too.
TEST_F(RetryInPlacePaused, AnAdminSeekWithNoMemberRunningClearsTheCount) {
  for (int i = 0; i < 4; ++i) send("r" + std::to_string(i));
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value == "r1") throw TransientError("down");
  });
  {
    RetryingConsumer c = helper(in_place());
    EXPECT_EQ(poll(c, h), 2u);
    ASSERT_NE(attempts_word(0), 0u);
  }
  ASSERT_TRUE(bus->seek_group("billing", "orders", SeekTarget::offset(1), 0));
  EXPECT_EQ(attempts_word(0), 0u);
  EXPECT_EQ(deadline_word(0), 0) << "cleared with the count";
  seen.clear();
  RetryingConsumer again = helper(in_place());
  EXPECT_EQ(poll(again, h), 1u);
  EXPECT_EQ(seen_in(0), (Strings{"r1/1"})) << "attempt 1 again, not 2";
}

TEST_F(RetryInPlacePaused, APartitionResumedBehindTheHelpersBackIsHeldAgain) {
  for (int i = 0; i < 4; ++i) send("r" + std::to_string(i));
  RetryingConsumer c = helper(in_place());
  const RecordHandler h = recorder([](const StreamRecord& r) {
    if (r.value == "r1" && r.attempt == 1) throw TransientError("down");
  });
  EXPECT_EQ(poll(c, h), 2u);
  ASSERT_TRUE(c.consumer().resume(0));
  EXPECT_EQ(poll(c, h), 0u) << "what it reads is dropped: r1 still waits";
  EXPECT_TRUE(c.consumer().is_paused(0));
  EXPECT_EQ(c.consumer().position(0), 1u);
  EXPECT_EQ(committed(0), 1u);
  clock.advance_ns(1100 * kMs);
  EXPECT_EQ(poll(c, h), 3u);
  EXPECT_EQ(seen_in(0), (Strings{"r0/1", "r1/1", "r1/2", "r2/1", "r3/1"}));
  EXPECT_EQ(committed(0), 4u);
}

}  // namespace
}  // namespace sluice
