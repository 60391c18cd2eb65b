// The producer table (docs/exactly-once.md, section 1): reclaiming named
// identities idle kProducerIdleExpirationMs whose holder is dead and which
// have no open transaction, when a new identity finds the table full. Small
// tables on a manual clock; a dead holder is a process registry slot that was
// attached and let go (as a Bus handle of a process that died).
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <optional>
#include <string>
#include <string_view>

#include "ipc/process_registry.h"
#include "producer_table.h"
#include "record_codec.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr int64_t kDayNs = 24LL * 3600 * 1'000'000'000;
constexpr int64_t kExpirationNs = kProducerIdleExpirationMs * 1'000'000;

class ProducerTableReclaim : public ::testing::Test {
 protected:
  // A table of `slots` slots, and this process's registry slot (a live holder).
  void make(uint32_t slots) {
    auto t = ProducerTable::open(dir_.path(), clock_, slots);
    ASSERT_TRUE(t) << t.error().to_string();
    table_ = std::move(*t);
    me_.emplace(attach());
  }

  ipc::ProcessRegistry attach() {
    auto r = ipc::ProcessRegistry::attach(dir_.path() + "/procs");
    EXPECT_TRUE(r) << r.error().to_string();
    return std::move(*r);
  }

  ProducerIdentity open(std::string_view name, const ipc::ProcessRegistry& holder) {
    auto id = table_->open_identity(name, holder);
    EXPECT_TRUE(id) << name << ": " << id.error().to_string();
    return id ? *id : ProducerIdentity{};
  }
  ProducerIdentity open(std::string_view name) { return open(name, *me_); }

  // Opens each name in a registry slot that is then let go: their holder is dead.
  void open_dead(std::initializer_list<std::string_view> names) {
    ipc::ProcessRegistry holder = attach();
    for (auto n : names) open(n, holder);
  }

  // A new name finding the table full and nothing reclaimable.
  void expect_full(std::string_view name) {
    auto id = table_->open_identity(name, *me_);
    ASSERT_FALSE(id) << name << " got slot " << id->slot;
    EXPECT_EQ(id.error().code, Errc::kBusy);
  }

  uint32_t slot_of(std::string_view name) {
    auto s = table_->find(name);
    EXPECT_TRUE(s) << name;
    return s.value_or(UINT32_MAX);
  }

  test::TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<ProducerTable> table_;
  std::optional<ipc::ProcessRegistry> me_;
};

int64_t now_ms(const Clock& c) { return c.now_ns() / 1'000'000; }

TEST_F(ProducerTableReclaim, AFullTableGivesANameIdleSevenDaysToANewIdentityAndKeepsTheYoungerOnes) {
  make(4);
  open_dead({"a", "b"});
  std::optional<ipc::ProcessRegistry> later(attach());
  open("c", *later);
  open("d", *later);
  expect_full("e");  // t0: a and b are seen idle
  clock_.advance_ns(kDayNs);
  later.reset();     // c and d's holder dies a day later
  expect_full("e");  // t0 + 1 day: c and d are seen idle
  clock_.advance_ns(kExpirationNs - kDayNs);

  const uint32_t sa = slot_of("a"), sb = slot_of("b"), sc = slot_of("c"), sd = slot_of("d");
  ASSERT_FALSE(HasFailure()) << "none reclaimed before its time";
  const uint32_t gen_a = table_->slot(sa).generation.load(), gen_b = table_->slot(sb).generation.load();
  const ProducerIdentity e = open("e");
  ASSERT_TRUE(e.slot == sa || e.slot == sb) << "a or b, idle 7 days; c and d only 6";
  const uint32_t old_gen = e.slot == sa ? gen_a : gen_b;
  EXPECT_EQ(e.generation, old_gen + 1);
  EXPECT_EQ(e.pid, format::make_pid(old_gen + 1, e.slot));
  EXPECT_FALSE(table_->exists(format::make_pid(old_gen, e.slot))) << "the old pid names no identity now";
  EXPECT_TRUE(table_->exists(e.pid));
  EXPECT_EQ(table_->slot(e.slot).opens.load(), 1u) << "a new identity's counters";
  const ProducerIdentity f = open("f");
  EXPECT_EQ(f.slot, e.slot == sa ? sb : sa);
  EXPECT_FALSE(table_->find("a"));
  EXPECT_FALSE(table_->find("b"));

  expect_full("g");  // c and d: idle 6 days
  clock_.advance_ns(kDayNs);
  const ProducerIdentity g = open("g");
  EXPECT_TRUE(g.slot == sc || g.slot == sd);
  EXPECT_EQ(*table_->find("e"), e.slot) << "a reclaimed slot is found by its new name";
}

TEST_F(ProducerTableReclaim, OfTwoNamesIdleLongEnoughTheOneIdleLongerGoesFirst) {
  make(2);
  std::optional<ipc::ProcessRegistry> hx(attach()), hy(attach());
  open("x", *hx);
  open("y", *hy);
  // The sweep starts at the new name's probe start (XXH3-64(name) | 1): the
  // older name is put in the slot it looks at last, so that taking the first
  // one idle long enough would take the younger.
  const uint32_t scanned_last = static_cast<uint32_t>(((key_hash("new") | 1) + 1) % 2);
  auto& older = slot_of("x") == scanned_last ? hx : hy;
  auto& younger = &older == &hx ? hy : hx;
  older.reset();
  expect_full("new");  // t0: the older seen idle
  clock_.advance_ns(kDayNs);
  younger.reset();
  expect_full("new");  // t0 + 1 day: the younger
  clock_.advance_ns(kExpirationNs);
  EXPECT_EQ(open("new").slot, scanned_last);
}

