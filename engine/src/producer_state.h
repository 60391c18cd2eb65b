// The state behind a Producer handle.
#pragma once

#include <sluice/options.h>
#include <sluice/producer.h>

#include <memory>
#include <vector>

#include "bus_state.h"
#include "ipc/file_lock.h"
#include "partition.h"
#include "producer_table.h"
#include "segment.h"

namespace sluice {

struct TransactionState;

struct ProducerState {
  std::shared_ptr<BusState> bus;
  std::shared_ptr<TopicState> topic;
  ProducerOptions options;
  uint16_t owner = 0;
  // Exclusive, in a process registered as a release publisher: frames
  // outside a transaction are published with a release store (producer.cc,
  // publish_exclusive; ipc/wait_strategy.h, "Release publishers").
  bool release_publish = false;

  struct Writer {
    bool ready = false;
    ipc::FileLock lock;               // writer.lock, shared or exclusive
    std::shared_ptr<Segment> segment; // cached newest segment
    IntentHold intent;                // shared mode: our claim-intent entry
    TailOwnership own;                // shared mode: the owned tail (segment.h)
    // Exclusive mode only: our own tail in `segment`, and how far we have
    // announced we may write (PartitionControl::exclusive_dirty_end).
    uint32_t tail_position = 0;
    uint32_t tail_count = 0;
    uint64_t dirty_end = 0;
    // Where the zeros past our tail end in `segment`: its capacity, unless
    // our roll recycled it without zeroing it whole (Partition::roll); then
    // reserve() zeroes ahead of the tail, so the word at the tail is always
    // 0 for readers and walkers.
    uint32_t zeroed_end = 0;
    // Exclusive mode: our roll left the partition's retention to our next
    // reserve() (or our close), so that one send does not pay for both
    // (docs/architecture.md, "What a roll costs").
    bool retention_due = false;
    // Exclusive mode: whether we asked for a spare for our next roll
    // (Partition::prepare_spare) in `segment` yet.
    bool spare_asked = false;
  };
  std::vector<Writer> writers;
  uint32_t keyless_partition = 0;
  uint32_t keyless_left = 0;
  Error last_error{Errc::kInvalidArgument, ""};

  // Idempotent producers only (docs/exactly-once.md, section 2).
  struct Idempotence {
    ProducerTable* table = nullptr;  // owned by the bus state
    ProducerIdentity id;
    std::string name;
    bool fenced = false;
    bool claim_open = false;  // a zero-copy Claim holds the next sequence
    struct Part {
      bool ready = false;  // taken over: next_seq is exact
      format::ProducerEntry* entry = nullptr;
      uint32_t next_seq = 0;
      uint64_t head = 0;  // our copy of entry->head
    };
    std::vector<Part> parts;
  };
  std::unique_ptr<Idempotence> idem;
  // Transactional producers: the transaction this producer's sends join
  // (owned by the TransactionalProducer, which owns this producer too).
  TransactionState* txn = nullptr;

