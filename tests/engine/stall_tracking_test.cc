#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <vector>

#include "support/test_support.h"

namespace sluice {
namespace {

// Consecutive claims of one producer with records of one size have identical
// claim words; a reader must time each claim from when it first saw *that*
// claim, or a long-lived reader aborts live claims once the timeout has
// passed since its first stall ever.
TEST(StallTracking, IdenticalClaimsAtNewPositionsRestartTheStallTimer) {
  test::TempDir dir;
  ManualClock clock;
  BusOptions bo;
  bo.clock = &clock;
  auto bus = Bus::open(dir.path(), bo);
  ASSERT_TRUE(bus);
  TopicOptions t;
  t.segment_bytes = 1 << 20;
  t.claim_timeout_ns = 10'000'000'000;
  ASSERT_TRUE(bus->create_topic("t", t));
  auto producer = bus->create_producer("t");
  auto consumer = bus->create_consumer("t", "");
  ASSERT_TRUE(producer && consumer);
  std::vector<RecordView> out(4);
  ClaimSpec spec;
  spec.value_bytes = 8;
  spec.partition = 0;
  for (int round = 0; round < 3; ++round) {
    Claim claim;
    ASSERT_EQ(producer->try_claim(spec, claim), SendStatus::kOk);
    ASSERT_EQ(consumer->try_poll(out).value_or(99), 0u);  // the reader sees it CLAIMED
    std::fill(claim.value().begin(), claim.value().end(), std::byte{'x'});
    ASSERT_EQ(claim.commit(), SendStatus::kOk) << "round " << round;
    ASSERT_EQ(consumer->try_poll(out).value_or(99), 1u);
    clock.advance_ns(11'000'000'000);  // longer than the claim timeout
  }
  EXPECT_EQ(consumer->stats().claims_repaired, 0u);
}

}  // namespace
}  // namespace sluice
