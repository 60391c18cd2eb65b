// Producer identities and their per-partition sequence state: the one
// authoritative description of these bytes (docs/exactly-once.md explains the
// design). All integers little-endian.
//
// ---- <dir>/producers/table (kind kProducerTable) -------------------------
//
//   [0, 48)          FileHeader
//   [48, 56)         ProducerTableParams: slot_count u32 | reserved u32
//   [1024, 1032)     assign lock (atomic u64): OwnerId + 1 of the process
//                    assigning a slot, 0 when free; a dead holder's is taken
//                    over (ipc/owner_lock.h)
//   [4096 + 4096 s)  ProducerSlot s, s < slot_count
//
// ProducerSlot, 4 KiB:
//
//   +0    control      (atomic u64)  the word below; every decision CASes it
//   +8    deadline_ms  (atomic i64)  Unix ms at which the open transaction
//                                     times out (any process may abort it)
//   +16   txn_parts    (atomic u32)  partition entries of the open transaction
//   +20   txn_offsets  (atomic u32)  offset entries of the open transaction
//   +24   reserved     40 bytes              -- line 0: written by the holder
//   +64   generation   (atomic u32)  +1 each time the slot gets a new identity;
//                                     0: never used (ends a name's probe chain)
//   +68   kind         (u8)  1 named, 2 unnamed (freed when its process dies)
//   +69   reserved     (u8, u16)
//   +72   name_hash    (u64) XXH3-64(name) | 1; 0 for unnamed
//   +80   idle_since_ms (atomic i64) named: bus-clock Unix ms at which the
//                                     table first saw the identity READY
//                                     without a live holder; 0 while held or
//                                     not seen so (files made before it:
//                                     zero); reset at each open
//   +88   reserved     40 bytes              -- line 1: identity, written under
//                                               the assign lock
//   +128  name[208]    NUL-padded
//   +336  counters     8 x atomic u64 (relaxed statistics): opens, fenced
//                      sends, duplicates returned, takeovers walked, records
//                      walked in takeovers, transactions committed, aborted
//                      by their holder, aborted by another process
//   +400  reserved     112 bytes
//   +512  TxnPartition[64], 32 bytes each: a partition the open transaction
//         wrote to: topic_hash u64 (XXH3-64 of the topic's name) | partition
//         u32 | reserved u32 | first_offset u64 | last_offset u64: its
//         frames there lie in [first, last]
//   +2560 TxnOffset[32], 48 bytes each: a group offset to commit with it:
//         group_hash u64 | topic_hash u64 | partition u32 | reserved u32 |
//         next_offset u64 | expected u64 (the group's offset when it was
//         added: applied as a CAS expected -> next_offset, so that a late
//         replay cannot move the group back) | reserved 8 bytes
//
// The holder fills an entry (relaxed), then publishes it by storing the count
// (release); a helper that acquires the count sees complete entries below it.
// Every field is atomic (relaxed): a helper carrying out a decision its
// holder already carried out may read an entry the holder is rewriting for
// its next transaction. Such a helper's flips check each frame's producer id
// and epoch, and its offset commits are CASes from the expected value, so
// what it reads there changes nothing; but it must not be a data race.
// last_offset is relaxed: a helper that read an older one is safe, because a
// helper's abort bumps the epoch and any frame of the old epoch found later
// is a straggler that readers abort (docs/exactly-once.md, section 4).
//
// Control word:
//
//   bits  0..2   state: 0 FREE, 2 READY (no transaction open), 3 ONGOING,
//                4 COMMITTING, 5 ABORTING (docs/exactly-once.md, section 4)
//   bits  3..18  epoch of the holder: +1 at every open of the identity
//   bits 19..34  owner: ipc::OwnerId of the holder's process
//   bits 35..63  txn: transaction number (transactions)
//
// pid = generation << 32 | slot: one identity forever (a reused slot gets a
// new generation: an unnamed one freed, or a named one reclaimed after idling
// kProducerIdleExpirationMs, producer_table.h); 0 is "no producer" in frame
// headers.
//
// ---- <dir>/topics/<t>/<p>/producers (kind kPartitionProducers) ------------
//
//   [0, 48)          FileHeader
//   [48, 56)         PartitionProducersParams: entries u32 (a power of two) |
//                    reserved u32
//   [4096 + 576 i)   ProducerEntry i, found from pid by linear probing
//
// ProducerEntry, 576 bytes: what one pid appended to this partition, as a
// hint for the next instance's takeover walk (the log is the truth):
//
//   +0    pid          (atomic u64)  0 = empty; claimed by CAS 0 -> pid
//   +8    head         (atomic u64)  ring items written so far
//   +16   origin       (atomic u64)  the partition's end offset when the entry
//                                     was made: the pid has no frame below it
//   +24   reserved     40 bytes
//   +64   ring[32]     the pid's last committed frames here, 16 bytes each:
//                        offset (atomic u64): the frame's first offset
//                        word   (atomic u64): base_sequence u32 | count u16 |
//                                              epoch u16
//
// Only the pid's live instance writes its entry, after each committed frame:
// item (head % 32) relaxed, then head (release). A fenced instance that has
// not noticed yet may still write one item late; every item names a real
// committed frame of the pid, and any such frame gives a consistent starting
// point (sequences grow along the log), so a takeover may start from any item
// it can verify against the log and walks forward from there.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace sluice::format {

