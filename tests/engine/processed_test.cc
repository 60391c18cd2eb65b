// The processed-id store in one process (docs/exactly-once.md, section 6):
// outcomes, the window on a manual clock, full buckets, exceptions, in-doubt
// ids and resolvers, settling by hand, damaged files and bad input. Dead
// runners are planted in the file with the layout of processed_format.h
// and an OwnerId whose registry slot was released (a real kill is in
// tests/process/processed_process_test.cc).
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <filesystem>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <xxhash.h>

#include "ipc/file_header.h"
#include "ipc/mapped_file.h"
#include "ipc/process_registry.h"
#include "processed_format.h"
#include "support/clocked_bus.h"
#include "support/test_support.h"

namespace sluice {
namespace {

using format::ProcessedBucket;
using format::ProcessedParams;

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kSec = 1'000 * kMs;

struct ProcessedFixture : test::ClockedBusTest {
  static ProcessedStoreOptions options(int64_t window_ns = 10 * kSec, uint32_t capacity = 1024) {
    ProcessedStoreOptions o;
    o.window_ns = window_ns;
    o.capacity = capacity;
    o.pending_wait_ns = 0;  // a live pending id is kBusy at once: no test waits on time
    return o;
  }
  ProcessedStore open(std::string_view name, const ProcessedStoreOptions& o = options()) {
    auto s = bus->open_processed_store(name, o);
    EXPECT_TRUE(s) << s.error().to_string();
    return std::move(*s);
  }
  std::string path(std::string_view name) const { return dir.path() + "/processed/" + std::string(name); }

  // An OwnerId of this bus that is dead: a registry slot taken and released.
  ipc::OwnerId dead_owner() const {
    auto r = ipc::ProcessRegistry::attach(dir.path() + "/procs");
    EXPECT_TRUE(r);
    return r->self();  // `r` goes here, and its slot lock with it
  }

