// Descriptions, lag and group seeks: the cold-path questions any process can
// ask of a bus.
#pragma once

#include <sluice/bus.h>

#include "bus_state.h"
#include "partition.h"

namespace sluice::admin {

Result<TopicDescription> describe_topic(BusState& bus, std::string_view topic);
Result<GroupDescription> describe_group(BusState& bus, std::string_view group);
Status seek_group(BusState& bus, std::string_view group, std::string_view topic, SeekTarget target,
                  std::optional<uint32_t> partition);
// Lag of a group whose committed offset in `partition` is `committed`.
PartitionLag partition_lag(Partition& partition, uint64_t committed, int64_t now_ns);
// Logical byte position of the frame holding `offset` (the end position if
// offset is at or past the end).
Result<uint64_t> position_of_offset(Partition& partition, uint64_t offset);
// Resolves a seek target to an offset in one partition.
Result<uint64_t> resolve_seek(Partition& partition, SeekTarget target);

}  // namespace sluice::admin
