// Parking lots (docs/queues.md, section 7, "Parking lot"): Worker::park and
// ParkError put a message aside with its history; Bus::unpark brings the due
// ones back, only inside a window, paced, once each. All on a manual clock.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <string>
#include <vector>

#include "support/clocked_bus.h"

namespace sluice {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kSec = 1'000 * kMs;
constexpr int64_t kMin = 60 * kSec;
// 2026-11-27T10:00:00Z
constexpr int64_t kTenAm = 1'795'773'600LL * kSec;

struct Parking : test::ClockedBusTest {
  void SetUp() override {
    ClockedBusTest::SetUp();
    if (HasFatalFailure()) return;
    clock.set_ns(kTenAm);
    QueueOptions o;
    o.priorities = 2;
    o.segment_bytes = 1 << 20;
    o.max_depth_bytes = 4 << 20;
    o.retry.max_receives = 3;
    o.retry.jitter_ns = 0;
    ASSERT_TRUE(bus->create_queue("orders", o));
  }

  void publish(std::string_view value, uint32_t priority = 0, std::string_view group = {}) {
    auto p = bus->create_queue_publisher("orders");
    ASSERT_TRUE(p) << p.error().to_string();
    const std::string trace = "t-" + std::string(value);
    const std::vector<Header> headers = {{"trace", trace}};
    QueueMessage m;
    m.value = value;
    m.headers = headers;
    m.priority = priority;
    m.group = group;
    ASSERT_TRUE(p->publish(m).ok()) << p->last_error().to_string();
  }
  // Publishes `value` to orders, receives it and parks it until `until`.
  void park(std::string_view value, int64_t until, std::string_view reason = "payments down") {
    publish(value);
    Worker w = worker("orders");
    Delivery d = take(w);
    ASSERT_TRUE(d.valid());
    ASSERT_EQ(d.value(), value);
    ASSERT_TRUE(w.park(d, until, reason)) << value;
  }
  uint64_t unsettled(std::string_view queue) {
    auto s = bus->queue_stats(queue);
    EXPECT_TRUE(s) << s.error().to_string();
    return s ? s->total().unsettled : 0;
  }
  std::vector<std::string> drain(std::string_view queue) {
    Worker w = worker(queue);
    std::vector<std::string> out;
    for (Delivery d = take(w); d.valid(); d = take(w)) {
      out.emplace_back(d.value());
      EXPECT_TRUE(d.ack());
    }
    return out;
  }
};

TEST_F(Parking, ParkMovesTheMessageToTheLotWithItsHistoryAndSettlesIt) {
  publish("m1", 1, "customer-7");
  Worker w = worker("orders");
  Delivery d = take(w);
  ASSERT_TRUE(d.valid());
  ASSERT_TRUE(d.nack(int64_t{0}));  // one failed attempt first
  d = take(w);
  ASSERT_EQ(d.attempt(), 2u);
  ASSERT_TRUE(w.park(d, kTenAm + 10 * kMin, "payments down"));
  EXPECT_EQ(w.stats().parked, 1u);
  EXPECT_EQ(unsettled("orders"), 0u);
  EXPECT_FALSE(d.ack()) << "a parked delivery is settled";

  auto entries = bus->browse_queue("orders.parking", 0);
  ASSERT_TRUE(entries) << entries.error().to_string();
  ASSERT_EQ(entries->size(), 1u);
  const QueueEntry& e = (*entries)[0];
  EXPECT_EQ(e.value, "m1");
  auto header = [&](std::string_view name) {
    for (const auto& [n, v] : e.headers)
      if (n == name) return v;
    return std::string("<none>");
  };
  EXPECT_EQ(header("trace"), "t-m1");
  EXPECT_EQ(header(kHeaderParkedFrom), "orders");
  EXPECT_EQ(header(kHeaderParkedReason), "payments down");
  EXPECT_EQ(header(kHeaderParkedAt), "2026-11-27T10:00:00.000Z");
  EXPECT_EQ(header(kHeaderParkedUntil), "2026-11-27T10:10:00.000Z");
  EXPECT_EQ(header(kHeaderParkedAttempts), "2");
  EXPECT_EQ(header(kHeaderParkedPriority), "1");
  EXPECT_EQ(header(kHeaderParkedOffset), "0");
  EXPECT_EQ(header(kHeaderParkedCount), "1");
  EXPECT_EQ(header(kHeaderParkedGroup), "customer-7");
  EXPECT_EQ(header("sluice.group"), "<none>") << "a live group would hold the lot back";
}

TEST_F(Parking, AParkedMessageIsNotDeliveredBeforeUntil) {
  park("m1", kTenAm + 10 * kMin);
  Worker lot = worker("orders.parking");
  EXPECT_FALSE(take(lot).valid());
  clock.advance_ns(10 * kMin - kMs);
  EXPECT_FALSE(take(lot).valid());
  clock.advance_ns(2 * kMs);
  Delivery d = take(lot);
  ASSERT_TRUE(d.valid());
  EXPECT_EQ(d.value(), "m1");
}

TEST_F(Parking, AHandlerThrowingParkErrorParksTheMessage) {
  publish("m1");
  publish("m2");
  Worker w = worker("orders");
  auto n = w.run(
      [&](const Delivery& d) {
        if (d.value() == "m1") throw ParkError(kTenAm + kMin, "downstream 503");
      },
      {}, 2);
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(w.stats().parked, 1u);
  EXPECT_EQ(w.stats().acked, 1u);
  EXPECT_EQ(w.stats().handler_errors, 0u);
  EXPECT_EQ(unsettled("orders"), 0u);
  EXPECT_EQ(unsettled("orders.parking"), 1u);
  clock.advance_ns(kMin);
  EXPECT_EQ(drain("orders.parking"), std::vector<std::string>{"m1"});
}

TEST_F(Parking, UnparkMovesOnlyDueMessagesBackToTheirSourceRestored) {
  publish("soon", 1, "customer-7");
  {
    Worker w = worker("orders");
    Delivery d = take(w);
    ASSERT_TRUE(w.park(d, kTenAm + 10 * kSec, "outage"));
  }
  park("later", kTenAm + 10 * kMin);
  clock.advance_ns(20 * kSec);
  auto r = bus->unpark("orders.parking");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->moved, 1u);
  EXPECT_EQ(r->duplicates, 0u);
  EXPECT_FALSE(r->outside_window);
  EXPECT_EQ(unsettled("orders.parking"), 1u) << "'later' is not due";