  // Writes `id` into the first FREE way of its bucket with state `word`,
  // as a runner (or a dead one) would have left it. Returns the way.
  int plant(const ProcessedStore& store, std::string_view id, uint64_t word) {
    auto f = ipc::MappedFile::open(path(store.name()), {});
    EXPECT_TRUE(f);
    const auto& p = ipc::file_params<ProcessedParams>(f->data());
    const ProcessedKey k = store.key(id);
    auto& b = reinterpret_cast<ProcessedBucket*>(f->data() + format::kProcessedBucketsOffset)[k.lo % p.buckets];
    for (int w = 0; w < static_cast<int>(format::kProcessedWays); ++w) {
      if (b.ways[w].state.load() != 0) continue;
      b.ways[w].key_lo.store(k.lo);
      b.ways[w].key_hi.store(k.hi);
      b.ways[w].time_ms.store(clock.now_ns() / kMs);
      b.labels[w].id_bytes = static_cast<uint16_t>(id.size());
      std::memcpy(b.labels[w].text, id.data(), std::min(id.size(), sizeof b.labels[w].text));
      b.ways[w].state.store(word);
      return w;
    }
    ADD_FAILURE() << "no free way for " << id;
    return -1;
  }
  // The bucket of `id`, mapped anew (the store's file is shared).
  struct Mapped {
    ipc::MappedFile file;
    ProcessedBucket* bucket;
  };
  Mapped bucket_of(const ProcessedStore& store, std::string_view id) {
    auto f = ipc::MappedFile::open(path(store.name()), {});
    EXPECT_TRUE(f);
    const auto& p = ipc::file_params<ProcessedParams>(f->data());
    auto* b = reinterpret_cast<ProcessedBucket*>(f->data() + format::kProcessedBucketsOffset) +
              store.key(id).lo % p.buckets;
    return {std::move(*f), b};
  }
};

// Runs process_once and says whether fn ran.
struct Attempt {
  Result<ProcessOutcome> outcome;
  bool ran;
};
Attempt run(ProcessedStore& s, std::string_view id) {
  bool ran = false;
  auto r = s.process_once(id, [&] { ran = true; });
  return {std::move(r), ran};
}

TEST_F(ProcessedFixture, FnRunsOnceThenTheIdIsAlreadyDone) {
  ProcessedStore s = open("payments");
  Attempt first = run(s, "event-1");
  ASSERT_TRUE(first.outcome) << first.outcome.error().to_string();
  EXPECT_EQ(*first.outcome, ProcessOutcome::kRan);
  EXPECT_TRUE(first.ran);
  for (int i = 0; i < 3; ++i) {
    Attempt again = run(s, "event-1");
    ASSERT_TRUE(again.outcome);
    EXPECT_EQ(*again.outcome, ProcessOutcome::kAlreadyDone);
    EXPECT_FALSE(again.ran);
  }
  EXPECT_EQ(*s.state("event-1"), ProcessedState::kDone);
  EXPECT_EQ(*s.state("event-2"), ProcessedState::kAbsent);
  EXPECT_EQ(*run(s, "event-2").outcome, ProcessOutcome::kRan) << "another id is another id";

  // Another handle, and another bus handle (another OwnerId), see the same.
  auto other = Bus::open(dir.path(), BusOptions{&clock, false});
  ASSERT_TRUE(other);
  auto s2 = other->open_processed_store("payments", options());
  ASSERT_TRUE(s2);
  EXPECT_EQ(*run(*s2, "event-1").outcome, ProcessOutcome::kAlreadyDone);
}

TEST_F(ProcessedFixture, ADoneIdCountsForTheWindowOnly) {
  ProcessedStore s = open("w", options(10 * kSec));
  ASSERT_EQ(*run(s, "e").outcome, ProcessOutcome::kRan);
  clock.advance_ns(10 * kSec - kMs);
  EXPECT_EQ(*run(s, "e").outcome, ProcessOutcome::kAlreadyDone) << "1 ms before the window ends";
  clock.advance_ns(kMs);
  EXPECT_EQ(*s.state("e"), ProcessedState::kAbsent);
  Attempt after = run(s, "e");
  EXPECT_EQ(*after.outcome, ProcessOutcome::kRan) << "the window is over: fn runs again";
  EXPECT_TRUE(after.ran);
  EXPECT_EQ(*run(s, "e").outcome, ProcessOutcome::kAlreadyDone) << "and a new window starts";
}

TEST_F(ProcessedFixture, AFullBucketIsBusyNotASilentForget) {
  ProcessedStore s = open("small", options(10 * kSec, 8));  // one bucket: every id lands in it
  for (int i = 0; i < 8; ++i) ASSERT_EQ(*run(s, "id-" + std::to_string(i)).outcome, ProcessOutcome::kRan);
  Attempt ninth = run(s, "id-8");
  ASSERT_FALSE(ninth.outcome);
  EXPECT_EQ(ninth.outcome.error().code, Errc::kBusy);
  EXPECT_NE(ninth.outcome.error().message.find("raise the capacity"), std::string::npos)
      << ninth.outcome.error().message;
  EXPECT_FALSE(ninth.ran);
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(*run(s, "id-" + std::to_string(i)).outcome, ProcessOutcome::kAlreadyDone) << "nothing was dropped";
  EXPECT_EQ(s.stats()->busy, 1u);

  clock.advance_ns(10 * kSec);
  EXPECT_EQ(*run(s, "id-8").outcome, ProcessOutcome::kRan) << "expired ids make room";
}

TEST_F(ProcessedFixture, AnExceptionFromFnFreesTheIdAndPropagates) {
  ProcessedStore s = open("x");
  EXPECT_THROW((void)s.process_once("e", [] { throw std::runtime_error("card declined"); }), std::runtime_error);
  EXPECT_EQ(*s.state("e"), ProcessedState::kAbsent);
  Attempt retry = run(s, "e");
  EXPECT_EQ(*retry.outcome, ProcessOutcome::kRan);
  EXPECT_TRUE(retry.ran);
  const ProcessedStoreStats st = *s.stats();
  EXPECT_EQ(st.fn_threw, 1u);
  EXPECT_EQ(st.ran, 1u);
  EXPECT_EQ(st.done, 1u);
}

TEST_F(ProcessedFixture, PendingOfADeadRunnerIsInDoubtWithoutAResolver) {
  ProcessedStore s = open("d");
  plant(s, "order-17", format::processed_pending(dead_owner()));
  EXPECT_EQ(*s.state("order-17"), ProcessedState::kInDoubt);
  for (int i = 0; i < 2; ++i) {
    Attempt r = run(s, "order-17");
    ASSERT_TRUE(r.outcome) << r.outcome.error().to_string();
    EXPECT_EQ(*r.outcome, ProcessOutcome::kInDoubt);
    EXPECT_FALSE(r.ran) << "the effect may have happened: not again without a resolver";
  }
  auto in_doubt = s.list(ProcessedFilter::kInDoubt);
  ASSERT_TRUE(in_doubt);
  ASSERT_EQ(in_doubt->size(), 1u);
  EXPECT_EQ((*in_doubt)[0].id, "order-17");
  EXPECT_TRUE((*in_doubt)[0].id_complete());
  EXPECT_EQ((*in_doubt)[0].since_unix_ns / kMs, clock.now_ns() / kMs);
  EXPECT_EQ(s.stats()->reported_in_doubt, 2u);

  // Settled by hand: done from now on.
  EXPECT_EQ(*s.mark_done("order-17"), ProcessedState::kInDoubt);
  EXPECT_EQ(*run(s, "order-17").outcome, ProcessOutcome::kAlreadyDone);
  EXPECT_TRUE(s.list(ProcessedFilter::kInDoubt)->empty());
}

TEST_F(ProcessedFixture, AResolverSayingDoneMarksTheIdDoneWithoutRunningFn) {
  ProcessedStore s = open("r");
  plant(s, "e", format::processed_pending(dead_owner()));
  std::vector<std::string> asked;
  bool ran = false;
  auto r = s.process_once(
      "e", [&] { ran = true; },
      [&](std::string_view id) {
        asked.emplace_back(id);
        EXPECT_EQ(*s.state("e"), ProcessedState::kPending) << "taken over while the resolver runs";
        return true;
      });
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*r, ProcessOutcome::kAlreadyDone);
  EXPECT_FALSE(ran);
  EXPECT_EQ(asked, std::vector<std::string>{"e"});
  EXPECT_EQ(*s.state("e"), ProcessedState::kDone);
  EXPECT_EQ(s.stats()->resolved_done, 1u);
}

TEST_F(ProcessedFixture, AResolverSayingNotDoneRunsFn) {
  ProcessedStore s = open("r");
  plant(s, "e", format::processed_in_doubt(dead_owner()));
  bool ran = false;
  auto r = s.process_once("e", [&] { ran = true; }, [](std::string_view) { return false; });
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, ProcessOutcome::kRan);
  EXPECT_TRUE(ran);
  EXPECT_EQ(*s.state("e"), ProcessedState::kDone);
  EXPECT_EQ(s.stats()->resolved_ran, 1u);
  // Once done, the resolver is not asked again.
  auto again = s.process_once("e", [] {}, [](std::string_view) -> bool { throw std::logic_error("asked"); });
  EXPECT_EQ(*again, ProcessOutcome::kAlreadyDone);
}

