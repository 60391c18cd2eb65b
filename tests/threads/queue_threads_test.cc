// In-process stress of the work queue's slot protocol, also run under TSan:
// publisher threads and competing worker threads (each with its own Worker)
// on one queue. Some messages are nacked with no delay, so redeliveries race
// new receives and the floor. Every message is acked exactly once.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <atomic>
#include <chrono>
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
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);

  std::vector<std::thread> threads;
  for (int p = 0; p < kPublishers; ++p)
    threads.emplace_back([&, p] {
      auto pub = bus->create_queue_publisher("jobs");
      if (!pub) return failed.store(true);
      for (int i = 0; i < kPerPublisher; ++i) {
        const std::string v = std::to_string(p * kPerPublisher + i);
        QueueMessage m;
        m.value = v;
        while (!pub->publish(m).ok())
          if (std::chrono::steady_clock::now() > deadline) return failed.store(true);
      }
    });
  for (int w = 0; w < kWorkers; ++w)
    threads.emplace_back([&] {
      auto worker = bus->create_worker("jobs");
      if (!worker) return failed.store(true);
      std::vector<Delivery> d(8);
      while (settled.load() < kTotal && !failed.load()) {
        if (std::chrono::steady_clock::now() > deadline) return failed.store(true);
        auto n = worker->receive(d, 1'000'000);
        if (!n) return failed.store(true);
        for (size_t k = 0; k < *n; ++k) {
          const int id = std::stoi(std::string(d[k].value()));
          if (id % 5 == 0 && d[k].attempt() == 1) {  // once, straight back
            if (!d[k].nack(0)) failed.store(true);
            continue;
          }
          if (!d[k].ack()) {
            failed.store(true);
            continue;
          }
          acked[id].fetch_add(1);
          settled.fetch_add(1);
        }
      }
    });
  for (auto& t : threads) t.join();
  ASSERT_FALSE(failed.load());
  for (int i = 0; i < kTotal; ++i) ASSERT_EQ(acked[i].load(), 1) << "message " << i;
  auto s = bus->queue_stats("jobs");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->total().settled_below, static_cast<uint64_t>(kTotal));
  EXPECT_EQ(s->total().nacked, static_cast<uint64_t>(kTotal / 5));
}

}  // namespace
}  // namespace sluice