  Worker w = worker("orders");
  Delivery d = take(w);
  ASSERT_TRUE(d.valid());
  EXPECT_EQ(d.value(), "soon");
  EXPECT_EQ(d.priority(), 1u);
  EXPECT_EQ(d.attempt(), 1u) << "back in its queue, it starts a new series of receives";
  EXPECT_EQ(d.headers().find("trace"), "t-soon");
  EXPECT_EQ(d.headers().find("sluice.group"), "customer-7");
  EXPECT_EQ(d.headers().find(kHeaderParkedCount), "1");
  EXPECT_EQ(d.headers().find(kHeaderParkedFrom), "");
  EXPECT_EQ(d.headers().find(kHeaderParkedReason), "");
  // Parked again, it counts its second parking.
  ASSERT_TRUE(w.park(d, 0, "still down"));
  auto entries = bus->browse_queue("orders.parking", 0);
  ASSERT_TRUE(entries);
  ASSERT_EQ(entries->size(), 2u);
  bool found = false;
  for (const auto& [n, v] : entries->back().headers)
    if (n == kHeaderParkedCount) found = v == "2";
  EXPECT_TRUE(found);
}

TEST_F(Parking, UnparkReleasesOnlyInsideItsWindow) {
  park("m1", 0);
  UnparkOptions o;
  o.window = DailyWindow{2 * 60, 4 * 60};  // 02:00-04:00 UTC; it is 10:00
  auto r = bus->unpark("orders.parking", o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_TRUE(r->outside_window);
  EXPECT_EQ(r->moved, 0u);
  EXPECT_EQ(r->window_opens_unix_ns, kTenAm + 16 * 60 * kMin);  // 02:00 the next day
  clock.set_ns(r->window_opens_unix_ns + kMin);
  r = bus->unpark("orders.parking", o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_FALSE(r->outside_window);
  EXPECT_EQ(r->moved, 1u);
  EXPECT_EQ(drain("orders"), std::vector<std::string>{"m1"});
}

TEST(DailyWindow, WrapsPastMidnightAndParsesStrictly) {
  auto w = parse_daily_window("22:00-02:00");
  ASSERT_TRUE(w) << w.error().to_string();
  const int64_t midnight = kTenAm - 10 * 60 * kMin;
  EXPECT_TRUE(w->contains(midnight + 23 * 60 * kMin + 30 * kMin));
  EXPECT_TRUE(w->contains(midnight + 60 * kMin));
  EXPECT_FALSE(w->contains(midnight + 2 * 60 * kMin));
  EXPECT_FALSE(w->contains(kTenAm));
  EXPECT_EQ(w->next_open_unix_ns(kTenAm), midnight + 22 * 60 * kMin);
  EXPECT_TRUE(parse_daily_window("00:00-00:00")->contains(kTenAm)) << "start == end: all day";
  for (const char* bad : {"", "2:00-04:00", "24:00-01:00", "02:60-03:00", "02:00/04:00", "02:00-04:00 ",
                          "ab:cd-ef:gh", "02:00-4:00"}) {
    auto b = parse_daily_window(bad);
    ASSERT_FALSE(b) << "'" << bad << "'";
    EXPECT_EQ(b.error().code, Errc::kInvalidArgument);
  }
}

TEST_F(Parking, UnparkStopsAtMaxAndPacesByTheBusClock) {
  for (const char* v : {"a", "b", "c", "d", "e"}) park(v, 0);
  UnparkOptions o;
  o.max_messages = 2;
  auto r = bus->unpark("orders.parking", o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->moved, 2u);
  EXPECT_EQ(unsettled("orders.parking"), 3u);

  UnparkOptions paced;
  paced.rate_per_sec = 2;
  std::vector<int64_t> waits;
  paced.wait_until = [&](int64_t t) {
    waits.push_back(t - kTenAm);
    clock.set_ns(t);
  };
  r = bus->unpark("orders.parking", paced);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->moved, 3u);
  EXPECT_EQ(waits, (std::vector<int64_t>{500 * kMs, 1000 * kMs}));
  EXPECT_EQ(drain("orders"), (std::vector<std::string>{"a", "b", "c", "d", "e"}));
}

TEST_F(Parking, UnparkLeavesWhatTheFilterRefuses) {
  park("keep", 0);
  park("move", 0);
  UnparkOptions o;
  o.filter = [](const Delivery& d) { return d.value() == "move"; };
  auto r = bus->unpark("orders.parking", o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->moved, 1u);
  EXPECT_EQ(r->skipped, 1u);
  EXPECT_EQ(drain("orders"), std::vector<std::string>{"move"});
  EXPECT_EQ(drain("orders.parking"), std::vector<std::string>{"keep"}) << "offered again at once";
}

TEST_F(Parking, UnparkToAnotherQueue) {
  ASSERT_TRUE(bus->create_queue("orders.replay"));
  park("m1", 0);
  UnparkOptions o;
  o.to = "orders.replay";
  auto r = bus->unpark("orders.parking", o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->moved, 1u);
  EXPECT_EQ(drain("orders.replay"), std::vector<std::string>{"m1"});
  EXPECT_TRUE(drain("orders").empty());
}

TEST_F(Parking, UnparkLeavesAMessageWhoseSourceIsGoneAndMovesTheRest) {
  ASSERT_TRUE(bus->create_queue("gone"));
  {
    auto p = bus->create_queue_publisher("gone");
    ASSERT_TRUE(p);
    QueueMessage m;
    m.value = "orphan";
    ASSERT_TRUE(p->publish(m).ok());
    WorkerOptions o;
    o.parking_lot = "orders.parking";
    Worker w = worker("gone", o);
    Delivery d = take(w);
    ASSERT_TRUE(w.park(d, 0, "x"));
  }
  ASSERT_TRUE(bus->delete_queue("gone"));
  park("m1", 0);
  auto r = bus->unpark("orders.parking");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->moved, 1u);
  EXPECT_EQ(r->skipped, 1u);
  EXPECT_EQ(drain("orders"), std::vector<std::string>{"m1"});
  UnparkOptions to;
  to.to = "orders";
  r = bus->unpark("orders.parking", to);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->moved, 1u);
  EXPECT_EQ(drain("orders"), std::vector<std::string>{"orphan"});
}

