// The state behind a TransactionalProducer, and the transaction steps any
// process may carry out (docs/exactly-once.md, section 4; the slot layout is
// in producer_format.h).
#pragma once

#include <sluice/transaction.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bus_state.h"
#include "group_offsets.h"
#include "segment_format.h"
#include "producer_table.h"
#include "queue_format.h"

namespace sluice {

struct ProducerState;
struct QueueState;

struct TransactionState {
  std::shared_ptr<BusState> bus;
  ProducerTable* table = nullptr;  // owned by the bus state
  ProducerIdentity id;
  std::string name;
  TransactionOptions options;
  bool open = false;
  bool fenced = false;
  Error fence_error{Errc::kFenced, ""};
  uint32_t txn = 0;  // the open transaction's number
  // A partition the open transaction wrote to: its slot entry, where the
  // partition's sequences stood at begin (an abort gives them back), and its
  // last frame (the ring hint recorded at commit).
  struct Touched {
    ProducerState* producer;
    uint32_t partition;
    uint32_t entry;
    uint32_t start_seq;
    uint64_t last_offset;
    uint32_t last_seq;
    uint32_t last_count;
  };
  std::vector<Touched> touched;
  // The open transaction's frames, for the holder to decide them without a
  // walk (helpers walk the slot's ranges instead). Reused: no allocation per
  // send once grown. `keep` holds the segments they lie in.
  struct FrameRef {
    Segment* segment;
    uint32_t position;
  };
  std::vector<FrameRef> frames;
  std::vector<std::shared_ptr<Segment>> keep;
  // Group offsets of the open transaction, and the groups' files (cached).
  struct PendingOffset {
    GroupOffsets* group;
    uint32_t partition;
    uint64_t expected;
    uint64_t next_offset;
  };
  std::vector<PendingOffset> offsets;
  std::map<std::string, std::unique_ptr<GroupOffsets>, std::less<>> groups;  // "group\ntopic"

  // The holder carries its own decision out: flips its frames to `to`,
  // applies the offsets (commit), wakes readers and makes the slot READY.
  Status finish(uint64_t decided, format::ClaimState to);
  std::map<std::string, std::unique_ptr<Producer>, std::less<>> producers;
  // Queue publishers bound to the identity (TransactionalProducer::queue):
  // a queue level is a partition of the queue's internal topic, so their
  // messages are frames of the transaction like any other.
  std::map<std::string, std::unique_ptr<QueuePublisher>, std::less<>> queues;
  // De-duplication ids the open transaction published: HELD entries of this
  // process (naming their frames, queue_exactly_once.h) until the decision, then completed (commit) or released
  // (abort), so that an aborted publish never answers for its id.
  struct HeldDedup {
    const QueueState* queue;
    format::DedupEntry* entry;
    uint64_t key;  // the entry's id hash
    uint32_t level;
    uint64_t offset;
  };
  std::vector<HeldDedup> dedups;
  const HeldDedup* held_dedup(const QueueState* queue, uint64_t key) const noexcept {
    for (const HeldDedup& d : dedups)
      if (d.queue == queue && d.key == key) return &d;
    return nullptr;
  }
  void hold_dedup(const QueueState* queue, format::DedupEntry* entry, uint32_t level, uint64_t offset);
  // After the decision (or a lost one: `committed` false).
  void settle_dedups(bool committed) noexcept;
  // Consumers bound to the identity (TransactionalProducer::consumer).
  struct Bound {
    std::string group, topic;
    std::unique_ptr<Consumer> consumer;
    // Its positions as of the last commit (at first, where it started), by
    // index in its assignment: where an abort rewinds it.
    std::vector<uint64_t> stable;
  };
  std::vector<Bound> consumers;
  // The group's offsets file for `topic`, opened once and cached.
  Result<GroupOffsets*> group_offsets(std::string_view group, std::string_view topic);

  format::ProducerSlot& slot() const { return table->slot(id.slot); }
  // Called by a producer before it publishes a frame of the transaction:
  // makes sure the slot names the frame's partition and range, so that any
  // process can find the frame to decide it. kTooLarge past 64 partitions.
  Status note_frame(ProducerState& producer, uint32_t partition, uint64_t offset, uint32_t sequence,
                    uint32_t count);
};

// Carries out or settles the transaction of the identity `pid` in `slot`
// whose control word was `control`: an ONGOING one is aborted; a COMMITTING
// or ABORTING one is completed (frames flipped, offsets applied). Leaves the
// slot READY, with the epoch bumped if `bump` (a helper's abort fences the
// holder, so that its late frames are recognised as stragglers). Any process
// may run it; every step is a CAS, so a helper killed midway leaves the rest
// to the next.
Status settle_transaction(BusState& bus, format::ProducerSlot& slot, uint64_t pid, uint64_t control, bool bump);

}  // namespace sluice
