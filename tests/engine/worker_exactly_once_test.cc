// An exactly-once Worker (docs/exactly-once.md section 6, docs/queues.md
// section 4): run() calls the handler inside ProcessedStore::process_once
// and acks after. On a manual clock: the handler runs once per id; a
// redelivered message whose effect completed is acked without running; a
// failure leaves the id not done; in-doubt ids go to an operator (or a
// resolver); the configuration is checked. Dead runners are planted in the
// store's file as in processed_test.cc (a real kill is in
// tests/process/worker_exactly_once_process_test.cc).
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ipc/file_header.h"
#include "ipc/mapped_file.h"
#include "ipc/process_registry.h"
#include "processed_format.h"
#include "support/clocked_bus.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kSec = 1'000 * kMs;

struct ExactlyOnceWorker : test::ClockedBusTest {
  std::optional<ProcessedStore> store;

  void SetUp() override {
    ClockedBusTest::SetUp();
    if (HasFatalFailure()) return;
    QueueOptions q;
    q.segment_bytes = 1 << 20;
    q.max_depth_bytes = 4 << 20;
    q.lease_ns = 30 * kSec;
    q.retry.max_receives = 3;
    q.retry.base_delay_ns = 1 * kSec;
    q.retry.multiplier = 2.0;
    q.retry.max_delay_ns = 60 * kSec;
    q.retry.jitter_ns = 0;
    ASSERT_TRUE(bus->create_queue("jobs", q));
    ProcessedStoreOptions o;
    o.window_ns = 3600 * kSec;
    o.capacity = 1024;
    o.pending_wait_ns = 0;  // a live pending id is kBusy at once: no test waits on time
    auto s = bus->open_processed_store("effects", o);
    ASSERT_TRUE(s) << s.error().to_string();
    store.emplace(std::move(*s));
  }

  void publish(std::string_view value, std::string_view processed_id = {}) {
    auto p = bus->create_queue_publisher("jobs");
    ASSERT_TRUE(p) << p.error().to_string();
    const Header h[] = {{kHeaderProcessedId, processed_id}};
    QueueMessage m;
    m.value = value;
    if (!processed_id.empty()) m.headers = h;
    ASSERT_TRUE(p->publish(m).ok()) << p->last_error().to_string();
  }

  WorkerOptions exactly_once(std::function<bool(std::string_view)> resolve = {}) {
    WorkerOptions o;
    o.guarantee = Guarantee::kExactlyOnce;
    o.processed = &*store;
    o.resolve = std::move(resolve);
    return o;
  }
  // run() for one message, or one look when none is there. Returns how many
  // were handled.
  static uint64_t run_one(Worker& w, const Handler& h) {
    int looks = 0;
    auto r = w.run(h, [&] { return looks++ > 0; }, 1, kMs);
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? *r : 0;
  }
  // Past the lease (30 s) and the sweep interval: leased messages come back.
  void expire_leases() { clock.advance_ns(31 * kSec); }

  ProcessedState state(std::string_view id) {
    auto s = store->state(id);
    EXPECT_TRUE(s) << s.error().to_string();
    return s ? *s : ProcessedState::kAbsent;
  }

  // An OwnerId of this bus that is dead: a registry slot taken and released.
  ipc::OwnerId dead_owner() const {
    auto r = ipc::ProcessRegistry::attach(dir.path() + "/procs");
    EXPECT_TRUE(r);
    return r->self();
  }
  // Leaves `id` PENDING in a dead process, as a worker SIGKILLed inside its
  // handler does (processed_format.h).
  void plant_dead_runner(std::string_view id) {
    auto f = ipc::MappedFile::open(dir.path() + "/processed/effects", {});
    ASSERT_TRUE(f);
    const auto& p = ipc::file_params<format::ProcessedParams>(f->data());
    const ProcessedKey k = store->key(id);
    auto& b = reinterpret_cast<format::ProcessedBucket*>(f->data() + format::kProcessedBucketsOffset)[k.lo % p.buckets];
    for (auto& way : b.ways) {
      if (way.state.load() != 0) continue;
      const size_t i = static_cast<size_t>(&way - b.ways);
      way.key_lo.store(k.lo);
      way.key_hi.store(k.hi);
      way.time_ms.store(clock.now_ns() / kMs);
      b.labels[i].id_bytes = static_cast<uint16_t>(id.size());
      std::memcpy(b.labels[i].text, id.data(), std::min(id.size(), sizeof b.labels[i].text));
      way.state.store(format::processed_pending(dead_owner()));
      return;
    }
    FAIL() << "no free way for " << id;
  }