TEST_F(Parking, ACrashBetweenRepublishAndAckMakesOneCopy) {
  park("m1", 0);
  UnparkOptions crash;
  crash.before_ack = [](const Delivery&) { return false; };
  auto r = bus->unpark("orders.parking", crash);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->moved, 0u);
  EXPECT_EQ(unsettled("orders"), 1u) << "re-published";
  EXPECT_EQ(unsettled("orders.parking"), 1u) << "not acked";
  clock.advance_ns(31 * kSec);  // the lot's lease (30 s) runs out
  r = bus->unpark("orders.parking");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->moved, 1u);
  EXPECT_EQ(r->duplicates, 1u);
  EXPECT_EQ(unsettled("orders.parking"), 0u);
  EXPECT_EQ(drain("orders"), std::vector<std::string>{"m1"});
}

TEST_F(Parking, ACrashBetweenParkingAndSettlingMakesOneParkedCopy) {
  publish("m1");
  {
    // The first worker publishes the parked copy (under park's id,
    // "park:" + the message's place), then dies before settling.
    Worker w = worker("orders");
    Delivery d = take(w);
    ASSERT_TRUE(d.valid());
    std::string id(w.processed_id(d));
    ASSERT_EQ(id.rfind("queue:", 0), 0u) << id;
    id = "park:" + id.substr(6);
    auto p = bus->create_queue_publisher("orders.parking");
    if (!p) {
      // Made by the first park: make it here as park would.
      QueueOptions lot;
      lot.retry.max_receives = 255;
      ASSERT_TRUE(bus->create_queue("orders.parking", lot));
      p = bus->create_queue_publisher("orders.parking");
    }
    ASSERT_TRUE(p) << p.error().to_string();
    QueueMessage m;
    m.value = "m1";
    m.dedup_id = id;
    ASSERT_TRUE(p->publish(m).ok());
  }
  clock.advance_ns(31 * kSec);  // its lease runs out
  Worker w = worker("orders");
  Delivery d = take(w);
  ASSERT_TRUE(d.valid());
  EXPECT_EQ(d.attempt(), 2u);
  ASSERT_TRUE(w.park(d, 0, "outage"));
  EXPECT_EQ(unsettled("orders"), 0u);
  EXPECT_EQ(unsettled("orders.parking"), 1u) << "one parked copy";
}

