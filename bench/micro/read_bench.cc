// Reading 64-byte records with try_poll: one record per call, and batches of
// 64. The partition is filled once, untimed; the reader verifies checksums
// (the default) and starts over at the beginning when it reaches the end.
#include <vector>

#include "micro_bus.h"

namespace sluice::micro {
namespace {

constexpr uint32_t kValueBytes = 64;
constexpr uint64_t kRecords = 4'000'000;

bool fill(benchmark::State& state, MicroBus& env) {
  const std::string value(kValueBytes, 'r');
  ProducerOptions o;
  o.exclusive = true;
  auto p = env.bus().create_producer(env.topic(), o);
  if (!p) return skip(state, "create_producer: " + p.error().to_string());
  for (uint64_t i = 0; i < kRecords; ++i)
    if (!p->send(Message{{}, value}).ok()) return skip(state, "send: " + p->last_error().to_string());
  return true;
}

void read_loop(benchmark::State& state, size_t batch) {
  MicroBus& env = MicroBus::get("read");
  if (env.prefilled_records == 0) {
    if (!fill(state, env)) return;
    env.prefilled_records = kRecords;
  }
  ConsumerOptions o;
  o.wait = WaitStrategy::kBusySpin;
  o.auto_commit = false;
  auto c = env.bus().create_consumer(env.topic(), "", o);
  if (!c) return (void)skip(state, "create_consumer: " + c.error().to_string());
  std::vector<RecordView> out(batch);
  uint64_t records = 0;
  for (auto _ : state) {
    auto n = c->try_poll(out);
    if (!n) {
      skip(state, "try_poll: " + n.error().to_string());
      break;
    }
    if (*n == 0) {
      state.PauseTiming();
      c->seek_to_beginning();
      state.ResumeTiming();
      continue;
    }
    benchmark::DoNotOptimize(out[*n - 1].value.data());
    records += *n;
  }
  state.SetItemsProcessed(static_cast<int64_t>(records));
  state.SetBytesProcessed(static_cast<int64_t>(records * kValueBytes));
}

void BM_Read(benchmark::State& state) { read_loop(state, 1); }
void BM_Read_Batch64(benchmark::State& state) { read_loop(state, 64); }

[[maybe_unused]] const bool registered = [] {
  benchmark::RegisterBenchmark("BM_Read/64B", BM_Read);
  benchmark::RegisterBenchmark("BM_Read/64B/batch64", BM_Read_Batch64);
  return true;
}();

}  // namespace
}  // namespace sluice::micro
