#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.h"

namespace sluice {
namespace {

#if defined(__SANITIZE_THREAD__)
constexpr int kPerThread = 2000;
#else
constexpr int kPerThread = 20000;
#endif

TEST(AsyncProducer, ManyThreadsShareOneProducerAndEveryRecordArrivesOnceInPerThreadOrder) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  TopicOptions t;
  t.partitions = 3;
  t.segment_bytes = 1 << 20;
  ASSERT_TRUE(bus->create_topic("t", t));
  AsyncProducerOptions o;
  o.max_batch_records = 64;
  auto producer = AsyncProducer::create(*bus, "t", o);
  ASSERT_TRUE(producer) << producer.error().to_string();
  std::atomic<uint64_t> acked{0};
  std::vector<std::thread> threads;
  for (int th = 0; th < 4; ++th) {
    threads.emplace_back([&, th] {
      const std::string key = "thread-" + std::to_string(th);
      for (int i = 0; i < kPerThread;) {
        std::string v = std::to_string(th) + ":" + std::to_string(i);
        SendStatus s = producer->send(Message{key, v}, {}, [&](const SendResult& r) {
          if (r.ok()) acked.fetch_add(1, std::memory_order_relaxed);
        });
        if (s == SendStatus::kOk) ++i;
        else std::this_thread::yield();  // queue full: back-pressure
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(producer->flush(30'000'000'000));
  EXPECT_EQ(acked.load(), 4u * kPerThread);
  EXPECT_EQ(producer->stats().appended, 4u * kPerThread);
  EXPECT_LT(producer->stats().batches, 4u * kPerThread);  // batching happened

  auto consumer = bus->create_consumer("t", "");
  ASSERT_TRUE(consumer);
  std::vector<RecordView> out(256);
  std::map<int, int> next;
  uint64_t seen = 0;
  for (int idle = 0; seen < 4u * kPerThread && idle < 100;) {
    auto n = consumer->poll(out, 100'000'000);
    ASSERT_TRUE(n);
    if (*n == 0) ++idle;
    for (size_t i = 0; i < *n; ++i, ++seen) {
      std::string v(out[i].value);
      const int th = std::stoi(v.substr(0, v.find(':')));
      const int seq = std::stoi(v.substr(v.find(':') + 1));
      ASSERT_EQ(seq, next[th]) << "thread " << th;
      next[th] = seq + 1;
    }
  }
  EXPECT_EQ(seen, 4u * kPerThread);
}

}  // namespace
}  // namespace sluice
