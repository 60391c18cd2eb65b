// The processed-id store `<dir>/processed/<store>`: the one authoritative
// description of its bytes (docs/exactly-once.md, section 6, explains the
// design). All integers little-endian.
//
//   [0, 48)               FileHeader, kind kProcessedIds, format version 1
//   [48, 80)              ProcessedParams (immutable)
//   [1024, 1088)          ProcessedCounters (relaxed statistics, own line)
//   [4096 + 704 b, +704)  bucket b, for b < params.buckets
//   ... zero up to file_bytes, a multiple of 4096
//
// ProcessedParams:
//
//   0               1               2               3
//   0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//  +-------------------------------+-------------------------------+
//  |  buckets (u32) = capacity / 8 |  ways (u32) = 8               |   48
//  +-------------------------------+-------------------------------+
//  |  window_ns (i64): how long a DONE or in-doubt id counts       |   56
//  |                                                               |
//  +---------------------------------------------------------------+
//  |  hash_seed (u64): seed of this store's XXH3-128, random       |   64
//  |                                                               |
//  +---------------------------------------------------------------+
//  |  reserved (u64) = 0                                           |   72
//  |                                                               |
//  +---------------------------------------------------------------+
//
// Bucket, 704 bytes (11 cache lines), 64-aligned:
//
//   +0     lock (atomic u64): 0 free, else OwnerId + 1 of the holder
//   +8     reserved, 56 bytes             line 0: the lock alone, so that
//                                         spinning on it does not take the
//                                         entries' lines from the holder
//   +64    entry[8], 32 bytes each        lines 1-4: read on every lookup
//   +320   label[8], 48 bytes each        lines 5-10: written at a claim,
//                                         read by listings only
//
// Entry w (ProcessedEntryWords), and label w (ProcessedLabel) of the same w:
//
//  +---------------------------------------------------------------+
//  |  key_lo (atomic u64): low half of XXH3-128(id, hash_seed)     |   +0
//  |                       (the bucket is key_lo % buckets)        |
//  +---------------------------------------------------------------+
//  |  key_hi (atomic u64): high half                               |   +8
//  |                                                               |
//  +---------------------------------------------------------------+
//  |  state (atomic u64): the word below                           |   +16
//  |                                                               |
//  +---------------------------------------------------------------+
//  |  time_ms (atomic i64): Unix ms at which the current PENDING   |   +24
//  |  began (a claim or a takeover); read for PENDING, IN_DOUBT    |
//  +---------------------------------------------------------------+
//
//  +-------------------------------+-------------------------------+
//  |  id_bytes (u16): the id's     |  text[46]: its first          |   label
//  |  length, 0..256 (0: unknown,  |  min(id_bytes, 46) bytes,     |
//  |  marked done by key)          |  zero-padded             ... |
//  +-------------------------------+-------------------------------+
//
// State word:
//
//   bits 0..2   kind: 0 FREE, 1 PENDING, 2 DONE, 3 IN_DOUBT; 4..7 invalid
//   bits 3..7   zero
//   FREE        every other bit zero; the key may be a stale one, nothing counts
//   PENDING     bits 8..23 owner (ipc::OwnerId, non-zero): fn runs in that
//               process; bits 24..63 zero
//   DONE        bits 8..63: Unix ms at which it became done (non-zero). The
//               time lives in the word so that the runner's completion is
//               one CAS outside the bucket lock, with no second field to
//               order against it.
//   IN_DOUBT    bits 8..23: the owner that died inside fn; bits 24..63 zero
//
// Who writes what (docs/exactly-once.md, section 6):
//
//   - Keys, labels and time_ms change only under the bucket lock; every
//     reader of them holds it. A claim of an entry for a new id stores FREE
//     first, then key, label and time, then PENDING, so that a holder that
//     dies in between leaves either a FREE entry or a complete PENDING one,
//     never another id's entry looking in doubt.
//   - `state` changes under the lock (claims, takeovers, IN_DOUBT, mark_done,
//     forget; by CAS where the previous word could belong to a live runner),
//     and outside it only by the runner that holds PENDING(me): one CAS
//     PENDING(me) -> DONE(now) | FREE | IN_DOUBT. Nobody else changes a
//     PENDING word whose owner is alive, so that CAS fails only if liveness
//     was wrong (OwnerId ABA, docs/exactly-once.md section 11); it is counted.
//
// An entry "counts" (occupies its way) while it is PENDING of a live owner,
// or DONE, IN_DOUBT or PENDING of a dead owner with its time less than
// window_ns ago. Anything else can be reused. So in-doubt ids are never
// dropped before the window ends; a bucket whose 8 ways all count refuses
// new ids with kBusy.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace sluice::format {