  // The one dead letter of "jobs.dlq", copied out, with its headers.
  struct Letter {
    std::string value;
    std::map<std::string, std::string> headers;
  };
  std::optional<Letter> dead_letter() {
    auto dw = bus->create_worker("jobs.dlq");
    if (!dw && dw.error().code == Errc::kNotFound) return std::nullopt;  // no letter ever
    EXPECT_TRUE(dw) << dw.error().to_string();
    if (!dw) return std::nullopt;
    Delivery d = take(*dw);
    if (!d.valid()) return std::nullopt;
    Letter l{std::string(d.value()), {}};
    for (Header h : d.headers()) l.headers.emplace(std::string(h.name), std::string(h.value));
    EXPECT_TRUE(d.ack());
    return l;
  }
  // What `sluice dlq replay` publishes: the letter without its sluice.dlq.*
  // headers, to its source.
  void replay(const Letter& l) {
    std::vector<Header> headers;
    for (const auto& [name, value] : l.headers)
      if (!name.starts_with("sluice.dlq.")) headers.push_back({name, value});
    auto p = bus->create_queue_publisher("jobs");
    ASSERT_TRUE(p);
    QueueMessage m;
    m.value = l.value;
    m.headers = headers;
    ASSERT_TRUE(p->publish(m).ok());
  }
  uint64_t depth() {
    auto s = bus->queue_stats("jobs");
    EXPECT_TRUE(s);
    return s ? s->total().depth : 0;
  }
};

TEST_F(ExactlyOnceWorker, TheHandlerRunsOnceAndItsIdIsDone) {
  publish("a");
  Worker w = worker("jobs", exactly_once());
  EXPECT_EQ(w.guarantee(), Guarantee::kExactlyOnce);
  std::vector<std::string> ids;
  EXPECT_EQ(run_one(w, [&](const Delivery& d) { ids.emplace_back(w.processed_id(d)); }), 1u);
  ASSERT_EQ(ids.size(), 1u);
  // The message's place, with the queue's epoch (its creation, on this clock).
  EXPECT_EQ(ids[0], "queue:jobs:0:0@" + std::to_string(clock.now_ns() / kMs));
  EXPECT_EQ(state(ids[0]), ProcessedState::kDone);
  EXPECT_EQ(w.stats().acked, 1u);
  EXPECT_EQ(w.stats().already_done, 0u);
  EXPECT_EQ(depth(), 0u);
  EXPECT_EQ(store->stats()->ran, 1u);
}

TEST_F(ExactlyOnceWorker, ARedeliveryOfAMessageWhoseEffectCompletedIsAckedWithoutRunning) {
  publish("a");
  // A worker whose handler completed inside process_once and that died
  // before acking: its lease expires with the id done.
  Worker first = worker("jobs", exactly_once());
  Delivery d = take(first);
  ASSERT_TRUE(d.valid());
  const std::string id(first.processed_id(d));
  ASSERT_EQ(*store->process_once(id, [] {}), ProcessOutcome::kRan);
  d = Delivery();
  expire_leases();

  Worker w = worker("jobs", exactly_once());
  int ran = 0;
  ASSERT_EQ(run_one(w, [&](const Delivery&) { ++ran; }), 1u);
  EXPECT_EQ(ran, 0);
  EXPECT_EQ(w.stats().already_done, 1u);
  EXPECT_EQ(w.stats().acked, 1u);
  EXPECT_EQ(depth(), 0u);
  EXPECT_EQ(bus->queue_stats("jobs")->total().redelivered, 1u);
}

