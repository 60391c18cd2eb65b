// The options of `sluice bench`, parsed from its argument vector.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ipc/wait_strategy.h"

namespace sluice::bench {

struct BenchOptions {
  bool pingpong = true;
  bool throughput = true;
  bool queue = true;
  bool eos = true;         // producing with idempotence (later transactions) against plain, 64 B       // the work-queue workload (against Boost.Interprocess message_queue)
  bool run_ring = true;    // the baselines (ring, memcpy, Boost message_queue)
  bool run_sluice = true;
  // Which log writer modes the pingpong and throughput workloads run
  // (--systems sluice/exclusive or sluice/shared picks one).
  bool run_exclusive = true;
  bool run_shared = true;
  std::vector<uint32_t> sizes{64, 4096};  // value bytes per record
  uint64_t samples = 200'000;             // pingpong round trips measured, per system and size
  uint64_t warmup = 20'000;               // pingpong round trips before measuring
  uint64_t messages = 20'000'000;         // throughput records at <= 64 B; see messages_for()
  uint64_t queue_messages = 2'000'000;    // queue throughput: timed messages per run
  uint64_t queue_samples = 50'000;        // queue latency: round trips measured per system
  std::vector<uint32_t> queue_workers{1, 2, 4};  // queue throughput: worker processes per run
  ipc::WaitStrategy wait = ipc::WaitStrategy::kBusySpin;
  bool json = false;
  std::string dir;                        // empty: a fresh directory under /dev/shm
  uint32_t segment_bytes = 0;             // sluice segment size; 0: see sluice_side.h
  bool prefault = true;                   // sluice topics' prefault_segments
  bool verify = true;                     // sluice readers' verify_checksums
  int64_t workload_timeout_ms = 120'000;  // per two-process run
};

// Records per throughput run: `messages` up to 64 B values; above that the
// count shrinks so that every size moves messages x 64 value bytes (1.28 GB:
// 312,500 records at 4 KiB with the defaults), which keeps the run to a few
// seconds.
uint64_t messages_for(const BenchOptions& options, uint32_t value_bytes);

const char* wait_name(ipc::WaitStrategy w);

// Parses argv[1..]; argv[0] is "bench". Returns false with a one-line
// message in *error on bad input; sets *help when --help was given.
bool parse_bench_options(int argc, char** argv, BenchOptions* out, bool* help, std::string* error);

// The text `sluice bench --help` prints.
const char* bench_usage();

}  // namespace sluice::bench
