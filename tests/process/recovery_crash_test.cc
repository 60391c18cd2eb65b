// Every process of a bus killed, then the bus opened again: the opener is
// alone, so it recovers; what dead writers left behind is repaired and
// appends go on.
#include <gtest/gtest.h>
#include <sluice/sluice.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <cstring>
#include <string>
#include <vector>

#include "process/process_helpers.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr char kTopic[] = "t";

using test::small_topic;

// A producer that appends `n` records, claims one more, fills `fill` bytes
// of its value, reports the claim's offset and hangs until killed.
int claim_and_hang_main(const std::string& dir, const std::string& tag, int n, bool exclusive,
                        uint32_t value_bytes, int report_fd) {
  auto bus = Bus::open(dir);
  if (!bus) return 10;
  ProducerOptions o;
  o.exclusive = exclusive;
  auto producer = bus->create_producer(kTopic, o);
  if (!producer) return 11;
  for (int i = 0; i < n; ++i)
    if (!producer->send(Message{"", tag + "-" + std::to_string(i)}, 0).ok()) return 12;
  Claim claim;
  ClaimSpec spec;
  spec.value_bytes = value_bytes;
  spec.partition = 0;
  if (producer->try_claim(spec, claim) != SendStatus::kOk) return 13;
  std::memset(claim.value().data(), 0xFF, value_bytes);  // the value is in place, not committed
  const uint64_t offset = claim.offset();
  if (!test::write_all(report_fd, &offset, sizeof offset)) return 14;
  ::sleep(60);
  return 15;
}

TEST(CrashRecovery, OpeningABusAfterEveryProcessDiedAbortsDeadClaimsAndAppendsGoOn) {
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    ASSERT_TRUE(bus->create_topic(kTopic, small_topic()));
  }
  constexpr int kWriters = 3, kEach = 10;
  test::Children children;
  test::Pipe report;
  for (int w = 0; w < kWriters; ++w)
    children.spawn([&, w] {
      return claim_and_hang_main(dir.path(), "w" + std::to_string(w), kEach, false, 48, report.write_end());
    });
  std::vector<uint64_t> claimed;
  for (int w = 0; w < kWriters; ++w) {
    uint64_t offset;
    ASSERT_TRUE(test::read_exact(report.read_end(), &offset, sizeof offset, 20'000));
    claimed.push_back(offset);
  }
  for (pid_t pid : std::vector<pid_t>(children.pids())) EXPECT_EQ(children.kill(pid), 128 + SIGKILL);

  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus) << bus.error().to_string();
  const RecoveryReport& rec = bus->recovery();
  EXPECT_TRUE(rec.ran);
  EXPECT_EQ(rec.claims_aborted, static_cast<uint64_t>(kWriters));
  EXPECT_GE(rec.partitions, 1u);
  EXPECT_EQ(std::count_if(rec.notes.begin(), rec.notes.end(),
                          [](const std::string& n) { return n.find("claim") != std::string::npos; }),
            kWriters);

  constexpr uint64_t kTotal = kWriters * (kEach + 1);
  auto producer = bus->create_producer(kTopic);
  ASSERT_TRUE(producer);
  SendResult r = producer->send(Message{"", "after-recovery"}, 0);
  ASSERT_TRUE(r.ok()) << producer->last_error().to_string();
  EXPECT_EQ(r.offset, kTotal);

  auto got = test::read_partition(*bus, kTopic, 0);
  ASSERT_TRUE(got) << got.error().to_string();
  ASSERT_EQ(got->size(), static_cast<size_t>(kWriters * kEach + 1));
  for (const auto& rec_copy : *got)
    EXPECT_EQ(std::count(claimed.begin(), claimed.end(), rec_copy.offset), 0)
        << "a dead claim was handed out as a record";
  EXPECT_EQ(got->back().value, "after-recovery");
  auto v = bus->verify(kTopic);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok()) << v->issues.front().what;
  EXPECT_EQ(v->aborted_frames, static_cast<uint64_t>(kWriters));
  EXPECT_EQ(v->records, kTotal - kWriters + 1);

  // A second opener while this one is attached does not recover again.
  auto second = Bus::open(dir.path());
  ASSERT_TRUE(second);
  EXPECT_FALSE(second->recovery().ran);
}

// An exclusive writer writes a frame before it publishes its claim word, so
// when it dies its half-written bytes sit past the published tail. Whoever
// appends next must not trip over them, with recovery (everyone was dead)
// or without (a reader kept the bus open).
void exclusive_leftovers_are_cleared(bool everyone_dead) {
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    ASSERT_TRUE(bus->create_topic(kTopic, small_topic()));
  }
  test::Children children;
  test::Pipe report;
  const pid_t writer = children.spawn(
      [&] { return claim_and_hang_main(dir.path(), "x", 10, true, 4000, report.write_end()); });
  std::optional<Bus> watcher;
  if (!everyone_dead) {
    auto b = Bus::open(dir.path());
    ASSERT_TRUE(b);
    watcher.emplace(std::move(*b));
  }
  uint64_t offset;
  ASSERT_TRUE(test::read_exact(report.read_end(), &offset, sizeof offset, 20'000));
  EXPECT_EQ(offset, 10u);
  EXPECT_EQ(children.kill(writer), 128 + SIGKILL);

  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  EXPECT_EQ(bus->recovery().ran, everyone_dead);
  auto producer = bus->create_producer(kTopic);
  ASSERT_TRUE(producer);
  for (int i = 0; i < 200; ++i) {
    SendResult r = producer->send(Message{"", "s-" + std::to_string(i)}, 0);
    ASSERT_TRUE(r.ok()) << "send " << i << ": " << producer->last_error().to_string();
    EXPECT_EQ(r.offset, 10u + i);
  }
  auto got = test::read_partition(*bus, kTopic, 0);
  ASSERT_TRUE(got) << got.error().to_string();
  ASSERT_EQ(got->size(), 210u);
  for (size_t i = 0; i < got->size(); ++i) {
    EXPECT_EQ((*got)[i].offset, i);
    EXPECT_EQ((*got)[i].value, i < 10 ? "x-" + std::to_string(i) : "s-" + std::to_string(i - 10));
  }
  auto v = bus->verify(kTopic);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok()) << v->issues.front().what;
}