TEST_F(ExactlyOnceWorker, ATransientFailureLeavesTheIdNotDoneThenTheRetryRunsOnce) {
  publish("a");
  Worker w = worker("jobs", exactly_once());
  int calls = 0, effects = 0;
  std::string id;
  auto handler = [&](const Delivery& d) {
    id = w.processed_id(d);
    if (++calls == 1) throw TransientError("the database is overloaded");
    ++effects;
  };
  ASSERT_EQ(run_one(w, handler), 1u);
  EXPECT_EQ(w.stats().nacked, 1u);
  EXPECT_EQ(w.stats().handler_errors, 1u);
  EXPECT_EQ(state(id), ProcessedState::kAbsent) << "a handler that threw did not do its effect";
  EXPECT_EQ(run_one(w, handler), 0u) << "nothing before the backoff";
  clock.advance_ns(1 * kSec + 2 * kMs);  // the first backoff, and a sweep
  ASSERT_EQ(run_one(w, handler), 1u);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(effects, 1);
  EXPECT_EQ(state(id), ProcessedState::kDone);
  EXPECT_EQ(w.stats().acked, 1u);
  clock.advance_ns(60 * kSec);
  EXPECT_EQ(run_one(w, handler), 0u);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(depth(), 0u);
}

TEST_F(ExactlyOnceWorker, APermanentFailureDeadLettersWithItsIdAndTheIdIsNotDone) {
  publish("bad");
  Worker w = worker("jobs", exactly_once());
  std::string id;
  ASSERT_EQ(run_one(w,
                    [&](const Delivery& d) {
                      id = w.processed_id(d);
                      throw PermanentError("validation failed");
                    }),
            1u);
  EXPECT_EQ(w.stats().dead_lettered, 1u);
  EXPECT_EQ(state(id), ProcessedState::kAbsent);
  auto letter = dead_letter();
  ASSERT_TRUE(letter);
  EXPECT_EQ(letter->value, "bad");
  EXPECT_EQ(letter->headers["sluice.dlq.error_type"], "PermanentError");
  EXPECT_EQ(letter->headers[std::string(kHeaderProcessedId)], id) << "a replay keeps the id";

  // Replayed after the fix, under the same id: it runs, once.
  replay(*letter);
  int ran = 0;
  std::string replayed_id;
  ASSERT_EQ(run_one(w,
                    [&](const Delivery& d) {
                      replayed_id = w.processed_id(d);
                      ++ran;
                    }),
            1u);
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(replayed_id, id);
  EXPECT_EQ(state(id), ProcessedState::kDone);
}

TEST_F(ExactlyOnceWorker, AnIdNamedByThePublisherRunsOnceAcrossRepublishes) {
  publish("charge 10", "order-17");
  publish("charge 10 (sent again)", "order-17");
  publish("charge 20", "order-18");
  Worker w = worker("jobs", exactly_once());
  std::vector<std::string> ran;
  auto handler = [&](const Delivery& d) { ran.emplace_back(d.value()); };
  for (int i = 0; i < 3; ++i) ASSERT_EQ(run_one(w, handler), 1u) << i;
  EXPECT_EQ(ran, (std::vector<std::string>{"charge 10", "charge 20"}));
  EXPECT_EQ(w.stats().already_done, 1u);
  EXPECT_EQ(w.stats().acked, 3u);
  EXPECT_EQ(state("order-17"), ProcessedState::kDone);
  EXPECT_EQ(depth(), 0u);
}

