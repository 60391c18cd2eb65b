// A test fixture with a bus on a manual clock: leases, retries, sweeps and
// deadlines move only when the test advances `clock`.
#pragma once

#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <optional>

#include "support/test_support.h"

namespace sluice::test {

struct ClockedBusTest : ::testing::Test {
  TempDir dir;
  ManualClock clock;
  std::optional<Bus> bus;

  // A derived SetUp calls this first and returns if it failed
  // (HasFatalFailure()).
  void SetUp() override {
    BusOptions bo;
    bo.clock = &clock;
    auto b = Bus::open(dir.path(), bo);
    ASSERT_TRUE(b) << b.error().to_string();
    bus.emplace(std::move(*b));
  }
};

}  // namespace sluice::test