TEST_F(ProcessedFixture, AResolverThatThrowsLeavesTheIdInDoubt) {
  ProcessedStore s = open("r");
  plant(s, "e", format::processed_pending(dead_owner()));
  EXPECT_THROW((void)s.process_once("e", [] {}, [](std::string_view) -> bool { throw std::runtime_error("db down"); }),
               std::runtime_error);
  EXPECT_EQ(*s.state("e"), ProcessedState::kInDoubt);
  EXPECT_EQ(*run(s, "e").outcome, ProcessOutcome::kInDoubt);
}

TEST_F(ProcessedFixture, AnInDoubtIdEndsWithTheWindow) {
  ProcessedStore s = open("w", options(10 * kSec));
  plant(s, "e", format::processed_pending(dead_owner()));
  clock.advance_ns(10 * kSec - kMs);
  EXPECT_EQ(*run(s, "e").outcome, ProcessOutcome::kInDoubt);
  clock.advance_ns(kMs);
  EXPECT_EQ(*s.state("e"), ProcessedState::kAbsent);
  EXPECT_EQ(*run(s, "e").outcome, ProcessOutcome::kRan);
}

TEST_F(ProcessedFixture, InDoubtIdsFillTheirBucketUntilSettled) {
  ProcessedStore s = open("small", options(10 * kSec, 8));
  const ipc::OwnerId dead = dead_owner();
  for (int i = 0; i < 8; ++i) plant(s, "d-" + std::to_string(i), format::processed_pending(dead));
  EXPECT_EQ(run(s, "new").outcome.error().code, Errc::kBusy) << "in-doubt ids are not dropped to make room";
  EXPECT_EQ(*s.forget("d-3"), ProcessedState::kInDoubt);
  EXPECT_EQ(*run(s, "new").outcome, ProcessOutcome::kRan);
  EXPECT_EQ(*s.state("d-3"), ProcessedState::kAbsent) << "forgotten: its way went to the new id";
  EXPECT_EQ(*s.forget("d-4"), ProcessedState::kInDoubt);
  EXPECT_EQ(*run(s, "d-3").outcome, ProcessOutcome::kRan) << "forgotten: fn runs again";
  const ProcessedStoreStats st = *s.stats();
  EXPECT_EQ(st.in_doubt, 6u);
  EXPECT_EQ(st.done, 2u);
}

