#include "bench/harness/results.h"

#include <algorithm>
#include <cmath>

#include "bench/harness/process_pair.h"

namespace sluice::bench {

void summarize_latency(std::vector<uint64_t>& ticks, double ns_per_tick, LatencyResult* out) {
  out->samples = ticks.size();
  if (ticks.empty()) return;
  std::sort(ticks.begin(), ticks.end());
  // Nearest rank: the smallest sample with at least p of all samples <= it.
  auto at = [&](double p) {
    const double rank = std::ceil(p * static_cast<double>(ticks.size()));
    const size_t i = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
    return static_cast<double>(ticks[std::min(i, ticks.size() - 1)]) * ns_per_tick;
  };
  long double sum = 0;
  for (uint64_t t : ticks) sum += t;
  out->min_ns = static_cast<double>(ticks.front()) * ns_per_tick;
  out->mean_ns = static_cast<double>(sum / ticks.size()) * ns_per_tick;
  out->p50_ns = at(0.50);
  out->p99_ns = at(0.99);
  out->p999_ns = at(0.999);
  out->max_ns = static_cast<double>(ticks.back()) * ns_per_tick;
}

LatencyResult latency_result(std::string system, uint32_t value_bytes, const PairOutcome& outcome,
                             std::vector<uint64_t>& ticks, double ns_per_tick) {
  LatencyResult r;
  r.system = std::move(system);
  r.value_bytes = value_bytes;
  r.pinned = outcome.pinned;
  r.ok = outcome.ok;
  r.error = outcome.error;
  if (r.ok) summarize_latency(ticks, ns_per_tick, &r);
  return r;
}

}  // namespace sluice::bench
