// Parking across real processes: a worker process parking every message it
// handles (ParkError) is SIGKILLed mid-run, perhaps between a parked copy's
// publish and its original's settle; a survivor parks the rest. The lot ends
// with exactly one copy of each message: none lost, none twice.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <chrono>
#include <map>
#include <random>
#include <string>
#include <thread>

#include "process_helpers.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
constexpr int64_t kMs = 1'000'000;
constexpr int kMessages = 500;

TEST(ParkingProcesses, AWorkerKilledMidParkLeavesOneParkedCopyEach) {
  test::TempDir dir;
  QueueOptions o;
  o.segment_bytes = 1 << 20;
  o.max_depth_bytes = 8 << 20;
  o.lease_ns = 3'600'000 * kMs;  // an hour: what comes back sooner came back through liveness
  ASSERT_NO_FATAL_FAILURE(test::fill_queue(dir.path(), "jobs", o, kMessages));
  test::Children children;
  test::Pipe ready;
  const pid_t child = children.spawn([&] {
    auto bus = Bus::open(dir.path());
    if (!bus) return 10;
    auto w = bus->create_worker("jobs");
    if (!w) return 11;
    bool told = false;
    auto n = w->run(
        [&](const Delivery&) {
          if (!told) {
            const char byte = 'x';
            told = test::write_all(ready.write_end(), &byte, 1);
          }
          throw ParkError(0, "downstream outage");
        },
        {});
    return n ? 0 : 12;
  });
  ASSERT_GT(child, 0);
  char byte;
  ASSERT_TRUE(test::read_exact(ready.read_end(), &byte, 1, 10'000)) << "the child did not start parking";
  std::this_thread::sleep_for(std::chrono::microseconds(std::random_device{}() % 20'000));
  EXPECT_EQ(children.kill(child), 128 + SIGKILL);

  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  auto w = bus->create_worker("jobs");
  ASSERT_TRUE(w);
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  // The child's leases come back through liveness; its parked copies stay.
  std::vector<Delivery> d(64);
  while (std::chrono::steady_clock::now() < deadline) {
    auto s = bus->queue_stats("jobs");
    ASSERT_TRUE(s);
    if (s->total().unsettled == 0) break;
    auto n = w->receive(d, 50 * kMs);
    ASSERT_TRUE(n) << n.error().to_string();
    for (size_t i = 0; i < *n; ++i) {
      auto ok = w->park(d[i], 0, "still down");
      ASSERT_TRUE(ok) << ok.error().to_string();
    }
  }
  std::map<std::string, int> copies;
  auto lot = bus->create_worker("jobs.parking");
  ASSERT_TRUE(lot);
  for (;;) {
    auto n = lot->receive(d, 0);
    ASSERT_TRUE(n) << n.error().to_string();
    if (*n == 0) break;
    for (size_t i = 0; i < *n; ++i) {
      ++copies[std::string(d[i].value())];
      ASSERT_TRUE(d[i].ack());
    }
  }
  d.clear();  // deliveries must not outlive their workers
  EXPECT_EQ(copies.size(), static_cast<size_t>(kMessages));
  for (const auto& [v, c] : copies) EXPECT_EQ(c, 1) << v;
}

}  // namespace
}  // namespace sluice
