// What the queue workload measured (queue_workload.cc); report.h prints it.
// Its latencies are LatencyResults (results.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::bench {

// Messages moved from one publisher to `workers` receivers, timed from the
// first to the last acknowledgement (sluice: Delivery::ack(); Boost: the
// receive itself, which is all a message_queue has).
struct QueueThroughputResult {
  std::string system;      // "sluice/queue" or "boost/message_queue"
  std::string wait;        // how receivers wait: "spin" or "block" (Boost: always "block")
  uint32_t workers = 0;
  uint32_t value_bytes = 0;
  uint32_t batch = 0;      // messages a receiver asks for at once (Boost: 1)
  uint64_t messages = 0;   // timed messages, after the warm-up
  uint64_t warmup = 0;     // messages sent and acknowledged before the timed ones
  std::string config;      // how the queue was set up, for the table
  double seconds = 0;      // first to last acknowledgement, over all receivers
  double msgs_per_s = 0;   // (messages - 1) / seconds
  double publisher_seconds = 0;    // the publisher's own time to hand every message over (diagnostic)
  uint64_t publisher_retries = 0;  // sluice: publishes refused with kBackPressured and retried
  std::vector<uint64_t> per_worker;  // timed messages each receiver acknowledged
  uint64_t redelivered = 0;  // sluice: from queue_stats() afterwards (leases that expired)
  uint64_t lease_lost = 0;
  std::string placement;   // CPU placement of the processes
  bool pinned = false;
  bool ok = false;
  std::string error;
};

}  // namespace sluice::bench
