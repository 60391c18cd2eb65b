// In-process stress of the work queue's slot protocol, also run under TSan:
// publisher threads and competing worker threads (each with its own Worker)
// on one queue. Some messages are nacked with no delay, so redeliveries race
// new receives and the floor. Every message is acked exactly once.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.h"

namespace sluice {
namespace {

#if defined(__SANITIZE_THREAD__)
constexpr int kPerPublisher = 2'000;
#else
constexpr int kPerPublisher = 20'000;
#endif
constexpr int kPublishers = 2;
constexpr int kWorkers = 3;

TEST(QueueThreads, CompetingWorkerThreadsAckEveryMessageExactlyOnce) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  QueueOptions o;
  o.segment_bytes = 1 << 20;
  o.max_depth_bytes = 16 << 20;
  o.window = 1024;
  o.retry.max_receives = 10;
  ASSERT_TRUE(bus->create_queue("jobs", o));
  constexpr int kTotal = kPublishers * kPerPublisher;
  std::vector<std::atomic<int>> acked(kTotal);
  std::atomic<int> settled{0};
  std::atomic<bool> failed{false};
  std::mutex why_mu;
  std::string why;  // the first failure, so that a rare one can be diagnosed
  auto fail = [&](std::string what) {
    std::lock_guard lock(why_mu);
    if (why.empty()) why = std::move(what);
    failed.store(true);
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);