TEST_F(ProducerTableReclaim, ALiveHolderKeepsItsName) {
  make(2);
  open("live");
  open_dead({"old"});
  const uint32_t old_slot = slot_of("old");
  expect_full("new");
  clock_.advance_ns(kExpirationNs);
  EXPECT_EQ(open("new").slot, old_slot);
  expect_full("newer");
  EXPECT_TRUE(table_->find("live"));
}

TEST_F(ProducerTableReclaim, ANameWithATransactionInFlightIsKept) {
  make(4);
  open_dead({"ongoing", "committing", "aborting", "old"});
  for (auto [name, state] : {std::pair{"ongoing", format::kProducerOngoing},
                             std::pair{"committing", format::kProducerCommitting},
                             std::pair{"aborting", format::kProducerAborting}}) {
    auto& control = table_->slot(slot_of(name)).control;
    const uint64_t c = control.load();
    control.store(format::make_producer_control(state, format::producer_epoch(c), format::producer_owner(c),
                                                format::producer_txn(c) + 1));
  }
  const uint32_t old_slot = slot_of("old");
  expect_full("new");
  clock_.advance_ns(kExpirationNs);
  EXPECT_EQ(open("new").slot, old_slot);
  expect_full("newer");
  for (auto name : {"ongoing", "committing", "aborting"}) EXPECT_TRUE(table_->find(name)) << name;
}

TEST_F(ProducerTableReclaim, OpeningANameAgainRestartsItsIdleTime) {
  make(2);
  open_dead({"a", "b"});
  const uint32_t sb = slot_of("b");
  expect_full("new");  // t0: both seen idle
  clock_.advance_ns(6 * kDayNs);
  open_dead({"a"});    // used again, by a process that died since
  clock_.advance_ns(kExpirationNs - 6 * kDayNs);
  EXPECT_EQ(open("new").slot, sb) << "b, idle 7 days, is the one reclaimed";
  EXPECT_FALSE(table_->find("b"));
  expect_full("newer");  // a: idle since just now
  EXPECT_TRUE(table_->find("a"));
}

TEST_F(ProducerTableReclaim, HousekeepingStartsTheIdleTimeBeforeTheTableIsFull) {
  make(2);
  open_dead({"a"});
  const uint32_t sa = slot_of("a");
  table_->stamp_idle(*me_);
  clock_.advance_ns(kExpirationNs);
  open("b");
  EXPECT_EQ(open("c").slot, sa) << "no wait: a's idle time started at the housekeeping";
}

TEST_F(ProducerTableReclaim, AnIdleStampFromTheFutureOrDamagedRestartsTheIdleTime) {
  make(3);
  open_dead({"future", "negative"});
  open("held");
  table_->slot(slot_of("future")).idle_since_ms.store(now_ms(clock_) + 30 * 24 * 3600 * 1000LL);
  table_->slot(slot_of("negative")).idle_since_ms.store(-5);
  expect_full("new");  // both taken as seen idle now
  clock_.advance_ns(kExpirationNs);
  open("new");
  open("newer");
  EXPECT_FALSE(table_->find("future"));
  EXPECT_FALSE(table_->find("negative"));
}

// Through a Bus: housekeeping stamps a dead holder's name on the bus clock,
// and 7 days of that clock later a full table gives its slot to a new name.
TEST(ProducerTableBus, HousekeepingOnTheBusClockLetsAFullTableReclaim) {
  test::TempDir dir;
  ManualClock clock;
  ASSERT_TRUE(ProducerTable::open(dir.path(), clock, 2));
  BusOptions bo;
  bo.clock = &clock;
  auto bus = Bus::open(dir.path(), bo);
  ASSERT_TRUE(bus) << bus.error().to_string();
  ASSERT_TRUE(bus->create_topic("t", {}));
  ProducerOptions o;
  o.idempotent = true;
  uint64_t old_pid = 0;
  {
    auto gone = Bus::open(dir.path(), bo);  // its handle closes: the holder is gone
    ASSERT_TRUE(gone);
    o.producer_name = "old";
    auto p = gone->create_producer("t", o);
    ASSERT_TRUE(p) << p.error().to_string();
    old_pid = p->producer_id();
  }
  ASSERT_TRUE(bus->housekeep());
  clock.advance_ns(kExpirationNs);
  o.producer_name = "filler";
  auto filler = bus->create_producer("t", o);
  ASSERT_TRUE(filler) << filler.error().to_string();
  o.producer_name = "new";
  auto p = bus->create_producer("t", o);
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(format::pid_slot(p->producer_id()), format::pid_slot(old_pid));
  EXPECT_NE(p->producer_id(), old_pid);
}

}  // namespace
}  // namespace sluice