TEST_F(ExactlyOnceWorker, AnInDoubtIdIsDeadLetteredForTheOperatorWithoutAResolver) {
  publish("charge");
  Worker w = worker("jobs", exactly_once());
  std::string id;
  {
    Delivery d = take(w);
    ASSERT_TRUE(d.valid());
    id = w.processed_id(d);
  }
  plant_dead_runner(id);  // a worker killed inside its handler
  expire_leases();
  int ran = 0;
  ASSERT_EQ(run_one(w, [&](const Delivery&) { ++ran; }), 1u);
  EXPECT_EQ(ran, 0) << "without a resolver an in-doubt id is not run again";
  EXPECT_EQ(w.stats().in_doubt, 1u);
  EXPECT_EQ(w.stats().dead_lettered, 1u);
  EXPECT_EQ(state(id), ProcessedState::kInDoubt);
  EXPECT_EQ(depth(), 0u);
  auto letter = dead_letter();
  ASSERT_TRUE(letter);
  EXPECT_EQ(letter->headers["sluice.dlq.error_type"], "InDoubt");
  const std::string& why = letter->headers["sluice.dlq.error_message"];
  EXPECT_NE(why.find("sluice processed mark-done effects"), std::string::npos) << why;
  EXPECT_NE(why.find("sluice processed forget effects"), std::string::npos) << why;
  EXPECT_NE(why.find(id), std::string::npos) << why;
  EXPECT_EQ(letter->headers[std::string(kHeaderProcessedId)], id);

  // Replayed before anyone settled it: in doubt again, not run.
  replay(*letter);
  ASSERT_EQ(run_one(w, [&](const Delivery&) { ++ran; }), 1u);
  EXPECT_EQ(ran, 0);
  EXPECT_EQ(w.stats().in_doubt, 2u);
  letter = dead_letter();
  ASSERT_TRUE(letter);

  // The operator finds the charge was made: mark-done, then the replay is
  // acked without running.
  ASSERT_EQ(*store->mark_done(id), ProcessedState::kInDoubt);
  replay(*letter);
  ASSERT_EQ(run_one(w, [&](const Delivery&) { ++ran; }), 1u);
  EXPECT_EQ(ran, 0);
  EXPECT_EQ(w.stats().already_done, 1u);
  EXPECT_EQ(depth(), 0u);
}

TEST_F(ExactlyOnceWorker, AForgottenInDoubtIdRunsWhenItsLetterIsReplayed) {
  publish("charge");
  Worker w = worker("jobs", exactly_once());
  std::string id;
  {
    Delivery d = take(w);
    id = w.processed_id(d);
  }
  plant_dead_runner(id);
  expire_leases();
  int ran = 0;
  ASSERT_EQ(run_one(w, [&](const Delivery&) { ++ran; }), 1u);
  auto letter = dead_letter();
  ASSERT_TRUE(letter);
  ASSERT_EQ(*store->forget(id), ProcessedState::kInDoubt);  // the charge was not made
  replay(*letter);
  ASSERT_EQ(run_one(w, [&](const Delivery&) { ++ran; }), 1u);
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(state(id), ProcessedState::kDone);
}

TEST_F(ExactlyOnceWorker, AResolverSettlesInDoubtIdsEitherWay) {
  publish("charged");
  publish("not charged");
  std::vector<std::string> asked;
  std::string charged_id;
  Worker w = worker("jobs", exactly_once([&](std::string_view id) {
                      asked.emplace_back(id);
                      return id == charged_id;
                    }));
  std::string ids[2];
  {
    Delivery d[2];
    ASSERT_EQ(*w.receive(d, 0), 2u);
    for (int i = 0; i < 2; ++i) ids[i] = w.processed_id(d[i]);
  }
  charged_id = ids[0];
  plant_dead_runner(ids[0]);
  plant_dead_runner(ids[1]);
  expire_leases();
  std::vector<std::string> ran;
  auto handler = [&](const Delivery& d) { ran.emplace_back(d.value()); };
  ASSERT_EQ(run_one(w, handler), 1u);
  ASSERT_EQ(run_one(w, handler), 1u);
  EXPECT_EQ(asked, (std::vector<std::string>{ids[0], ids[1]}));
  EXPECT_EQ(ran, (std::vector<std::string>{"not charged"}));
  EXPECT_EQ(w.stats().already_done, 1u);
  EXPECT_EQ(w.stats().acked, 2u);
  EXPECT_EQ(w.stats().in_doubt, 0u);
  EXPECT_EQ(state(ids[0]), ProcessedState::kDone);
  EXPECT_EQ(state(ids[1]), ProcessedState::kDone);
  EXPECT_EQ(depth(), 0u);
  EXPECT_FALSE(dead_letter());
}

