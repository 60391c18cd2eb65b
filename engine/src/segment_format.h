// The segment file: the one authoritative description of its bytes. The
// writer, the reader, recovery, `sluice dump`/`verify` and the tests all
// include this header. All integers little-endian; docs/formats.md explains
// why the format has this shape.
//
// File layout (one partition is a sequence of these, named <base_offset>.seg,
// 20 decimal digits):
//
//   [0, 48)        FileHeader (ipc/file_header.h), kind kSegment
//   [48, 80)       SegmentParams
//   [2048, 2112)   SegmentControl: the mutable tail hint and the PREPARED
//                  mark, own cache line
//   [4096, D)      offset/time index: one IndexSlot per index_interval_bytes
//   [D, D + cap)   frames, D = FileHeader.data_offset (page aligned)
//
// A frame is what one claim reserves: a batch header followed by one or more
// records, padded to 8 bytes. Frames tile the data region from 0 with no
// gaps; past the last claimed frame every byte is zero, with three
// exceptions that no walker reads: past an END_OF_SEGMENT word; past the
// word after the tail of a segment an exclusive writer recycled without
// zeroing it whole, while that writer holds it (docs/architecture.md,
// "Recycling without zeroing"; PartitionControl::exclusive_dirty_end covers
// it if the writer dies); and past the word after an OWNED tail
// (SegmentControl::owner_dirty_end, below). Padding bytes between records are never read.
//
// Frame (batch) header, 32 bytes:
//
//   0               1               2               3
//   0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//  +---------------------------------------------------------------+
//  |  claim word (atomic u64, see below)                           |
//  |                                                               |
//  +---------------------------------------------------------------+
//  |  base_offset (u64): offset of the frame's first record        |
//  |                                                               |
//  +---------------------------------------------------------------+
//  |  producer_id (u64): 0 = none; reserved for idempotence        |
//  |                                                               |
//  +-------------------------------+-------------------------------+
//  |  producer_epoch (u16)         |  attributes (u16, kAttr*)     |
//  +-------------------------------+-------------------------------+
//  |  base_sequence (u32): producer sequence of the first record   |
//  +---------------------------------------------------------------+
//  |  records ...                                                 ...
//
// Claim word, the only field written atomically:
//
//   bits  0..2   state: 1 CLAIMED, 2 COMMITTED, 3 ABORTED, 4 END_OF_SEGMENT,
//                5 PREPARED (format version 2), 6 CLAIMED_COPY (version 3)
//   bits  0..31  frame length in bytes (a multiple of 8, so its low 3 bits
//                are free and hold the state)
//   bits 32..47  record count (1..65535; 0 for END_OF_SEGMENT)
//   bits 48..63  owner (ipc::OwnerId of the claiming process)
//
// A word of 0 means "nothing here yet". Words only move 0 -> CLAIMED ->
// COMMITTED | ABORTED, 0 -> CLAIMED_COPY -> COMMITTED | ABORTED, or 0 ->
// END_OF_SEGMENT, or (exclusive writers) 0 -> COMMITTED; length, count and
// owner never change after the first transition, so a reader or writer that
// sees a non-zero word can always step over the frame, even one whose
// writer died.
//
// CLAIMED_COPY (version 3): a claim by a copying send (send(), send_batch()
// outside a transaction), which runs only library code between its claim
// and its publish. Its writer publishes with a plain store, not a CAS, so
// nothing but its writer may move the word while the writer lives: a
// repairer aborts it only once its owner is dead, never on the claim
// timeout (docs/architecture.md, "The copy claim"). CLAIMED (zero-copy
// claims, whose holder runs the caller's code, and transactions) keeps the
// publishing CAS and the timeout. Version-1 and 2 segments never hold it:
// writers claim CLAIMED there.
//
// PREPARED (transactions, docs/exactly-once.md): the frame is written and
// checksummed but its transaction's outcome is not decided. It moves
// CLAIMED -> PREPARED (exclusive writers 0 -> PREPARED), then PREPARED ->
// COMMITTED | ABORTED by whoever carries the decision out. Read-committed
// readers stop at it as at a CLAIMED frame; read-uncommitted ones deliver it.
// Version-1 segments never hold it.
//
// Record, 32-byte header, then key, headers block, value (unaligned); the
// next record starts at the next multiple of 8:
//
//  +-------------------------------+---------------+---------------+
//  |  length (u32): header + key   |  flags (u16)  | header_count  |
//  |  + headers block + value      |  (reserved)   |  (u16)        |
//  +-------------------------------+---------------+---------------+
//  |  checksum (u64): XXH3-64 of bytes [16, length) of the record, |
//  |  seeded with frame_seed + index in frame                      |
//  +---------------------------------------------------------------+
//  |  timestamp_ns (i64, Unix epoch, producer's clock)             |
//  |                                                               |
//  +-------------------------------+-------------------------------+
//  |  key_length (u32)             |  headers_length (u32)         |
//  +-------------------------------+-------------------------------+
//  |  key | headers block | value                                ...
//
// frame_seed = XXH3-64 of the frame header's bytes [8, 32), so a record's
// checksum also covers its frame's base offset, producer fields and
// attributes, and a record copied to another place fails its check.
//
// Headers block: header_count entries of
//   name_length (u32) | value_length (u32) | name bytes | value bytes
//
// Index slot k (16 bytes) describes the frame that covers data position
// k * index_interval_bytes: the one with start <= k * I < start + length.
// Exactly one frame covers each position, so each slot has one writer (the
// claimer of that frame, right after its claim). An empty slot (0) is only a
// missing hint: seeks fall back to the previous slot. Recovery rebuilds them.
//
//  +-------------------------------+-------------------------------+
//  |  rel_offset_plus_1 (atomic    |  position (u32): frame start  |
//  |  u32, 0 = empty, set last)    |  in the data region           |
//  +-------------------------------+-------------------------------+
//  |  timestamp_ns (i64) of the frame's first record               |
//  +---------------------------------------------------------------+
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "ipc/file_header.h"

