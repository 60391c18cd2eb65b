// The workloads of `sluice bench`. Each two-process workload forks once and
// returns what it measured (ok = false with an error if it could not run).
// `bus_dir` is a fresh directory for this run's sluice bus; the caller
// removes it afterwards.
#pragma once

#include <cstdint>
#include <string>

#include "bench/harness/bench_options.h"
#include "bench/harness/queue_results.h"
#include "bench/harness/results.h"
#include "ipc/wait_strategy.h"

namespace sluice::bench {

// Round trips: A sends a record, B sends it back, A times each trip.
LatencyResult run_ring_pingpong(const BenchOptions& options, uint32_t value_bytes);
// `idempotent`: both sides' producers are idempotent. `txn_records` > 0: a
// round trip is a transaction of that many records from A (a transactional
// producer; shared writer unless `exclusive`) and one echo from B once it
// has read them all, read committed ("sluice/txn-N"); fewer round trips are
// timed so that a run moves at most 2,000,000 records (txn_round_trips()).
LatencyResult run_sluice_pingpong(const BenchOptions& options, uint32_t value_bytes, bool exclusive,
                                  const std::string& bus_dir, bool idempotent = false, uint32_t txn_records = 0);

// A produces as fast as it can, B consumes and times first to last record.
// publish_every: 1 for the per-message ring the targets refer to.
ThroughputResult run_ring_throughput(const BenchOptions& options, uint32_t value_bytes, uint32_t publish_every);
// `idempotent`: an idempotent producer; `txn_records` > 0: a transactional
// one committing every txn_records records ("sluice/txn-N"; shared writer
// unless `exclusive`). The eos workload's comparisons.
ThroughputResult run_sluice_throughput(const BenchOptions& options, uint32_t value_bytes, bool exclusive,
                                       const std::string& bus_dir, bool idempotent = false, uint32_t txn_records = 0);

// The queue workload (queue_workload.cc), 64 B values. Throughput: one
// publisher, `workers` receivers, options.queue_messages timed messages,
// each acknowledged once. Latency: A publishes, B receives, acks and
// publishes it back, A receives and acks; options.queue_samples round trips
// after queue_warmup_round_trips() (enough for the queues to recycle
// segments; Boost gets as many).
QueueThroughputResult run_sluice_queue_throughput(const BenchOptions& options, uint32_t workers,
                                                  ipc::WaitStrategy wait, const std::string& bus_dir);
QueueThroughputResult run_boost_mq_throughput(const BenchOptions& options, uint32_t receivers);
LatencyResult run_sluice_queue_latency(const BenchOptions& options, ipc::WaitStrategy wait,
                                       const std::string& bus_dir);
LatencyResult run_boost_mq_latency(const BenchOptions& options);
uint64_t queue_warmup_round_trips();

// One process copies block_bytes blocks into a buffer_bytes buffer, wrapping,
// until total_bytes are copied.
MemcpyResult run_memcpy_bandwidth(uint32_t block_bytes, uint64_t buffer_bytes, uint64_t total_bytes);

}  // namespace sluice::bench
