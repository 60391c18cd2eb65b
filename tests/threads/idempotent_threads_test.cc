// The fencing race in one process, under TSan too: an instance of an
// identity streams records while a second instance of the same name opens
// and streams in its turn, over and over, with a plain writer interleaving.
// Whatever instant each fence lands at, the identity's records in the log
// carry sequences 0, 1, 2, ... with no gap and no repeat: a frame the old
// instance published before the fence is counted by the new one's takeover,
// and one it claimed after aborts itself (docs/exactly-once.md, section 3).
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.h"

namespace sluice {
namespace {

#if defined(__SANITIZE_THREAD__)
constexpr int kGenerations = 8;
#else
constexpr int kGenerations = 40;
#endif

TEST(IdempotentThreads, InstancesFencingEachOtherMidStreamKeepSequencesDense) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  TopicOptions t;
  t.partitions = 1;
  t.segment_bytes = 256 << 10;  // several rolls over the run
  ASSERT_TRUE(bus->create_topic("t", t));
  ProducerOptions o;
  o.idempotent = true;
  o.producer_name = "ingest";

  std::atomic<bool> stop_plain{false};
  std::thread plain([&] {  // another writer's frames between ours
    auto p = bus->create_producer("t");
    if (!p) return;
    while (!stop_plain.load(std::memory_order_relaxed)) (void)p->send(Message{"", "plain"}, 0);
  });

  uint64_t pid = 0;
  int fenced_with_sends = 0;
  std::optional<Producer> current;
  for (int g = 0; g < kGenerations; ++g) {
    // The previous instance streams on its own thread; once it is under way,
    // a new instance opens and takes over. The old one must end with kFenced.
    std::optional<Producer> old = std::move(current);
    std::atomic<int> old_sent{0};
    std::thread zombie([&] {
      if (!old) return;
      for (int i = 0; i < 1'000'000; ++i) {
        const SendResult r = old->send(Message{"", "old"}, 0);
        if (!r.ok()) return;  // kFenced, checked below
        old_sent.fetch_add(1, std::memory_order_release);
      }
    });
    if (old) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (old_sent.load(std::memory_order_acquire) < 50 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
    }
    auto p = bus->create_producer("t", o);
    ASSERT_TRUE(p) << p.error().to_string();
    if (pid == 0) pid = p->producer_id();
    ASSERT_EQ(p->producer_id(), pid);
    for (int i = 0; i < 200; ++i) {
      const SendResult r = p->send(Message{"", "new"}, 0);
      ASSERT_TRUE(r.ok()) << p->last_error().to_string();
    }
    zombie.join();
    if (old) {
      EXPECT_EQ(old->last_error().code, Errc::kFenced) << old->last_error().to_string();
      EXPECT_EQ(old->send(Message{"", "late"}, 0).status, SendStatus::kFenced);
      ++fenced_with_sends;
    }
    current.emplace(std::move(*p));
  }
  stop_plain.store(true);
  plain.join();

  ConsumerOptions c;
  c.auto_commit = false;
  auto consumer = bus->create_consumer("t", "", c);
  ASSERT_TRUE(consumer);
  std::vector<RecordView> out(256);
  uint32_t want = 0;
  uint64_t others = 0;
  for (;;) {
    auto n = consumer->try_poll(out);
    ASSERT_TRUE(n) << n.error().to_string();
    if (*n == 0) break;
    for (size_t k = 0; k < *n; ++k) {
      if (out[k].producer_id != pid) {
        ++others;
        continue;
      }
      ASSERT_EQ(out[k].sequence, want) << "at offset " << out[k].offset;
      ++want;
    }
  }
  EXPECT_GE(want, static_cast<uint32_t>(200 * kGenerations));
  EXPECT_GT(others, 0u);
  EXPECT_EQ(fenced_with_sends, kGenerations - 1);
}

}  // namespace
}  // namespace sluice
