// Work queues across real processes: competing worker processes, SIGKILL at
// random points, leases of dead workers.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <chrono>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "process_helpers.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
constexpr int64_t kMs = 1'000'000;

QueueOptions test_queue() {
  QueueOptions o;
  o.segment_bytes = 1 << 20;
  o.max_depth_bytes = 8 << 20;
  o.lease_ns = 3'600'000 * kMs;  // an hour: anything redelivered sooner came back through liveness
  o.retry.max_receives = 5;
  o.retry.base_delay_ns = 5 * kMs;
  o.retry.multiplier = 2.0;
  o.retry.max_delay_ns = 50 * kMs;
  o.retry.jitter_ns = 0;
  return o;
}

// A worker process that leases messages and is SIGKILLed holding them: the
// leases come back as soon as its death is visible, not after the lease.
TEST(QueueProcesses, LeasesOfAKilledWorkerAreRedeliveredAtOnce) {
  test::TempDir dir;
  ASSERT_NO_FATAL_FAILURE(test::fill_queue(dir.path(), "jobs", test_queue(), 10));
  test::Children children;
  test::Pipe ready;
  const pid_t child = children.spawn([&] {
    auto bus = Bus::open(dir.path());
    if (!bus) return 10;
    auto w = bus->create_worker("jobs");
    if (!w) return 11;
    std::vector<Delivery> d(5);
    auto n = w->receive(d, 5'000 * kMs);
    if (!n || *n != 5) return 12;
    const char byte = 'x';
    if (!test::write_all(ready.write_end(), &byte, 1)) return 13;
    for (;;) std::this_thread::sleep_for(1s);  // holds its five leases until killed
  });
  ASSERT_GT(child, 0);
  char byte;
  ASSERT_TRUE(test::read_exact(ready.read_end(), &byte, 1, 10'000)) << "the child did not lease its messages";
  EXPECT_EQ(children.kill(child), 128 + SIGKILL);

  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  auto w = bus->create_worker("jobs");
  ASSERT_TRUE(w);
  std::set<std::string> seen;
  uint32_t redelivered = 0;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  std::vector<Delivery> d(10);
  while (seen.size() < 10 && std::chrono::steady_clock::now() < deadline) {
    auto n = w->receive(d, 100 * kMs);
    ASSERT_TRUE(n) << n.error().to_string();
    for (size_t i = 0; i < *n; ++i) {
      EXPECT_TRUE(seen.insert(std::string(d[i].value())).second);
      if (d[i].attempt() == 2) ++redelivered;
      ASSERT_TRUE(d[i].ack());
    }
  }
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_EQ(redelivered, 5u);
  auto s = bus->queue_stats("jobs");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->total().owner_deaths, 5u);
  EXPECT_EQ(s->total().depth, 0u);
}

// Four worker processes handle 20,000 messages while the test SIGKILLs one of
// them at random moments and starts a replacement. Handlers fail some
// messages transiently (once) and some permanently. At the end every message
// was handled and acked, or dead-lettered with its metadata; none is lost.
// Workers record each message in a "done" topic before acking it, so a
// worker killed between the two produces a duplicate: counted, and bounded
// by the kills.
TEST(QueueProcesses, CompetingWorkersKilledAtRandomLoseNoMessage) {
  constexpr int kMessages = 20000;
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    ASSERT_TRUE(bus->create_queue("jobs", test_queue()));
    ASSERT_TRUE(bus->create_topic("done", TopicOptions{}));
    auto p = bus->create_queue_publisher("jobs");
    ASSERT_TRUE(p);
    for (int i = 0; i < kMessages; ++i) {
      const std::string v = std::to_string(i);
      QueueMessage m;
      m.value = v;
      ASSERT_TRUE(p->publish(m).ok());
    }
  }
  auto worker_body = [&dir] {
    auto bus = Bus::open(dir.path());
    if (!bus) return 10;
    auto w = bus->create_worker("jobs");
    auto done = bus->create_producer("done");
    if (!w || !done) return 11;
    auto r = w->run(
        [&](const Delivery& d) {
          const int id = std::stoi(std::string(d.value()));
          if (id % 50 == 0) throw PermanentError("message " + std::to_string(id) + " is invalid");
          if (id % 7 == 0 && d.attempt() == 1) throw TransientError("first attempt of a 7");
          if (!done->send(Message{{}, d.value()}).ok()) throw TransientError("done topic");
        },
        [] { return false; });
    return r ? 0 : 12;
  };
  test::Children children;
  std::vector<pid_t> workers;
  for (int i = 0; i < 4; ++i) workers.push_back(children.spawn(worker_body));

  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  std::mt19937 rng(12345);
  int kills = 0;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  for (;;) {
    auto s = bus->queue_stats("jobs");
    ASSERT_TRUE(s);
    if (s->total().settled_below == kMessages) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "stuck at " << s->total().settled_below;
    std::this_thread::sleep_for(std::chrono::milliseconds(2 + rng() % 10));
    if (kills < 40) {
      const size_t victim = rng() % workers.size();
      children.kill(workers[victim]);
      workers[victim] = children.spawn(worker_body);
      ++kills;
    }
  }
  for (pid_t pid : workers) children.kill(pid);

  std::map<int, int> handled;
  auto got = test::read_partition(*bus, "done", 0);
  ASSERT_TRUE(got) << got.error().to_string();
  for (const auto& c : *got) ++handled[std::stoi(c.value)];
  int duplicates = 0;
  for (int i = 0; i < kMessages; ++i) {
    if (i % 50 == 0) {
      EXPECT_EQ(handled.count(i), 0u) << i << " should have been dead-lettered";
      continue;
    }
    ASSERT_GE(handled[i], 1) << "message " << i << " was lost";
    duplicates += handled[i] - 1;
  }
  // Each kill can interrupt at most one message between its record and its
  // ack (run() handles one at a time).
  EXPECT_LE(duplicates, kills);
  auto stats = bus->queue_stats("jobs");
  ASSERT_TRUE(stats);
  std::printf("[ measured ] %d kills, %llu leases of dead workers redelivered, %d duplicates (recorded, then "
              "killed before the ack)\n",
              kills, static_cast<unsigned long long>(stats->total().owner_deaths), duplicates);

  auto dw = bus->create_worker("jobs.dlq");
  ASSERT_TRUE(dw);
  std::set<int> dead;
  std::vector<Delivery> d(64);
  for (;;) {
    auto n = dw->receive(d, 200 * kMs);
    ASSERT_TRUE(n);
    if (*n == 0) break;
    for (size_t i = 0; i < *n; ++i) {
      const int id = std::stoi(std::string(d[i].value()));
      EXPECT_EQ(id % 50, 0);
      EXPECT_EQ(d[i].headers().find("sluice.dlq.error_type"), "PermanentError");
      EXPECT_EQ(d[i].headers().find("sluice.dlq.source"), "queue:jobs");
      EXPECT_FALSE(d[i].headers().find("sluice.dlq.stack_trace").empty());
      dead.insert(id);
      ASSERT_TRUE(d[i].ack());
    }
  }
  EXPECT_EQ(dead.size(), static_cast<size_t>(kMessages / 50));
}

}  // namespace
}  // namespace sluice
