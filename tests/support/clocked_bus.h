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

// The queue of the transactional and idempotent publisher suites: two
// priority levels, 1 MiB segments, 4 MiB deep, 30 s leases.
inline QueueOptions two_level_queue() {
  QueueOptions o;
  o.priorities = 2;
  o.segment_bytes = 1 << 20;
  o.max_depth_bytes = 4 << 20;
  o.lease_ns = 30'000'000'000;
  return o;
}

// A queue message of `value` at `priority`, with de-duplication id
// `dedup_id` when not empty. The views must outlive the message.
inline QueueMessage queue_message(std::string_view value, uint32_t priority = 0, std::string_view dedup_id = {}) {
  QueueMessage m;
  m.value = value;
  m.priority = priority;
  m.dedup_id = dedup_id;
  return m;
}

}  // namespace sluice::test