  ~ProducerState();
  // Locks the partition for writing on first use.
  SendStatus writer(uint32_t partition, Writer** out) {
    Writer& w = writers[partition];
    if (!w.ready) [[unlikely]]
      return open_writer(partition, out);
    *out = &w;
    return SendStatus::kOk;
  }
  SendStatus open_writer(uint32_t partition, Writer** out);
  // The writer of `partition` if it is in range and open, else nullptr
  // (the straight-line sends leave both cases to the general path).
  Writer* open_writer_of(uint32_t partition) noexcept {
    return partition < writers.size() && writers[partition].ready ? &writers[partition] : nullptr;
  }
  uint32_t choose_partition(std::string_view key, std::optional<uint32_t> explicit_partition) {
    if (explicit_partition) return *explicit_partition;
    if (key.empty() && keyless_left != 0) {  // the sticky partition
      --keyless_left;
      return keyless_partition;
    }
    return choose_partition_slow(key);
  }
  uint32_t choose_partition_slow(std::string_view key);
  SendStatus fail(SendStatus status, Error error) {
    last_error = std::move(error);
    return status;
  }
  // Reserves a frame (shared: CAS claim; exclusive: local tail). On kOk the
  // frame header is written (into the mapping, or into `stage` when the
  // caller composes the frame there) and the claim word is out->claimed
  // (shared) or still 0 (exclusive). `copying`: a copying send's frame,
  // which a shared writer outside a transaction claims CLAIMED_COPY where
  // the segment takes it (segment_format.h); a zero-copy Claim's is CLAIMED.
  SendStatus reserve(uint32_t partition, uint32_t frame_length, uint32_t count,
                     Partition::Reservation* out, std::byte* stage, bool copying);
  // Exclusive mode, in a lazily recycled segment: makes the word at `end`
  // read 0 for the frame [start, end) about to be written (Writer::zeroed_end).
  static void zero_ahead(Writer& w, uint32_t start, uint32_t end) noexcept;
  // Exclusive mode, a clean release of partition `p` (close, or fenced):
  // zeroes what is left of a lazily recycled segment and withdraws the
  // dirty announcement.
  void release_exclusive(size_t p) noexcept;
  // Checksums, indexes and publishes a frame written in place, or composed
  // in `stage` (of frame_length bytes, header written by reserve()), which
  // is copied in first.
  SendStatus publish(const Partition::Reservation& r, uint32_t frame_length,
                     uint32_t count, int64_t first_timestamp_ns, std::byte* stage = nullptr,
                     bool sealed = false);  // sealed: the records' checksums are written
  SendStatus check_back_pressure(uint32_t partition, uint32_t frame_length, const Writer& w);
  // Whether a frame ending at partition position `end` stays within the
  // partition's cached back-pressure bound (kBackPressure topics).
  bool below_back_pressure_limit(uint32_t partition, uint64_t end) const noexcept {
    // relaxed: a cached bound (topic_format.h says why a stale one is safe).
    return end <= topic->partitions[partition]->control().back_pressure_limit.load(std::memory_order_relaxed);
  }
  // Producer::send()'s paths for a small record of a plain producer when
  // nothing but the append itself is due (producer.cc). `ts`: the
  // record's timestamp, read before the claim.
  template <bool kIdempotent>
  bool send_small_exclusive(uint32_t partition, const Message& m, uint64_t headers_bytes, uint32_t frame_length,
                            int64_t ts, SendResult* out) noexcept;
  template <bool kIdempotent>
  bool send_small_shared(uint32_t partition, const Message& m, uint64_t headers_bytes, uint32_t frame_length,
                         int64_t ts, SendResult* out) noexcept;
  // Idempotent: whether a send to `partition` needs nothing first (not
  // fenced, no open Claim holding the next sequence, the partition taken
  // over); the general path handles each of those.
  bool idem_ready(uint32_t partition) const noexcept {
    return !idem->fenced && !idem->claim_open && idem->parts[partition].ready;
  }
  // kAborted, with the error naming the frame's offset: a repairer aborted
  // our claim as stalled before we published it.
  SendStatus aborted_as_stalled(uint64_t offset);

  // Idempotence. Learns the partition's next sequence from its producer
  // entry and the log after it (waiting out claims in flight), once per
  // partition and instance.
  SendStatus take_over(uint32_t partition);
  // After a frame of ours was committed.
  void record_committed(uint32_t partition, uint64_t offset, uint32_t sequence, uint32_t count) noexcept {
    Idempotence::Part& st = idem->parts[partition];
    format::ProducerRingItem& it = st.entry->ring[st.head % format::kProducerRingItems];
    // relaxed: published by the release store of head.
    it.offset.store(offset, std::memory_order_relaxed);
    it.word.store(format::make_ring_word(sequence, count, idem->id.epoch), std::memory_order_relaxed);
    // release: pairs with the acquire load in take_over().
    st.entry->head.store(++st.head, std::memory_order_release);
    st.next_seq = sequence + count;
  }
  // The offset of sequence `sequence` in `partition` if still known, else kNoOffset.
  uint64_t find_original(uint32_t partition, uint32_t sequence);
  // Our frame at `r` was claimed after a newer instance opened the identity:
  // abort it and stop appending (drops the writer locks, so that the new
  // instance can take exclusive partitions).
  SendStatus fenced(const Partition::Reservation& r, uint32_t frame_length, uint32_t count);
  SendStatus fenced_error();
  // Aborts our own frame at `r` (claimed, not published).
  void abort_own(const Partition::Reservation& r, uint32_t frame_length, uint32_t count);
  // Transactions (transaction.cc).
  bool txn_open() const noexcept;
  Status note_txn_frame(const Partition::Reservation& r, uint32_t sequence, uint32_t count);
};

// Producers for topics the engine opens itself (a queue's internal topic).
struct ProducerAccess {
  static Producer make(std::shared_ptr<BusState> bus, std::shared_ptr<TopicState> topic,
                       const ProducerOptions& options);
  // Opens the producer's identity (`name`, or a fresh unnamed one).
  static Status make_idempotent(Producer& p, std::string_view name);
  // Binds a producer to a transactional identity already opened (transaction.cc).
  static void join_transaction(Producer& p, TransactionState& t);
};

}  // namespace sluice
