// An idempotent producer killed with SIGKILL again and again (and sometimes
// between a claim and its commit, and sometimes racing a second instance of
// itself) resumes each time from next_sequence(): in the end every input
// record is in the log exactly once, in order, with dense sequences.
#include <gtest/gtest.h>
#include <signal.h>
#include <sluice/sluice.h>

#include <random>
#include <string>

#include "process_helpers.h"

namespace sluice {
namespace {

constexpr uint32_t kPartitions = 2;
constexpr uint32_t kPerPartition = 1500;
constexpr int kDone = 0, kFencedExit = 3;

std::string value_of(uint32_t partition, uint32_t i) { return std::to_string(partition) + "-" + std::to_string(i); }

// One instance of the input producer. After `kill_after` sends it SIGKILLs
// itself, with a claim open if `kill_in_claim`. With pipes: it writes a byte
// to `opened_fd` once its producer is open, and after `pause_after` sends
// writes to `paused_fd` and waits for a byte on `resume_fd`.
struct Instance {
  uint64_t kill_after = UINT64_MAX;
  bool kill_in_claim = false;
  int opened_fd = -1;
  uint64_t pause_after = UINT64_MAX;
  int paused_fd = -1, resume_fd = -1;
};

int run_ingest(const std::string& dir, const Instance& in) {
  auto bus = Bus::open(dir);
  if (!bus) return 10;
  ProducerOptions o;
  o.idempotent = true;
  o.producer_name = "ingest";
  auto p = bus->create_producer("in", o);
  if (!p) return 11;
  const char byte = 1;
  if (in.opened_fd >= 0 && !test::write_all(in.opened_fd, &byte, 1)) return 14;
  uint64_t sent = 0;
  for (uint32_t part = 0; part < kPartitions; ++part) {
    auto next = p->next_sequence(part);
    if (!next) return next.error().code == Errc::kFenced ? kFencedExit : 12;
    for (uint32_t i = *next; i < kPerPartition; ++i) {
      if (sent == in.kill_after) {
        if (in.kill_in_claim) {
          Claim c;
          ClaimSpec spec;
          spec.value_bytes = 8;
          spec.partition = part;
          if (p->try_claim(spec, c) == SendStatus::kOk) ::raise(SIGKILL);
        }
        ::raise(SIGKILL);
      }
      if (sent == in.pause_after) {
        char b;
        if (!test::write_all(in.paused_fd, &byte, 1) || !test::read_exact(in.resume_fd, &b, 1, 30'000)) return 15;
      }
      const std::string v = value_of(part, i);
      const SendResult r = p->send_sequenced(Message{"", v}, i, part);
      if (r.status == SendStatus::kFenced) return kFencedExit;
      if (!r.ok() || r.duplicate) return 13;
      ++sent;
    }
  }
  return kDone;
}

TEST(IdempotentProducerProcess, SigkilledAndRacingInstancesLeaveEveryRecordExactlyOnceInOrder) {
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    TopicOptions t = test::small_topic();
    t.partitions = kPartitions;
    ASSERT_TRUE(bus->create_topic("in", t));
  }
  test::Children children;
  std::mt19937 rng(20261127);
  int kills = 0, fenced = 0, rounds = 0;
  bool done = false;
  while (!done) {
    ASSERT_LT(++rounds, 200) << "the producer never finished";
    if (rounds % 5 == 0) {
      // A second instance opens while the first is mid-stream: the first is
      // fenced at its next send (exit 3) and appends nothing more; the second
      // goes on from where the first really stopped.
      test::Pipe paused, resume, opened;
      Instance a;
      a.pause_after = std::uniform_int_distribution<uint64_t>(1, 100)(rng);
      a.paused_fd = paused.write_end();
      a.resume_fd = resume.read_end();
      const pid_t first = children.spawn([&] { return run_ingest(dir.path(), a); });
      char b;
      ASSERT_TRUE(test::read_exact(paused.read_end(), &b, 1, 30'000));
      Instance second;
      second.kill_after = std::uniform_int_distribution<uint64_t>(0, 300)(rng);
      second.opened_fd = opened.write_end();
      const pid_t next = children.spawn([&] { return run_ingest(dir.path(), second); });
      ASSERT_TRUE(test::read_exact(opened.read_end(), &b, 1, 30'000));
      ASSERT_TRUE(test::write_all(resume.write_end(), &b, 1));
      ASSERT_EQ(children.wait(first, 60'000), kFencedExit);
      ++fenced;
      const int code = children.wait(next, 60'000);
      ASSERT_TRUE(code == kDone || code == 128 + SIGKILL) << "exit " << code;
      kills += code == 128 + SIGKILL;
      done = code == kDone;
      continue;
    }
    const uint64_t kill_after = std::uniform_int_distribution<uint64_t>(0, 300)(rng);
    const bool in_claim = rng() % 3 == 0;
    Instance one;
    one.kill_after = kill_after;
    one.kill_in_claim = in_claim;
    const pid_t c = children.spawn([&] { return run_ingest(dir.path(), one); });
    const int code = children.wait(c, 60'000);
    ASSERT_TRUE(code == kDone || code == 128 + SIGKILL) << "exit " << code;
    kills += code == 128 + SIGKILL;
    done = code == kDone;
  }
  EXPECT_GT(kills, 5);
  EXPECT_GT(fenced, 0);
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  uint64_t pid = 0;
  for (uint32_t part = 0; part < kPartitions; ++part) {
    ConsumerOptions o;
    o.partitions = {part};
    auto c = bus->create_consumer("in", "", o);
    ASSERT_TRUE(c);
    std::vector<RecordView> out(256);
    uint32_t want = 0;
    for (;;) {
      auto n = c->poll(out, 200'000'000);
      ASSERT_TRUE(n) << n.error().to_string();
      if (*n == 0) break;
      for (size_t k = 0; k < *n; ++k) {
        ASSERT_LT(want, kPerPartition) << "more records than were sent";
        ASSERT_EQ(out[k].value, value_of(part, want)) << "partition " << part;
        ASSERT_EQ(out[k].sequence, want);
        if (pid == 0) pid = out[k].producer_id;
        ASSERT_EQ(out[k].producer_id, pid) << "one identity across every restart";
        ++want;
      }
    }
    EXPECT_EQ(want, kPerPartition) << "partition " << part;
  }
  std::printf("  %d rounds, %d SIGKILLs, %d fenced instances\n", rounds, kills, fenced);
}

}  // namespace
}  // namespace sluice