TEST_F(ExactlyOnceWorker, AResolverThatThrowsLeavesTheIdInDoubtAndTheMessageIsRetried) {
  publish("charge");
  bool reachable = false;
  Worker w = worker("jobs", exactly_once([&](std::string_view) -> bool {
                      if (!reachable) throw TransientError("the charges database is unreachable");
                      return false;
                    }));
  std::string id;
  {
    Delivery d = take(w);
    id = w.processed_id(d);
  }
  plant_dead_runner(id);
  expire_leases();
  int ran = 0;
  ASSERT_EQ(run_one(w, [&](const Delivery&) { ++ran; }), 1u);
  EXPECT_EQ(ran, 0);
  EXPECT_EQ(w.stats().nacked, 1u);
  EXPECT_EQ(state(id), ProcessedState::kInDoubt);
  reachable = true;
  clock.advance_ns(2 * kSec + 2 * kMs);  // the backoff after attempt 2, and a sweep
  ASSERT_EQ(run_one(w, [&](const Delivery&) { ++ran; }), 1u);
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(state(id), ProcessedState::kDone);
}

TEST_F(ExactlyOnceWorker, AnIdHeldByALiveRunnerIsNackedNotRun) {
  publish("a", "order-1");
  Worker w = worker("jobs", exactly_once());
  int ran = 0;
  // This thread runs order-1 already (another process would do the same):
  // the worker's process_once finds it pending in a live process.
  auto outer = store->process_once("order-1", [&] {
    ASSERT_EQ(run_one(w, [&](const Delivery&) { ++ran; }), 1u);
  });
  ASSERT_TRUE(outer);
  EXPECT_EQ(*outer, ProcessOutcome::kRan);
  EXPECT_EQ(ran, 0);
  EXPECT_EQ(w.stats().nacked, 1u);
  clock.advance_ns(1 * kSec + 2 * kMs);
  ASSERT_EQ(run_one(w, [&](const Delivery&) { ++ran; }), 1u);
  EXPECT_EQ(ran, 0) << "the other runner's outcome: done";
  EXPECT_EQ(w.stats().already_done, 1u);
  EXPECT_EQ(depth(), 0u);
}

TEST_F(ExactlyOnceWorker, AnIdLongerThan256BytesIsDeadLettered) {
  const std::string long_id(300, 'x');
  publish("a", long_id);
  Worker w = worker("jobs", exactly_once());
  int ran = 0;
  ASSERT_EQ(run_one(w, [&](const Delivery&) { ++ran; }), 1u);
  EXPECT_EQ(ran, 0);
  auto letter = dead_letter();
  ASSERT_TRUE(letter);
  EXPECT_EQ(letter->headers["sluice.dlq.error_type"], "InvalidProcessedId");
}

TEST_F(ExactlyOnceWorker, ExactlyOnceNeedsAStoreAndAStoreNeedsExactlyOnce) {
  WorkerOptions o;
  o.guarantee = Guarantee::kExactlyOnce;
  auto w = bus->create_worker("jobs", o);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::kInvalidArgument);
  EXPECT_NE(w.error().message.find("WorkerOptions::processed"), std::string::npos) << w.error().message;

  WorkerOptions with_store;
  with_store.processed = &*store;  // at least once, the default
  w = bus->create_worker("jobs", with_store);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::kInvalidArgument);
  WorkerOptions with_resolver;
  with_resolver.resolve = [](std::string_view) { return true; };
  w = bus->create_worker("jobs", with_resolver);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::kInvalidArgument);

  EXPECT_EQ(worker("jobs").guarantee(), Guarantee::kAtLeastOnce);
}

TEST_F(ExactlyOnceWorker, APlainConsumerRefusesExactlyOnce) {
  ASSERT_TRUE(bus->create_topic("events", TopicOptions{}));
  ConsumerOptions o;
  o.guarantee = Guarantee::kExactlyOnce;
  auto c = bus->create_consumer("events", "g", o);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::kInvalidArgument);
  EXPECT_NE(c.error().message.find("kExactlyOnce"), std::string::npos) << c.error().message;
}

TEST_F(ExactlyOnceWorker, TheWorkerKeepsTheStoreItWasGiven) {
  publish("a");
  std::optional<Worker> w;
  {
    auto other = bus->open_processed_store("effects");
    ASSERT_TRUE(other);
    WorkerOptions o;
    o.guarantee = Guarantee::kExactlyOnce;
    o.processed = &*other;
    w.emplace(worker("jobs", o));
  }  // the handle the options named is gone
  int ran = 0;
  ASSERT_EQ(run_one(*w, [&](const Delivery&) { ++ran; }), 1u);
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(store->stats()->ran, 1u);
}

}  // namespace
}  // namespace sluice