inline constexpr uint32_t kProducerSlots = 1024;
inline constexpr uint64_t kProducerAssignLockOffset = 1024;
inline constexpr uint64_t kProducerSlotsOffset = 4096;
inline constexpr uint32_t kProducerNameBytes = 208;  // NUL-padded; names are at most 200

inline constexpr uint32_t kProducerEntriesDefault = 128;
inline constexpr uint64_t kProducerEntriesOffset = 4096;
inline constexpr uint32_t kProducerRingItems = 32;

struct ProducerTableParams {
  uint32_t slot_count;
  uint32_t reserved;
};
static_assert(sizeof(ProducerTableParams) == 8);

enum ProducerSlotState : uint64_t {
  kProducerFree = 0,
  kProducerReady = 2,
  kProducerOngoing = 3,
  kProducerCommitting = 4,
  kProducerAborting = 5,
};
inline constexpr uint32_t kTxnMaxPartitions = 64;
inline constexpr uint32_t kTxnMaxOffsets = 32;

struct TxnPartition {
  std::atomic<uint64_t> topic_hash;
  std::atomic<uint32_t> partition;
  uint32_t reserved;
  std::atomic<uint64_t> first_offset;
  std::atomic<uint64_t> last_offset;
};
static_assert(sizeof(TxnPartition) == 32);

struct TxnOffset {
  std::atomic<uint64_t> group_hash;
  std::atomic<uint64_t> topic_hash;
  std::atomic<uint32_t> partition;
  uint32_t reserved;
  std::atomic<uint64_t> next_offset;
  std::atomic<uint64_t> expected;
  uint64_t reserved2;
};
static_assert(sizeof(TxnOffset) == 48);
static_assert(offsetof(TxnPartition, partition) == 8 && offsetof(TxnPartition, first_offset) == 16 &&
              offsetof(TxnPartition, last_offset) == 24);
static_assert(offsetof(TxnOffset, topic_hash) == 8 && offsetof(TxnOffset, partition) == 16 &&
              offsetof(TxnOffset, next_offset) == 24 && offsetof(TxnOffset, expected) == 32);
enum ProducerKind : uint8_t { kProducerNamed = 1, kProducerUnnamed = 2 };

