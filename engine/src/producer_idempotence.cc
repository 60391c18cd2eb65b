// Idempotent producers (docs/exactly-once.md, sections 2 and 3): identities,
// the takeover walk that learns a partition's next sequence after a restart,
// duplicates, and fencing.
#include <sluice/bus.h>
#include <sluice/producer.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "partition_cursor.h"
#include "producer_state.h"
#include "transaction_state.h"

namespace sluice {

using namespace format;

namespace {
// How long a takeover waits for claims in flight ahead of it (a live writer
// stalled inside one is repaired after the topic's claim timeout, 10 s by
// default) before giving up with kTimeout.
constexpr auto kTakeoverWait = std::chrono::seconds(30);
}  // namespace

Result<ProducerTable*> BusState::producers() {
  std::lock_guard lock(mu);
  if (!producer_table) {
    auto t = ProducerTable::open(dir, *clock);  // idle names age on the bus clock
    if (!t) return std::unexpected(t.error());
    producer_table = std::move(*t);
  }
  return producer_table.get();
}

Status ProducerAccess::make_idempotent(Producer& p, std::string_view name) {
  ProducerState& s = *p.state_;
  auto table = s.bus->producers();
  if (!table) return std::unexpected(table.error());
  BusState& bus = *s.bus;
  auto id = (*table)->open_identity(name, s.bus->registry, [&](ProducerSlot& slot, uint64_t pid) {
    return settle_transaction(bus, slot, pid, slot.control.load(std::memory_order_acquire), false);
  });
  if (!id) return std::unexpected(id.error());
  s.idem = std::make_unique<ProducerState::Idempotence>();
  s.idem->table = *table;
  s.idem->id = *id;
  s.idem->name = name.empty() ? "unnamed producer " + std::to_string(id->pid) : "producer " + std::string(name);
  s.idem->parts.resize(s.topic->options.partitions);
  return {};
}

SendStatus ProducerState::fenced_error() {
  // A transactional instance is fenced either by a newer instance of its
  // name or by a helper that aborted its transaction past the timeout (the
  // epoch bump that makes its late frames stragglers); the identity's open
  // count tells which, as TransactionalProducer::commit() reports it.
  // relaxed: see ProducerIdentity::opens.
  if (txn && idem->table->slot(idem->id.slot).opens.load(std::memory_order_relaxed) == idem->id.opens)
    return fail(SendStatus::kAborted,
                Error{Errc::kAborted, idem->name + " epoch " + std::to_string(idem->id.epoch) +
                                          ": its transaction ran past its timeout and was aborted by another process"});
  return fail(SendStatus::kFenced, Error{Errc::kFenced, idem->name + " epoch " + std::to_string(idem->id.epoch) +
                                                            " was fenced by a newer instance of its identity"});
}

SendStatus ProducerState::fenced(const Partition::Reservation& r, uint32_t frame_length, uint32_t count) {
  abort_own(r, frame_length, count);
  idem->fenced = true;
  // relaxed: a statistic.
  idem->table->slot(idem->id.slot).fenced_sends.fetch_add(1, std::memory_order_relaxed);
  // Let the new instance have our exclusive partitions: nothing of ours is
  // past the tail (the frame is aborted, not dirty).
  for (size_t p = 0; p < writers.size(); ++p) {
    Writer& w = writers[p];
    if (!w.ready) continue;
    if (options.exclusive) release_exclusive(p);
    w = Writer{};
  }
  return fenced_error();
}

void ProducerState::abort_own(const Partition::Reservation& r, uint32_t frame_length, uint32_t count) {
  Segment& seg = *r.segment;
  auto& word = seg.word(r.position);
  const uint64_t aborted = make_claim_word(kAborted, frame_length, count, owner);
  if (options.exclusive) {
    // seq_cst: as an exclusive publish (the wake-up handshake).
    word.store(aborted, std::memory_order_seq_cst);
    seg.store_hint(r.position + frame_length, static_cast<uint32_t>(r.offset - seg.base_offset()) + count);
  } else {
    // seq_cst: as the commit CAS it replaces; it fails only if a repairer
    // aborted the claim first, which is as good.
    uint64_t expected = make_claim_word(r.claimed, frame_length, count, owner);
    word.compare_exchange_strong(expected, aborted, std::memory_order_seq_cst, std::memory_order_relaxed);
  }
  ipc::notify(topic->control().wakeup);
}

SendStatus ProducerState::take_over(uint32_t partition) {
  Partition& part = *topic->partitions[partition];
  Idempotence::Part& st = idem->parts[partition];
  ProducerTable& table = *idem->table;
  bool made = false;
  auto entry = part.producer_entry(idem->id.pid, [&](uint64_t pid) { return table.exists(pid); }, &made);
  if (!entry) return fail(entry.error().code == Errc::kBusy ? SendStatus::kBusy : SendStatus::kError, entry.error());
  ProducerEntry& e = **entry;
  st.entry = &e;
  // acquire: pairs with the release store of head in record_committed(), and
  // of origin when the entry was made.
  const uint64_t head = e.head.load(std::memory_order_acquire);
  uint64_t from = e.origin.load(std::memory_order_acquire);
  uint32_t next_seq = 0;
  st.head = head;
  // Read uncommitted, so that another producer's open transaction does not
  // hold the walk; our own records count only in COMMITTED frames (an
  // aborted transaction's sequences are given again).
  PartitionCursor c(part, false, Isolation::kReadUncommitted);
  RecordView v;
  if (head > 0) {
    // The last item, if the log confirms it (a fenced instance may have
    // written one late; producer_format.h says why any real one will do).
    const ProducerRingItem& it = e.ring[(head - 1) % kProducerRingItems];
    const uint64_t off = it.offset.load(std::memory_order_relaxed);
    const uint64_t w = it.word.load(std::memory_order_relaxed);
    if (ring_count(w) > 0 && off >= part.start_offset() && c.seek(off) &&
        c.next(&v) == PartitionCursor::Step::kRecord && v.offset == off && v.producer_id == idem->id.pid &&
        v.sequence == ring_sequence(w)) {
      from = off + ring_count(w);
      next_seq = ring_sequence(w) + ring_count(w);
    }
  }
  // Below the log start, retention removed our history: sequences continue
  // from what is left (documented: idempotence is bounded by retention).
  from = std::max(from, part.start_offset());
  if (auto ok = c.seek(from); !ok && ok.error().code != Errc::kOffsetOutOfRange) return fail(SendStatus::kError, ok.error());
  // Walk to the tail. Every claim on the way is waited for (or repaired, if
  // its writer died), so a frame an earlier instance of ours claimed before
  // our epoch bump is counted; one claimed after it aborts itself (section 3).
  uint64_t walked = 0;
  uint64_t run_offset = 0, run_count = 0;
  uint32_t run_seq = 0;
  const auto deadline = std::chrono::steady_clock::now() + kTakeoverWait;
  for (;;) {
    PartitionCursor::Step step = c.next(&v);
    // A 0 word below the tail is a claim whose word is on its way (or whose
    // writer died: next() repairs it): wait as for a CLAIMED frame.
    if (step == PartitionCursor::Step::kEmpty) {
      if (!c.claims_ahead()) break;
      step = PartitionCursor::Step::kPending;
    }
    if (step == PartitionCursor::Step::kRecord) {
      ++walked;
      if (v.producer_id != idem->id.pid) continue;
      {
        const Segment& seg = *c.current_segment();
        if (claim_state(seg.word(static_cast<uint32_t>(v.position - seg.base_position())).load(
                std::memory_order_acquire)) != kCommitted)
          continue;
      }
      if (run_count > 0 && v.offset == run_offset + run_count && v.sequence == run_seq + run_count) {
        ++run_count;
      } else {
        if (run_count > 0) record_committed(partition, run_offset, run_seq, static_cast<uint32_t>(run_count));
        run_offset = v.offset;
        run_seq = v.sequence;
        run_count = 1;
      }
      next_seq = v.sequence + 1;
      continue;
    }
    if (step == PartitionCursor::Step::kOutOfRange) {
      if (auto ok = c.seek(part.start_offset()); !ok) return fail(SendStatus::kError, ok.error());
      continue;
    }
    if (step == PartitionCursor::Step::kCorrupt) {
      if (c.skip_corrupt() == 0) return fail(SendStatus::kError, c.error());
      continue;
    }
    // kPending: a claim in flight.
    if (std::chrono::steady_clock::now() >= deadline)
      return fail(SendStatus::kError, Error{Errc::kTimeout, idem->name + ": a claim in partition " +
                                                                std::to_string(partition) + " of topic " + topic->name +
                                                                " stayed open for the whole takeover wait"});
    std::this_thread::yield();
  }
  if (run_count > 0) record_committed(partition, run_offset, run_seq, static_cast<uint32_t>(run_count));
  st.next_seq = next_seq;
  st.ready = true;
  ProducerSlot& slot = table.slot(idem->id.slot);
  // relaxed: statistics.
  slot.takeovers.fetch_add(1, std::memory_order_relaxed);
  slot.records_walked.fetch_add(walked, std::memory_order_relaxed);
  return SendStatus::kOk;
}

uint64_t ProducerState::find_original(uint32_t partition, uint32_t sequence) {
  Idempotence::Part& st = idem->parts[partition];
  Partition& part = *topic->partitions[partition];
  PartitionCursor c(part, false, Isolation::kReadCommitted);
  RecordView v;
  const uint64_t items = std::min<uint64_t>(st.head, kProducerRingItems);
  for (uint64_t k = 1; k <= items; ++k) {
    const ProducerRingItem& it = st.entry->ring[(st.head - k) % kProducerRingItems];
    const uint64_t off = it.offset.load(std::memory_order_relaxed);
    const uint64_t w = it.word.load(std::memory_order_relaxed);
    const uint32_t into = sequence - ring_sequence(w);  // wrapping
    if (into >= ring_count(w)) continue;
    // Believe the item only if the log agrees.
    const uint64_t want = off + into;
    if (want >= part.start_offset() && c.seek(want) && c.next(&v) == PartitionCursor::Step::kRecord &&
        v.offset == want && v.producer_id == idem->id.pid && v.sequence == sequence)
      return want;
  }
  return kNoOffset;
}

SendResult Producer::send_sequenced(const Message& message, uint32_t sequence,
                                    std::optional<uint32_t> partition) noexcept {
  ProducerState& s = *state_;
  SendResult result;
  if (!s.idem) {
    result.status = s.fail(SendStatus::kError, Error{Errc::kInvalidArgument, "send_sequenced needs an idempotent producer"});
    return result;
  }
  result.partition = s.choose_partition(message.key, partition);
  if (result.partition >= s.topic->options.partitions) {
    result.status = s.fail(SendStatus::kError, Error{Errc::kInvalidArgument, "partition out of range"});
    return result;
  }
  auto next = next_sequence(result.partition);
  if (!next) {
    s.last_error = next.error();
    result.status = next.error().code == Errc::kFenced ? SendStatus::kFenced
                    : next.error().code == Errc::kBusy ? SendStatus::kBusy
                                                       : SendStatus::kError;
    return result;
  }
  result.sequence = sequence;
  // Wrapping comparison: sequences are 32-bit and may wrap in a long life.
  const int32_t ahead = static_cast<int32_t>(sequence - *next);
  if (ahead > 0) {
    result.status = s.fail(SendStatus::kOutOfOrderSequence,
                           Error{Errc::kOutOfOrderSequence, s.idem->name + ": sequence " + std::to_string(sequence) +
                                                                " in partition " + std::to_string(result.partition) +
                                                                ", expected " + std::to_string(*next)});
    return result;
  }
  if (ahead < 0) {
    result.status = SendStatus::kOk;
    result.duplicate = true;
    result.offset = s.find_original(result.partition, sequence);
    // relaxed: a statistic.
    s.idem->table->slot(s.idem->id.slot).duplicates.fetch_add(1, std::memory_order_relaxed);
    return result;
  }
  return send(message, result.partition);
}

Result<uint32_t> Producer::next_sequence(uint32_t partition) noexcept {
  ProducerState& s = *state_;
  if (!s.idem) return make_error(Errc::kInvalidArgument, "sequences belong to idempotent producers");
  if (partition >= s.topic->options.partitions) return make_error(Errc::kInvalidArgument, "partition out of range");
  if (s.idem->fenced) {
    s.fenced_error();
    return std::unexpected(s.last_error);
  }
  if (!s.idem->parts[partition].ready) {
    // The takeover needs the writer lock first (exclusive partitions).
    ProducerState::Writer* w;
    if (SendStatus st = s.writer(partition, &w); st != SendStatus::kOk) return std::unexpected(s.last_error);
    if (SendStatus st = s.take_over(partition); st != SendStatus::kOk) return std::unexpected(s.last_error);
  }
  return s.idem->parts[partition].next_seq;
}

uint64_t Producer::producer_id() const noexcept { return state_->idem ? state_->idem->id.pid : 0; }
uint16_t Producer::producer_epoch() const noexcept { return state_->idem ? state_->idem->id.epoch : 0; }

}  // namespace sluice
