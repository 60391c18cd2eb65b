// A consumer killed (SIGKILL) while it commits: the group's committed offset
// is always one the consumer really committed (never torn), and the next
// member of the group resumes exactly there (at-least-once, nothing lost).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sluice/sluice.h>
#include <unistd.h>

#include <random>
#include <string>
#include <vector>

#include "process/process_helpers.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr char kTopic[] = "t";
constexpr char kGroup[] = "g";
constexpr uint64_t kRecords = 20'000;

// The group member: reports the first offset it is handed, then for every
// record whose next offset is even announces that offset and commits it
// (alternating sync and async commits). Only even offsets are ever committed.
int committer_main(const std::string& dir, int report_fd) {
  auto bus = Bus::open(dir);
  if (!bus) return 10;
  ConsumerOptions o;
  o.auto_commit = false;
  auto consumer = bus->create_consumer(kTopic, kGroup, o);
  if (!consumer) return 11;
  std::vector<RecordView> out(16);
  bool first = true;
  uint64_t expect = 0;
  for (int polls = 0; polls < 100'000; ++polls) {
    auto n = consumer->poll(out, 100'000'000);
    if (!n) return 12;
    if (*n == 0) break;  // the end of the log
    for (size_t i = 0; i < *n; ++i) {
      const uint64_t offset = out[i].offset;
      if (out[i].value != std::to_string(offset)) return 13;
      if (first) {
        if (!test::write_all(report_fd, &offset, sizeof offset)) return 14;
        first = false;
      } else if (offset != expect) {
        return 15;  // a gap or a repeat within one member
      }
      expect = offset + 1;
      const uint64_t next = offset + 1;
      if (next % 2 != 0) continue;
      if (!test::write_all(report_fd, &next, sizeof next)) return 16;
      if (!consumer->commit(0, next, (next / 2) % 2 == 0)) return 17;
    }
  }
  return 0;
}

uint64_t committed_offset(Bus& bus) {
  auto d = bus.describe_group(kGroup);
  if (!d || d->partitions.empty()) return kNoOffset;
  return d->partitions[0].committed;
}

TEST(CrashedConsumer, KilledCommitterLeavesAnOffsetItCommittedAndTheGroupResumesThere) {
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    TopicOptions o;
    o.segment_bytes = 256 << 10;
    ASSERT_TRUE(bus->create_topic(kTopic, o));
    auto producer = bus->create_producer(kTopic);
    ASSERT_TRUE(producer);
    for (uint64_t i = 0; i < kRecords; ++i) ASSERT_TRUE(producer->send(Message{"", std::to_string(i)}, 0).ok());
  }
  std::mt19937 rng(777);
  test::Children children;
  uint64_t committed = kNoOffset;  // what the group holds between members
  for (int round = 0; round < 6; ++round) {
    test::Pipe report;
    // A small pipe keeps the member at most a few hundred commits ahead of
    // what this process has read, so that it dies in mid-stream.
    ::fcntl(report.write_end(), F_SETPIPE_SZ, 4096);
    const pid_t member = children.spawn([&] { return committer_main(dir.path(), report.write_end()); });
    report.close_write();
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);

    uint64_t first = 0;
    ASSERT_TRUE(test::read_exact(report.read_end(), &first, sizeof first, 20'000)) << "round " << round;
    EXPECT_EQ(first, committed == kNoOffset ? 0 : committed)
        << "round " << round << ": the new member did not resume at the committed offset";

    std::vector<uint64_t> announced;
    const size_t kill_after = 20 + rng() % 300;
    uint64_t seen_max = 0;
    while (announced.size() < kill_after) {
      uint64_t a;
      ASSERT_TRUE(test::read_exact(report.read_end(), &a, sizeof a, 20'000)) << "round " << round;
      announced.push_back(a);
      // Sampled from another process while the member commits: only
      // values it committed, never going backwards.
      const uint64_t c = committed_offset(*bus);
      if (c == kNoOffset) continue;
      EXPECT_EQ(c % 2, 0u) << "torn or foreign committed offset " << c;
      EXPECT_GE(c, seen_max);
      seen_max = c;
    }
    EXPECT_EQ(children.kill(member), 128 + SIGKILL) << "round " << round;
    uint64_t a;
    while (test::read_exact(report.read_end(), &a, sizeof a, 2'000)) announced.push_back(a);
    ASSERT_GE(announced.size(), 2u);

    // Announced before committed: the group holds the last announcement (the
    // commit completed) or the one before it (killed in between).
    committed = committed_offset(*bus);
    const uint64_t last = announced.back(), before_last = announced[announced.size() - 2];
    EXPECT_TRUE(committed == last || committed == before_last)
        << "round " << round << ": committed " << committed << ", last announced " << last;
    ASSERT_LT(committed, kRecords) << "the member reached the end; the test needs more records";
  }

  // A last member in this process reads the rest: nothing from the
  // committed offset on is missing.
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  ConsumerOptions o;
  o.auto_commit = false;
  auto consumer = bus->create_consumer(kTopic, kGroup, o);
  ASSERT_TRUE(consumer);
  EXPECT_EQ(consumer->position(0), committed);
  std::vector<RecordView> out(512);
  uint64_t expect = committed;
  for (int polls = 0; polls < 1000 && expect < kRecords; ++polls) {
    auto n = consumer->poll(out, 100'000'000);
    ASSERT_TRUE(n) << n.error().to_string();
    for (size_t i = 0; i < *n; ++i) ASSERT_EQ(out[i].offset, expect++);
  }
  EXPECT_EQ(expect, kRecords);
  ASSERT_TRUE(consumer->commit_sync());
  EXPECT_EQ(committed_offset(*bus), kRecords);
}

}  // namespace
}  // namespace sluice
