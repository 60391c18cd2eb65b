// A Worker's exactly-once step (Guarantee::kExactlyOnce): the id of a
// message, and its handler run inside ProcessedStore::process_once with the
// ack after. Design: docs/exactly-once.md section 6, docs/queues.md section 4.
// And the publishing side's: de-duplication ids held by a transaction
// (docs/exactly-once.md, section 11).
#pragma once

#include <sluice/processed.h>
#include <sluice/queue.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "queue_format.h"

namespace sluice {

// Room for any id processed_id_of() writes: "queue:" + a 200-character
// name + ":<level>:<offset>@<epoch ms>" is at most 250 bytes.
inline constexpr size_t kProcessedIdBufferBytes = 256;

// The id under which a message is processed: the value of its
// kHeaderProcessedId header when that is not empty, else its place,
// "queue:<queue>:<level>:<offset>@<epoch_unix_ms>", written into `buf`. A
// redelivery has the same place, hence the same id; the queue's epoch (its
// creation time) keeps a queue deleted and made again under the same name
// from meeting its predecessor's done ids. No allocation.
std::string_view processed_id_of(const Delivery& d, std::string_view queue, int64_t epoch_unix_ms,
                                 std::span<char, kProcessedIdBufferBytes> buf) noexcept;

// ---- De-duplication ids held by a transaction --------------------------
//
// A bound publisher's id stays PENDING until its transaction is decided. So
// that a second publisher of the id can tell from the log whether that
// publish is over (its transaction aborted or committed) even while the
// holder's process lives on (a SIGSTOPped zombie fenced by a newer
// instance, or a transaction aborted at its timeout), the holder, once its
// frame is appended, rewrites its PENDING word (queue_format.h) to a HELD
// word naming the frame:
//
//   bits  0..1   1 (PENDING: what older code sees, with its owner)
//   bit   2      0 (reserved)
//   bit   3      1: HELD (0 in every PENDING word before 2026-11-28)
//   bits  4..7   the frame's level
//   bits  8..23  owner: ipc::OwnerId of the holder's process
//   bits 24..63  the frame's offset (< 2^40; a larger one stays plain PENDING)
//
// A plain PENDING word is unchanged, so older files and older processes
// read the table as before (a HELD entry is to them PENDING by its owner).
inline constexpr uint64_t kDedupHeldFlag = uint64_t{1} << 3;
inline constexpr uint64_t kDedupHeldOffsetLimit = uint64_t{1} << 40;
// The word a holder keeps while its transaction is open: HELD, or plain
// PENDING when the level or offset does not fit.
constexpr uint64_t dedup_held(uint16_t owner, uint32_t level, uint64_t offset) {
  if (level > 0xF || offset >= kDedupHeldOffsetLimit) return format::dedup_pending(owner);
  return format::dedup_pending(owner) | kDedupHeldFlag | (uint64_t{level} << 4) | (offset << 24);
}
constexpr bool dedup_is_held(uint64_t s) { return format::dedup_is_pending(s) && (s & kDedupHeldFlag) != 0; }
constexpr uint64_t dedup_held_offset(uint64_t s) { return s >> 24; }  // level: format::dedup_level()

// After a publish inside a transaction appended the frame at (`level`,
// `offset`): the claimer's PENDING entry becomes HELD. False if the entry is
// no longer this process's claim (nothing changed then).
bool dedup_hold(format::DedupEntry* e, uint16_t owner, uint32_t level, uint64_t offset) noexcept;
// At the transaction's decision: DONE (committed) or free (aborted), only if
// the entry still holds the HELD word of this publish; a waiter that took
// the entry over or completed it first keeps it. True if this call did it.
bool dedup_settle_held(format::DedupEntry* e, uint16_t owner, uint32_t level, uint64_t offset, bool committed,
                       int64_t now_ns) noexcept;

class ExactlyOnceHandling {
 public:
  // `store` shares the state of the handle WorkerOptions::processed named.
  ExactlyOnceHandling(ProcessedStore store, std::function<bool(std::string_view)> resolve)
      : store_(std::move(store)), resolve_(std::move(resolve)) {}

  // Handles the leased message `d` with id `id` and settles it (the table at
  // sluice::Handler). An exception from the handler or the resolver
  // propagates, the id left not done (or in doubt), for Worker::run to nack
  // or dead-letter as for any worker. Allocates nothing unless the message
  // is dead-lettered or a store error is reported.
  void handle(Delivery& d, std::string_view id, const Handler& handler, WorkerStats& stats);

 private:
  ProcessedStore store_;
  std::function<bool(std::string_view)> resolve_;
};

}  // namespace sluice
