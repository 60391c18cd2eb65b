// What each workload measured; report.h prints them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::bench {

// Round trips of one system at one size, summarised from every sample.
struct LatencyResult {
  std::string system;  // "ring", "sluice/shared", "sluice/exclusive"
  uint32_t value_bytes = 0;
  uint64_t samples = 0;
  double min_ns = 0, mean_ns = 0, p50_ns = 0, p99_ns = 0, p999_ns = 0, max_ns = 0;
  bool pinned = false;
  bool ok = false;
  std::string error;
};

// Records moved from side A to side B, timed by B from its first to its
// last record.
struct ThroughputResult {
  std::string system;  // "ring", "ring/publish-every-32", "sluice/exclusive", "sluice/shared"
  uint32_t value_bytes = 0;
  uint64_t messages = 0;
  double seconds = 0;
  double msgs_per_s = 0;
  double value_gb_per_s = 0;  // value bytes only, 1 GB = 1e9 bytes
  double producer_seconds = 0;  // A's own time to hand over every record (diagnostic)
  bool pinned = false;
  bool ok = false;
  std::string error;
};

struct MemcpyResult {
  bool ran = false;
  uint32_t block_bytes = 0;
  uint64_t buffer_bytes = 0;
  uint64_t total_bytes = 0;
  double gb_per_s = 0;
};

// Sorts `ticks` and fills the percentiles (nearest rank) in ns.
void summarize_latency(std::vector<uint64_t>& ticks, double ns_per_tick, LatencyResult* out);

struct PairOutcome;
// A round-trip run's result: the pair's outcome and, when it went well, the
// percentiles of `ticks` (sorted in place).
LatencyResult latency_result(std::string system, uint32_t value_bytes, const PairOutcome& outcome,
                             std::vector<uint64_t>& ticks, double ns_per_tick);

}  // namespace sluice::bench
