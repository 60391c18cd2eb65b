// Threads racing process_once on the same ids (also run under TSan): each
// id's fn completes exactly once, whoever wins; losers wait for the winner
// and then see its effect (the DONE word's release/acquire); an fn that
// throws frees its id for the next caller.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.h"

namespace sluice {
namespace {

#if defined(__SANITIZE_THREAD__)
constexpr int kIds = 200;
#else
constexpr int kIds = 2'000;
#endif
constexpr int kThreads = 4;

ProcessedStoreOptions store_options() {
  ProcessedStoreOptions o;
  o.capacity = 65536;                 // 8192 buckets for kIds: none comes near 8 ids
  o.pending_wait_ns = 60'000'000'000; // bounded; a winner's fn is short
  return o;
}

struct Race {
  std::vector<std::atomic<int>> completed = std::vector<std::atomic<int>>(kIds);
  std::vector<std::atomic<bool>> throw_first = std::vector<std::atomic<bool>>(kIds);
  std::vector<int> effect = std::vector<int>(kIds, 0);  // plain: written by fn, read after kAlreadyDone
  std::atomic<int> ran{0}, already_done{0}, threw{0};
  std::mutex why_mu;
  std::string why;

  Race() {
    for (int i = 0; i < kIds; ++i) throw_first[i].store(i % 7 == 0);
  }
  void fail(std::string what) {
    std::lock_guard lock(why_mu);
    if (why.empty()) why = std::move(what);
  }

  // Thread t walks every id. Threads 0 and 2 start together at id 0, 1
  // and 3 half-way, so that two threads race for most ids at once, and the
  // pairs meet each other's done ids.
  void run(ProcessedStore& store, int t, bool check_effect) {
    for (int n = 0; n < kIds; ++n) {
      const int i = (n * 7 + (t % 2) * (kIds / 2)) % kIds;
      const std::string id = "event-" + std::to_string(i);
      for (int attempt = 0;; ++attempt) {
        if (attempt > 10) return fail(id + ": still throwing after 10 attempts");
        try {
          auto r = store.process_once(id, [&] {
            if (throw_first[i].exchange(false)) throw std::runtime_error("first attempt fails");
            effect[i] = t + 1;
            completed[i].fetch_add(1);
          });
          if (!r) return fail(id + ": " + r.error().to_string());
          if (*r == ProcessOutcome::kRan) {
            ran.fetch_add(1);
          } else if (*r == ProcessOutcome::kAlreadyDone) {
            already_done.fetch_add(1);
            if (check_effect && effect[i] == 0) return fail(id + ": done, but its effect is not visible");
          } else {
            return fail(id + ": in doubt, yet nobody died");
          }
          break;
        } catch (const std::runtime_error&) {
          threw.fetch_add(1);
        }
      }
    }
  }

  void check() {
    EXPECT_EQ(why, "");
    for (int i = 0; i < kIds; ++i) EXPECT_EQ(completed[i].load(), 1) << "event-" << i;
    EXPECT_EQ(ran.load(), kIds);
    EXPECT_EQ(already_done.load(), kIds * (kThreads - 1));
    EXPECT_EQ(threw.load(), (kIds + 6) / 7);
  }
};

TEST(ProcessedThreads, ThreadsSharingAHandleRunEachIdsFnExactlyOnce) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  auto store = bus->open_processed_store("ids", store_options());
  ASSERT_TRUE(store) << store.error().to_string();
  Race race;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back([&, t] { race.run(*store, t, true); });
  for (auto& th : threads) th.join();
  race.check();
  auto stats = store->stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->done, static_cast<uint64_t>(kIds));
  EXPECT_EQ(stats->ran, static_cast<uint64_t>(kIds));
  EXPECT_EQ(stats->fn_threw, static_cast<uint64_t>((kIds + 6) / 7));
  EXPECT_EQ(stats->completions_lost, 0u);
}

// Two Bus handles are two OwnerIds, as two processes would be: a PENDING of
// the other handle is checked through the registry (flock), not as our own.
// Each handle maps the file itself, so TSan cannot pair the two mappings'
// atomics; the effect is not checked here.
TEST(ProcessedThreads, ThreadsOfTwoBusHandlesRunEachIdsFnExactlyOnce) {
  test::TempDir dir;
  std::vector<Bus> buses;
  for (int b = 0; b < 2; ++b) {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    buses.push_back(std::move(*bus));
  }
  std::vector<ProcessedStore> stores;
  for (int t = 0; t < kThreads; ++t) {
    auto s = buses[t % 2].open_processed_store("ids", store_options());
    ASSERT_TRUE(s) << s.error().to_string();
    stores.push_back(std::move(*s));
  }
  Race race;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back([&, t] { race.run(stores[t], t, false); });
  for (auto& th : threads) th.join();
  race.check();
}

}  // namespace
}  // namespace sluice
