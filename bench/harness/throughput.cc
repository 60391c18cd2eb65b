// Throughput: side A produces as fast as it can, side B consumes and times
// from its first to its last measured record. A warm-up batch goes through
// first (mapping, positioning, caches) and is not timed. Each value's first
// 8 bytes carry its sequence number; B checks every one.
#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "bench/harness/ring_side.h"
#include "bench/harness/sluice_side.h"
#include "bench/harness/tsc_clock.h"
#include "bench/harness/workloads.h"

namespace sluice::bench {

namespace {

// What B reports, in the shared region; A reads it after B exited.
struct MeasuredByB {
  int64_t first_ns;
  int64_t last_ns;
  uint64_t received;
  uint64_t sink;  // touch_value()'s sum, kept so the reads are not optimised away
};

uint64_t warmup_messages(uint64_t messages) { return messages / 10 < 10'000 ? messages / 10 : 10'000; }

ThroughputResult finish(std::string system, uint32_t value_bytes, uint64_t messages, const PairOutcome& outcome,
                        const MeasuredByB& m, int64_t producer_ns) {
  ThroughputResult r;
  r.system = std::move(system);
  r.value_bytes = value_bytes;
  r.messages = messages;
  r.pinned = outcome.pinned;
  r.ok = outcome.ok;
  r.error = outcome.error;
  if (r.ok && m.received != messages) {
    r.ok = false;
    r.error = "side B received " + std::to_string(m.received) + " of " + std::to_string(messages);
  }
  if (r.ok) {
    r.seconds = static_cast<double>(m.last_ns - m.first_ns) / 1e9;
    // Intervals between the first and the last record: messages - 1.
    const double n = static_cast<double>(messages - 1);
    r.msgs_per_s = r.seconds > 0 ? n / r.seconds : 0;
    r.value_gb_per_s = r.msgs_per_s * value_bytes / 1e9;
    r.producer_seconds = static_cast<double>(producer_ns) / 1e9;
  }
  return r;
}

// Reads one word of every cache line of a value, as a consumer that uses it
// would: the lines have to come over from the producer's core. The sum goes
// to `sink` so that the reads stay.
inline void touch_value(const std::byte* data, uint32_t bytes, uint64_t* sink) {
  uint64_t acc = 0;
  for (uint32_t off = 0; off + sizeof(uint64_t) <= bytes; off += 64) {
    uint64_t w;
    std::memcpy(&w, data + off, sizeof w);
    acc ^= w;
  }
  *sink += acc;
}

bool check_seq(PairChannel& ch, const void* data, uint64_t want) {
  uint64_t got;
  std::memcpy(&got, data, sizeof got);
  if (got != want)
    return ch.fail("expected record " + std::to_string(want) + ", got " + std::to_string(got));
  return true;
}

}  // namespace

ThroughputResult run_ring_throughput(const BenchOptions& options, uint32_t value_bytes, uint32_t publish_every) {
  const uint64_t n = messages_for(options, value_bytes);
  const uint64_t w = warmup_messages(n);
  PairRegion region(4096 + ring_bytes_for(value_bytes));
  SpscRingHeader* ring = nullptr;
  auto* measured = reinterpret_cast<MeasuredByB*>(region.user());
  if (region.ok())
    ring = init_spsc_ring(region.user() + 4096, value_bytes, ring_slot_count(value_bytes, kRingBytes));
  const bool block = options.wait == ipc::WaitStrategy::kBlock;
  int64_t producer_ns = 0;  // side A runs in this process

  auto side_a = [&](PairChannel& ch) {
    SpscProducer tx(ring, publish_every, block ? &ring->wakeup : nullptr);
    std::vector<std::byte> msg(value_bytes, std::byte{0x5a});
    SpinBudget budget(ch);
    auto produce = [&](uint64_t from, uint64_t to) {
      for (uint64_t i = from; i < to; ++i) {
        std::memcpy(msg.data(), &i, sizeof i);
        std::byte* slot = ring_wait_claim(tx, value_bytes, budget);
        if (slot == nullptr) return false;
        std::memcpy(slot, msg.data(), value_bytes);
        tx.commit();
      }
      tx.publish();
      return true;
    };
    if (!ch.sync(1) || !produce(0, w) || !ch.sync(2)) return false;
    const int64_t t0 = steady_ns();
    if (!produce(w, w + n)) return false;
    producer_ns = steady_ns() - t0;
    return ch.sync(3);
  };
  auto side_b = [&](PairChannel& ch) {
    SpscConsumer rx(ring, publish_every);
    SpinBudget budget(ch);
    MeasuredByB m{0, 0, 0, 0};
    uint64_t sink = 0;
    auto consume = [&](uint64_t from, uint64_t to, bool timed) {
      for (uint64_t i = from; i < to; ++i) {
        uint32_t len;
        const std::byte* msg = ring_wait_front(rx, ring, &len, options, ch, budget);
        if (msg == nullptr) return false;
        if (timed && i == from) m.first_ns = steady_ns();
        if (!check_seq(ch, msg, i)) return false;
        touch_value(msg, value_bytes, &sink);
        rx.release();
      }
      if (timed) {
        m.last_ns = steady_ns();
        m.received = to - from;
      }
      return true;
    };
    if (!ch.sync(1) || !consume(0, w, false) || !ch.sync(2)) return false;
    if (!consume(w, w + n, true)) return false;
    m.sink = sink;
    *measured = m;
    return ch.sync(3);
  };
  const PairOutcome outcome = run_process_pair(region, side_a, side_b, options.workload_timeout_ms);
  const MeasuredByB m = region.ok() ? *measured : MeasuredByB{};
  std::string name = publish_every == 1 ? "ring" : "ring/publish-every-" + std::to_string(publish_every);
  return finish(std::move(name), value_bytes, n, outcome, m, producer_ns);
}

ThroughputResult run_sluice_throughput(const BenchOptions& options, uint32_t value_bytes, bool exclusive,
                                       const std::string& bus_dir, bool idempotent, uint32_t txn_records) {
  // A transaction per txn_records records: at most 2,000,000 records, so that
  // transactions of one record stay within the run's time.
  const uint64_t n = txn_records > 0 ? std::min<uint64_t>(messages_for(options, value_bytes), 2'000'000)
                                     : messages_for(options, value_bytes);
  const uint64_t w = warmup_messages(n);
  PairRegion region(4096);
  auto* measured = reinterpret_cast<MeasuredByB*>(region.user());
  ProducerOptions popts;
  popts.exclusive = exclusive;
  popts.idempotent = idempotent;
  popts.back_pressure_timeout_ns = 10'000'000'000;  // wait for the reader, as the ring's producer does
  int64_t producer_ns = 0;  // side A runs in this process

  auto side_a = [&](PairChannel& ch) {
    auto bus = open_bus_or_fail(ch, bus_dir);
    if (!bus) return false;
    if (auto ok = bus->create_topic("bench", throughput_topic_options(options)); !ok)
      return ch.fail("create_topic: " + ok.error().to_string());
    BenchProducer made;
    if (!make_bench_producer(ch, *bus, "bench", popts, txn_records > 0, "bench-tx", &made)) return false;
    Producer* const producer = made.producer;
    std::optional<TransactionalProducer>& tx = made.tx;
    std::vector<char> msg(value_bytes, 'z');
    auto produce = [&](uint64_t from, uint64_t to) {
      for (uint64_t i = from; i < to; ++i) {
        if (tx && (i - from) % txn_records == 0)
          if (auto ok = tx->begin(); !ok) return ch.fail("begin: " + ok.error().to_string());
        std::memcpy(msg.data(), &i, sizeof i);
        const SendResult sent = producer->send(Message{{}, std::string_view(msg.data(), msg.size())});
        if (!sent.ok()) return ch.fail("send: " + producer->last_error().to_string());
        if (tx && ((i - from) % txn_records == txn_records - 1 || i + 1 == to))
          if (auto ok = tx->commit(); !ok) return ch.fail("commit: " + ok.error().to_string());
      }
      return true;
    };
    if (!ch.sync(1) || !ch.sync(2) || !produce(0, w) || !ch.sync(3)) return false;
    const int64_t t0 = steady_ns();
    if (!produce(w, w + n)) return false;
    producer_ns = steady_ns() - t0;
    return ch.sync(4);
  };
  auto side_b = [&](PairChannel& ch) {
    if (!ch.sync(1)) return false;
    auto bus = open_bus_or_fail(ch, bus_dir);
    if (!bus) return false;
    uint64_t resets = 0;
    ConsumerOptions copts = bench_consumer_options(options);
    copts.on_event = [&](const ConsumerEvent& e) {
      if (e.kind == ConsumerEvent::Kind::kOffsetReset) ++resets;
    };
    // A group, so that the back-pressured producer knows how far B has read.
    auto consumer = bus->create_consumer("bench", "bench-reader", copts);
    if (!consumer) return ch.fail("create_consumer: " + consumer.error().to_string());
    RecordView batch[64];
    SpinBudget budget(ch);
    MeasuredByB m{0, 0, 0, 0};
    uint64_t sink = 0;
    auto consume = [&](uint64_t from, uint64_t to, bool timed) {
      uint64_t i = from;
      while (i < to) {
        const size_t got = poll_some(*consumer, batch, options, ch, budget);
        if (got == 0) return false;
        if (timed && i == from) m.first_ns = steady_ns();
        for (size_t k = 0; k < got; ++k, ++i) {
          const std::string_view v = batch[k].value;
          if (resets != 0)
            return ch.fail("offset reset at record " + std::to_string(i) +
                           ": retention removed records B had not read (B fell a retention window behind)");
          if (v.size() != value_bytes || !check_seq(ch, v.data(), i)) return false;
          touch_value(reinterpret_cast<const std::byte*>(v.data()), value_bytes, &sink);
        }
        consumer->commit_async();  // one atomic store per partition: lets the producer on
      }
      if (resets != 0)
        return ch.fail(std::to_string(resets) + " offset resets: retention removed unread records");
      if (timed) {
        m.last_ns = steady_ns();
        m.received = i - from;
      }
      return true;
    };
    if (!ch.sync(2) || !consume(0, w, false) || !ch.sync(3)) return false;
    if (!consume(w, w + n, true)) return false;
    m.sink = sink;
    *measured = m;
    return ch.sync(4);
  };
  const PairOutcome outcome = run_process_pair(region, side_a, side_b, options.workload_timeout_ms);
  const MeasuredByB m = region.ok() ? *measured : MeasuredByB{};
  const std::string system = txn_records > 0 ? "sluice/txn-" + std::to_string(txn_records)
                                             : std::string(sluice_system_name(exclusive, idempotent));
  return finish(system, value_bytes, n, outcome, m, producer_ns);
}

}  // namespace sluice::bench
