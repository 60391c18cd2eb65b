// Pingpong: side A sends a record, side B sends it back, A times every round
// trip with the TSC and keeps every sample (preallocated, no sampling).
// The first 8 bytes of each value carry the trip's number; A checks it.
#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "bench/harness/ring_side.h"
#include "bench/harness/sluice_side.h"
#include "bench/harness/tsc_clock.h"
#include "bench/harness/workloads.h"

namespace sluice::bench {

namespace {

bool check_echo(PairChannel& ch, const void* data, uint32_t length, uint32_t want_length, uint64_t want_seq) {
  uint64_t got = 0;
  if (length >= sizeof got) std::memcpy(&got, data, sizeof got);
  if (length != want_length || got != want_seq)
    return ch.fail("round trip " + std::to_string(want_seq) + " came back as " + std::to_string(got) + " (" +
                   std::to_string(length) + " bytes)");
  return true;
}

}  // namespace

LatencyResult run_ring_pingpong(const BenchOptions& options, uint32_t value_bytes) {
  const uint64_t ring_bytes = ring_bytes_for(value_bytes);
  PairRegion region(2 * ring_bytes);
  const uint32_t slots = ring_slot_count(value_bytes, kRingBytes);
  SpscRingHeader* ping = nullptr;
  SpscRingHeader* pong = nullptr;
  if (region.ok()) {
    ping = init_spsc_ring(region.user(), value_bytes, slots);
    pong = init_spsc_ring(region.user() + ring_bytes, value_bytes, slots);
  }
  const bool block = options.wait == ipc::WaitStrategy::kBlock;
  const uint64_t total = options.warmup + options.samples;
  std::vector<uint64_t> ticks(options.samples);
  TscCalibration cal;

  auto side_a = [&](PairChannel& ch) {
    SpscProducer tx(ping, 1, block ? &ping->wakeup : nullptr);
    SpscConsumer rx(pong, 1);
    std::vector<std::byte> msg(value_bytes, std::byte{0xab});
    SpinBudget budget(ch);
    if (!ch.sync(1)) return false;
    for (uint64_t i = 0; i < total; ++i) {
      if (i == options.warmup) cal.start();
      std::memcpy(msg.data(), &i, sizeof i);
      const uint64_t t0 = tsc_now();
      std::byte* slot = ring_wait_claim(tx, value_bytes, budget);
      if (slot == nullptr) return false;
      std::memcpy(slot, msg.data(), value_bytes);
      tx.commit();
      uint32_t len;
      const std::byte* echo = ring_wait_front(rx, pong, &len, options, ch, budget);
      if (echo == nullptr || !check_echo(ch, echo, len, value_bytes, i)) return false;
      rx.release();
      const uint64_t t1 = tsc_now();
      if (i >= options.warmup) ticks[i - options.warmup] = t1 - t0;
    }
    cal.stop();
    return ch.sync(2);
  };
  auto side_b = [&](PairChannel& ch) {
    SpscConsumer rx(ping, 1);
    SpscProducer tx(pong, 1, block ? &pong->wakeup : nullptr);
    SpinBudget budget(ch);
    if (!ch.sync(1)) return false;
    for (uint64_t i = 0; i < total; ++i) {
      uint32_t len;
      const std::byte* m = ring_wait_front(rx, ping, &len, options, ch, budget);
      if (m == nullptr) return false;
      std::byte* slot = ring_wait_claim(tx, len, budget);
      if (slot == nullptr) return false;
      std::memcpy(slot, m, len);
      tx.commit();
      rx.release();
    }
    return ch.sync(2);
  };
  const PairOutcome outcome = run_process_pair(region, side_a, side_b, options.workload_timeout_ms);
  return latency_result("ring", value_bytes, outcome, ticks, cal.ns_per_tick());
}

LatencyResult run_sluice_pingpong(const BenchOptions& options, uint32_t value_bytes, bool exclusive,
                                  const std::string& bus_dir, bool idempotent, uint32_t txn_records) {
  PairRegion region(0);
  // Round trips: with transactions of N records, at most 2,000,000 records
  // move, and the warm-up shrinks in proportion.
  const uint32_t per_trip = txn_records > 0 ? txn_records : 1;
  const uint64_t samples = std::min<uint64_t>(options.samples, std::max<uint64_t>(1000, 2'000'000 / per_trip));
  const uint64_t warmup = txn_records > 0 ? options.warmup * samples / std::max<uint64_t>(options.samples, 1)
                                          : options.warmup;
  const uint64_t total = warmup + samples;
  std::vector<uint64_t> ticks(samples);
  TscCalibration cal;
  ProducerOptions popts;
  popts.exclusive = exclusive;
  popts.idempotent = idempotent;

  auto side_a = [&](PairChannel& ch) {
    auto bus = open_bus_or_fail(ch, bus_dir);
    if (!bus) return false;
    for (const char* t : {"ping", "pong"})
      if (auto ok = bus->create_topic(t, pingpong_topic_options(options)); !ok)
        return ch.fail(std::string("create_topic ") + t + ": " + ok.error().to_string());
    BenchProducer made;
    if (!make_bench_producer(ch, *bus, "ping", popts, txn_records > 0, "bench-pingpong", &made)) return false;
    Producer* const producer = made.producer;
    std::optional<TransactionalProducer>& tx = made.tx;
    auto consumer = bus->create_consumer("pong", "", bench_consumer_options(options));
    if (!consumer) return ch.fail("create_consumer: " + consumer.error().to_string());
    std::vector<char> msg(value_bytes, 'p');
    RecordView echo[1];
    SpinBudget budget(ch);
    if (!ch.sync(1) || !ch.sync(2)) return false;  // 1: topics exist; 2: B is ready
    for (uint64_t i = 0; i < total; ++i) {
      if (i == warmup) cal.start();
      std::memcpy(msg.data(), &i, sizeof i);
      const uint64_t t0 = tsc_now();
      if (tx)
        if (auto ok = tx->begin(); !ok) return ch.fail("begin: " + ok.error().to_string());
      for (uint32_t k = 0; k < per_trip; ++k) {
        const SendResult sent = producer->send(Message{{}, std::string_view(msg.data(), msg.size())});
        if (!sent.ok()) return ch.fail("send: " + producer->last_error().to_string());
      }
      if (tx)
        if (auto ok = tx->commit(); !ok) return ch.fail("commit: " + ok.error().to_string());
      if (poll_some(*consumer, echo, options, ch, budget) == 0) return false;
      if (!check_echo(ch, echo[0].value.data(), static_cast<uint32_t>(echo[0].value.size()), value_bytes, i))
        return false;
      const uint64_t t1 = tsc_now();
      if (i >= warmup) ticks[i - warmup] = t1 - t0;
    }
    cal.stop();
    return ch.sync(3);
  };
  auto side_b = [&](PairChannel& ch) {
    if (!ch.sync(1)) return false;
    auto bus = open_bus_or_fail(ch, bus_dir);
    if (!bus) return false;
    auto producer = bus->create_producer("pong", popts);
    if (!producer) return ch.fail("create_producer: " + producer.error().to_string());
    auto consumer = bus->create_consumer("ping", "", bench_consumer_options(options));
    if (!consumer) return ch.fail("create_consumer: " + consumer.error().to_string());
    RecordView in[1];
    SpinBudget budget(ch);
    if (!ch.sync(2)) return false;
    for (uint64_t i = 0; i < total; ++i) {
      // A transaction's records arrive together at its commit (read
      // committed): the echo follows the last one.
      for (uint32_t k = 0; k < per_trip; ++k)
        if (poll_some(*consumer, in, options, ch, budget) == 0) return false;
      const SendResult sent = producer->send(Message{{}, in[0].value});
      if (!sent.ok()) return ch.fail("send: " + producer->last_error().to_string());
    }
    return ch.sync(3);
  };
  const PairOutcome outcome = run_process_pair(region, side_a, side_b, options.workload_timeout_ms);
  const std::string system = txn_records > 0 ? "sluice/txn-" + std::to_string(txn_records)
                                             : std::string(sluice_system_name(exclusive, idempotent));
  return latency_result(system, value_bytes, outcome, ticks, cal.ns_per_tick());
}

}  // namespace sluice::bench
