// Appending 64-byte records to one partition: copying send(), several
// threads at once, zero-copy claim/commit, batches of 16, and an exclusive
// single writer. Items are records; bytes are value bytes.
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "micro_bus.h"

namespace sluice::micro {
namespace {

constexpr uint32_t kValueBytes = 64;
const std::string kValue(kValueBytes, 'v');

ProducerOptions options(bool exclusive, bool idempotent = false) {
  ProducerOptions o;
  o.exclusive = exclusive;
  o.idempotent = idempotent;
  return o;
}

std::optional<Producer> make_producer(benchmark::State& state, MicroBus& env, const ProducerOptions& o) {
  auto p = env.bus().create_producer(env.topic(), o);
  if (!p) {
    skip(state, "create_producer: " + p.error().to_string());
    return std::nullopt;
  }
  return std::move(*p);
}

// Calls append(producer) once per iteration; each call appends `records`
// records of kValueBytes. The first append (writer lock, segment creation
// and mapping) is not timed, nor is moving to a fresh topic when the
// segment is about to fill.
template <class Append>
void append_loop(benchmark::State& state, const std::string& key, const ProducerOptions& opts, uint32_t records,
                 Append&& append) {
  MicroBus& env = MicroBus::get(key);
  const uint64_t bytes = frame_bytes(kValueBytes, records);
  std::optional<Producer> producer;
  auto start_topic = [&] {
    producer.reset();
    env.next_topic();
    producer = make_producer(state, env, opts);
    if (!producer) return false;
    (void)env.room_for(bytes);
    if (!append(*producer)) return skip(state, "append: " + producer->last_error().to_string());
    return true;
  };
  if (!env.room_for(bytes * 2) && !start_topic()) return;
  if (!producer) {
    producer = make_producer(state, env, opts);
    if (!producer) return;
    if (!append(*producer)) return (void)skip(state, "append: " + producer->last_error().to_string());
  }
  for (auto _ : state) {
    if (!env.room_for(bytes)) {
      state.PauseTiming();
      const bool ok = start_topic();
      state.ResumeTiming();
      if (!ok) break;
    }
    if (!append(*producer)) {
      skip(state, "append: " + producer->last_error().to_string());
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * records);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * records * kValueBytes);
}

bool send_copy(Producer& p) { return p.send(Message{{}, kValue}).ok(); }

void BM_Append_Copy_1producer(benchmark::State& state) { append_loop(state, "copy", options(false), 1, send_copy); }
void BM_Append_Exclusive(benchmark::State& state) { append_loop(state, "exclusive", options(true), 1, send_copy); }
// Idempotent producers: the same sends with a pid, an epoch check after the
// claim and the partition entry's ring updated per frame.
void BM_Append_Idempotent(benchmark::State& state) {
  append_loop(state, "idempotent", options(false, true), 1, send_copy);
}
void BM_Append_IdempotentExclusive(benchmark::State& state) {
  append_loop(state, "idempotent-exclusive", options(true, true), 1, send_copy);
}

void BM_Append_ZeroCopy(benchmark::State& state) {
  Claim claim;
  ClaimSpec spec;
  spec.value_bytes = kValueBytes;
  append_loop(state, "zerocopy", options(false), 1, [&](Producer& p) {
    if (p.try_claim(spec, claim) != SendStatus::kOk) return false;
    std::memcpy(claim.value().data(), kValue.data(), kValueBytes);
    return claim.commit() == SendStatus::kOk;
  });
}

void BM_Append_Batch16(benchmark::State& state) {
  std::array<Message, 16> batch;
  for (Message& m : batch) m.value = kValue;
  append_loop(state, "batch16", options(false), 16, [&](Producer& p) { return p.send_batch(batch).ok(); });
}

// Several threads append to one partition at once, each with its own
// Producer (a Producer is not thread-safe): the main thread runs the timed
// loop, the helpers append until it is done. Google Benchmark's time
// column is the main thread's; the counter records_per_s_wall is every
// thread's records per second of wall time. A run that fills the segment
// rolls it (timed); the next run starts on a fresh topic.
void append_copy_threads(benchmark::State& state, int threads) {
  MicroBus& env = MicroBus::get("copy-threads");
  if (!env.room_for(0) || env.used() > kSegmentBytes / 2) env.next_topic();
  std::vector<Producer> producers;
  for (int t = 0; t < threads; ++t) {
    std::optional<Producer> p = make_producer(state, env, options(false));
    if (!p) return;
    if (!send_copy(*p)) return (void)skip(state, "send: " + p->last_error().to_string());
    producers.push_back(std::move(*p));
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> helper_records{0};
  std::atomic<bool> helper_failed{false};
  std::vector<std::thread> helpers;
  for (int t = 1; t < threads; ++t) {
    helpers.emplace_back([&, t] {
      uint64_t n = 0;
      // relaxed: a stop flag; the join below orders everything else.
      while (!stop.load(std::memory_order_relaxed)) {
        if (!send_copy(producers[t])) {
          helper_failed.store(true, std::memory_order_relaxed);
          break;
        }
        ++n;
      }
      helper_records.fetch_add(n, std::memory_order_relaxed);
    });
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    if (!send_copy(producers[0])) {
      skip(state, "send: " + producers[0].last_error().to_string());
      break;
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  stop.store(true, std::memory_order_relaxed);
  for (auto& h : helpers) h.join();
  if (helper_failed.load(std::memory_order_relaxed)) skip(state, "a helper thread's send failed");
  const uint64_t records = static_cast<uint64_t>(state.iterations()) + helper_records.load(std::memory_order_relaxed);
  (void)env.room_for(records * frame_bytes(kValueBytes));
  const double seconds = std::chrono::duration<double>(t1 - t0).count();
  state.counters["records_per_s_wall"] = seconds > 0 ? static_cast<double>(records) / seconds : 0;
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

[[maybe_unused]] const bool registered = [] {
  benchmark::RegisterBenchmark("BM_Append_Copy/64B/1producer", BM_Append_Copy_1producer);
  benchmark::RegisterBenchmark("BM_Append_Copy/64B/2threads", [](benchmark::State& s) { append_copy_threads(s, 2); });
  benchmark::RegisterBenchmark("BM_Append_Copy/64B/4threads", [](benchmark::State& s) { append_copy_threads(s, 4); });
  benchmark::RegisterBenchmark("BM_Append_ZeroCopy/64B", BM_Append_ZeroCopy);
  benchmark::RegisterBenchmark("BM_Append_Batch16/64B", BM_Append_Batch16);
  benchmark::RegisterBenchmark("BM_Append_Exclusive/64B", BM_Append_Exclusive);
  benchmark::RegisterBenchmark("BM_Append_Idempotent/64B", BM_Append_Idempotent);
  benchmark::RegisterBenchmark("BM_Append_IdempotentExclusive/64B", BM_Append_IdempotentExclusive);
  return true;
}();

}  // namespace
}  // namespace sluice::micro