namespace sluice::format {

inline constexpr uint32_t kFrameAlign = 8;
inline constexpr uint32_t kFrameHeaderBytes = 32;
inline constexpr uint32_t kRecordHeaderBytes = 32;
inline constexpr uint32_t kHeaderEntryBytes = 8;  // name_length + value_length
inline constexpr uint64_t kControlOffset = 2048;
inline constexpr uint64_t kIndexOffset = 4096;
inline constexpr uint32_t kIndexSlotBytes = 16;
inline constexpr uint32_t kMaxRecordsPerFrame = 65535;

enum ClaimState : uint64_t {
  kEmpty = 0,
  kClaimed = 1,
  kCommitted = 2,
  kAborted = 3,
  kEndOfSegment = 4,
  kPrepared = 5,
  kClaimedCopy = 6,
};

// Frame attributes (u16). Reserved now so later features need no new version.
inline constexpr uint16_t kAttrTransactional = 1u << 0;  // part of a transaction
inline constexpr uint16_t kAttrControl = 1u << 1;        // commit/abort marker, not user data
inline constexpr uint16_t kAttrExclusiveWriter = 1u << 2;

constexpr uint64_t make_claim_word(ClaimState state, uint32_t frame_length, uint32_t count,
                                   uint16_t owner) {
  return (static_cast<uint64_t>(frame_length) | state) | (static_cast<uint64_t>(count) << 32) |
         (static_cast<uint64_t>(owner) << 48);
}
constexpr ClaimState claim_state(uint64_t w) { return static_cast<ClaimState>(w & 7u); }
constexpr uint32_t claim_length(uint64_t w) { return static_cast<uint32_t>(w) & ~7u; }
constexpr uint32_t claim_count(uint64_t w) { return static_cast<uint32_t>(w >> 32) & 0xFFFFu; }
constexpr uint16_t claim_owner(uint64_t w) { return static_cast<uint16_t>(w >> 48); }
constexpr uint64_t with_state(uint64_t w, ClaimState s) { return (w & ~uint64_t{7}) | s; }
// The states of a claimed frame (anything a walker steps over by its length).
constexpr bool is_frame_state(ClaimState s) {
  return s == kClaimed || s == kCommitted || s == kAborted || s == kPrepared || s == kClaimedCopy;
}
// A claim in flight: reserved, not yet published.
constexpr bool is_open_claim(ClaimState s) { return s == kClaimed || s == kClaimedCopy; }
// The first segment format version whose writers claim CLAIMED_COPY.
inline constexpr uint32_t kCopyClaimVersion = 3;
constexpr uint32_t align_up(uint32_t n) { return (n + kFrameAlign - 1) & ~(kFrameAlign - 1); }

struct FrameHeader {
  std::atomic<uint64_t> claim;
  uint64_t base_offset;
  uint64_t producer_id;
  uint16_t producer_epoch;
  uint16_t attributes;
  uint32_t base_sequence;
};
static_assert(sizeof(FrameHeader) == kFrameHeaderBytes);
static_assert(offsetof(FrameHeader, base_offset) == 8);
static_assert(offsetof(FrameHeader, producer_id) == 16);
static_assert(offsetof(FrameHeader, producer_epoch) == 24);
static_assert(offsetof(FrameHeader, attributes) == 26);
static_assert(offsetof(FrameHeader, base_sequence) == 28);
static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "cross-process atomics must not fall back to a lock");

