// A consumer group's committed offsets for one topic: groups/<g>/<t>.offsets
// (layout in topic_format.h). Shared by every process of the group; a commit
// is one atomic store of 8 bytes.
#pragma once

#include <sluice/status.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bus_state.h"
#include "ipc/mapped_file.h"
#include "topic_format.h"

namespace sluice {

class GroupOffsets {
 public:
  // Opens the group's offsets for `topic`; creates them if `create`.
  // kNotFound when absent and !create.
  // `internal`: the group may be the engine's own (topic_ops.h, kQueueGroup).
  static Result<std::unique_ptr<GroupOffsets>> open(const BusState& bus, std::string_view group,
                                                    const TopicState& topic, bool create, bool internal = false);

  uint32_t partitions() const noexcept { return partitions_; }
  format::GroupSlot& slot(uint32_t partition) const noexcept {
    return reinterpret_cast<format::GroupSlot*>(file_.data() + format::kGroupSlotsOffset)[partition];
  }
  // Stores `next_offset` as the committed offset of `partition`.
  // sync: msync the slot so that it is on disk when this returns.
  Status commit(uint32_t partition, uint64_t next_offset, int64_t now_ns, bool sync) const;
  // Moves the committed offset from `expected` to `next_offset` only (a
  // transaction's offsets: a late replay by a helper, after the group moved
  // on, must not move it back). False if it was not `expected`.
  bool commit_if(uint32_t partition, uint64_t expected, uint64_t next_offset, int64_t now_ns) const;
  uint64_t committed(uint32_t partition) const noexcept {
    // acquire: pairs with the release store in commit(); nothing else is
    // published with it, but an observer of an offset also sees its time.
    return slot(partition).committed_offset.load(std::memory_order_acquire);
  }

  // RetryMode::kInPlace's durable attempt count (GroupSlot::retry_attempts):
  // `attempts` attempts were begun on the record at `offset` of the
  // partition, and the next is due at `retry_at_ns` (bus clock; 0: no due
  // time kept, as after a count stored before an attempt runs).
  // nullopt: no count (a zero word, as in files from before the word had a
  // meaning).
  struct RetryAttempts {
    uint64_t offset;
    uint32_t attempts;
    int64_t retry_at_ns;
  };
  std::optional<RetryAttempts> retry_attempts(uint32_t partition) const noexcept;
  // Stores (offset, attempts) and its due time, replacing the partition's
  // count. Not msynced by itself: it shares the slot's page with the
  // committed offset, so the next synchronous commit makes it durable on a
  // disk bus. False (and the count cleared) when offset >
  // kMaxRetryAttemptsOffset.
  // REQUIRES: 1 <= attempts <= format::kMaxRetryAttempts; the caller is the
  // partition's only writer but for clear_retry_attempts() (an admin seek).
  bool store_retry_attempts(uint32_t partition, uint64_t offset, uint32_t attempts,
                            int64_t retry_at_ns = 0) const noexcept;
  // Clears the count and its due time.
  void clear_retry_attempts(uint32_t partition) const noexcept;

 private:
  ipc::MappedFile file_;
  uint32_t partitions_ = 0;
};

// Forces producers of a kBackPressure topic to recompute their limit (after
// something lowered it: a group registered or was seeked back).
void invalidate_back_pressure_limits(const TopicState& topic);

// Names of the groups with offsets for `topic` (lists directories).
Result<std::vector<std::string>> groups_of_topic(const BusState& bus, std::string_view topic);
// The smallest committed offset of any group of `topic` in `partition`
// (a group with no commit yet counts as 0); kNoCommit when no group exists.
// Keeps the groups' files open in topic.group_offsets.
Result<uint64_t> min_committed_offset(TopicState& topic, uint32_t partition);

}  // namespace sluice