TEST_F(ProcessedFixture, ALiveRunnersIdIsBusyAndCannotBeSettledByHand) {
  ProcessedStore s = open("live");
  std::promise<void> inside, release;
  std::thread runner([&] {
    auto r = s.process_once("e", [&] {
      inside.set_value();
      release.get_future().wait();
    });
    EXPECT_EQ(*r, ProcessOutcome::kRan);
  });
  inside.get_future().wait();
  EXPECT_EQ(*s.state("e"), ProcessedState::kPending);
  Attempt other = run(s, "e");  // pending_wait_ns 0: no wait
  ASSERT_FALSE(other.outcome);
  EXPECT_EQ(other.outcome.error().code, Errc::kBusy);
  EXPECT_FALSE(other.ran);
  EXPECT_EQ(s.forget("e").error().code, Errc::kBusy);
  EXPECT_EQ(s.mark_done("e").error().code, Errc::kBusy);
  auto pending = s.list();
  ASSERT_TRUE(pending);
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].state, ProcessedState::kPending);
  release.set_value();
  runner.join();
  EXPECT_EQ(*run(s, "e").outcome, ProcessOutcome::kAlreadyDone);
}

TEST_F(ProcessedFixture, AWaitingCallerGetsTheRunnersOutcome) {
  ProcessedStoreOptions o = options();
  o.pending_wait_ns = 60 * kSec;  // bounded; the runner is released at once below
  ProcessedStore s = open("wait", o);
  std::promise<void> inside;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::thread runner([&] {
    (void)s.process_once("e", [&] {
      inside.set_value();
      released.wait();
    });
  });
  inside.get_future().wait();
  std::thread waiter([&] {
    Attempt r = run(s, "e");
    EXPECT_EQ(*r.outcome, ProcessOutcome::kAlreadyDone);
    EXPECT_FALSE(r.ran);
  });
  release.set_value();
  runner.join();
  waiter.join();
}

TEST_F(ProcessedFixture, ForgetMakesAnIdRunAgainAndMarkDoneStopsIt) {
  ProcessedStore s = open("f");
  ASSERT_EQ(*run(s, "a").outcome, ProcessOutcome::kRan);
  EXPECT_EQ(*s.forget("a"), ProcessedState::kDone);
  EXPECT_EQ(*s.forget("a"), ProcessedState::kAbsent) << "forgetting twice is harmless";
  EXPECT_EQ(*run(s, "a").outcome, ProcessOutcome::kRan);
  EXPECT_EQ(*s.mark_done("b"), ProcessedState::kAbsent);
  EXPECT_EQ(*run(s, "b").outcome, ProcessOutcome::kAlreadyDone);

  // By key (what `sluice processed ... --key` uses for ids too long to show).
  const ProcessedKey kc = s.key("c");
  EXPECT_EQ(ProcessedKey::from_hex(kc.hex()), kc);
  EXPECT_EQ(*s.mark_done(kc), ProcessedState::kAbsent);
  EXPECT_EQ(*run(s, "c").outcome, ProcessOutcome::kAlreadyDone);
  auto all = s.list(ProcessedFilter::kAll);
  ASSERT_TRUE(all);
  bool seen_unknown = false;
  for (const auto& e : *all)
    if (e.key == kc) {
      seen_unknown = true;
      EXPECT_EQ(e.id_bytes, 0u) << "marked by key: the id is not known";
      EXPECT_FALSE(e.id_complete());
    }
  EXPECT_TRUE(seen_unknown);
  EXPECT_EQ(*s.forget(kc), ProcessedState::kDone);
}

