// The exactly-once chaos run (docs/exactly-once.md, section 9) with forked
// processes: an idempotent input producer and three transactional
// transformers SIGKILLed and restarted at random, transformers stopped past
// their transaction timeout and resumed as fenced zombies, each input also
// published to queue `outq` in its output's transaction, then every
// invariant checked (tools/sluice/chaos_*.cc: the roles `sluice chaos`
// runs). A few seconds and a few thousand records. The seed is drawn per
// run and printed with any failure; SLUICE_CHAOS_SEED=S repeats one.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "chaos.h"
#include "support/test_support.h"

namespace sluice {
namespace {

using namespace cli::chaos;

uint64_t draw_seed() {
  if (const char* s = std::getenv("SLUICE_CHAOS_SEED")) return std::strtoull(s, nullptr, 10);
  return std::random_device{}() % 1'000'000;
}

Result<cli::demo::WorkerProcess> fork_role(const std::string& name, const RoleSpec& spec) {
  return cli::demo::WorkerProcess::fork_call(name, [spec] { return run_role(spec); });
}

// Small and quick: records_per_partition ends the chaos; the duration only
// bounds it.
ChaosOptions quick(Mode mode, uint64_t seed, uint64_t records_per_partition, uint64_t rate) {
  ChaosOptions o;
  o.mode = mode;
  o.seed = seed;
  o.records_per_partition = records_per_partition;
  o.rate = rate;
  o.duration_ms = 30'000;
  o.transformer_kill_ms = {30, 150};
  o.input_kill_ms = {150, 500};
  o.zombie_ms = {700, 1400};
  // 2% of the transactions overrun it on purpose: a helper (a tail) aborts
  // them, and their holders learn kAborted and are restarted.
  o.txn_timeout_ms = 20;
  o.late_percent = 2;
  o.segment_bytes = 64 << 10;  // rolls segments within the run
  o.catch_up_ms = 30'000;
  return o;
}

void expect_invariants(const ChaosReport& r, uint64_t seed) {
  EXPECT_TRUE(r.ok()) << "seed " << seed;
  for (const Invariant& i : r.invariants) EXPECT_TRUE(i.ok) << i.name << ": " << i.detail << " (seed " << seed << ")";
}

TEST(ExactlyOnceChaos, KilledRestartedAndFencedTransformersLeaveExactlyOneOutputPerInput) {
  const uint64_t seed = draw_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SLUICE_CHAOS_SEED repeats it)");
  test::TempDir dir;
  const ChaosOptions o = quick(Mode::kExactlyOnce, seed, 600, 600);
  auto r = run(dir.path(), o, fork_role, stdout);
  ASSERT_TRUE(r) << r.error().to_string() << " (seed " << seed << ")";
  expect_invariants(*r, seed);
  EXPECT_EQ(r->inputs, 4u * 600);
  EXPECT_EQ(r->outputs, r->inputs);
  EXPECT_EQ(r->queue_due, r->inputs) << "every input is due a queue message";
  EXPECT_EQ(r->queue_messages, r->inputs);
  EXPECT_EQ(r->queue_duplicates, 0u);
  EXPECT_EQ(r->queue_lost, 0u);
  EXPECT_GT(r->queue_published, r->queue_messages) << "aborted transactions published messages never delivered";
  EXPECT_GE(r->tally.transformer_kills, 10u);
  EXPECT_GE(r->tally.input_kills, 2u);
  EXPECT_GE(r->tally.zombies_stopped, 1u) << "a transformer was stopped past its timeout";
  EXPECT_EQ(r->tally.zombies_fenced + r->tally.zombies_timed_out, r->tally.zombies_stopped);
  EXPECT_GT(r->commits, 0u);
  EXPECT_GT(r->holder_aborts, 0u) << "some transactions were aborted on purpose";
  EXPECT_GT(r->tally.timed_out_exits, 0u) << "some ran past their timeout on purpose";
  EXPECT_GT(r->input_duplicates, 0u) << "restarted input producers resend their last records";
}

TEST(ExactlyOnceChaos, AtLeastOnceLosesNothingAndCountsItsDuplicates) {
  const uint64_t seed = draw_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SLUICE_CHAOS_SEED repeats it)");
  test::TempDir dir;
  const ChaosOptions o = quick(Mode::kAtLeastOnce, seed, 300, 600);
  auto r = run(dir.path(), o, fork_role, stdout);
  ASSERT_TRUE(r) << r.error().to_string() << " (seed " << seed << ")";
  expect_invariants(*r, seed);
  EXPECT_EQ(r->inputs, 4u * 300);
  EXPECT_EQ(r->lost, 0u);
  EXPECT_EQ(r->outputs, r->inputs + r->duplicates);
  EXPECT_EQ(r->queue_lost, 0u);
  EXPECT_EQ(r->queue_messages, r->inputs + r->queue_duplicates);
  EXPECT_GE(r->tally.transformer_kills, 5u);
  EXPECT_EQ(r->tally.zombies_stopped, 0u) << "plain producers cannot be fenced: no zombies at least once";
}

}  // namespace
}  // namespace sluice