struct RecordHeader {
  uint32_t length;
  uint16_t flags;
  uint16_t header_count;
  uint64_t checksum;
  int64_t timestamp_ns;
  uint32_t key_length;
  uint32_t headers_length;
};
static_assert(sizeof(RecordHeader) == kRecordHeaderBytes);
static_assert(offsetof(RecordHeader, checksum) == 8);
static_assert(offsetof(RecordHeader, timestamp_ns) == 16);
static_assert(offsetof(RecordHeader, key_length) == 24);
inline constexpr uint32_t kChecksumCoverageStart = 16;  // bytes [16, length) are checksummed

// Parameters stored after the file header; immutable.
struct SegmentParams {
  uint64_t base_offset;      // offset of the first record in this segment
  uint64_t base_position;    // logical byte position of data byte 0 in the partition
  uint32_t data_bytes;       // capacity of the frame region
  uint32_t index_interval_bytes;
  uint32_t partition;
  uint32_t reserved;
};
static_assert(sizeof(SegmentParams) == 32);

// The mutable part of the header page. `tail_hint` packs the data position
// (bits 0..31) and the record count before it (bits 32..60; a record takes
// at least 32 bytes, so a segment holds fewer than 2^27) of a point at or
// before the end of the claimed frames, and three flags (version 3):
//
//   bit 63 EXACT   the word is the end of the claims itself: shared writers
//                  claim by a CAS on it (the tail claim, docs/architecture.md
//                  "The tail claim"), so every claim below it is made,
//                  though its claim word may still read 0 for an instant.
//   bit 62 SEALED  (with EXACT) no claim fits any more; the END_OF_SEGMENT
//                  word, if room for one, is at the position.
//   bit 61 OWNED   (with EXACT, never with SEALED) one shared writer owns
//                  the tail: it writes and publishes a frame past the tail
//                  and then stores the tail past it, with no locked
//                  instruction; every other writer must revoke it before
//                  claiming (docs/architecture.md, "The owned tail"). The
//                  word may then trail the frames by one its owner published
//                  (find_end() walks from it), and past the frames may lie
//                  the owner's frame in progress, or a dead owner's bytes up
//                  to `owner_dirty_end`.
//
// Without EXACT (every version-1 and 2 segment, an exclusive writer's
// stores, recovery's) it is a hint: every frame below it has a non-zero
// word, and the first shared writer of a version-3 segment walks from it to
// the end and makes it EXACT.
// `prepared_mark` (format version 2; 0 in version-1 files) is set to 1 by a
// transactional writer before it publishes a PREPARED frame here, and never
// cleared: retention walks a segment for live transactions only when it is
// set, instead of walking every sealed segment it retires.
// The owned tail (version 3; all 0 in files made before it, whose tails are
// never OWNED; docs/architecture.md, "The owned tail"):
// `revoker`      the owner id (ipc::OwnerId) of the process revoking an
//                OWNED tail right now, 0 if none: one revocation at a time,
//                and an owner claims only while it reads 0.
// `revocations`  how many revocations this segment's tail has seen: each
//                doubles the claims in a row a writer must make before it
//                may own the tail again, so contended writers stop taking it.
// `owner_dirty_end`  the data position up to which the owner may have
//                written past an OWNED tail (it writes a frame before it
//                stores the tail past it); whoever takes the tail from a
//                dead owner zeroes [end of the frames, owner_dirty_end).
struct alignas(64) SegmentControl {
  std::atomic<uint64_t> tail_hint;
  std::atomic<uint32_t> prepared_mark;
  std::atomic<uint32_t> revoker;
  std::atomic<uint32_t> revocations;
  std::atomic<uint32_t> owner_dirty_end;
  char padding[40];
};
static_assert(sizeof(SegmentControl) == 64);
static_assert(offsetof(SegmentControl, revoker) == 12 && offsetof(SegmentControl, revocations) == 16 &&
              offsetof(SegmentControl, owner_dirty_end) == 20);
