// The blocking wait's handshake (ipc/wait_strategy.h): a consumer that has
// raised the `parked` flag is woken by the next notify(), the first notify
// of a parking clears the flag (so later publishes make no wake-up call),
// and one notify wakes every consumer parked at that moment. Waits park for
// up to a minute, so a lost wake-up shows as a waiter still asleep when the
// bounded check below gives up, not as a slow pass.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "ipc/wait_strategy.h"

namespace sluice::ipc {
namespace {

constexpr int64_t kMinute = 60'000'000'000;
constexpr auto kBound = std::chrono::seconds(10);

WaitOptions park_at_once() {
  WaitOptions o;
  o.strategy = WaitStrategy::kBlock;
  o.spin_iterations = 0;
  o.yield_iterations = 0;
  o.max_park_ns = kMinute;
  return o;
}

// Spins (bounded) until a consumer has raised the flag.
bool flag_raised(const WakeupWord& w) {
  const auto until = std::chrono::steady_clock::now() + kBound;
  while (w.parked.load(std::memory_order_acquire) == 0)
    if (std::chrono::steady_clock::now() > until) return false;
  return true;
}

TEST(Wakeup, APublishAfterTheConsumerParkedWakesItAndClearsTheFlag) {
  WakeupWord w{};
  std::atomic<bool> data{false};
  auto waiter = std::async(std::launch::async, [&] {
    return wait_until([&] { return data.load(std::memory_order_acquire); }, kMinute, park_at_once(), &w);
  });
  ASSERT_TRUE(flag_raised(w));
  const uint32_t seq_before = w.seq.load();
  data.store(true, std::memory_order_seq_cst);  // the publish
  notify(w);
  EXPECT_EQ(w.parked.load(), 0u) << "the first notify of a parking clears the flag";
  EXPECT_EQ(w.seq.load(), seq_before + 1);
  notify(w);  // a later publish: nobody to wake, no wake-up call
  EXPECT_EQ(w.seq.load(), seq_before + 1);
  const bool woke = waiter.wait_for(kBound) == std::future_status::ready;
  if (!woke) {  // release it so the test can end, then fail
    w.parked.store(1);
    notify(w);
  }
  ASSERT_TRUE(woke) << "the parked consumer was not woken";
  EXPECT_TRUE(waiter.get());
}

TEST(Wakeup, OneNotifyWakesEveryConsumerParkedAtThatMoment) {
  WakeupWord w{};
  std::atomic<bool> data{false};
  std::atomic<int> parked_before_data{0};
  std::vector<std::future<bool>> waiters;
  for (int i = 0; i < 3; ++i)
    waiters.push_back(std::async(std::launch::async, [&] {
      return wait_until(
          [&] {
            const bool d = data.load(std::memory_order_acquire);
            if (!d) parked_before_data.fetch_add(1);
            return d;
          },
          kMinute, park_at_once(), &w);
    }));
  // Each waiter checks twice before it sleeps (its first look and the
  // look after raising the flag): six looks, and the flag up, mean all
  // three are asleep or about to be.
  const auto until = std::chrono::steady_clock::now() + kBound;
  while (parked_before_data.load() < 6 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
  ASSERT_TRUE(flag_raised(w));
  data.store(true, std::memory_order_seq_cst);
  notify(w);
  bool all = true;
  for (auto& f : waiters) all &= f.wait_for(kBound) == std::future_status::ready;
  if (!all) {
    w.parked.store(1);
    notify(w);
  }
  ASSERT_TRUE(all) << "a parked consumer was not woken";
  for (auto& f : waiters) EXPECT_TRUE(f.get());
}

// The race the handshake is for, many times over: the publish lands
// anywhere around the consumer's parking, and it must never sleep through it.
// `release`: the publish is a release store and notify_after_release(), the
// consumer's membarrier supplying the barrier ("Release publishers").
void publishes_racing_the_parking_are_never_slept(bool release) {
  for (int round = 0; round < 2000; ++round) {
    WakeupWord w{};
    std::atomic<bool> data{false};
    std::atomic<bool> started{false};
    auto waiter = std::async(std::launch::async, [&] {
      started.store(true, std::memory_order_release);
      return wait_until([&] { return data.load(std::memory_order_acquire); }, kMinute, park_at_once(), &w);
    });
    while (!started.load(std::memory_order_acquire)) cpu_relax();
    // The waiter spins 64 looks before it parks: publish before, during
    // and after its parking.
    for (int spin = 0; spin < (round * 7) % 256; ++spin) cpu_relax();
    if (release) {
      data.store(true, std::memory_order_release);
      notify_after_release(w);
    } else {
      data.store(true, std::memory_order_seq_cst);
      notify(w);
    }
    const bool woke = waiter.wait_for(kBound) == std::future_status::ready;
    if (!woke) {
      w.parked.store(1);
      notify(w);
    }
    ASSERT_TRUE(woke) << "round " << round << ": the consumer slept through a publish";
    EXPECT_TRUE(waiter.get());
  }
}

TEST(Wakeup, APublishRacingTheParkingIsNeverSlept) { publishes_racing_the_parking_are_never_slept(false); }

TEST(Wakeup, AReleasePublishRacingTheParkingIsNeverSlept) {
  if (!register_release_publisher()) GTEST_SKIP() << "membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) unavailable";
  EXPECT_TRUE(register_release_publisher()) << "registering again is a no-op";
  publishes_racing_the_parking_are_never_slept(true);
}

// A parking consumer whose barrier is the membarrier parks as long as asked;
// without it (refused by the kernel) it re-checks every kUncoveredParkNs.
TEST(Wakeup, TheParkingBarrierIsTheMembarrierWhereTheKernelOffersIt) {
  if (!register_release_publisher()) GTEST_SKIP() << "membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) unavailable";
  EXPECT_TRUE(park_barrier());
}

}  // namespace
}  // namespace sluice::ipc