TEST_F(ProcessedFixture, ListingsShowLongIdsCutAndCountByState) {
  ProcessedStore s = open("l");
  const std::string long_id(100, 'x');
  ASSERT_EQ(*run(s, long_id).outcome, ProcessOutcome::kRan);
  ASSERT_EQ(*run(s, "short").outcome, ProcessOutcome::kRan);
  plant(s, "lost", format::processed_pending(dead_owner()));
  auto all = s.list(ProcessedFilter::kAll);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 3u);
  for (const auto& e : *all) {
    if (e.key == s.key(long_id)) {
      EXPECT_EQ(e.id_bytes, 100u);
      EXPECT_EQ(e.id, long_id.substr(0, format::kProcessedLabelTextBytes));
      EXPECT_FALSE(e.id_complete());
      EXPECT_EQ(e.state, ProcessedState::kDone);
    }
  }
  EXPECT_EQ(s.list(ProcessedFilter::kUnsettled)->size(), 1u);
  EXPECT_EQ(s.list(ProcessedFilter::kAll, 2)->size(), 2u) << "max";
  const ProcessedStoreStats st = *s.stats();
  EXPECT_EQ(st.done, 2u);
  EXPECT_EQ(st.in_doubt, 1u);
  EXPECT_EQ(st.pending, 0u);
  EXPECT_EQ(st.capacity, 1024u);
  EXPECT_EQ(st.window_ns, 10 * kSec);
}

TEST_F(ProcessedFixture, IdsMustBeNonEmptyAndAtMost256Bytes) {
  ProcessedStore s = open("ids");
  for (const std::string& bad : {std::string(), std::string(257, 'i')}) {
    Attempt r = run(s, bad);
    ASSERT_FALSE(r.outcome);
    EXPECT_EQ(r.outcome.error().code, Errc::kInvalidArgument);
    EXPECT_FALSE(r.ran);
    EXPECT_EQ(s.mark_done(bad).error().code, Errc::kInvalidArgument);
    EXPECT_EQ(s.forget(bad).error().code, Errc::kInvalidArgument);
  }
  EXPECT_EQ(*run(s, std::string(256, 'i')).outcome, ProcessOutcome::kRan);
  EXPECT_EQ(*run(s, std::string("\0bin\xff", 5)).outcome, ProcessOutcome::kRan) << "ids are bytes";
}

TEST_F(ProcessedFixture, BadNamesAndOptionsAreRefused) {
  for (const std::string& name :
       std::vector<std::string>{"", "a/b", "..", ".", "sp ace", "x.tmp.1.2", std::string(201, 'n')}) {
    auto s = bus->open_processed_store(name);
    ASSERT_FALSE(s) << name;
    EXPECT_EQ(s.error().code, Errc::kInvalidName) << name;
    EXPECT_EQ(bus->delete_processed_store(name).error().code, Errc::kInvalidName);
  }
  EXPECT_TRUE(bus->open_processed_store(std::string(200, 'n')));
  auto bad = [&](auto edit) {
    ProcessedStoreOptions o;
    edit(o);
    auto s = bus->open_processed_store("opts", o);
    return s ? Errc{} : s.error().code;
  };
  for (uint32_t c : {0u, 7u, 12u, (1u << 24) + 8})
    EXPECT_EQ(bad([c](ProcessedStoreOptions& o) { o.capacity = c; }), Errc::kInvalidArgument) << c;
  for (int64_t w : {int64_t{0}, int64_t{-1}, kMs - 1, 366 * 24 * 3600 * kSec})
    EXPECT_EQ(bad([w](ProcessedStoreOptions& o) { o.window_ns = w; }), Errc::kInvalidArgument) << w;
  EXPECT_EQ(bad([](ProcessedStoreOptions& o) { o.pending_wait_ns = -1; }), Errc::kInvalidArgument);
  EXPECT_TRUE(bus->list_processed_stores()->size() == 1u) << "nothing was created for bad options";
}

