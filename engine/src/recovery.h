// Recovery of partitions after a crash, and the full verification behind
// `sluice verify`. Both walk frames with the same checks the reader makes.
#pragma once

#include <sluice/bus.h>

#include "bus_state.h"
#include "partition.h"

namespace sluice {

// Runs with no other process attached to the bus (the caller holds the bus
// lock exclusively): aborts every CLAIMED frame (its writer is dead),
// validates the newest segment frame by frame, rebuilds the newest segment's
// index, restores a truncated segment file to its size and cleans after a
// dead exclusive writer. Invalid frames at the tail are cut only where a torn
// write is possible: `machine_restarted`, or the file had been truncated.
// Otherwise they are corruption: reported, kept, never returned as data.
Status recover_partition(Partition& partition, bool machine_restarted, RecoveryReport& report);

// Checks every frame, record checksum, offset chain and index slot of a
// partition, appending what it finds to `report`. Read-only.
Status verify_partition(Partition& partition, VerifyReport& report);

}  // namespace sluice
