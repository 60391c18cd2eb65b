// The tail claim (docs/architecture.md, "The tail claim"): a shared writer
// claims by a CAS on the segment's tail word and then stores its claim word
// at the frame. A writer that dies between the two leaves a claimed range
// whose word reads 0; one that is stopped there is alive and must not be
// repaired. The children below do by hand what Segment::claim_tail() does up
// to that point (intent, tail CAS), then die or stop: real processes with
// real owner ids, so liveness is what the repair has to go by.
#include <gtest/gtest.h>
#include <signal.h>
#include <sluice/sluice.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "ipc/mapped_file.h"
#include "ipc/process_registry.h"
#include "process/process_helpers.h"
#include "segment.h"
#include "segment_format.h"
#include "support/test_support.h"
#include "topic_format.h"

namespace sluice {
namespace {

constexpr char kTopic[] = "t";
constexpr uint32_t kEntry = 100;  // an intent entry no producer of these tests takes first
constexpr uint32_t kFrame = 128;  // what a 64-byte value's frame takes

enum class Then { kDie, kDieAfterBaseOffset, kStop, kSealAndDie, kCopyClaimAndStop };

std::string segment_path(const std::string& dir, uint64_t base = 0) {
  return dir + "/topics/t/0/" + segment_file_name(base);
}

// The child: a registered process that makes one claim of kFrame bytes (or
// seals the segment) the way a writer does, up to its claim word, reports
// the claimed position, and then dies or stops. Never returns normally.
int claim_then(const std::string& dir, int report_fd, Then then, uint32_t entry_index = kEntry) {
  auto registry = ipc::ProcessRegistry::attach(dir + "/procs");
  if (!registry) return 10;
  auto seg = Segment::open(segment_path(dir), ipc::MapOptions{}, nullptr);
  if (!seg) return 11;
  auto state = ipc::MappedFile::open(dir + "/topics/t/0/state", ipc::MapOptions{});
  if (!state) return 12;
  auto& entry = reinterpret_cast<format::ClaimIntent*>(state->data() + format::kClaimIntentsOffset)[entry_index];
  entry.holder.store(registry->self(), std::memory_order_release);
  auto& tail = (*seg)->control().tail_hint;
  uint64_t t = tail.load(std::memory_order_acquire);
  if (!format::tail_exact(t)) return 13;
  const uint32_t pos = format::tail_position(t);
  entry.position.store((*seg)->base_position() + pos + 1, std::memory_order_release);
  const uint64_t next = then == Then::kSealAndDie
                            ? t | format::kTailSealed
                            : format::pack_tail(pos + kFrame, format::tail_count(t) + 1) | format::kTailExact;
  if (!tail.compare_exchange_strong(t, next, std::memory_order_seq_cst)) return 14;
  if (then == Then::kDieAfterBaseOffset)  // killed between the base offset and the claim word
    (*seg)->frame(pos)->base_offset = (*seg)->base_offset() + format::tail_count(t);
  if (then == Then::kCopyClaimAndStop) {  // a copying send, stopped before its publishing store
    (*seg)->frame(pos)->base_offset = (*seg)->base_offset() + format::tail_count(t);
    (*seg)->word(pos).store(format::make_claim_word(format::kClaimedCopy, kFrame, 1, registry->self()),
                            std::memory_order_release);
    entry.position.store(0, std::memory_order_release);
  }
  if (!test::write_all(report_fd, &pos, sizeof pos)) return 15;
  if (then == Then::kStop || then == Then::kCopyClaimAndStop) {
    ::raise(SIGSTOP);
    ::sleep(60);  // killed while stopped, or long before this ends
    return 16;
  }
  ::raise(SIGKILL);
  return 17;
}

class TailClaim : public ::testing::Test {
 protected:
  void SetUp() override {
    auto bus = Bus::open(dir_.path());
    ASSERT_TRUE(bus);
    bus_.emplace(std::move(*bus));
    ASSERT_TRUE(bus_->create_topic(kTopic, test::small_topic()));
    send("a", 10);  // offsets 0..9: the tail is EXACT from here on
  }

