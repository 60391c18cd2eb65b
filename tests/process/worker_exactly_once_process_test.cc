// An exactly-once Worker across real processes (docs/exactly-once.md
// section 6): worker processes are SIGKILLed inside their handler before its
// effect, after it, and between the effect's completion and the ack, and at
// random moments; the effect is a line with the message's id appended to a
// file (one O_APPEND write: all or nothing under SIGKILL), and the resolver
// looks there. At the end every message's effect happened exactly once.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sluice/sluice.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "process_helpers.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
constexpr int64_t kMs = 1'000'000;
constexpr char kStore[] = "effects";

// The effect outside the bus, committed with its id: one line per id.
class EffectsFile {
 public:
  explicit EffectsFile(std::string path)
      : path_(std::move(path)), fd_(::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) {}
  ~EffectsFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  EffectsFile(const EffectsFile&) = delete;
  EffectsFile& operator=(const EffectsFile&) = delete;

  void append(std::string_view id) const {
    const std::string line = std::string(id) + "\n";
    if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
      throw TransientError("cannot append to " + path_);
  }
  std::vector<std::string> lines() const {
    std::vector<std::string> out;
    std::ifstream in(path_);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  }
  // The resolver: did the effect of `id` commit?
  bool contains(std::string_view id) const {
    for (const std::string& l : lines())
      if (l == id) return true;
    return false;
  }

 private:
  std::string path_;
  int fd_;
};

QueueOptions test_queue() {
  QueueOptions o;
  o.segment_bytes = 1 << 20;
  o.max_depth_bytes = 8 << 20;
  o.lease_ns = 3'600'000 * kMs;  // an hour: anything redelivered sooner came back through liveness
  o.retry.max_receives = 50;     // kills count as receives; none of these messages should run out
  o.retry.base_delay_ns = 5 * kMs;
  o.retry.multiplier = 2.0;
  o.retry.max_delay_ns = 50 * kMs;
  o.retry.jitter_ns = 0;
  return o;
}

// The bus with queue "jobs" holding messages "m-0" .. "m-<n-1>" and the store.
void set_up(const std::string& dir, int n) {
  auto bus = Bus::open(dir);
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->create_queue("jobs", test_queue()));
  ASSERT_TRUE(bus->open_processed_store(kStore));
  auto p = bus->create_queue_publisher("jobs");
  ASSERT_TRUE(p);
  for (int i = 0; i < n; ++i) {
    const std::string v = "m-" + std::to_string(i);
    QueueMessage m;
    m.value = v;
    ASSERT_TRUE(p->publish(m).ok());
  }
}

WorkerOptions exactly_once(const ProcessedStore& store, const EffectsFile* resolver_file) {
  WorkerOptions o;
  o.guarantee = Guarantee::kExactlyOnce;
  o.processed = &store;
  if (resolver_file) o.resolve = [resolver_file](std::string_view id) { return resolver_file->contains(id); };
  return o;
}

void signal_and_wait_for_the_kill(const test::Pipe& signal) {
  const char byte = 'x';
  (void)test::write_all(signal.write_end(), &byte, 1);
  for (;;) std::this_thread::sleep_for(1s);
}

// A worker process's body: opens the bus, the store and the effects file,
// makes an exactly-once worker of "jobs" that resolves against the effects,
// and returns body(worker, store, effects) as its exit code (10 to 12: the
// set-up failed).
template <class Body>
int worker_process(const std::string& dir, Body&& body) {
  auto bus = Bus::open(dir);
  if (!bus) return 10;
  auto store = bus->open_processed_store(kStore);
  if (!store) return 11;
  EffectsFile effects(dir + "/effects");
  auto w = bus->create_worker("jobs", exactly_once(*store, &effects));
  if (!w) return 12;
  return body(*w, *store, effects);
}