struct ProducerSlot {
  std::atomic<uint64_t> control;
  std::atomic<int64_t> deadline_ms;
  std::atomic<uint32_t> txn_parts;
  std::atomic<uint32_t> txn_offsets;
  uint8_t reserved0[40];
  std::atomic<uint32_t> generation;
  uint8_t kind;
  uint8_t reserved1[3];
  uint64_t name_hash;
  std::atomic<int64_t> idle_since_ms;
  uint8_t reserved2[40];
  char name[kProducerNameBytes];
  std::atomic<uint64_t> opens;
  std::atomic<uint64_t> fenced_sends;
  std::atomic<uint64_t> duplicates;
  std::atomic<uint64_t> takeovers;
  std::atomic<uint64_t> records_walked;
  std::atomic<uint64_t> txn_committed;
  std::atomic<uint64_t> txn_aborted;
  std::atomic<uint64_t> txn_aborted_by_helper;
  uint8_t reserved3[112];
  TxnPartition txn_partitions[kTxnMaxPartitions];
  TxnOffset txn_offsets_list[kTxnMaxOffsets];
};
static_assert(sizeof(ProducerSlot) == 4096);
static_assert(offsetof(ProducerSlot, generation) == 64);
static_assert(offsetof(ProducerSlot, name_hash) == 72);
static_assert(offsetof(ProducerSlot, idle_since_ms) == 80);
static_assert(offsetof(ProducerSlot, name) == 128);
static_assert(offsetof(ProducerSlot, opens) == 336);
static_assert(offsetof(ProducerSlot, txn_partitions) == 512);
static_assert(offsetof(ProducerSlot, txn_offsets_list) == 2560);
static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free &&
              std::atomic<int64_t>::is_always_lock_free);

constexpr uint64_t make_producer_control(ProducerSlotState state, uint16_t epoch, uint16_t owner, uint32_t txn) {
  return uint64_t{state} | (uint64_t{epoch} << 3) | (uint64_t{owner} << 19) | (uint64_t{txn & 0x1FFFFFFFu} << 35);
}
constexpr ProducerSlotState producer_state(uint64_t c) { return static_cast<ProducerSlotState>(c & 7u); }
constexpr uint16_t producer_epoch(uint64_t c) { return static_cast<uint16_t>(c >> 3); }
constexpr uint16_t producer_owner(uint64_t c) { return static_cast<uint16_t>(c >> 19); }
constexpr uint32_t producer_txn(uint64_t c) { return static_cast<uint32_t>(c >> 35); }

constexpr uint64_t make_pid(uint32_t generation, uint32_t slot) { return (uint64_t{generation} << 32) | slot; }
constexpr uint32_t pid_slot(uint64_t pid) { return static_cast<uint32_t>(pid); }
constexpr uint32_t pid_generation(uint64_t pid) { return static_cast<uint32_t>(pid >> 32); }

struct PartitionProducersParams {
  uint32_t entries;
  uint32_t reserved;
};
static_assert(sizeof(PartitionProducersParams) == 8);

struct ProducerRingItem {
  std::atomic<uint64_t> offset;
  std::atomic<uint64_t> word;
};

struct ProducerEntry {
  std::atomic<uint64_t> pid;
  std::atomic<uint64_t> head;
  std::atomic<uint64_t> origin;
  uint8_t reserved[40];
  ProducerRingItem ring[kProducerRingItems];
};
static_assert(sizeof(ProducerEntry) == 576);
static_assert(offsetof(ProducerEntry, ring) == 64);

constexpr uint64_t make_ring_word(uint32_t base_sequence, uint32_t count, uint16_t epoch) {
  return uint64_t{base_sequence} | (uint64_t{count & 0xFFFFu} << 32) | (uint64_t{epoch} << 48);
}
constexpr uint32_t ring_sequence(uint64_t w) { return static_cast<uint32_t>(w); }
constexpr uint32_t ring_count(uint64_t w) { return static_cast<uint32_t>(w >> 32) & 0xFFFFu; }
constexpr uint16_t ring_epoch(uint64_t w) { return static_cast<uint16_t>(w >> 48); }

}  // namespace sluice::format