inline constexpr uint32_t kProcessedWays = 8;
inline constexpr uint64_t kProcessedCountersOffset = 1024;
inline constexpr uint64_t kProcessedBucketsOffset = 4096;
inline constexpr uint32_t kProcessedMaxIdBytes = 256;
inline constexpr uint32_t kProcessedLabelTextBytes = 46;
inline constexpr uint32_t kProcessedMaxCapacity = 1u << 24;
inline constexpr int64_t kProcessedMaxWindowNs = 365LL * 24 * 3600 * 1'000'000'000;

struct ProcessedParams {
  uint32_t buckets;
  uint32_t ways;
  int64_t window_ns;
  uint64_t hash_seed;
  uint64_t reserved;
};
static_assert(sizeof(ProcessedParams) == 32);
static_assert(offsetof(ProcessedParams, window_ns) == 8);
static_assert(offsetof(ProcessedParams, hash_seed) == 16);

// relaxed everywhere: statistics, read by `sluice processed show`.
struct alignas(64) ProcessedCounters {
  std::atomic<uint64_t> ran;               // fn returned (kRan)
  std::atomic<uint64_t> already_done;      // kAlreadyDone without running, resolver answers excluded
  std::atomic<uint64_t> in_doubt;          // kInDoubt returned
  std::atomic<uint64_t> resolved_done;     // a resolver said "done"
  std::atomic<uint64_t> resolved_ran;      // a resolver said "not done" (fn then ran or threw)
  std::atomic<uint64_t> busy;              // kBusy returned
  std::atomic<uint64_t> fn_threw;          // fn (or a resolver) threw: the id was freed (or left in doubt)
  std::atomic<uint64_t> completions_lost;  // the runner's completion CAS found its PENDING gone
};
static_assert(sizeof(ProcessedCounters) == 64);

struct ProcessedEntryWords {
  std::atomic<uint64_t> key_lo;
  std::atomic<uint64_t> key_hi;
  std::atomic<uint64_t> state;
  std::atomic<int64_t> time_ms;
};
static_assert(sizeof(ProcessedEntryWords) == 32);
static_assert(offsetof(ProcessedEntryWords, state) == 16);

struct ProcessedLabel {
  uint16_t id_bytes;
  char text[kProcessedLabelTextBytes];
};
static_assert(sizeof(ProcessedLabel) == 48);

struct alignas(64) ProcessedBucket {
  std::atomic<uint64_t> lock;
  uint8_t reserved[56];
  ProcessedEntryWords ways[kProcessedWays];
  ProcessedLabel labels[kProcessedWays];
};
static_assert(sizeof(ProcessedBucket) == 704);
static_assert(offsetof(ProcessedBucket, ways) == 64);
static_assert(offsetof(ProcessedBucket, labels) == 320);
static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<int64_t>::is_always_lock_free,
              "cross-process atomics must not fall back to a lock");

enum ProcessedKind : uint64_t {
  kProcessedFree = 0,
  kProcessedPending = 1,
  kProcessedDone = 2,
  kProcessedInDoubt = 3,
};

constexpr uint64_t processed_pending(uint16_t owner) { return kProcessedPending | (uint64_t{owner} << 8); }
constexpr uint64_t processed_in_doubt(uint16_t owner) { return kProcessedInDoubt | (uint64_t{owner} << 8); }
constexpr uint64_t processed_done(int64_t unix_ms) { return kProcessedDone | (static_cast<uint64_t>(unix_ms) << 8); }
constexpr ProcessedKind processed_kind(uint64_t w) { return static_cast<ProcessedKind>(w & 7); }
constexpr uint16_t processed_owner(uint64_t w) { return static_cast<uint16_t>(w >> 8); }
constexpr int64_t processed_done_ms(uint64_t w) { return static_cast<int64_t>(w >> 8); }

// Whether a state word is one the format allows (the rules above).
constexpr bool processed_word_valid(uint64_t w) {
  switch (w & 0xFF) {
    case kProcessedFree: return w == 0;
    case kProcessedPending:
    case kProcessedInDoubt: return (w >> 24) == 0 && processed_owner(w) != 0;
    case kProcessedDone: return (w >> 8) != 0;
    default: return false;  // kinds 4..7, or reserved bits 3..7 set
  }
}
static_assert(processed_word_valid(processed_done(1)) && !processed_word_valid(processed_done(0)));
static_assert(processed_word_valid(processed_pending(5)) && !processed_word_valid(processed_pending(0)));
static_assert(!processed_word_valid(4) && !processed_word_valid(8));

// Unix ms fit in bits 8..63 of a DONE word until the year 2,284,000 or so.
static_assert((UINT64_MAX >> 8) > 100'000ull * 365 * 24 * 3600 * 1000);

constexpr uint64_t processed_file_bytes(uint32_t buckets) {
  return (kProcessedBucketsOffset + uint64_t{buckets} * sizeof(ProcessedBucket) + 4095) / 4096 * 4096;
}
static_assert(kProcessedCountersOffset + sizeof(ProcessedCounters) <= kProcessedBucketsOffset);

}  // namespace sluice::format
