#include "bench/harness/sluice_side.h"

#include <algorithm>

#include "bench/harness/ring_side.h"

namespace sluice::bench {

TopicOptions pingpong_topic_options(const BenchOptions& options) {
  // The ring's memory: a window of 4 segments of a quarter of its size, old
  // ones recycled (retention by bytes; the reader is always caught up).
  // Fresh memory costs much on this class of VM even prefaulted: one
  // segment holding the whole run took a 4 KiB round trip from 2.5 to 25 us
  // (docs/architecture.md, "Large values").
  TopicOptions t;
  t.partitions = 1;
  t.segment_bytes = options.segment_bytes != 0 ? options.segment_bytes : static_cast<uint32_t>(kRingBytes / 4);
  t.retention_bytes = 4 * static_cast<int64_t>(t.segment_bytes);
  t.prefault_segments = options.prefault;
  return t;
}

TopicOptions throughput_topic_options(const BenchOptions& options) {
  TopicOptions t;
  t.partitions = 1;
  // The same memory as the ring by default: a window of 4 segments of a
  // quarter of its size each, so that both run in (or out of) cache alike.
  t.segment_bytes = options.segment_bytes != 0 ? options.segment_bytes : static_cast<uint32_t>(kRingBytes / 4);
  // Like the ring, whose producer waits when it is full: the producer may run
  // at most a window of 4 segments ahead of the reader's group. Retired
  // segments are recycled, so the log runs in the same memory throughout.
  t.retention_mode = RetentionMode::kBackPressure;
  t.retention_bytes = 4 * static_cast<int64_t>(t.segment_bytes);
  t.prefault_segments = options.prefault;
  return t;
}

ConsumerOptions bench_consumer_options(const BenchOptions& options) {
  ConsumerOptions c;
  c.wait = static_cast<WaitStrategy>(options.wait);
  c.verify_checksums = options.verify;
  c.auto_commit = false;
  return c;
}

std::optional<Bus> open_bus_or_fail(PairChannel& ch, const std::string& dir) {
  auto bus = Bus::open(dir);
  if (!bus) {
    ch.fail("Bus::open(" + dir + "): " + bus.error().to_string());
    return std::nullopt;
  }
  return std::move(*bus);
}

bool make_bench_producer(PairChannel& ch, Bus& bus, const std::string& topic, const ProducerOptions& popts,
                         bool transactional, const std::string& identity, BenchProducer* out) {
  if (transactional) {
    TransactionOptions to;
    to.producer = popts;
    auto t = bus.create_transactional_producer(identity, to);
    if (!t) return ch.fail("create_transactional_producer: " + t.error().to_string());
    out->tx.emplace(std::move(*t));
    auto p = out->tx->producer(topic);
    if (!p) return ch.fail("producer: " + p.error().to_string());
    out->producer = *p;
    return true;
  }
  auto p = bus.create_producer(topic, popts);
  if (!p) return ch.fail("create_producer: " + p.error().to_string());
  out->plain.emplace(std::move(*p));
  out->producer = &*out->plain;
  return true;
}

size_t poll_some(Consumer& consumer, std::span<RecordView> out, const BenchOptions& options, PairChannel& ch,
                 SpinBudget& budget) {
  if (options.wait == ipc::WaitStrategy::kBusySpin) {
    for (;;) {
      auto n = consumer.try_poll(out);
      if (!n) {
        ch.fail("try_poll: " + n.error().to_string());
        return 0;
      }
      if (*n > 0) return *n;
      if (!budget.keep_going()) return 0;
      ipc::cpu_relax();
    }
  }
  for (;;) {
    auto n = consumer.poll(out, 1'000'000);
    if (!n) {
      ch.fail("poll: " + n.error().to_string());
      return 0;
    }
    if (*n > 0) return *n;
    if (ch.should_abort()) return 0;
  }
}

}  // namespace sluice::bench
