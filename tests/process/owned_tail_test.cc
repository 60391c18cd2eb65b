// The owned tail (docs/architecture.md, "The owned tail"): a shared writer
// that claims alone for a while comes to own its segment's tail, and then
// appends as an exclusive writer would (frame, word, then the tail), with
// no locked instruction; any other writer takes the tail back first
// (membarrier, wait for claims in flight, zero what a dead owner left).
// The owners below are real producers; the children then do by hand what an
// owner's append does up to the point under test, and die or stop.
#include <gtest/gtest.h>
#include <signal.h>
#include <sluice/sluice.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
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
// Enough sends in a row for a lone writer to own a fresh segment's tail.
constexpr int kToOwn = TailOwnership::kSoloClaimsToOwn + 8;

std::string value_of(const std::string& tag, int i) {
  std::string v = tag + "-" + std::to_string(i);
  v.resize(64, '.');
  return v;
}

// Sends `n` values tagged `tag` (value_of) and appends them to `sent`.
void send(Producer& p, const std::string& tag, int n, std::vector<std::string>* sent) {
  for (int i = 0; i < n; ++i) {
    const std::string v = value_of(tag, i);
    const SendResult r = p.send(Message{"", v}, 0);
    ASSERT_TRUE(r.ok()) << p.last_error().to_string();
    ASSERT_EQ(r.offset, sent->size());
    sent->push_back(v);
  }
}

enum class Then { kDieWritingAFrame, kStopInAClaim };

class OwnedTail : public ::testing::Test {
 protected:
  void SetUp() override {
    auto bus = Bus::open(dir_.path());
    ASSERT_TRUE(bus);
    bus_.emplace(std::move(*bus));
    TopicOptions t = test::small_topic();
    t.claim_timeout_ns = 300'000'000;  // how long a stopped owner holds other writers
    ASSERT_TRUE(bus_->create_topic(kTopic, t));
  }

  Producer producer() {
    auto p = bus_->create_producer(kTopic);
    EXPECT_TRUE(p) << p.error().to_string();
    return std::move(*p);
  }
  std::shared_ptr<Segment> newest() {
    auto d = bus_->describe_topic(kTopic);
    EXPECT_TRUE(d);
    auto seg = Segment::open(d->partitions[0].segments.back().path, ipc::MapOptions{}, nullptr);
    EXPECT_TRUE(seg);
    return *seg;
  }
  bool owned() { return format::tail_owned(newest()->control().tail_hint.load(std::memory_order_acquire)); }
  uint32_t revocations() { return newest()->control().revocations.load(std::memory_order_relaxed); }

  // Every record, read by a fresh consumer, is what was sent, in order;
  // the log verifies.
  void expect_log(const std::vector<std::string>& sent) {
    auto got = test::read_partition(*bus_, kTopic, 0);
    ASSERT_TRUE(got) << got.error().to_string();
    ASSERT_EQ(got->size(), sent.size());
    for (size_t i = 0; i < sent.size(); ++i) {
      ASSERT_EQ((*got)[i].offset, i);
      ASSERT_EQ((*got)[i].value, sent[i]) << "offset " << i;
    }
    auto v = bus_->verify(kTopic);
    ASSERT_TRUE(v) << v.error().to_string();
    EXPECT_TRUE(v->ok()) << v->issues.at(0).what;
    EXPECT_EQ(v->records, sent.size());
  }

  void lazily_recycled_then_revoked(bool close_owner);
  // Starts own_then() (below) in a child, with its tail position in *pos
  // and the records it sent in *sent; waits for its death if it dies.
  void start_owner(Then then, uint32_t* pos, std::vector<std::string>* sent);
  pid_t child_ = -1;

  test::TempDir dir_;
  std::optional<Bus> bus_;
  test::Children children_;
};

TEST_F(OwnedTail, AWriterAloneComesToOwnTheTailAndASecondWriterTakesItBack) {
  Producer a = producer(), b = producer();
  std::vector<std::string> sent;
  send(a, "a", TailOwnership::kSoloClaimsToOwn - 1, &sent);
  EXPECT_FALSE(owned());
  send(a, "a2", 8, &sent);
  EXPECT_TRUE(owned());
  send(b, "b", 1, &sent);  // revokes, then claims
  EXPECT_FALSE(owned());
  EXPECT_EQ(revocations(), 1u);
  // One revocation doubles the claims in a row needed to own it again.
  send(a, "a3", 2 * TailOwnership::kSoloClaimsToOwn - 8, &sent);
  EXPECT_FALSE(owned());
  send(a, "a4", 16, &sent);
  EXPECT_TRUE(owned());
  send(b, "b2", 3, &sent);
  EXPECT_EQ(revocations(), 2u);
  expect_log(sent);
  auto d = bus_->describe_topic(kTopic);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->partitions[0].repaired_claims, 0u);
}

