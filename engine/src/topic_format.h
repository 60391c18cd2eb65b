// Byte layouts of the small control files of a bus: the topic file, the
// partition state file and a group's offsets file. Each starts with the
// ipc::FileHeader; the parameters after it are immutable, the control blocks
// after those are shared mutable state. All integers little-endian.
//
// Bus directory:
//
//   <dir>/bus.lock                   flock: shared while attached, exclusive to recover
//   <dir>/procs/table, slot-N.lock   process registry (ipc/process_registry.h)
//   <dir>/topics/<topic>/topic       TopicParams + TopicControl
//   <dir>/topics/<topic>/<p>/state   PartitionParams + PartitionControl
//   <dir>/topics/<topic>/<p>/writer.lock   flock: shared producers / one exclusive
//   <dir>/topics/<topic>/<p>/<base>.seg    segments (segment_format.h); flock: in use
//   <dir>/topics/<topic>/<p>/<base>.spare  retired segments waiting to be recycled
//   <dir>/groups/<group>/<topic>.offsets   GroupParams + GroupSlot per partition
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "ipc/wait_strategy.h"

namespace sluice::format {

inline constexpr uint64_t kControlFileBytes = 4096;

// ---- topics/<topic>/topic -------------------------------------------------
//
//   [0, 48)      FileHeader, kind kTopic
//   [48, 112)    TopicParams (64 bytes)
//   [1024, 1088) TopicControl.wakeup  (ipc::WakeupWord: consumers park here)
//   [1088, 1152) TopicControl.deleted (u32)
//   [1152, 1216) TopicControl.groups_generation (u64): +1 each time a group's
//                offsets file for this topic is made, so that a process
//                that keeps the groups' files open (min_committed_offset)
//                knows when to list them again. Zero in files made before
//                it: it only ever grows from there.
struct TopicParams {
  uint32_t partitions;
  uint32_t segment_bytes;
  uint32_t index_interval_bytes;
  uint8_t retention_mode;     // RetentionMode
  uint8_t auto_offset_reset;  // OffsetReset
  uint8_t prefault_segments;
  uint8_t huge_pages;
  int64_t retention_bytes;
  int64_t retention_ms;
  int64_t claim_timeout_ns;
  uint8_t retire_consumed;    // TopicOptions::retire_consumed
  uint8_t reserved[23];
};
static_assert(sizeof(TopicParams) == 64);

inline constexpr uint64_t kTopicControlOffset = 1024;
struct TopicControl {
  ipc::WakeupWord wakeup;
  alignas(64) std::atomic<uint32_t> deleted;
  alignas(64) std::atomic<uint64_t> groups_generation;
};
static_assert(offsetof(TopicControl, deleted) == 64);
static_assert(offsetof(TopicControl, groups_generation) == 128);
static_assert(kTopicControlOffset + sizeof(TopicControl) <= kControlFileBytes);

// ---- topics/<topic>/<p>/state ----------------------------------------------
//
//   [0, 48)      FileHeader, kind kPartitionState
//   [48, 56)     PartitionParams
//   [1024, ...)  PartitionControl, one cache line per writer population:
//     +0    start_offset       first offset still in the log (retention moves it)
//     +64   newest_base        base offset of the newest segment (a hint)
//     +128  repaired_claims, corrupt_frames   counters
//     +192  exclusive_dirty_base, exclusive_dirty_end  (exclusive writer)
//     +256  back_pressure_limit   logical byte position producers may not pass
//   [2048, 4096) ClaimIntent[128]: the shared writers' claim intents (below)
struct PartitionParams {
  uint32_t partition;
  uint32_t reserved;
};

inline constexpr uint64_t kPartitionControlOffset = 1024;
inline constexpr uint64_t kClaimIntentsOffset = 2048;
struct PartitionControl {
  alignas(64) std::atomic<uint64_t> start_offset;
  alignas(64) std::atomic<uint64_t> newest_base;
  alignas(64) std::atomic<uint64_t> repaired_claims;
  std::atomic<uint64_t> corrupt_frames;
  // An exclusive writer may leave bytes past the published tail when it dies
  // (it writes a frame before publishing its word). Before appending it
  // records how far it may write: segment base and data position. Whoever
  // takes the writer lock next zeroes [tail, dirty_end) of that segment.
  // A segment its roll recycled without zeroing it whole holds stale bytes
  // past the tail: the roll records dirty_end = its capacity before the
  // segment is published (Partition::roll).
  alignas(64) std::atomic<uint64_t> exclusive_dirty_base;
  std::atomic<uint64_t> exclusive_dirty_end;  // 0: clean
  // kBackPressure topics: a cached lower bound of (slowest group's position
  // + window). Groups only move forward, so the bound only grows and a stale
  // value is merely conservative; whatever can lower the true bound (a new
  // group, a group seeked back) resets it to 0, forcing a recompute. A
  // producer that recomputed just before such a reset may store its older
  // bound after it; then producers run ahead of the window until the next
  // recompute, but nothing is lost: retention reads the groups' offsets
  // itself (through min_committed_offset's open files, which a new group's
  // groups_generation bump has listed again). Reset with a release store,
  // after that bump; a producer that reads 0 fences (acquire) before it
  // recomputes.
  alignas(64) std::atomic<uint64_t> back_pressure_limit;
};
static_assert(offsetof(PartitionControl, newest_base) == 64);
static_assert(offsetof(PartitionControl, repaired_claims) == 128);
static_assert(offsetof(PartitionControl, exclusive_dirty_base) == 192);
static_assert(offsetof(PartitionControl, back_pressure_limit) == 256);
static_assert(kPartitionControlOffset + sizeof(PartitionControl) <= kClaimIntentsOffset);

// A shared writer's claim intent (the tail claim, docs/architecture.md). A
// writer holds one entry per partition it writes: `holder` is its owner id
// (ipc::OwnerId; 0: free; an entry whose holder is dead may be taken by
// CAS). Before each tail CAS it stores in `position` the logical byte
// position (segment base_position + data position) + 1 where its claim
// would start, and after its claim word is stored, 0. A repairer that finds
// a claimed range whose word still reads 0 repairs it only if no live
// holder's intent lies in it: so it never aborts a claim whose writer is
// alive between its tail CAS and its word store. Orderings: the intent
// stores are release, the tail CAS seq_cst; a repairer loads the tail, then
// the intents, then the words, all acquire (Segment::repair_gap).
// A writer that owns its segment's tail (the owned tail, docs/architecture.md)
// stores its intent at the tail before each append and clears it after the
// tail store; a revoker waits for intents at or past the tail.
// Zero in files made before the tail claim: all entries free.
struct ClaimIntent {
  std::atomic<uint64_t> holder;
  std::atomic<uint64_t> position;
};
static_assert(sizeof(ClaimIntent) == 16);
inline constexpr uint32_t kClaimIntents = 128;
static_assert(kClaimIntentsOffset + kClaimIntents * sizeof(ClaimIntent) <= kControlFileBytes);

// ---- groups/<group>/<topic>.offsets -----------------------------------------
//
//   [0, 48)     FileHeader, kind kGroupOffsets
//   [48, 56)    GroupParams
//   [64 + 64p]  GroupSlot of partition p:
//     +0   committed_offset  next offset to read; kNoCommit: none
//     +8   commit_unix_ns    informational
//     +16  commit_count      informational
//     +24  seek_epoch        bumped by an admin seek (members notice it)
//     +32  retry_attempts    RetryMode::kInPlace: the record being retried
//                            and the attempts begun on it, one u64:
//                              bits 0..7   attempts begun (1..255)
//                              bits 8..63  the record's offset + 1
//                            0: no record in retry
//     +40  retry_at_ns       RetryMode::kInPlace: when the next attempt of
//                            the record retry_attempts names is due, bus
//                            clock (i64 ns); 0: not kept (due at once)
//     +48  reserved[2]       zero; member / generation (rebalancing)
//
// committed_offset is the whole commit: one aligned 8-byte atomic store, so
// no process ever reads a torn offset and a crash leaves either the old or
// the new value. The other fields are informational and may lag it.
//
// retry_attempts is one atomic store too, so its offset and count are never
// torn apart. It is only counted for the record at its offset, so a stale
// word (its member killed, the group moved on) never counts for another
// record. Zero is "no count": what the word held before it had a meaning
// (the format version did not change: docs/formats.md, "Group offsets").
//
// retry_at_ns has no record of its own: it is the due time of the record
// and count that retry_attempts holds, and is read only through that word.
// Its writer zeroes it before it changes retry_attempts and sets it after
// (GroupOffsets::store_retry_attempts), so a crash between any two stores
// leaves a deadline that is the named record's, or zero. Zero (as the
// reserved word was created) is "no deadline kept": the next attempt is
// due at once, as it was before the word had a meaning.
struct GroupParams {
  uint32_t partitions;
  uint32_t reserved;
};
inline constexpr uint64_t kGroupSlotsOffset = 64;
inline constexpr uint64_t kNoCommit = UINT64_MAX;
struct alignas(64) GroupSlot {
  std::atomic<uint64_t> committed_offset;  // next offset to read; kNoCommit: none
  std::atomic<int64_t> commit_unix_ns;
  std::atomic<uint64_t> commit_count;
  std::atomic<uint64_t> seek_epoch;        // bumped by an admin seek
  std::atomic<uint64_t> retry_attempts;    // in-place retries; see above
  std::atomic<int64_t> retry_at_ns;        // in-place retries: the next attempt's due time; see above
  uint64_t reserved[2];                    // member / generation (rebalancing)
};
static_assert(sizeof(GroupSlot) == 64);
static_assert(offsetof(GroupSlot, seek_epoch) == 24);
static_assert(offsetof(GroupSlot, retry_attempts) == 32);
static_assert(offsetof(GroupSlot, retry_at_ns) == 40);
static_assert(std::atomic<int64_t>::is_always_lock_free);
static_assert(std::atomic<uint64_t>::is_always_lock_free, "cross-process atomics must not fall back to a lock");

inline constexpr uint32_t kRetryAttemptBits = 8;
inline constexpr uint32_t kMaxRetryAttempts = (1u << kRetryAttemptBits) - 1;  // 255, as max_receives
// The largest offset whose word fits: offset + 1 < 2^56. Beyond it (not
// reached by any real log) the count is kept in memory only.
inline constexpr uint64_t kMaxRetryAttemptsOffset = (uint64_t{1} << (64 - kRetryAttemptBits)) - 2;
// REQUIRES: offset <= kMaxRetryAttemptsOffset, 1 <= attempts <= kMaxRetryAttempts.
constexpr uint64_t retry_attempts_word(uint64_t offset, uint32_t attempts) {
  return (offset + 1) << kRetryAttemptBits | attempts;
}
constexpr uint64_t retry_attempts_offset(uint64_t word) { return (word >> kRetryAttemptBits) - 1; }
constexpr uint32_t retry_attempts_count(uint64_t word) {
  return static_cast<uint32_t>(word & kMaxRetryAttempts);
}
static_assert(retry_attempts_offset(retry_attempts_word(kMaxRetryAttemptsOffset, 3)) == kMaxRetryAttemptsOffset);
static_assert(retry_attempts_count(retry_attempts_word(0, kMaxRetryAttempts)) == kMaxRetryAttempts);
constexpr uint64_t group_file_bytes(uint32_t partitions) {
  return (kGroupSlotsOffset + uint64_t{partitions} * sizeof(GroupSlot) + 4095) / 4096 * 4096;
}

}  // namespace sluice::format