  void send(const std::string& tag, int n, bool exclusive = false) {
    ProducerOptions o;
    o.exclusive = exclusive;
    auto p = bus_->create_producer(kTopic, o);
    ASSERT_TRUE(p) << p.error().to_string();
    for (int i = 0; i < n; ++i) {
      std::string v = tag + "-" + std::to_string(i);
      v.resize(64, '.');
      ASSERT_TRUE(p->send(Message{"", v}, 0).ok()) << p->last_error().to_string();
    }
  }

  // Starts the child and returns the position it claimed at.
  uint32_t start_child(Then then, uint32_t entry_index = kEntry) {
    test::Pipe report;
    child_ = children_.spawn([&] { return claim_then(dir_.path(), report.write_end(), then, entry_index); });
    uint32_t pos = UINT32_MAX;
    EXPECT_TRUE(test::read_exact(report.read_end(), &pos, sizeof pos, 20'000));
    return pos;
  }

  // A reader on its own handle, whose clock stands still unless moved:
  // every repair below comes from liveness and the poll count.
  struct Reader {
    ManualClock clock;
    std::optional<Bus> bus;
    std::optional<Consumer> consumer;
    std::vector<uint64_t> offsets;
    // Polls `polls` times (a repair check comes every few thousand).
    void poll(int polls) {
      std::vector<RecordView> out(64);
      for (int i = 0; i < polls; ++i) {
        auto n = consumer->try_poll(out);
        ASSERT_TRUE(n) << n.error().to_string();
        for (size_t k = 0; k < *n; ++k) offsets.push_back(out[k].offset);
      }
    }
  };
  std::unique_ptr<Reader> reader() {
    auto r = std::make_unique<Reader>();
    BusOptions bo;
    bo.clock = &r->clock;
    auto b = Bus::open(dir_.path(), bo);
    EXPECT_TRUE(b);
    r->bus.emplace(std::move(*b));
    ConsumerOptions co;
    co.auto_commit = false;
    auto c = r->bus->create_consumer(kTopic, "", co);
    EXPECT_TRUE(c);
    r->consumer.emplace(std::move(*c));
    return r;
  }

  uint64_t word_at(uint32_t pos, uint64_t base = 0) {
    auto seg = Segment::open(segment_path(dir_.path(), base), ipc::MapOptions{}, nullptr);
    EXPECT_TRUE(seg);
    return seg ? (*seg)->word(pos).load(std::memory_order_acquire) : 0;
  }
  uint64_t repaired() {
    auto d = bus_->describe_topic(kTopic);
    return d ? d->partitions[0].repaired_claims : 0;
  }

  static std::vector<uint64_t> iota(uint64_t from, uint64_t to) {
    std::vector<uint64_t> v;
    for (uint64_t o = from; o < to; ++o) v.push_back(o);
    return v;
  }
  // The first ten offsets, then [from, to): what a reader gets past a range.
  static std::vector<uint64_t> first_ten_then(uint64_t from, uint64_t to) {
    std::vector<uint64_t> v = iota(0, 10);
    for (uint64_t o = from; o < to; ++o) v.push_back(o);
    return v;
  }
  // The word at `pos` is one ABORTED range of `frames` frames of one record,
  // and the log verifies.
  void expect_aborted_range(uint32_t pos, uint32_t frames) {
    const uint64_t w = word_at(pos);
    EXPECT_EQ(format::claim_state(w), format::kAborted);
    EXPECT_EQ(format::claim_length(w), frames * kFrame);
    EXPECT_EQ(format::claim_count(w), frames);
    auto v = bus_->verify(kTopic);
    ASSERT_TRUE(v);
    EXPECT_TRUE(v->ok());
  }

  // verify() finds no issue, and these counts.
  void expect_verified(uint64_t records, uint64_t open_claims, uint64_t segments_partly_checked) {
    auto v = bus_->verify(kTopic);
    ASSERT_TRUE(v) << v.error().to_string();
    EXPECT_TRUE(v->ok()) << v->issues[0].what;
    EXPECT_EQ(v->records, records);
    EXPECT_EQ(v->open_claims, open_claims);
    EXPECT_EQ(v->segments_partly_checked, segments_partly_checked);
  }

  test::TempDir dir_;
  std::optional<Bus> bus_;
  test::Children children_;
  pid_t child_ = -1;
};

TEST_F(TailClaim, AWriterKilledBetweenItsTailClaimAndItsWordIsRepairedAndReadersGetPast) {
  const uint32_t pos = start_child(Then::kDie);
  EXPECT_EQ(pos, 10 * kFrame);
  children_.wait(child_, 20'000);
  send("b", 5);  // offsets 11..15: offset 10 is the dead writer's
  auto r = reader();
  r->poll(20'000);
  EXPECT_EQ(r->offsets, first_ten_then(11, 16));
  expect_aborted_range(pos, 1);
  EXPECT_EQ(repaired(), 1u);
}

// A reader that polls rarely checks the gap by the clock, not the poll
// count: 10 ms of its (coarse) clock after it started waiting there.
TEST_F(TailClaim, AReaderPollingRarelyChecksTheRangeOnceTenMillisecondsHavePassed) {
  const uint32_t pos = start_child(Then::kDie);
  children_.wait(child_, 20'000);
  send("b", 5);
  auto r = reader();
  r->poll(200);  // far fewer polls than a check by count needs
  EXPECT_EQ(r->offsets, iota(0, 10));
  EXPECT_EQ(word_at(pos), 0u);
  r->clock.advance_ns(9'000'000);
  r->poll(100);
  EXPECT_EQ(r->offsets, iota(0, 10));
  r->clock.advance_ns(1'000'000);
  r->poll(100);
  EXPECT_EQ(r->offsets, first_ten_then(11, 16));
  expect_aborted_range(pos, 1);
}

// Two writers die in a row, the second after its base offset (which a scan
// for the next frame must not take for a claim word): one aborted range.
TEST_F(TailClaim, TwoWritersKilledInARowAreRepairedAsOneRange) {
  const uint32_t first = start_child(Then::kDie);
  children_.wait(child_, 20'000);
  const uint32_t second = start_child(Then::kDieAfterBaseOffset, kEntry + 1);
  children_.wait(child_, 20'000);
  EXPECT_EQ(second, first + kFrame);
  send("b", 5);  // offsets 12..16
  auto r = reader();
  r->poll(20'000);
  EXPECT_EQ(r->offsets, first_ten_then(12, 17));
  expect_aborted_range(first, 2);
}

// With nothing claimed after it, the range's records are counted from the
// tail's count.
TEST_F(TailClaim, ARangeAtTheTailIsCountedFromTheTail) {
  const uint32_t pos = start_child(Then::kDieAfterBaseOffset);
  children_.wait(child_, 20'000);
  auto r = reader();
  r->poll(20'000);
  EXPECT_EQ(r->offsets, iota(0, 10));
  EXPECT_EQ(format::claim_count(word_at(pos)), 1u);
  send("b", 2);  // offsets 11, 12
  r->poll(100);
  EXPECT_EQ(r->offsets.size(), 12u);
  EXPECT_EQ(r->offsets.back(), 12u);
}

TEST_F(TailClaim, AWriterStoppedBetweenItsTailClaimAndItsWordHoldsItsRangeUntilItDies) {
  const uint32_t pos = start_child(Then::kStop);
  send("b", 5);
  auto r = reader();
  // Alive (stopped): past any claim timeout, its range is still its own.
  r->poll(100);
  r->clock.advance_ns(TopicOptions{}.claim_timeout_ns * 2);
  r->poll(20'000);
  EXPECT_EQ(r->offsets, iota(0, 10));
  EXPECT_EQ(word_at(pos), 0u);
  EXPECT_EQ(repaired(), 0u);
  children_.kill(child_);
  r->poll(20'000);
  EXPECT_EQ(r->offsets, first_ten_then(11, 16));
  EXPECT_EQ(repaired(), 1u);
}

// Verify and describe read, never repair: a dead writer's range is stepped
// over (the frames after it are checked, the range counted as an open
// claim) and holds the last stable offset until a reader repairs it.
TEST_F(TailClaim, VerifyStepsOverADeadWritersRangeAndDescribeShowsItHoldingTheStableOffset) {
  const uint32_t pos = start_child(Then::kDie);
  children_.wait(child_, 20'000);
  send("b", 5);  // offsets 11..15
  expect_verified(15, 1, 0);
  auto d = bus_->describe_topic(kTopic);
  ASSERT_TRUE(d) << d.error().to_string();
  const PartitionInfo& p = d->partitions[0];
  EXPECT_EQ(p.end_offset, 16u);
  EXPECT_EQ(p.stable_offset, 10u);
  ASSERT_TRUE(p.held_by);
  EXPECT_EQ(p.held_by->state, "claimed");
  EXPECT_FALSE(p.held_by->alive);
  EXPECT_EQ(word_at(pos), 0u);  // nothing repaired
  auto r = reader();
  r->poll(20'000);
  EXPECT_EQ(r->offsets, first_ten_then(11, 16));
  d = bus_->describe_topic(kTopic);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->partitions[0].stable_offset, 16u);
  EXPECT_FALSE(d->partitions[0].held_by);
}

// A live writer's range is not read into: verify stops there and says so.
TEST_F(TailClaim, VerifyStopsAtALiveWritersRangeAndSaysTheSegmentWasPartlyChecked) {
  const uint32_t pos = start_child(Then::kStop);
  send("b", 5);
  expect_verified(10, 1, 1);
  auto d = bus_->describe_topic(kTopic);
  ASSERT_TRUE(d) << d.error().to_string();
  EXPECT_EQ(d->partitions[0].stable_offset, 10u);
  ASSERT_TRUE(d->partitions[0].held_by);
  EXPECT_EQ(d->partitions[0].held_by->state, "claimed");
  EXPECT_TRUE(d->partitions[0].held_by->alive);
  EXPECT_EQ(word_at(pos), 0u);
  children_.kill(child_);
}

// A copying send publishes with a plain store, which an abort of its live
// claim would race: past the claim timeout it is still left alone.
TEST_F(TailClaim, ACopyClaimOfALiveWriterOutlivesTheClaimTimeoutAndIsRepairedOnceItDies) {
  const uint32_t pos = start_child(Then::kCopyClaimAndStop);
  send("b", 5);
  auto r = reader();
  r->poll(100);  // the reader starts waiting at the claim ...
  r->clock.advance_ns(TopicOptions{}.claim_timeout_ns * 2);  // ... for longer than the timeout
  r->poll(200'000);
  EXPECT_EQ(r->offsets, iota(0, 10));
  EXPECT_EQ(format::claim_state(word_at(pos)), format::kClaimedCopy);
  children_.kill(child_);
  r->poll(200'000);
  EXPECT_EQ(r->offsets, first_ten_then(11, 16));
  EXPECT_EQ(format::claim_state(word_at(pos)), format::kAborted);
  EXPECT_EQ(repaired(), 1u);
}

TEST_F(TailClaim, ASealWhoseWriterDiedBeforeItsEndWordIsCompletedByAReader) {
  const uint32_t pos = start_child(Then::kSealAndDie);
  children_.wait(child_, 20'000);
  send("b", 3);  // the sealed tail sends these to the next segment, from offset 10
  auto r = reader();
  r->poll(20'000);
  EXPECT_EQ(r->offsets, iota(0, 13));
  EXPECT_EQ(format::claim_state(word_at(pos)), format::kEndOfSegment);
}

TEST_F(TailClaim, AnExclusiveWriterTakingThePartitionRepairsTheRangesFirst) {
  const uint32_t pos = start_child(Then::kDie);
  children_.wait(child_, 20'000);
  send("x", 5, /*exclusive=*/true);  // offsets 11..15, after the range it repaired
  EXPECT_EQ(format::claim_state(word_at(pos)), format::kAborted);
  auto r = reader();
  r->poll(100);  // no repair of its own needed
  EXPECT_EQ(r->offsets, first_ten_then(11, 16));
}

TEST_F(TailClaim, RecoveryRepairsTheRangesOfWritersThatDiedBeforeTheirWords) {
  const uint32_t pos = start_child(Then::kDie);
  children_.wait(child_, 20'000);
  bus_.reset();
  auto bus = Bus::open(dir_.path());  // alone: recovery runs
  ASSERT_TRUE(bus);
  bus_.emplace(std::move(*bus));
  EXPECT_TRUE(bus_->recovery().ran);
  EXPECT_GE(bus_->recovery().claims_aborted, 1u);
  EXPECT_EQ(format::claim_state(word_at(pos)), format::kAborted);
  send("b", 2);
  auto r = reader();
  r->poll(100);
  EXPECT_EQ(r->offsets, (std::vector<uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12}));
}

}  // namespace
}  // namespace sluice
