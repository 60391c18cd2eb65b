// A test fixture with a bus on a manual clock: leases, retries, sweeps and
// deadlines move only when the test advances `clock`.
#pragma once

#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <optional>
#include <string_view>

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

  // A worker of `queue` (the test fails if none can be made).
  Worker worker(std::string_view queue, const WorkerOptions& o = {}) {
    auto w = bus->create_worker(queue, o);
    EXPECT_TRUE(w) << w.error().to_string();
    return std::move(*w);
  }

  // Receives one message now (no waiting); an invalid Delivery if none.
  static Delivery take(Worker& w) {
    Delivery d[1];
    auto n = w.receive(d, 0);
    EXPECT_TRUE(n) << n.error().to_string();
    return std::move(d[0]);
  }
};

}  // namespace sluice::test