TEST_F(ProcessedFixture, AnExistingStoreKeepsItsParametersAndStoresAreListedAndDeleted) {
  ProcessedStoreOptions o;
  o.capacity = 16;
  o.window_ns = 2 * kSec;
  ASSERT_TRUE(bus->open_processed_store("b", o));
  ProcessedStore again = open("b", ProcessedStoreOptions{});
  EXPECT_EQ(again.capacity(), 16u);
  EXPECT_EQ(again.window_ns(), 2 * kSec);
  ASSERT_EQ(*run(again, "e").outcome, ProcessOutcome::kRan);

  ProcessedStoreOptions existing_only;
  existing_only.create_if_missing = false;
  EXPECT_EQ(bus->open_processed_store("nope", existing_only).error().code, Errc::kNotFound);
  ASSERT_TRUE(bus->open_processed_store("a"));
  // A leftover of a creator killed before publishing is not a store.
  std::filesystem::copy_file(path("a"), path("a.tmp.123.456"));
  EXPECT_EQ(*bus->list_processed_stores(), (std::vector<std::string>{"a", "b"}));

  ASSERT_TRUE(bus->delete_processed_store("b"));
  EXPECT_EQ(bus->delete_processed_store("b").error().code, Errc::kNotFound);
  EXPECT_EQ(*bus->list_processed_stores(), std::vector<std::string>{"a"});
  EXPECT_EQ(*run(again, "e").outcome, ProcessOutcome::kAlreadyDone) << "an open handle keeps its mapping";
  ProcessedStore fresh = open("b");
  EXPECT_EQ(*run(fresh, "e").outcome, ProcessOutcome::kRan) << "a store made after the delete is a new one";
}

// ---- damaged files ------------------------------------------------------------

// Recomputes the header checksum after a deliberate edit (as ipc/file_header.cc does).
void reseal(std::byte* base) {
  ipc::FileHeader h;
  std::memcpy(&h, base, sizeof h);
  const size_t before = offsetof(ipc::FileHeader, header_checksum);
  const size_t after = before + sizeof(uint64_t);
  std::vector<std::byte> covered(base, base + before);
  covered.insert(covered.end(), base + after, base + h.header_bytes);
  const uint64_t sum = XXH3_64bits(covered.data(), covered.size());
  std::memcpy(base + offsetof(ipc::FileHeader, header_checksum), &sum, sizeof sum);
}

struct DamagedFile : ProcessedFixture {
  // Creates store "s", lets `damage` edit its mapped bytes, then opens it anew.
  template <class Damage>
  Error open_damaged(Damage damage) {
    (void)bus->delete_processed_store("s");
    EXPECT_TRUE(bus->open_processed_store("s", options()));
    {
      auto f = ipc::MappedFile::open(path("s"), {});
      EXPECT_TRUE(f);
      damage(f->data());
    }
    auto s = bus->open_processed_store("s", options());
    EXPECT_FALSE(s);
    if (s) return Error{};
    EXPECT_NE(s.error().message.find(path("s")), std::string::npos) << "names the file: " << s.error().message;
    return s.error();
  }
};

TEST_F(DamagedFile, ADamagedHeaderIsRefused) {
  const Error e = open_damaged([](std::byte* b) { b[ipc::kFileHeaderBytes + 8] ^= std::byte{1}; });
  EXPECT_EQ(e.code, Errc::kCorruption);
  EXPECT_NE(e.message.find("checksum"), std::string::npos) << e.message;
}

TEST_F(DamagedFile, AnotherFormatVersionIsRefused) {
  const Error e = open_damaged([](std::byte* b) {
    const uint32_t version = 2;
    std::memcpy(b + offsetof(ipc::FileHeader, format_version), &version, sizeof version);
    reseal(b);
  });
  EXPECT_EQ(e.code, Errc::kVersionMismatch) << e.to_string();
}

TEST_F(DamagedFile, AFileOfAnotherKindIsRefused) {
  const Error e = open_damaged([](std::byte* b) {
    const uint32_t kind = static_cast<uint32_t>(ipc::FileKind::kQueueDedup);
    std::memcpy(b + offsetof(ipc::FileHeader, kind), &kind, sizeof kind);
    reseal(b);
  });
  EXPECT_EQ(e.code, Errc::kCorruption) << e.to_string();
}

TEST_F(DamagedFile, ParametersThatDoNotMatchTheFileAreRefused) {
  auto edit = [](auto change) {
    return [change](std::byte* b) {
      auto* p = reinterpret_cast<ProcessedParams*>(b + ipc::kFileHeaderBytes);
      change(*p);
      reseal(b);
    };
  };
  for (auto e : {open_damaged(edit([](ProcessedParams& p) { p.buckets += 1; })),
                 open_damaged(edit([](ProcessedParams& p) { p.ways = 4; })),
                 open_damaged(edit([](ProcessedParams& p) { p.window_ns = 0; })),
                 open_damaged(edit([](ProcessedParams& p) { p.reserved = 1; }))}) {
    EXPECT_EQ(e.code, Errc::kCorruption);
    EXPECT_NE(e.message.find("invalid parameters"), std::string::npos) << e.message;
  }
}