// Runs `body(signal)` in a child process and SIGKILLs it when it signals.
template <class Body>
void run_until_killed(Body&& body) {
  test::Children children;
  test::Pipe signal;
  const pid_t child = children.spawn([&] { return body(signal); });
  ASSERT_GT(child, 0);
  char byte;
  ASSERT_TRUE(test::read_exact(signal.read_end(), &byte, 1, 20'000)) << "the worker did not get there";
  EXPECT_EQ(children.kill(child), 128 + SIGKILL);
}

enum class KillPoint { kInsideBeforeEffect, kInsideAfterEffect };

// A worker process that handles messages until "m-3", where it signals at
// `point` and is SIGKILLed.
void kill_worker_at(const std::string& dir, KillPoint point) {
  run_until_killed([&](const test::Pipe& signal) {
    return worker_process(dir, [&](Worker& w, ProcessedStore&, EffectsFile& effects) {
      auto r = w.run(
          [&](const Delivery& d) {
            const bool victim = d.value() == "m-3";
            if (victim && point == KillPoint::kInsideBeforeEffect) signal_and_wait_for_the_kill(signal);
            effects.append(w.processed_id(d));
            if (victim && point == KillPoint::kInsideAfterEffect) signal_and_wait_for_the_kill(signal);
          },
          [] { return false; });
      return r ? 0 : 13;
    });
  });
}

// Runs an exactly-once worker in this process until all `n` messages of
// "jobs" are settled (at most 20 s). Returns its stats.
WorkerStats drain(Bus& bus, const ProcessedStore& store, const EffectsFile& effects, bool with_resolver, int n) {
  WorkerStats stats;
  auto w = bus.create_worker("jobs", exactly_once(store, with_resolver ? &effects : nullptr));
  EXPECT_TRUE(w) << w.error().to_string();
  if (!w) return stats;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  auto settled = [&] {
    auto s = bus.queue_stats("jobs");
    return s && s->total().settled_below == static_cast<uint64_t>(n);
  };
  auto r = w->run([&](const Delivery& d) { effects.append(w->processed_id(d)); },
                  [&] { return settled() || std::chrono::steady_clock::now() > deadline; }, 0, 10 * kMs);
  EXPECT_TRUE(r) << r.error().to_string();
  EXPECT_TRUE(settled()) << "not every message was settled within 20 s";
  return w->stats();
}

// Every line of the effects file names one message, each message once.
void expect_each_effect_once(const EffectsFile& effects, int n) {
  std::map<std::string, int> times;
  for (const std::string& id : effects.lines()) ++times[id];
  EXPECT_EQ(times.size(), static_cast<size_t>(n)) << "messages whose effect happened";
  for (const auto& [id, k] : times) EXPECT_EQ(k, 1) << id;
}

struct Opened {
  Bus bus;
  ProcessedStore store;
};
std::optional<Opened> open_bus(const std::string& dir) {
  auto bus = Bus::open(dir);
  EXPECT_TRUE(bus);
  if (!bus) return std::nullopt;
  auto store = bus->open_processed_store(kStore);
  EXPECT_TRUE(store);
  if (!store) return std::nullopt;
  return Opened{std::move(*bus), std::move(*store)};
}

// The test's side after a kill: the bus, the store and the effects file,
// and drain() over them.
struct Survivor {
  explicit Survivor(const std::string& dir) : o(open_bus(dir)), effects(dir + "/effects") {}
  WorkerStats drain(bool with_resolver, int n) { return sluice::drain(o->bus, o->store, effects, with_resolver, n); }
  std::optional<Opened> o;
  EffectsFile effects;
};

TEST(WorkerExactlyOnceProcesses, AWorkerKilledInsideItsHandlerBeforeTheEffectHasTheNextOneRunIt) {
  constexpr int kMessages = 10;
  test::TempDir dir;
  set_up(dir.path(), kMessages);
  kill_worker_at(dir.path(), KillPoint::kInsideBeforeEffect);
  Survivor after(dir.path());
  ASSERT_TRUE(after.o);
  const WorkerStats s = after.drain(/*with_resolver=*/true, kMessages);
  EXPECT_EQ(s.already_done, 0u) << "the resolver found no effect: the handler ran";
  EXPECT_EQ(after.o->store.stats()->resolved_ran, 1u);
  expect_each_effect_once(after.effects, kMessages);
}

TEST(WorkerExactlyOnceProcesses, AWorkerKilledAfterTheEffectHasTheMessageAckedWithoutRunningAgain) {
  constexpr int kMessages = 10;
  test::TempDir dir;
  set_up(dir.path(), kMessages);
  kill_worker_at(dir.path(), KillPoint::kInsideAfterEffect);
  Survivor after(dir.path());
  ASSERT_TRUE(after.o);
  const WorkerStats s = after.drain(/*with_resolver=*/true, kMessages);
  EXPECT_EQ(s.already_done, 1u) << "the resolver found the effect";
  EXPECT_EQ(after.o->store.stats()->resolved_done, 1u);
  expect_each_effect_once(after.effects, kMessages);
}

TEST(WorkerExactlyOnceProcesses, WithoutAResolverAKilledWorkersMessageGoesToTheOperatorAndIsNotRunAgain) {
  constexpr int kMessages = 10;
  test::TempDir dir;
  set_up(dir.path(), kMessages);
  kill_worker_at(dir.path(), KillPoint::kInsideAfterEffect);
  Survivor after(dir.path());
  ASSERT_TRUE(after.o);
  const WorkerStats s = after.drain(/*with_resolver=*/false, kMessages);
  EXPECT_EQ(s.in_doubt, 1u);
  expect_each_effect_once(after.effects, kMessages);

  // The operator reads the letter, finds the effect, marks the id done and
  // replays the letter: acked without running.
  Bus& bus = after.o->bus;
  auto dw = bus.create_worker("jobs.dlq");
  ASSERT_TRUE(dw);
  Delivery letter[1];
  ASSERT_EQ(*dw->receive(letter, 1'000 * kMs), 1u);
  EXPECT_EQ(letter[0].value(), "m-3");
  EXPECT_EQ(letter[0].headers().find("sluice.dlq.error_type"), "InDoubt");
  const std::string id(letter[0].headers().find(kHeaderProcessedId));
  ASSERT_TRUE(after.effects.contains(id));
  ASSERT_EQ(*after.o->store.mark_done(id), ProcessedState::kInDoubt);
  std::vector<Header> headers;
  for (Header h : letter[0].headers())
    if (!h.name.starts_with("sluice.dlq.")) headers.push_back(h);
  auto p = bus.create_queue_publisher("jobs");
  ASSERT_TRUE(p);
  QueueMessage m;
  m.value = letter[0].value();
  m.headers = headers;
  ASSERT_TRUE(p->publish(m).ok());
  ASSERT_TRUE(letter[0].ack());
  const WorkerStats replayed = after.drain(false, kMessages + 1);
  EXPECT_EQ(replayed.already_done, 1u);
  expect_each_effect_once(after.effects, kMessages);
}

// run() acks right after process_once returns; a child that does the same
// two steps through the public API is killed between them: the id is done,
// the lease is a dead process's.
TEST(WorkerExactlyOnceProcesses, AWorkerKilledBetweenTheEffectsCompletionAndItsAckIsNotRunAgain) {
  constexpr int kMessages = 10;
  test::TempDir dir;
  set_up(dir.path(), kMessages);
  run_until_killed([&](const test::Pipe& signal) {
    return worker_process(dir.path(), [&](Worker& w, ProcessedStore& store, EffectsFile& effects) {
      Delivery d[1];
      auto n = w.receive(d, 5'000 * kMs);
      if (!n || *n != 1) return 13;
      const std::string id(w.processed_id(d[0]));
      auto r = store.process_once(id, [&] { effects.append(id); });
      if (!r || *r != ProcessOutcome::kRan) return 14;
      signal_and_wait_for_the_kill(signal);  // before the ack
      return 0;
    });
  });
  Survivor after(dir.path());
  ASSERT_TRUE(after.o);
  const WorkerStats s = after.drain(/*with_resolver=*/false, kMessages);
  EXPECT_EQ(s.already_done, 1u);
  EXPECT_EQ(s.in_doubt, 0u);
  expect_each_effect_once(after.effects, kMessages);
  EXPECT_EQ(after.o->bus.queue_stats("jobs")->total().owner_deaths, 1u);
}

// Three worker processes handle 3,000 messages while the test SIGKILLs one
// of them at random moments (wherever it is: receiving, inside the handler,
// between the effect and the ack) and starts a replacement. With a resolver
// that looks at the effects, each message's effect happens exactly once.
TEST(WorkerExactlyOnceProcesses, WorkersKilledAtRandomDoEachEffectExactlyOnce) {
  constexpr int kMessages = 3000;
  test::TempDir dir;
  set_up(dir.path(), kMessages);
  const std::string& path = dir.path();
  auto worker_body = [&path] {
    return worker_process(path, [](Worker& w, ProcessedStore&, EffectsFile& effects) {
      auto r = w.run(
          [&](const Delivery& d) {
            // A little work on both sides of the effect, so that kills land
            // inside the handler too, not only between messages.
            std::this_thread::sleep_for(50us);
            effects.append(w.processed_id(d));
            std::this_thread::sleep_for(50us);
          },
          [] { return false; });
      return r ? 0 : 13;
    });
  };
  test::Children children;
  std::vector<pid_t> workers;
  for (int i = 0; i < 3; ++i) workers.push_back(children.spawn(worker_body));

  auto o = open_bus(dir.path());
  ASSERT_TRUE(o);
  std::mt19937 rng(20261201);
  int kills = 0;
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  for (;;) {
    auto s = o->bus.queue_stats("jobs");
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

  EffectsFile effects(dir.path() + "/effects");
  expect_each_effect_once(effects, kMessages);
  auto stats = o->store.stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->in_doubt, 0u) << "the resolver settled every id left in doubt";
  EXPECT_EQ(stats->pending, 0u);
  EXPECT_EQ(stats->done, static_cast<uint64_t>(kMessages));
  auto q = o->bus.queue_stats("jobs");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->total().dead_lettered, 0u);
  std::printf("[ measured ] %d kills, %llu leases of dead workers redelivered, %llu in-doubt ids resolved done, "
              "%llu resolved not done (run again)\n",
              kills, static_cast<unsigned long long>(q->total().owner_deaths),
              static_cast<unsigned long long>(stats->resolved_done),
              static_cast<unsigned long long>(stats->resolved_ran));
}

}  // namespace
}  // namespace sluice
