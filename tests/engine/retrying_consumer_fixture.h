// The fixture of the RetryingConsumer tests (retrying_consumer_test.cc, the
// retry queue; retrying_consumer_in_place_test.cc, in-place retries): a bus
// on a manual clock with a two-partition topic "orders" and group "billing".
#pragma once

#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "support/clocked_bus.h"
#include "support/test_support.h"

namespace sluice::test {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kSec = 1'000 * kMs;

// What a handler saw, copied out of its views.
struct Seen {
  std::string value;
  uint32_t attempt;
  uint32_t partition;
  uint64_t offset;
  int64_t timestamp_ns;
  std::string key;
  std::vector<std::pair<std::string, std::string>> headers;
};

// A bus on a manual clock: retries come due only when the test moves it, so
// poll() (which never waits) shows exactly what is ready.
struct RetryingConsumerFixture : test::ClockedBusTest {
  std::optional<Producer> producer;
  std::vector<Seen> seen;

  void SetUp() override {
    ClockedBusTest::SetUp();
    if (HasFatalFailure()) return;
    TopicOptions t;
    t.partitions = 2;
    t.segment_bytes = 1 << 20;
    ASSERT_TRUE(bus->create_topic("orders", t));
    auto p = bus->create_producer("orders");
    ASSERT_TRUE(p) << p.error().to_string();
    producer.emplace(std::move(*p));
  }

  static RetryingConsumerOptions options() {
    RetryingConsumerOptions o;
    o.retry.max_receives = 3;
    o.retry.base_delay_ns = 1 * kSec;  // then 2 s
    o.retry.multiplier = 2.0;
    o.retry.max_delay_ns = 60 * kSec;
    o.retry.jitter_ns = 0;
    o.queue.segment_bytes = 1 << 20;
    o.queue.max_depth_bytes = 4 << 20;
    o.queue.lease_ns = 10 * kSec;
    return o;
  }

  RetryingConsumer helper(const RetryingConsumerOptions& o = options()) {
    auto r = RetryingConsumer::create(*bus, "orders", "billing", o);
    EXPECT_TRUE(r) << r.error().to_string();
    return std::move(*r);
  }

  void send(std::string_view value, uint32_t partition = 0, std::string_view key = {},
            std::span<const Header> headers = {}) {
    ASSERT_TRUE(producer->send(Message{key, value, headers, 0}, partition).ok());
  }

  // Records what it sees, then fails as `fail` says for that value and attempt.
  RecordHandler recorder(std::function<void(const StreamRecord&)> fail) {
    return [this, fail](const StreamRecord& r) {
      Seen s{std::string(r.value), r.attempt, r.partition, r.offset, r.timestamp_ns, std::string(r.key), {}};
      for (const Header& h : r.headers) s.headers.emplace_back(h.name, h.value);
      seen.push_back(std::move(s));
      fail(r);
    };
  }

  uint64_t poll(RetryingConsumer& c, const RecordHandler& h) {
    auto n = c.poll(h);
    EXPECT_TRUE(n) << n.error().to_string();
    return n ? *n : 0;
  }

  uint64_t committed(uint32_t partition) {
    auto g = bus->describe_group("billing");
    EXPECT_TRUE(g) << g.error().to_string();
    for (const PartitionLag& p : g->partitions)
      if (p.topic == "orders" && p.partition == partition) return p.committed;
    return kNoOffset;
  }

  // Receives one message now; an invalid Delivery if none.
  Delivery take(Worker& w) {
    Delivery d[1];
    auto n = w.receive(d, 0);
    EXPECT_TRUE(n) << n.error().to_string();
    return std::move(d[0]);
  }
  Worker worker(std::string_view queue) {
    auto w = bus->create_worker(queue);
    EXPECT_TRUE(w) << w.error().to_string();
    return std::move(*w);
  }
  QueueLevelStats queue_stats(std::string_view queue) {
    auto s = bus->queue_stats(queue);
    EXPECT_TRUE(s) << s.error().to_string();
    return s ? s->total() : QueueLevelStats{};
  }
};

// The fixture of RetryMode::kInPlace tests.
struct InPlaceRetryFixture : RetryingConsumerFixture {
  static RetryingConsumerOptions in_place() {
    RetryingConsumerOptions o = options();  // 3 attempts, backoff 1 s then 2 s
    o.mode = RetryMode::kInPlace;
    return o;
  }
  // The values the handler saw in `partition`, as "value/attempt".
  std::vector<std::string> seen_in(uint32_t partition) const {
    std::vector<std::string> out;
    for (const Seen& s : seen)
      if (s.partition == partition) out.push_back(s.value + "/" + std::to_string(s.attempt));
    return out;
  }
  using Strings = std::vector<std::string>;
};

}  // namespace sluice::test