static_assert(kControlOffset + sizeof(SegmentControl) <= kIndexOffset);

inline constexpr uint64_t kTailExact = uint64_t{1} << 63;
inline constexpr uint64_t kTailSealed = uint64_t{1} << 62;
inline constexpr uint64_t kTailOwned = uint64_t{1} << 61;
inline constexpr uint32_t kMaxTailCount = (1u << 29) - 1;
constexpr uint64_t pack_tail(uint32_t position, uint32_t count) {
  return static_cast<uint64_t>(position) | (static_cast<uint64_t>(count) << 32);
}
constexpr uint32_t tail_position(uint64_t t) { return static_cast<uint32_t>(t); }
constexpr uint32_t tail_count(uint64_t t) { return static_cast<uint32_t>(t >> 32) & kMaxTailCount; }
constexpr bool tail_exact(uint64_t t) { return (t & kTailExact) != 0; }
constexpr bool tail_sealed(uint64_t t) { return (t & kTailSealed) != 0; }
constexpr bool tail_owned(uint64_t t) { return (t & kTailOwned) != 0; }

struct IndexSlot {
  std::atomic<uint32_t> rel_offset_plus_1;
  uint32_t position;
  int64_t timestamp_ns;
};
static_assert(sizeof(IndexSlot) == kIndexSlotBytes);

// Where the frame region starts for a segment of `data_bytes` indexed every
// `interval` bytes: after the index, rounded up to a page.
constexpr uint64_t index_slot_count(uint32_t data_bytes, uint32_t interval) {
  return (data_bytes + interval - 1) / interval;
}
constexpr uint64_t data_offset_for(uint32_t data_bytes, uint32_t interval) {
  const uint64_t end = kIndexOffset + index_slot_count(data_bytes, interval) * kIndexSlotBytes;
  return (end + 4095) / 4096 * 4096;
}

// Bytes a frame of records with these sizes occupies.
constexpr uint32_t record_bytes(uint32_t key, uint32_t headers, uint32_t value) {
  return kRecordHeaderBytes + key + headers + value;
}

}  // namespace sluice::format