// A child that takes the segment's revoker slot, as revoke_tail() does, and
// dies before letting it go (after its revocation ended: the tail is EXACT).
int take_revoker_slot_then_die(const std::string& dir, const std::string& segment_path) {
  auto registry = ipc::ProcessRegistry::attach(dir + "/procs");
  if (!registry) return 10;
  auto seg = Segment::open(segment_path, ipc::MapOptions{}, nullptr);
  if (!seg) return 11;
  uint32_t free_slot = 0;
  if (!(*seg)->control().revoker.compare_exchange_strong(free_slot, static_cast<uint32_t>(registry->self())))
    return 12;
  ::raise(SIGKILL);
  return 13;
}

TEST_F(OwnedTail, ARevokerThatDiedHoldingItsSlotDoesNotKeepALoneWriterFromOwningTheTail) {
  Producer a = producer();
  std::vector<std::string> sent;
  send(a, "a", 8, &sent);
  const std::string path = newest()->path();
  const pid_t child = children_.spawn([&] { return take_revoker_slot_then_die(dir_.path(), path); });
  ASSERT_EQ(children_.wait(child, 20'000), 128 + SIGKILL);
  ASSERT_NE(newest()->control().revoker.load(std::memory_order_acquire), 0u);
  send(a, "a2", kToOwn, &sent);
  EXPECT_TRUE(owned());
  EXPECT_EQ(newest()->control().revoker.load(std::memory_order_acquire), 0u);
  expect_log(sent);
}

TEST_F(OwnedTail, AClosingOwnerGivesTheTailBack) {
  std::vector<std::string> sent;
  {
    Producer a = producer();
    send(a, "a", kToOwn, &sent);
    EXPECT_TRUE(owned());
  }
  EXPECT_FALSE(owned());
  Producer b = producer();
  send(b, "b", 1, &sent);
  EXPECT_EQ(revocations(), 0u);
  expect_log(sent);
}

// An owner publishes its frame before it stores the tail past it: one that
// died between the two leaves the tail a frame short, which the revoker
// walks past instead of claiming over the frame.
TEST_F(OwnedTail, AFrameItsOwnerPublishedBeforeItsTailStoreIsKept) {
  std::vector<std::string> sent;
  Producer a = producer();
  send(a, "a", kToOwn, &sent);
  ASSERT_TRUE(owned());
  auto seg = newest();
  auto& tail = seg->control().tail_hint;
  const uint64_t t = tail.load(std::memory_order_acquire);
  // The tail as it was before the last frame (128 bytes, one record).
  tail.store(format::pack_tail(format::tail_position(t) - 128, format::tail_count(t) - 1) | format::kTailExact |
                 format::kTailOwned,
             std::memory_order_release);
  Producer b = producer();
  send(b, "b", 3, &sent);
  expect_log(sent);
}

// An owner that seals its segment rolls to the next one owned, recycled
// from a spare without zeroing it whole (old frames lie past the tail): a
// writer that revokes it there must find zeros past its own frames, whether
// the owner is still there or has closed (`close_owner`: it keeps the tail
// OWNED, so that the revocation still zeroes).
void OwnedTail::lazily_recycled_then_revoked(bool close_owner) {
  TopicOptions t = test::small_topic();
  t.segment_bytes = 256 << 10;    // larger than what a roll zeroes of a spare (64 KiB)
  t.retention_bytes = 512 << 10;  // two segments: the rest become spares, recycled
  ASSERT_TRUE(bus_->create_topic("r", t));
  auto made = bus_->create_producer("r");
  auto b = bus_->create_producer("r");
  ASSERT_TRUE(made && b);
  std::optional<Producer> a(std::move(*made));
  std::map<uint64_t, std::string> sent;  // offset -> value
  auto send_to = [&](Producer& p, const std::string& tag, int n) {
    for (int i = 0; i < n; ++i) {
      const std::string v = value_of(tag, i);
      const SendResult r = p.send(Message{"", v}, 0);
      ASSERT_TRUE(r.ok()) << p.last_error().to_string();
      sent[r.offset] = v;
    }
  };
  // Six segments of 2048 records, then 520 in a recycled one, past the
  // 64 KiB a's roll zeroed: a reader caught up there must find the word at
  // the tail zeroed by a, ahead of its frames.
  send_to(*a, "a", 6 * 2048 + 520);
  {
    auto got = test::read_partition(*bus_, "r", 0);
    ASSERT_TRUE(got) << got.error().to_string();
    ASSERT_FALSE(got->empty());
    EXPECT_EQ(got->back().offset, sent.rbegin()->first);
  }
  // Then its tail 256 bytes short of the 192 KiB a has zeroed (it zeroes
  // 64 KiB chunks at least 64 KiB ahead), so that b's five frames reach
  // into the old ones.
  send_to(*a, "a1", 1014);
  // The newest segment was recycled by a's roll and is owned by a.
  auto d = bus_->describe_topic("r");
  ASSERT_TRUE(d);
  auto seg = Segment::open(d->partitions[0].segments.back().path, ipc::MapOptions{}, nullptr);
  ASSERT_TRUE(seg);
  EXPECT_TRUE(format::tail_owned((*seg)->control().tail_hint.load(std::memory_order_acquire)));
  EXPECT_EQ((*seg)->control().owner_dirty_end.load(std::memory_order_acquire), (*seg)->capacity())
      << "not a lazily recycled segment";
  if (close_owner) a.reset();
  send_to(*b, "b", 5);  // revokes: zeroes the old frames past the tail
  if (!close_owner) send_to(*a, "a2", 5);
  EXPECT_EQ((*seg)->control().revocations.load(std::memory_order_relaxed), 1u);
  // What retention kept reads back as sent, up to the end and no further.
  auto got = test::read_partition(*bus_, "r", 0);
  ASSERT_TRUE(got) << got.error().to_string();
  ASSERT_FALSE(got->empty());
  EXPECT_EQ(got->back().offset, sent.rbegin()->first);
  for (const auto& r : *got) ASSERT_EQ(r.value, sent.at(r.offset)) << "offset " << r.offset;
  auto v = bus_->verify("r");
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok()) << v->issues.at(0).what;
}

TEST_F(OwnedTail, AnOwnersRollRecyclesLazilyAndARevokerZeroesTheRest) { lazily_recycled_then_revoked(false); }
TEST_F(OwnedTail, AClosedOwnerOfALazilyRecycledSegmentLeavesItForARevokerToZero) {
  lazily_recycled_then_revoked(true);
}


// The child: a real producer that comes to own the tail, then does by hand
// what its next append does up to the point under test: its intent, and
// for kDieWritingAFrame a kilobyte of bytes without its word, among them
// what looks like a committed frame's word kTrapAt bytes in, where the next
// frame would start after the parent's five (a trap for a reader, were the
// bytes left there). Reports the tail position; never returns normally.
constexpr uint32_t kTrapAt = 5 * 128;
int own_then(const std::string& dir, int report_fd, Then then) {
  auto bus = Bus::open(dir);
  if (!bus) return 10;
  auto p = bus->create_producer(kTopic);
  if (!p) return 11;
  for (int i = 0; i < kToOwn; ++i)
    if (!p->send(Message{"", value_of("c", i)}, 0).ok()) return 12;
  auto state = ipc::MappedFile::open(dir + "/topics/t/0/state", ipc::MapOptions{});
  if (!state) return 14;
  auto d = bus->describe_topic(kTopic);
  if (!d) return 15;
  auto seg = Segment::open(d->partitions[0].segments.back().path, ipc::MapOptions{}, nullptr);
  if (!seg) return 16;
  const uint64_t t = (*seg)->control().tail_hint.load(std::memory_order_acquire);
  if (!format::tail_owned(t)) return 17;
  const uint32_t pos = format::tail_position(t);
  // Our producer's intent entry: the one held (the parent holds none yet).
  auto* intents = reinterpret_cast<format::ClaimIntent*>(state->data() + format::kClaimIntentsOffset);
  format::ClaimIntent* mine = nullptr;
  for (uint32_t i = 0; i < format::kClaimIntents && mine == nullptr; ++i)
    if (intents[i].holder.load(std::memory_order_acquire) != 0) mine = &intents[i];
  if (mine == nullptr) return 18;
  mine->position.store((*seg)->base_position() + pos + 1, std::memory_order_release);
  if (then == Then::kDieWritingAFrame) {
    if ((*seg)->control().owner_dirty_end.load(std::memory_order_acquire) < pos + 1024) return 19;
    std::memset((*seg)->data() + pos + 8, 0xab, 1016);
    (*seg)->word(pos + kTrapAt).store(format::make_claim_word(format::kCommitted, 128, 1, 1),
                                      std::memory_order_release);
  }
  if (!test::write_all(report_fd, &pos, sizeof pos)) return 20;
  if (then == Then::kStopInAClaim) {
    ::raise(SIGSTOP);
    ::sleep(60);  // killed while stopped, or long before this ends
    return 21;
  }
  ::raise(SIGKILL);
  return 22;
}

void OwnedTail::start_owner(Then then, uint32_t* pos, std::vector<std::string>* sent) {
  test::Pipe report;
  child_ = children_.spawn([&] { return own_then(dir_.path(), report.write_end(), then); });
  ASSERT_TRUE(test::read_exact(report.read_end(), pos, sizeof *pos, 20'000));
  if (then == Then::kDieWritingAFrame) {
    ASSERT_EQ(children_.wait(child_, 20'000), 128 + SIGKILL);
  }
  for (int i = 0; i < kToOwn; ++i) sent->push_back(value_of("c", i));
}

TEST_F(OwnedTail, AnOwnerKilledWritingAFrameLeavesNothingForWritersOrReadersToTripOn) {
  std::vector<std::string> sent;
  uint32_t pos = 0;
  ASSERT_NO_FATAL_FAILURE(start_owner(Then::kDieWritingAFrame, &pos, &sent));
  Producer b = producer();
  send(b, "b", 5, &sent);  // revokes: the dead owner's bytes are zeroed, b writes over them
  EXPECT_FALSE(owned());
  EXPECT_EQ(revocations(), 1u);
  expect_log(sent);
  // Past b's frames, zeros again: the trap is gone.
  EXPECT_EQ(newest()->word(pos + kTrapAt).load(std::memory_order_acquire), 0u);
}

// The others who take a dead owner's tail: an exclusive producer taking the
// partition, and recovery when the bus is opened alone.
TEST_F(OwnedTail, AnExclusiveWriterTakingThePartitionZeroesWhatADeadOwnerLeft) {
  std::vector<std::string> sent;
  uint32_t pos = 0;
  ASSERT_NO_FATAL_FAILURE(start_owner(Then::kDieWritingAFrame, &pos, &sent));
  {
    ProducerOptions o;
    o.exclusive = true;
    auto x = bus_->create_producer(kTopic, o);
    ASSERT_TRUE(x);
    send(*x, "x", 5, &sent);
  }
  EXPECT_FALSE(owned());
  expect_log(sent);
  EXPECT_EQ(newest()->word(pos + kTrapAt).load(std::memory_order_acquire), 0u);
}

TEST_F(OwnedTail, RecoveryZeroesWhatADeadOwnerLeft) {
  std::vector<std::string> sent;
  uint32_t pos = 0;
  ASSERT_NO_FATAL_FAILURE(start_owner(Then::kDieWritingAFrame, &pos, &sent));
  bus_.reset();
  auto bus = Bus::open(dir_.path());  // alone: recovery runs
  ASSERT_TRUE(bus);
  bus_.emplace(std::move(*bus));
  ASSERT_TRUE(bus_->recovery().ran);
  bool noted = false;
  for (const auto& n : bus_->recovery().notes) noted = noted || n.find("owned the tail") != std::string::npos;
  EXPECT_TRUE(noted);
  EXPECT_FALSE(owned());
  Producer b = producer();
  send(b, "b", 5, &sent);
  expect_log(sent);
  EXPECT_EQ(newest()->word(pos + kTrapAt).load(std::memory_order_acquire), 0u);
}

TEST_F(OwnedTail, AnOwnerStoppedInAClaimHoldsOtherWritersForTheClaimTimeoutThenTheyAreBusy) {
  std::vector<std::string> sent;
  uint32_t pos = 0;
  ASSERT_NO_FATAL_FAILURE(start_owner(Then::kStopInAClaim, &pos, &sent));
  Producer b = producer();
  const SendResult r = b.send(Message{"", value_of("b", 0)}, 0);
  EXPECT_EQ(r.status, SendStatus::kBusy);
  EXPECT_EQ(b.last_error().code, Errc::kBusy);
  EXPECT_NE(b.last_error().message.find("claim timeout"), std::string::npos) << b.last_error().message;
  EXPECT_TRUE(owned());
  children_.kill(child_);
  send(b, "b", 2, &sent);
  EXPECT_FALSE(owned());
  expect_log(sent);
}

// Producer processes sending in bursts: the tail changes hands (or not)
// as their timing decides; whatever it does, every record is there once,
// offsets dense, each producer's in its order.
int burst_main(const std::string& dir, uint32_t id, int go_fd) {
  auto bus = Bus::open(dir);
  if (!bus) return 10;
  auto p = bus->create_producer(kTopic);
  if (!p) return 11;
  char c;
  if (!test::read_exact(go_fd, &c, 1, 30'000)) return 12;
  int seq = 0;
  auto value = [&](size_t size) {
    std::string v = "p" + std::to_string(id) + "-" + std::to_string(seq++) + ".";
    v.resize(std::max(v.size(), size), '.');
    return v;
  };
  for (int burst = 0; burst < 30; ++burst) {
    const int n = 40 + (burst * 37 + static_cast<int>(id) * 11) % 200;
    for (int i = 0; i < n; ++i) {
      // Mostly small records (the straight-line send), some large ones and
      // batches of two (the general path): an owner appends them all.
      if (i % 29 == 28 && i + 1 < n) {
        const std::string a = value(64), b = value(64);
        const Message batch[2] = {Message{"", a}, Message{"", b}};
        if (!p->send_batch(batch, 0).ok()) return 13;
        ++i;
      } else if (!p->send(Message{"", value(i % 31 == 30 ? 4096 : 0)}, 0).ok()) {
        return 14;
      }
    }
    ::usleep(50 + 100 * id);
  }
  return 0;
}

TEST_F(OwnedTail, ProducerProcessesSendingInBurstsLoseNothingAndKeepTheirOrder) {
  constexpr uint32_t kProducers = 4;
  test::Pipe go;
  std::vector<pid_t> pids;
  for (uint32_t id = 0; id < kProducers; ++id)
    pids.push_back(children_.spawn([&, id] { return burst_main(dir_.path(), id, go.read_end()); }));
  const std::string g(kProducers, 'g');
  ASSERT_TRUE(test::write_all(go.write_end(), g.data(), g.size()));
  for (pid_t pid : pids) ASSERT_EQ(children_.wait(pid, 60'000), 0);
  auto got = test::read_partition(*bus_, kTopic, 0);
  ASSERT_TRUE(got) << got.error().to_string();
  std::map<std::string, int> next;
  for (size_t i = 0; i < got->size(); ++i) {
    const std::string& v = (*got)[i].value;
    ASSERT_EQ((*got)[i].offset, i);
    const size_t dash = v.find('-');
    ASSERT_NE(dash, std::string::npos) << v;
    ASSERT_EQ(std::stoi(v.substr(dash + 1)), next[v.substr(0, dash)]++) << "offset " << i;
  }
  int total = 0;
  for (uint32_t id = 0; id < kProducers; ++id) {
    int n = 0;
    for (int burst = 0; burst < 30; ++burst) n += 40 + (burst * 37 + static_cast<int>(id) * 11) % 200;
    EXPECT_EQ(next["p" + std::to_string(id)], n);
    total += n;
  }
  EXPECT_EQ(got->size(), static_cast<size_t>(total));
  auto v = bus_->verify(kTopic);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok()) << v->issues.at(0).what;
  uint64_t revoked = 0;
  auto d = bus_->describe_topic(kTopic);
  ASSERT_TRUE(d);
  for (const auto& s : d->partitions[0].segments) {
    auto seg = Segment::open(s.path, ipc::MapOptions{}, nullptr);
    if (seg) revoked += (*seg)->control().revocations.load(std::memory_order_relaxed);
  }
  RecordProperty("revocations", static_cast<int>(revoked));
}

}  // namespace
}  // namespace sluice