TEST_F(DamagedFile, ATruncatedFileIsRefused) {
  ASSERT_TRUE(bus->open_processed_store("s", options()));
  for (uint64_t size : {uint64_t{4096}, uint64_t{20}}) {
    std::filesystem::resize_file(path("s"), size);
    auto s = bus->open_processed_store("s", options());
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, Errc::kCorruption) << s.error().to_string();
    EXPECT_NE(s.error().message.find("truncated"), std::string::npos) << s.error().message;
    EXPECT_NE(s.error().message.find(path("s")), std::string::npos) << s.error().message;
  }
}

TEST_F(ProcessedFixture, AnInvalidStateWordIsReportedNamingTheFile) {
  ProcessedStore s = open("s");
  plant(s, "e", 7);  // kind 7 does not exist
  for (auto error : {run(s, "e").outcome.error(), s.list().error(), s.stats().error(), s.forget("e").error()}) {
    EXPECT_EQ(error.code, Errc::kCorruption);
    EXPECT_NE(error.message.find(path("s")), std::string::npos) << error.message;
    EXPECT_NE(error.message.find("invalid state word 0x0000000000000007"), std::string::npos) << error.message;
  }
  Mapped m = bucket_of(s, "e");
  for (uint64_t bad : std::vector<uint64_t>{0x100, format::processed_pending(0), 2,
                                            format::processed_pending(1) | (uint64_t{1} << 30)}) {
    m.bucket->ways[0].state.store(bad);
    EXPECT_EQ(run(s, "e").outcome.error().code, Errc::kCorruption) << std::hex << bad;
  }
}

TEST_F(ProcessedFixture, AnInvalidLockWordIsReported) {
  ProcessedStore s = open("s");
  Mapped m = bucket_of(s, "e");
  m.bucket->lock.store(1ull << 40);
  auto r = run(s, "e");
  ASSERT_FALSE(r.outcome);
  EXPECT_EQ(r.outcome.error().code, Errc::kCorruption);
  EXPECT_NE(r.outcome.error().message.find("lock word"), std::string::npos) << r.outcome.error().message;
  EXPECT_FALSE(r.ran);
}

TEST_F(ProcessedFixture, TheLockOfADeadHolderIsTakenOver) {
  ProcessedStore s = open("s");
  Mapped m = bucket_of(s, "e");
  m.bucket->lock.store(uint64_t{dead_owner()} + 1);
  EXPECT_EQ(*run(s, "e").outcome, ProcessOutcome::kRan);
  EXPECT_EQ(m.bucket->lock.load(), 0u) << "released after use";
}

TEST(ProcessedKeyText, HexRoundTripsAndRefusesOtherText) {
  const ProcessedKey k{0x0123456789abcdefull, 0xfedcba9876543210ull};
  EXPECT_EQ(k.hex(), "fedcba98765432100123456789abcdef");
  EXPECT_EQ(ProcessedKey::from_hex(k.hex()), k);
  EXPECT_EQ(ProcessedKey::from_hex("FEDCBA98765432100123456789ABCDEF"), k);
  for (std::string_view bad : {"", "fedcba9876543210", "fedcba98765432100123456789abcdeg",
                               "fedcba98765432100123456789abcdef0"})
    EXPECT_FALSE(ProcessedKey::from_hex(bad)) << bad;
}

void free_function_fn() {}

TEST_F(ProcessedFixture, FnMayBeAFunctionAMutableLambdaOrAFunctionRef) {
  ProcessedStore s = open("fr");
  EXPECT_EQ(*s.process_once("f", free_function_fn), ProcessOutcome::kRan);
  EXPECT_EQ(*s.process_once("g", &free_function_fn), ProcessOutcome::kRan);
  int calls = 0;
  auto counting = [&calls, n = 0]() mutable { calls = ++n; };  // a mutable lambda: called as an lvalue
  EXPECT_EQ(*s.process_once("h", counting), ProcessOutcome::kRan);
  FunctionRef<void()> ref = counting;
  EXPECT_EQ(*s.process_once("i", ref), ProcessOutcome::kRan);
  EXPECT_EQ(calls, 2) << "both calls reached the same lambda object";
}

}  // namespace
}  // namespace sluice
