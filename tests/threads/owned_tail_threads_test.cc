// The owned tail between threads (the suite TSan runs): writer threads with
// their own producers take turns in bursts long enough to own the tail, so
// that it changes hands at every turn, then all run at once, while a reader
// thread follows. Every record arrives once, in each writer's order.
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

constexpr uint32_t kWriters = 3;
constexpr uint32_t kTurns = 6;
constexpr uint32_t kBurst = 200;  // more than a lone writer needs to own the tail
constexpr uint32_t kFreeForAll = 3000;
constexpr char kTopic[] = "t";

TEST(OwnedTailThreads, TheTailChangesHandsBetweenWriterThreadsWithEveryRecordOnceInOrder) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  TopicOptions t;
  t.partitions = 1;
  t.segment_bytes = 256 << 10;
  ASSERT_TRUE(bus->create_topic(kTopic, t));
  std::vector<Producer> producers;
  for (uint32_t w = 0; w < kWriters; ++w) {
    auto p = bus->create_producer(kTopic);
    ASSERT_TRUE(p);
    producers.push_back(std::move(*p));
  }
  const uint64_t total = uint64_t{kWriters} * (kTurns * kBurst + kFreeForAll);
  std::atomic<uint32_t> turn{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> writers;
  for (uint32_t w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      uint32_t seq = 0;
      auto send = [&] {
        const std::string v = std::to_string(w) + ":" + std::to_string(seq++);
        if (!producers[w].send(Message{"", v}, 0).ok()) failed = true;
      };
      for (uint32_t round = 0; round < kTurns; ++round) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (turn.load(std::memory_order_acquire) != round * kWriters + w) {
          if (std::chrono::steady_clock::now() > deadline) {
            failed = true;
            return;
          }
          std::this_thread::yield();
        }
        for (uint32_t i = 0; i < kBurst; ++i) send();
        turn.fetch_add(1, std::memory_order_release);
      }
      while (turn.load(std::memory_order_acquire) < kTurns * kWriters) std::this_thread::yield();
      for (uint32_t i = 0; i < kFreeForAll; ++i) send();
    });
  }
  ConsumerOptions co;
  co.auto_commit = false;
  auto consumer = bus->create_consumer(kTopic, "", co);
  ASSERT_TRUE(consumer);
  std::vector<uint32_t> next(kWriters, 0);
  uint64_t got = 0;
  std::vector<RecordView> out(256);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (got < total && std::chrono::steady_clock::now() < deadline) {
    auto n = consumer->poll(out, 10'000'000);
    ASSERT_TRUE(n) << n.error().to_string();
    for (size_t i = 0; i < *n; ++i) {
      ASSERT_EQ(out[i].offset, got);
      const std::string v(out[i].value);
      const size_t colon = v.find(':');
      ASSERT_NE(colon, std::string::npos);
      const uint32_t w = static_cast<uint32_t>(std::stoul(v.substr(0, colon)));
      ASSERT_LT(w, kWriters);
      ASSERT_EQ(std::stoul(v.substr(colon + 1)), next[w]) << "writer " << w << " at offset " << got;
      ++next[w];
      ++got;
    }
  }
  for (auto& th : writers) th.join();
  EXPECT_FALSE(failed.load());
  EXPECT_EQ(got, total);
  auto v = bus->verify(kTopic);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok()) << v->issues.front().what;
  auto d = bus->describe_topic(kTopic);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->partitions[0].repaired_claims, 0u) << "a live writer's claim was repaired";
}

}  // namespace
}  // namespace sluice
