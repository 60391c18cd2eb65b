// The worker table of a queue's state file (queue_format.h, version 2): the
// counters of each process's Workers, which any process can read.
#pragma once

#include <sluice/queue.h>

#include <cstdint>
#include <vector>

#include "queue_format.h"

namespace sluice {

struct QueueState;

// Counts a new Worker of this process (this Bus handle) in: takes the slot of
// its registry slot, resetting it first if it holds an older owner's counts
// (queue_format.h: steps 1-3). Returns the slot, which lives as long as the
// mapping of `q`; nullptr for a version-1 state file (no table). Call
// detach_worker_slot() when the Worker goes. No allocation.
format::QueueWorkerSlot* attach_worker_slot(const QueueState& q, int64_t now_unix_ms) noexcept;
// The Worker counted in by attach_worker_slot() is gone; `held_back`: its
// breaker was counted in breakers_open.
void detach_worker_slot(format::QueueWorkerSlot* slot, bool held_back) noexcept;

// Every used slot of the table, read as queue_format.h says (any process);
// `alive` asked of the bus's registry. Empty for a version-1 file.
std::vector<QueueWorkerStats> read_worker_table(const QueueState& q);

}  // namespace sluice
