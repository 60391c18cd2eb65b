// Per-worker counters across processes (docs/queues.md section 8): the
// parent reads a worker process's counts from the queue's state file while
// it lives, and after it is SIGKILLed, marked dead.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "process_helpers.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
constexpr int64_t kMs = 1'000'000;

std::optional<QueueWorkerStats> row_of(Bus& bus, pid_t pid) {
  auto s = bus.queue_stats("jobs");
  EXPECT_TRUE(s) << s.error().to_string();
  if (!s) return std::nullopt;
  for (const QueueWorkerStats& w : s->workers)
    if (w.pid == static_cast<uint32_t>(pid)) return w;
  return std::nullopt;
}

TEST(QueueWorkerStatsProcesses, AWorkerProcessesCountsAreReadWhileItLivesAndAfterItIsKilled) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus) << bus.error().to_string();
  QueueOptions o;
  o.segment_bytes = 1 << 20;
  o.max_depth_bytes = 8 << 20;
  o.dead_letter_queue = "-";
  ASSERT_TRUE(bus->create_queue("jobs", o));
  {
    auto p = bus->create_queue_publisher("jobs");
    ASSERT_TRUE(p);
    for (int i = 0; i < 5; ++i) {
      QueueMessage m;
      m.value = "m";
      ASSERT_TRUE(p->publish(m).ok());
    }
  }
  test::Children children;
  test::Pipe ready;
  const pid_t child = children.spawn([&] {
    auto b = Bus::open(dir.path());
    if (!b) return 10;
    auto w = b->create_worker("jobs");
    if (!w) return 11;
    std::vector<Delivery> d(4);
    auto n = w->receive(d, 5'000 * kMs);
    if (!n || *n != 4) return 12;
    if (!d[0].ack() || !d[1].ack() || !d[2].nack(3'600'000 * kMs)) return 13;
    if (!d[3].reject(Failure{"Bad", "no", ""})) return 14;
    const char byte = 'x';
    if (!test::write_all(ready.write_end(), &byte, 1)) return 15;
    for (;;) std::this_thread::sleep_for(1s);  // counted, alive, until killed
  });
  ASSERT_GT(child, 0);
  char byte;
  ASSERT_TRUE(test::read_exact(ready.read_end(), &byte, 1, 10'000)) << "the child did not settle its messages";

  std::optional<QueueWorkerStats> row = row_of(*bus, child);
  ASSERT_TRUE(row) << "the child's slot is readable from here";
  EXPECT_TRUE(row->alive);
  EXPECT_EQ(row->workers, 1u);
  EXPECT_EQ(row->received, 4u);
  EXPECT_EQ(row->acked, 2u);
  EXPECT_EQ(row->nacked, 1u);
  EXPECT_EQ(row->dead_lettered, 1u);
  EXPECT_GT(row->attached_unix_ms, 0);
  EXPECT_GE(row->last_active_unix_ms, row->attached_unix_ms);

  EXPECT_EQ(children.kill(child), 128 + SIGKILL);
  row = row_of(*bus, child);
  ASSERT_TRUE(row) << "a dead process's slot keeps its last counts";
  EXPECT_FALSE(row->alive);
  EXPECT_EQ(row->received, 4u);
  EXPECT_EQ(row->acked, 2u);
  EXPECT_EQ(row->nacked, 1u);
  EXPECT_EQ(row->dead_lettered, 1u);
  EXPECT_EQ(row->workers, 1u) << "it died without detaching: the gauge is its last value";
}

}  // namespace
}  // namespace sluice