  std::vector<std::thread> threads;
  for (int p = 0; p < kPublishers; ++p)
    threads.emplace_back([&, p] {
      auto pub = bus->create_queue_publisher("jobs");
      if (!pub) return fail("publisher: " + pub.error().to_string());
      for (int i = 0; i < kPerPublisher; ++i) {
        const std::string v = std::to_string(p * kPerPublisher + i);
        QueueMessage m;
        m.value = v;
        while (!pub->publish(m).ok())
          if (std::chrono::steady_clock::now() > deadline) return fail("publish: " + pub->last_error().to_string());
      }
    });
  for (int w = 0; w < kWorkers; ++w)
    threads.emplace_back([&] {
      auto worker = bus->create_worker("jobs");
      if (!worker) return fail("worker: " + worker.error().to_string());
      std::vector<Delivery> d(8);
      while (settled.load() < kTotal && !failed.load()) {
        if (std::chrono::steady_clock::now() > deadline)
          return fail("deadline with " + std::to_string(settled.load()) + " settled");
        auto n = worker->receive(d, 1'000'000);
        if (!n) return fail("receive: " + n.error().to_string());
        for (size_t k = 0; k < *n; ++k) {
          const int id = std::stoi(std::string(d[k].value()));
          if (id % 5 == 0 && d[k].attempt() == 1) {  // once, straight back
            if (auto ok = d[k].nack(0); !ok) fail("nack: " + ok.error().to_string());
            continue;
          }
          if (auto ok = d[k].ack(); !ok) {
            fail("ack: " + ok.error().to_string());
            continue;
          }
          acked[id].fetch_add(1);
          settled.fetch_add(1);
        }
      }
    });
  for (auto& t : threads) t.join();
  if (failed.load()) {
    auto s = bus->queue_stats("jobs");
    if (s) {
      const auto t = s->total();
      std::printf("published %llu floor %llu depth %llu in_flight %llu ready %llu delayed %llu acked %llu nacked %llu\n",
                  (unsigned long long)t.published, (unsigned long long)t.settled_below, (unsigned long long)t.depth,
                  (unsigned long long)t.in_flight, (unsigned long long)t.ready, (unsigned long long)t.delayed,
                  (unsigned long long)t.acked, (unsigned long long)t.nacked);
    }
  }
  ASSERT_FALSE(failed.load()) << why;
  for (int i = 0; i < kTotal; ++i) ASSERT_EQ(acked[i].load(), 1) << "message " << i;
  auto s = bus->queue_stats("jobs");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->total().settled_below, static_cast<uint64_t>(kTotal));
  EXPECT_EQ(s->total().nacked, static_cast<uint64_t>(kTotal / 5));
  // The worker threads made their Workers at once: one slot of the worker
  // table (this process's), claimed once, their counts added up there.
  ASSERT_EQ(s->workers.size(), 1u);
  EXPECT_EQ(s->workers[0].acked, static_cast<uint64_t>(kTotal));
  EXPECT_EQ(s->workers[0].nacked, static_cast<uint64_t>(kTotal / 5));
  EXPECT_EQ(s->workers[0].received, s->total().received);
  EXPECT_EQ(s->workers[0].workers, 0u) << "every thread's Worker is gone";
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// FIFO groups under competing worker threads: a group never has two messages
// in flight, and its messages are acked in publish order.
TEST(QueueThreads, GroupsStayInOrderAndSingleFileUnderCompetingWorkers) {
  constexpr int kGroups = 8;
#if defined(__SANITIZE_THREAD__)
  constexpr int kPerGroup = 150;
#else
  constexpr int kPerGroup = 1500;
#endif
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  QueueOptions o;
  o.segment_bytes = 1 << 20;
  o.max_depth_bytes = 16 << 20;
  o.window = 4096;
  ASSERT_TRUE(bus->create_queue("jobs", o));
  {
    auto pub = bus->create_queue_publisher("jobs");
    ASSERT_TRUE(pub);
    for (int i = 0; i < kPerGroup; ++i)
      for (int g = 0; g < kGroups; ++g) {
        const std::string v = std::to_string(g) + ":" + std::to_string(i);
        const std::string group = "g" + std::to_string(g);
        QueueMessage m;
        m.value = v;
        m.group = group;
        ASSERT_TRUE(pub->publish(m).ok());
      }
  }
  std::vector<std::atomic<int>> in_flight(kGroups), next(kGroups);
  std::atomic<int> done{0};
  std::atomic<bool> failed{false};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::vector<std::thread> threads;
  for (int w = 0; w < 3; ++w)
    threads.emplace_back([&] {
      auto worker = bus->create_worker("jobs");
      if (!worker) return failed.store(true);
      std::vector<Delivery> d(4);
      while (done.load() < kGroups * kPerGroup && !failed.load()) {
        if (std::chrono::steady_clock::now() > deadline) return failed.store(true);
        auto n = worker->receive(d, 1'000'000);
        if (!n) return failed.store(true);
        for (size_t k = 0; k < *n; ++k) {
          const std::string v(d[k].value());
          const int g = std::stoi(v.substr(0, v.find(':')));
          const int i = std::stoi(v.substr(v.find(':') + 1));
          if (in_flight[g].fetch_add(1) != 0) failed.store(true);  // two of one group at once
          if (next[g].load() != i) failed.store(true);             // out of order
          next[g].store(i + 1);
          in_flight[g].fetch_sub(1);
          if (!d[k].ack()) failed.store(true);
          done.fetch_add(1);
        }
      }
    });
  for (auto& t : threads) t.join();
  ASSERT_FALSE(failed.load());
  for (int g = 0; g < kGroups; ++g) EXPECT_EQ(next[g].load(), kPerGroup);
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// Publisher threads racing with the same de-duplication ids: each id is
// appended once, and every publisher is told the same offset for it.
TEST(QueueThreads, RacingPublishersOfOneIdAppendItOnce) {
  constexpr int kIds = 500;
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  QueueOptions o;
  o.segment_bytes = 1 << 20;
  o.dedup_capacity = 4096;
  ASSERT_TRUE(bus->create_queue("jobs", o));
  std::vector<std::vector<uint64_t>> offsets(3, std::vector<uint64_t>(kIds, UINT64_MAX));
  std::atomic<int> appended{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&, t] {
      auto pub = bus->create_queue_publisher("jobs");
      if (!pub) return;
      for (int i = 0; i < kIds; ++i) {
        const std::string id = "id-" + std::to_string(i);
        QueueMessage m;
        m.value = id;
        m.dedup_id = id;
        const PublishResult r = pub->publish(m);
        if (!r.ok()) continue;
        if (!r.duplicate) appended.fetch_add(1);
        offsets[t][i] = r.offset;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(appended.load(), kIds);
  for (int i = 0; i < kIds; ++i) {
    EXPECT_NE(offsets[0][i], UINT64_MAX) << i;
    EXPECT_EQ(offsets[0][i], offsets[1][i]) << i;
    EXPECT_EQ(offsets[0][i], offsets[2][i]) << i;
  }
  auto s = bus->queue_stats("jobs");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->total().published, static_cast<uint64_t>(kIds));
}

}  // namespace
}  // namespace sluice
