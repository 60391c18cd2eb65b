// A work queue's per-message cost on one thread: publish a batch of 64
// messages of 64 B, receive them in one call and ack each. No second
// process and no waiting, so the figure is the CPU work of the publish,
// receive and ack paths (slot CASes, counters, floor, clock reads, the log
// append and read), which `sluice bench --workload queue` measures across
// processes where placement and cache transfers add their own noise.
#include <array>
#include <cstring>
#include <vector>

#include "micro_bus.h"

namespace sluice::micro {
namespace {

constexpr size_t kBatch = 64;

void BM_Queue_PublishReceiveAck(benchmark::State& state) {
  MicroBus& env = MicroBus::get("queue");
  static uint32_t generation = 0;
  const std::string name = "mq" + std::to_string(++generation);
  QueueOptions qo;
  qo.segment_bytes = 4u << 20;
  qo.max_depth_bytes = 32LL << 20;
  qo.dead_letter_queue = "-";
  if (auto ok = env.bus().create_queue(name, qo); !ok) return (void)skip(state, "create_queue: " + ok.error().to_string());
  auto pub = env.bus().create_queue_publisher(name);
  if (!pub) return (void)skip(state, "create_queue_publisher: " + pub.error().to_string());
  WorkerOptions wo;
  wo.wait = WaitStrategy::kBusySpin;
  auto worker = env.bus().create_worker(name, wo);
  if (!worker) return (void)skip(state, "create_worker: " + worker.error().to_string());
  std::array<char, 64> value{};
  std::vector<Delivery> batch(kBatch);
  uint64_t seq = 0;
  for (auto _ : state) {
    for (size_t k = 0; k < kBatch; ++k, ++seq) {
      std::memcpy(value.data(), &seq, sizeof seq);
      QueueMessage m;
      m.value = std::string_view(value.data(), value.size());
      if (!pub->publish(m).ok()) return (void)skip(state, "publish: " + pub->last_error().to_string());
    }
    auto n = worker->receive(batch);
    if (!n || *n != kBatch) return (void)skip(state, "receive: " + (n ? std::to_string(*n) : n.error().to_string()));
    for (Delivery& d : batch)
      if (auto ok = d.ack(); !ok) return (void)skip(state, "ack: " + ok.error().to_string());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
}

[[maybe_unused]] const bool registered = [] {
  benchmark::RegisterBenchmark("BM_Queue_PublishReceiveAck/64B", BM_Queue_PublishReceiveAck);
  return true;
}();

}  // namespace
}  // namespace sluice::micro
