// `sluice demo`'s exactly-once act (docs/exactly-once.md, sections 4 and
// 9): an input topic, transformer processes doing consume-transform-produce
// in transactions into an output topic, one of them SIGKILLed with a
// transaction open and restarted under the same transactional id, then the
// output checked read-committed. The processes are the chaos run's roles
// (chaos.h) in a short, scripted run instead of a random one.
#pragma once

#include <sluice/sluice.h>

#include <cstdint>
#include <string>

#include "demo_checks.h"
#include "demo_processes.h"

namespace sluice::cli::demo {

struct PipelineArgs {
  uint64_t records_per_partition = 500;  // input records; `in` has 4 partitions
  uint32_t transformers = 2;             // 2-4; the last one is SIGKILLed
  uint32_t max_txn_records = 32;         // records per transaction (one poll), at most
};

// Runs the act on `bus` (the one in `dir`), which may hold the act's topics
// from an earlier run (they are made afresh). Prints what happens, the
// checker's invariants and a summary; adds each broken expectation to
// `checks`. Returns kExitOk, or an error exit code when the act could not
// be run at all. Every wait ends by `deadline`.
int run_pipeline_act(Bus& bus, const std::string& dir, const PipelineArgs& args, Deadline deadline, Checks& checks);

}  // namespace sluice::cli::demo
