// How the workloads use sluice: the topic and consumer settings they run
// with, opening a bus inside one side of a process pair, and waiting for
// records with the configured wait strategy.
#pragma once

#include <sluice/sluice.h>

#include <optional>
#include <span>
#include <string>

#include "bench/harness/bench_options.h"
#include "bench/harness/process_pair.h"

namespace sluice::bench {

// Topics of one partition, prefaulted per options.prefault, in segments of
// 4 MiB (--segment-bytes sets another size) of which retention keeps a
// window of four, the ring's 16 MiB in all, so that both run in the same
// amount of cache and rolls recycle retired segments (with the library's
// default of 64 MiB segments the window is 256 MiB and streams through DRAM).
// Pingpong: retention by bytes; the reader is always caught up. Throughput:
// back-pressure, so that the producer waits for the reader as the ring's does.
TopicOptions pingpong_topic_options(const BenchOptions& options);
TopicOptions throughput_topic_options(const BenchOptions& options);
// Readers' settings: checksums verified unless --no-verify, waiting with
// options.wait, no auto commit.
ConsumerOptions bench_consumer_options(const BenchOptions& options);

// Opens the bus in `dir` from inside a side; fails the channel on error.
std::optional<Bus> open_bus_or_fail(PairChannel& ch, const std::string& dir);

// The producer a side sends with: a plain (or idempotent) one per `popts`,
// or with `transactional`, the producer of the transactional identity
// `identity` (the side then brackets its sends with tx->begin()/commit()).
struct BenchProducer {
  std::optional<Producer> plain;
  std::optional<TransactionalProducer> tx;
  Producer* producer = nullptr;
};
// False after failing the channel.
bool make_bench_producer(PairChannel& ch, Bus& bus, const std::string& topic, const ProducerOptions& popts,
                         bool transactional, const std::string& identity, BenchProducer* out);

// Waits for at least one record: try_poll in a loop for spin, poll() with
// the consumer's strategy otherwise. Returns how many arrived, or 0 after
// failing the channel (poll error, dead peer, deadline).
size_t poll_some(Consumer& consumer, std::span<RecordView> out, const BenchOptions& options, PairChannel& ch,
                 SpinBudget& budget);

// "sluice/shared" or "sluice/exclusive", with "idempotent-" for idempotent producers.
inline const char* sluice_system_name(bool exclusive, bool idempotent = false) {
  if (idempotent) return exclusive ? "sluice/idempotent-exclusive" : "sluice/idempotent-shared";
  return exclusive ? "sluice/exclusive" : "sluice/shared";
}

}  // namespace sluice::bench