TEST(CrashRecovery, DeadExclusiveWritersHalfWrittenFrameIsClearedByTheNextWriter) {
  exclusive_leftovers_are_cleared(false);
}

TEST(CrashRecovery, DeadExclusiveWritersHalfWrittenFrameIsClearedByRecovery) {
  exclusive_leftovers_are_cleared(true);
}

// An exclusive writer's roll recycles a spare zeroed only 64 KiB deep, and
// the writer zeroes ahead of its tail as it goes (docs/architecture.md,
// "Recycling without zeroing"). When it dies, the spare's stale bytes past
// its tail must be gone before anyone appends there: shared writers claim at
// the first zero word and readers stop at it.
constexpr uint32_t kLazySegment = 256 << 10;
constexpr size_t kFiller = 700;

std::string lazy_value(const char* tag, uint64_t i) { return tag + std::to_string(i) + std::string(kFiller, 'f'); }

// Appends, exclusively, with a group keeping up (so retired segments are
// recycled), until the writer has rolled 6 times and written a few records
// into its newest segment; reports how many and hangs until killed.
int lazy_roll_and_hang_main(const std::string& dir, int report_fd) {
  auto bus = Bus::open(dir);
  if (!bus) return 10;
  ProducerOptions o;
  o.exclusive = true;
  auto producer = bus->create_producer(kTopic, o);
  if (!producer) return 11;
  ConsumerOptions co;
  co.auto_commit = false;
  auto consumer = bus->create_consumer(kTopic, "keeps-up", co);
  if (!consumer) return 12;
  std::vector<RecordView> out(64);
  uint64_t n = 0, base = 0;
  for (int rolls = 0, after = 0; after < 5; ++n) {
    if (!producer->send(Message{"", lazy_value("x-", n)}, 0).ok()) return 13;
    for (;;) {
      auto got = consumer->try_poll(out);
      if (!got) return 14;
      if (*got == 0) break;
      consumer->commit_async();
    }
    auto d = bus->describe_topic(kTopic);
    if (!d || d->partitions[0].segments.empty()) return 15;
    if (d->partitions[0].segments.back().base_offset != base) {
      base = d->partitions[0].segments.back().base_offset;
      ++rolls;
    } else if (rolls >= 6) {
      ++after;
    }
  }
  if (!test::write_all(report_fd, &n, sizeof n)) return 16;
  ::sleep(60);
  return 17;
}

void lazy_leftovers_are_cleared(bool everyone_dead) {
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    TopicOptions t = small_topic();
    t.segment_bytes = kLazySegment;
    t.index_interval_bytes = 4096;
    t.retention_bytes = 2 * kLazySegment;
    ASSERT_TRUE(bus->create_topic(kTopic, t));
  }
  test::Children children;
  test::Pipe report;
  const pid_t writer = children.spawn([&] { return lazy_roll_and_hang_main(dir.path(), report.write_end()); });
  std::optional<Bus> watcher;
  if (!everyone_dead) {
    auto b = Bus::open(dir.path());
    ASSERT_TRUE(b);
    watcher.emplace(std::move(*b));
  }
  uint64_t n = 0;
  ASSERT_TRUE(test::read_exact(report.read_end(), &n, sizeof n, 60'000));
  // The scenario: stale bytes of the spare's last life past the writer's tail.
  ASSERT_FALSE(test::newest_segment_zero_from(dir.sub(std::string("topics/") + kTopic + "/0"), 128 << 10))
      << "the writer's newest segment was zeroed whole: the lazy path was not taken";
  EXPECT_EQ(children.kill(writer), 128 + SIGKILL);

  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  EXPECT_EQ(bus->recovery().ran, everyone_dead);
  auto producer = bus->create_producer(kTopic);  // shared: claims at zero words
  ASSERT_TRUE(producer);
  constexpr uint64_t kMore = 1000;  // past the end of the segment the writer died in
  for (uint64_t i = 0; i < kMore; ++i) {
    SendResult r = producer->send(Message{"", lazy_value("s-", i)}, 0);
    ASSERT_TRUE(r.ok()) << "send " << i << ": " << producer->last_error().to_string();
    ASSERT_EQ(r.offset, n + i);
  }
  auto got = test::read_partition(*bus, kTopic, 0);
  ASSERT_TRUE(got) << got.error().to_string();
  ASSERT_FALSE(got->empty());
  const uint64_t first = got->front().offset;
  ASSERT_EQ(got->size(), n + kMore - first);
  for (size_t k = 0; k < got->size(); ++k) {
    const uint64_t off = first + k;
    ASSERT_EQ((*got)[k].offset, off);
    ASSERT_EQ((*got)[k].value, off < n ? lazy_value("x-", off) : lazy_value("s-", off - n)) << "offset " << off;
  }
  auto v = bus->verify(kTopic);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok()) << v->issues.front().what;
}

TEST(CrashRecovery, ADeadExclusiveWritersLazilyRecycledSegmentIsZeroedByTheNextWriter) {
  lazy_leftovers_are_cleared(false);
}

TEST(CrashRecovery, ADeadExclusiveWritersLazilyRecycledSegmentIsZeroedByRecovery) {
  lazy_leftovers_are_cleared(true);
}

}  // namespace
}  // namespace sluice
