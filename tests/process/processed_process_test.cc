// The processed-id store across real processes (docs/exactly-once.md,
// section 6): a runner SIGKILLed inside fn leaves its id in doubt, which a
// resolver settles either way; one killed after fn returned left it done; a
// live runner in another process makes others wait for its outcome.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <chrono>
#include <string>
#include <thread>

#include "process_helpers.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

constexpr char kStore[] = "charges";

// A child that opens the bus and the store, runs process_once(id) with an
// fn that signals on `inside` and then waits to be killed. `kill_after_fn`:
// fn returns at once, and the child signals after process_once returned.
pid_t spawn_runner(test::Children& children, const std::string& dir, const std::string& id, test::Pipe& signal,
                   bool kill_after_fn) {
  return children.spawn([&dir, id, &signal, kill_after_fn] {
    auto bus = Bus::open(dir);
    if (!bus) return 10;
    auto store = bus->open_processed_store(kStore);
    if (!store) return 11;
    const char byte = 'x';
    auto r = store->process_once(id, [&] {
      if (kill_after_fn) return;
      (void)test::write_all(signal.write_end(), &byte, 1);
      for (;;) std::this_thread::sleep_for(1s);  // inside fn until SIGKILLed
    });
    if (!r || *r != ProcessOutcome::kRan) return 12;
    (void)test::write_all(signal.write_end(), &byte, 1);
    for (;;) std::this_thread::sleep_for(1s);  // after fn, until SIGKILLed
  });
}

// Starts a runner, waits for its signal and SIGKILLs it.
void kill_runner(const std::string& dir, const std::string& id, bool kill_after_fn) {
  test::Children children;
  test::Pipe signal;
  const pid_t child = spawn_runner(children, dir, id, signal, kill_after_fn);
  ASSERT_GT(child, 0);
  char byte;
  ASSERT_TRUE(test::read_exact(signal.read_end(), &byte, 1, 10'000)) << "the runner did not get there";
  EXPECT_EQ(children.kill(child), 128 + SIGKILL);
}

struct Opened {
  Bus bus;
  ProcessedStore store;
};
std::optional<Opened> open_store(const std::string& dir, int64_t pending_wait_ns = 0) {
  auto bus = Bus::open(dir);
  EXPECT_TRUE(bus);
  if (!bus) return std::nullopt;
  ProcessedStoreOptions o;
  o.pending_wait_ns = pending_wait_ns;
  auto store = bus->open_processed_store(kStore, o);
  EXPECT_TRUE(store) << store.error().to_string();
  if (!store) return std::nullopt;
  return Opened{std::move(*bus), std::move(*store)};
}

TEST(ProcessedProcesses, ARunnerKilledInsideFnLeavesItsIdInDoubt) {
  test::TempDir dir;
  kill_runner(dir.path(), "charge-1", false);
  auto o = open_store(dir.path());
  ASSERT_TRUE(o);
  EXPECT_EQ(*o->store.state("charge-1"), ProcessedState::kInDoubt);
  bool ran = false;
  auto r = o->store.process_once("charge-1", [&] { ran = true; });
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*r, ProcessOutcome::kInDoubt);
  EXPECT_FALSE(ran) << "without a resolver an in-doubt id is not run again";
  auto in_doubt = o->store.list(ProcessedFilter::kInDoubt);
  ASSERT_TRUE(in_doubt);
  ASSERT_EQ(in_doubt->size(), 1u);
  EXPECT_EQ((*in_doubt)[0].id, "charge-1");

  // A resolver that finds no trace of the charge: fn runs, once.
  int asked = 0;
  r = o->store.process_once("charge-1", [&] { ran = true; }, [&](std::string_view) { return ++asked, false; });
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, ProcessOutcome::kRan);
  EXPECT_TRUE(ran);
  EXPECT_EQ(asked, 1);
  ran = false;
  r = o->store.process_once("charge-1", [&] { ran = true; }, [&](std::string_view) { return ++asked, false; });
  EXPECT_EQ(*r, ProcessOutcome::kAlreadyDone);
  EXPECT_FALSE(ran);
  EXPECT_EQ(asked, 1) << "a done id asks no resolver";
}

TEST(ProcessedProcesses, AResolverThatFindsTheEffectSettlesAKilledRunnersIdAsDone) {
  test::TempDir dir;
  kill_runner(dir.path(), "charge-2", false);
  auto o = open_store(dir.path());
  ASSERT_TRUE(o);
  bool ran = false;
  std::string asked;
  auto r = o->store.process_once("charge-2", [&] { ran = true; }, [&](std::string_view id) {
    asked = id;
    return true;
  });
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*r, ProcessOutcome::kAlreadyDone);
  EXPECT_FALSE(ran);
  EXPECT_EQ(asked, "charge-2");
  EXPECT_EQ(*o->store.state("charge-2"), ProcessedState::kDone);
  EXPECT_EQ(o->store.stats()->resolved_done, 1u);
}

TEST(ProcessedProcesses, ARunnerKilledAfterFnReturnedLeftItsIdDone) {
  test::TempDir dir;
  kill_runner(dir.path(), "charge-3", true);
  auto o = open_store(dir.path());
  ASSERT_TRUE(o);
  EXPECT_EQ(*o->store.state("charge-3"), ProcessedState::kDone);
  bool ran = false, asked = false;
  auto r = o->store.process_once("charge-3", [&] { ran = true; }, [&](std::string_view) { return asked = true; });
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, ProcessOutcome::kAlreadyDone);
  EXPECT_FALSE(ran);
  EXPECT_FALSE(asked);
  EXPECT_TRUE(o->store.list(ProcessedFilter::kUnsettled)->empty());
}

TEST(ProcessedProcesses, ALiveRunnerInAnotherProcessMakesOthersWaitForItsOutcome) {
  test::TempDir dir;
  ASSERT_TRUE(open_store(dir.path()));  // created before the child opens it
  test::Children children;
  test::Pipe inside, release;
  const pid_t child = children.spawn([&] {
    auto bus = Bus::open(dir.path());
    if (!bus) return 10;
    auto store = bus->open_processed_store(kStore);
    if (!store) return 11;
    auto r = store->process_once("charge-4", [&] {
      const char byte = 'x';
      (void)test::write_all(inside.write_end(), &byte, 1);
      char go;
      (void)test::read_exact(release.read_end(), &go, 1, 20'000);
    });
    return r && *r == ProcessOutcome::kRan ? 0 : 12;
  });
  ASSERT_GT(child, 0);
  char byte;
  ASSERT_TRUE(test::read_exact(inside.read_end(), &byte, 1, 10'000));

  auto o = open_store(dir.path(), /*pending_wait_ns=*/0);
  ASSERT_TRUE(o);
  EXPECT_EQ(*o->store.state("charge-4"), ProcessedState::kPending);
  bool ran = false;
  auto busy = o->store.process_once("charge-4", [&] { ran = true; });
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code, Errc::kBusy);
  EXPECT_EQ(o->store.forget("charge-4").error().code, Errc::kBusy);

  auto waiting = open_store(dir.path(), /*pending_wait_ns=*/20'000'000'000);
  ASSERT_TRUE(waiting);
  ASSERT_TRUE(test::write_all(release.write_end(), &byte, 1));
  auto r = waiting->store.process_once("charge-4", [&] { ran = true; });
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*r, ProcessOutcome::kAlreadyDone);
  EXPECT_FALSE(ran);
  EXPECT_EQ(children.wait(child, 10'000), 0);
}

}  // namespace
}  // namespace sluice