TEST_F(Parking, RefusesBadInput) {
  // An unknown lot.
  auto r = bus->unpark("nope.parking");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kNotFound);
  UnparkOptions self;
  self.to = "orders.parking";
  EXPECT_FALSE(bus->unpark("orders.parking", self));

  // A delivery another worker holds.
  publish("m1");
  Worker a = worker("orders"), b = worker("orders");
  Delivery d = take(a);
  ASSERT_TRUE(d.valid());
  auto ok = b.park(d, 0, "x");
  ASSERT_FALSE(ok);
  EXPECT_EQ(ok.error().code, Errc::kInvalidArgument);
  // Too far ahead.
  ok = a.park(d, kTenAm + 15 * 24 * 60 * kMin, "x");
  ASSERT_FALSE(ok);
  EXPECT_EQ(ok.error().code, Errc::kInvalidArgument);
  // Its own parking lot.
  WorkerOptions own;
  own.parking_lot = "orders";
  Worker c = worker("orders", own);
  ASSERT_TRUE(d.nack(int64_t{0}));
  d = take(c);
  ASSERT_TRUE(d.valid());
  ok = c.park(d, 0, "x");
  ASSERT_FALSE(ok);
  EXPECT_EQ(ok.error().code, Errc::kInvalidArgument);
  ASSERT_TRUE(c.park(d, 0, "x").error().message.find("own parking lot") != std::string::npos);
  // A parked message is not parked again, whatever lot the worker names.
  ASSERT_TRUE(a.park(d, 0, "x").error().code == Errc::kInvalidArgument);  // not a's
  ASSERT_TRUE(d.nack(int64_t{0}));
  Worker e = worker("orders");
  d = take(e);
  ASSERT_TRUE(d.valid());
  ASSERT_TRUE(e.park(d, 0, "first"));
  for (const char* lot_lot : {"", "elsewhere"}) {
    WorkerOptions o;
    o.parking_lot = lot_lot;
    Worker lot = worker("orders.parking", o);
    Delivery p = take(lot);
    ASSERT_TRUE(p.valid());
    ok = lot.park(p, 0, "again");
    ASSERT_FALSE(ok);
    EXPECT_EQ(ok.error().code, Errc::kInvalidArgument);
    EXPECT_NE(ok.error().message.find("parked message"), std::string::npos) << ok.error().message;
    ASSERT_TRUE(p.nack(int64_t{0}));
  }
  auto lots = bus->list_queues();
  ASSERT_TRUE(lots);
  for (const std::string& q : *lots) EXPECT_FALSE(q.ends_with(".parking.parking")) << q;
}

}  // namespace
}  // namespace sluice
