// Transactions (docs/exactly-once.md, section 4). The outcome lives in each
// frame's claim word: a transaction's frames are published PREPARED, and its
// decision (one CAS on the producer slot's control word) is carried out by
// flipping them to COMMITTED or ABORTED. The slot names the partitions and
// offset ranges the frames lie in, so any process can carry a decision out,
// or abort a transaction whose holder died or ran past its deadline.
#include <sluice/bus.h>
#include <sluice/transaction.h>

#include <chrono>
#include <thread>

#include "consumer_access.h"
#include "group_offsets.h"
#include "ipc/filesystem.h"
#include "partition_cursor.h"
#include "producer_state.h"
#include "record_codec.h"
#include "topic_ops.h"
#include "transaction_state.h"

namespace sluice {

using namespace format;

namespace {

constexpr auto kFlipWait = std::chrono::seconds(30);  // claims in flight inside a range

uint64_t name_hash(std::string_view name) { return key_hash(name); }

int64_t now_ms(const BusState& bus) { return bus.clock->now_ns() / 1'000'000; }

// The topic (queue topics included) whose name hashes to `h`.
Result<std::shared_ptr<TopicState>> topic_by_hash(BusState& bus, uint64_t h) {
  auto names = ipc::list_dir(bus.dir + "/topics");
  if (!names) return std::unexpected(names.error());
  for (const std::string& n : *names)
    if (name_hash(n) == h) return bus.topic(n, true);
  return make_error(Errc::kNotFound, "no topic with name hash " + std::to_string(h) + " (deleted?)");
}

Result<std::string> group_by_hash(const BusState& bus, uint64_t h) {
  auto names = ipc::list_dir(bus.dir + "/groups");
  if (!names) return std::unexpected(names.error());
  for (const std::string& n : *names)
    if (name_hash(n) == h) return n;
  return make_error(Errc::kNotFound, "no group with name hash " + std::to_string(h) + " (deleted?)");
}

// Flips the PREPARED frames of (pid, epoch) in [first, last] of `part` to
// `to`. Frames of others in the range are stepped over (claims in flight are
// waited for, or repaired if their writers died).
Status flip_range(Partition& part, uint64_t pid, uint16_t epoch, uint64_t first, uint64_t last, ClaimState to) {
  PartitionCursor c(part, false, Isolation::kReadUncommitted);
  if (auto ok = c.seek(std::max(first, part.start_offset())); !ok && ok.error().code != Errc::kOffsetOutOfRange)
    return ok;
  const auto deadline = std::chrono::steady_clock::now() + kFlipWait;
  RecordView v;
  for (;;) {
    PartitionCursor::Step step = c.next(&v);
    // A 0 word below the tail is a claim whose word is on its way, or a dead
    // writer's range that next() repairs: the frames after it may be ours.
    if (step == PartitionCursor::Step::kEmpty) {
      if (c.next_offset() > last || !c.claims_ahead()) return {};
      step = PartitionCursor::Step::kPending;
    }
    if (step == PartitionCursor::Step::kRecord) {
      if (v.offset > last) return {};
      if (v.producer_id != pid || v.producer_epoch != epoch) continue;
      Segment& seg = *c.current_segment();
      auto& word = seg.word(static_cast<uint32_t>(v.position - seg.base_position()));
      uint64_t w = word.load(std::memory_order_acquire);
      // seq_cst: a flip publishes the frame to read-committed readers (its
      // bytes were released by the PREPARED publish this RMW continues) and
      // takes part in the wake-up handshake like any publish.
      if (claim_state(w) == kPrepared)
        word.compare_exchange_strong(w, with_state(w, to), std::memory_order_seq_cst, std::memory_order_relaxed);
      continue;
    }
    if (step == PartitionCursor::Step::kOutOfRange) {
      if (auto ok = c.seek(part.start_offset()); !ok) return ok;
      continue;
    }
    if (step == PartitionCursor::Step::kCorrupt) {
      if (c.skip_corrupt() == 0) return std::unexpected(c.error());
      continue;
    }
    if (std::chrono::steady_clock::now() >= deadline)
      return make_error(Errc::kTimeout, "a claim inside a transaction's range stayed open");
    std::this_thread::yield();
  }
}

}  // namespace

Status settle_transaction(BusState& bus, ProducerSlot& slot, uint64_t pid, uint64_t control, bool bump) {
  ProducerSlotState st = producer_state(control);
  const uint16_t epoch = producer_epoch(control);
  if (st == kProducerOngoing) {
    // The abort decision. acq_rel: acquire, the entries the holder published
    // (release counts) before its begin; release, for whoever completes it.
    const uint64_t aborting = make_producer_control(kProducerAborting, epoch, producer_owner(control),
                                                    producer_txn(control));
    if (!slot.control.compare_exchange_strong(control, aborting, std::memory_order_acq_rel, std::memory_order_acquire))
      return {};  // decided or settled meanwhile by someone else
    control = aborting;
    st = kProducerAborting;
    // relaxed: a statistic.
    slot.txn_aborted_by_helper.fetch_add(1, std::memory_order_relaxed);
  }
  if (st != kProducerCommitting && st != kProducerAborting) return {};
  const ClaimState to = st == kProducerCommitting ? kCommitted : kAborted;
  // acquire: pairs with the release stores of the counts; the entries below
  // them are complete.
  const uint32_t parts = std::min(slot.txn_parts.load(std::memory_order_acquire), kTxnMaxPartitions);
  for (uint32_t i = 0; i < parts; ++i) {
    const TxnPartition& e = slot.txn_partitions[i];
    // relaxed (every field here): see producer_format.h.
    auto topic = topic_by_hash(bus, e.topic_hash.load(std::memory_order_relaxed));
    if (!topic) {
      if (topic.error().code == Errc::kNotFound) continue;  // the topic was deleted
      return std::unexpected(topic.error());
    }
    const uint32_t partition_index = e.partition.load(std::memory_order_relaxed);
    if (partition_index >= (*topic)->partitions.size()) continue;
    Partition& part = *(*topic)->partitions[partition_index];
    // relaxed: see producer_format.h (a late range end leaves stragglers,
    // which readers abort).
    if (auto ok = flip_range(part, pid, epoch, e.first_offset.load(std::memory_order_relaxed),
                             e.last_offset.load(std::memory_order_relaxed), to);
        !ok)
      return ok;
    ipc::notify((*topic)->control().wakeup);
  }
  if (to == kCommitted) {
    const uint32_t offsets = std::min(slot.txn_offsets.load(std::memory_order_acquire), kTxnMaxOffsets);
    for (uint32_t i = 0; i < offsets; ++i) {
      const TxnOffset& o = slot.txn_offsets_list[i];
      // relaxed (every field here): see producer_format.h.
      auto topic = topic_by_hash(bus, o.topic_hash.load(std::memory_order_relaxed));
      auto group = group_by_hash(bus, o.group_hash.load(std::memory_order_relaxed));
      if (!topic || !group) continue;  // deleted since
      auto g = GroupOffsets::open(bus, *group, **topic, false);
      const uint32_t partition = o.partition.load(std::memory_order_relaxed);
      if (!g || partition >= (*g)->partitions()) continue;
      // A CAS from the value the transaction saw: a replay by a late helper,
      // after the group moved on, fails instead of moving it back.
      (void)(*g)->commit_if(partition, o.expected.load(std::memory_order_relaxed),
                            o.next_offset.load(std::memory_order_relaxed), bus.clock->now_ns());
    }
  }
  // The transaction is over. A helper's abort also bumps the epoch: the
  // holder is fenced, and any frame of the old epoch met later is a straggler.
  const uint64_t ready = make_producer_control(kProducerReady, static_cast<uint16_t>(epoch + (bump ? 1 : 0)),
                                               producer_owner(control), producer_txn(control));
  // release: the flips and offsets above happen before the next transaction.
  slot.control.compare_exchange_strong(control, ready, std::memory_order_release, std::memory_order_relaxed);
  return {};
}

bool Partition::resolve_prepared(Segment& seg, uint32_t position, uint64_t word) {
  const FrameHeader* f = seg.frame(position);
  const uint64_t pid = f->producer_id;
  const uint16_t epoch = f->producer_epoch;
  BusState& bus = *topic_->bus;
  auto abort_frame = [&] {
    uint64_t w = word;
    // seq_cst: as a flip.
    const bool done = seg.word(position).compare_exchange_strong(w, with_state(word, kAborted),
                                                                  std::memory_order_seq_cst, std::memory_order_relaxed);
    if (done) ipc::notify(topic_->control().wakeup);
    return true;  // resolved either way: the word moved
  };
  auto table = bus.producers();
  if (!table) return false;
  if (pid == 0 || !(*table)->exists(pid)) return abort_frame();
  ProducerSlot& slot = (*table)->slot(pid_slot(pid));
  // acquire: pairs with the release/acq_rel CASes of the holder and helpers.
  const uint64_t c = slot.control.load(std::memory_order_acquire);
  // Another epoch: the frame's transaction is over and it was not carried
  // out (a straggler written after its abort): abort it.
  if (producer_epoch(c) != epoch) return abort_frame();
  switch (producer_state(c)) {
    case kProducerOngoing: {
      const bool dead = !bus.registry.is_alive(producer_owner(c));
      // relaxed: the deadline was published with the begin CAS we acquired.
      const bool late = now_ms(bus) >= slot.deadline_ms.load(std::memory_order_relaxed);
      if (!dead && !late) return false;  // this frame is the last stable offset
      return static_cast<bool>(settle_transaction(bus, slot, pid, c, true));
    }
    case kProducerCommitting:
    case kProducerAborting: return static_cast<bool>(settle_transaction(bus, slot, pid, c, false));
    default: return abort_frame();  // READY or FREE: nothing left undecided
  }
}

// ---- the holder ------------------------------------------------------------

bool ProducerState::txn_open() const noexcept { return txn->open; }

Status ProducerState::note_txn_frame(const Partition::Reservation& r, uint32_t sequence, uint32_t count) {
  // The writer's cached segment is the one reserved in; keep it alive until
  // the transaction is decided (only when it changes: no refcount per send).
  const std::shared_ptr<Segment>& seg = writers[r.partition].segment;
  if (txn->keep.empty() || txn->keep.back() != seg) txn->keep.push_back(seg);
  txn->frames.push_back(TransactionState::FrameRef{r.segment, r.position});
  if (auto ok = txn->note_frame(*this, r.partition, r.offset, sequence, count); !ok) {
    txn->frames.pop_back();
    return ok;
  }
  return {};
}

Status TransactionState::note_frame(ProducerState& producer, uint32_t partition, uint64_t offset, uint32_t sequence,
                                    uint32_t count) {
  ProducerSlot& s = slot();
  const uint64_t last = offset + count - 1;
  for (Touched& t : touched) {
    if (t.producer != &producer || t.partition != partition) continue;
    // relaxed: published by the frame's PREPARED CAS, which follows.
    s.txn_partitions[t.entry].last_offset.store(last, std::memory_order_relaxed);
    t.last_offset = offset;
    t.last_seq = sequence;
    t.last_count = count;
    return {};
  }
  const uint32_t n = static_cast<uint32_t>(touched.size());
  if (n >= kTxnMaxPartitions)
    return make_error(Errc::kTooLarge, "a transaction writes to at most " + std::to_string(kTxnMaxPartitions) +
                                           " partitions");
  TxnPartition& e = s.txn_partitions[n];
  // relaxed: published by the release store of the count below (and see
  // producer_format.h).
  e.topic_hash.store(name_hash(producer.topic->name), std::memory_order_relaxed);
  e.partition.store(partition, std::memory_order_relaxed);
  e.first_offset.store(offset, std::memory_order_relaxed);
  e.last_offset.store(last, std::memory_order_relaxed);
  // release: a helper that acquires the count sees the entry.
  s.txn_parts.store(n + 1, std::memory_order_release);
  touched.push_back(Touched{&producer, partition, n, sequence, offset, sequence, count});
  return {};
}

namespace {
// Why a CAS on our control word failed: a newer instance opened the name, or
// a helper aborted our transaction (past its deadline). Either way we are
// fenced from now on.
Status lost_control(TransactionState& t) {
  t.open = false;
  t.fenced = true;
  // relaxed: see ProducerIdentity::opens.
  const bool reopened = t.slot().opens.load(std::memory_order_relaxed) != t.id.opens;
  t.fence_error = reopened ? Error{Errc::kFenced, "transactional producer " + t.name + " epoch " +
                                                      std::to_string(t.id.epoch) + " was fenced by a newer instance"}
                           : Error{Errc::kAborted, "transactional producer " + t.name + ": the transaction ran past "
                                                   "its timeout and was aborted by another process"};
  Error e = t.fence_error;
  t.fence_error.code = Errc::kFenced;  // later calls: fenced
  return std::unexpected(std::move(e));
}

// Gives the sequences of an aborted transaction back.
void roll_back(TransactionState& t) {
  for (const auto& x : t.touched) x.producer->idem->parts[x.partition].next_seq = x.start_seq;
  t.touched.clear();
  t.frames.clear();
  t.keep.clear();
  t.offsets.clear();
  t.settle_dedups(false);
}
}  // namespace

Status TransactionState::finish(uint64_t decided, ClaimState to) {
  for (const FrameRef& f : frames) {
    auto& word = f.segment->word(f.position);
    uint64_t w = word.load(std::memory_order_acquire);
    // seq_cst: as in flip_range(). Finding it decided already means a
    // helper carried the decision out first.
    if (claim_state(w) == kPrepared)
      word.compare_exchange_strong(w, with_state(w, to), std::memory_order_seq_cst, std::memory_order_relaxed);
  }
  if (to == kCommitted)
    for (const PendingOffset& o : offsets)
      (void)o.group->commit_if(o.partition, o.expected, o.next_offset, bus->clock->now_ns());
  const TopicState* last = nullptr;
  for (const Touched& x : touched) {
    if (x.producer->topic.get() == last) continue;
    last = x.producer->topic.get();
    ipc::notify(x.producer->topic->control().wakeup);
  }
  settle_dedups(to == kCommitted);
  frames.clear();
  keep.clear();
  offsets.clear();
  const uint64_t ready = make_producer_control(kProducerReady, id.epoch, producer_owner(decided), producer_txn(decided));
  // release: the flips and offsets above happen before the next transaction.
  uint64_t cur = decided;
  slot().control.compare_exchange_strong(cur, ready, std::memory_order_release, std::memory_order_relaxed);
  return {};
}

TransactionalProducer::TransactionalProducer(std::unique_ptr<TransactionState> state) : state_(std::move(state)) {}
TransactionalProducer::TransactionalProducer(TransactionalProducer&&) noexcept = default;
TransactionalProducer& TransactionalProducer::operator=(TransactionalProducer&&) noexcept = default;
TransactionalProducer::~TransactionalProducer() {
  if (state_ && state_->open) (void)abort();
  if (state_) {
    state_->producers.clear();  // they point into this state
    state_->queues.clear();
  }
}

Result<TransactionalProducer> Bus::create_transactional_producer(std::string_view name,
                                                                 const TransactionOptions& options) {
  if (name.empty()) return make_error(Errc::kInvalidName, "a transactional producer needs a name");
  if (options.timeout_ns < 1'000'000 || options.timeout_ns > 15LL * 60 * 1'000'000'000)
    return make_error(Errc::kInvalidArgument, "transaction timeout must be 1 ms to 15 min");
  auto table = state_->producers();
  if (!table) return std::unexpected(table.error());
  BusState& bus = *state_;
  auto id = (*table)->open_identity(name, bus.registry, [&](ProducerSlot& slot, uint64_t pid) {
    return settle_transaction(bus, slot, pid, slot.control.load(std::memory_order_acquire), false);
  });
  if (!id) return std::unexpected(id.error());
  auto t = std::make_unique<TransactionState>();
  t->bus = state_;
  t->table = *table;
  t->id = *id;
  t->name = std::string(name);
  t->options = options;
  return TransactionalProducer(std::move(t));
}

Result<GroupOffsets*> TransactionState::group_offsets(std::string_view group, std::string_view topic) {
  std::string key = std::string(group) + "\n" + std::string(topic);
  auto it = groups.find(key);
  if (it == groups.end()) {
    auto ts = bus->topic(topic);
    if (!ts) return std::unexpected(ts.error());
    auto g = GroupOffsets::open(*bus, group, **ts, false);
    if (!g) return std::unexpected(g.error());
    it = groups.emplace(std::move(key), std::move(*g)).first;
  }
  return it->second.get();
}

Result<Consumer*> TransactionalProducer::consumer(std::string_view topic, std::string_view group,
                                                  const ConsumerOptions& options) {
  TransactionState& t = *state_;
  for (auto& b : t.consumers)
    if (b.topic == topic && b.group == group) return b.consumer.get();
  if (group.empty()) return make_error(Errc::kInvalidName, "a transactional producer's consumer needs a group");
  ConsumerOptions o = options;
  o.isolation = Isolation::kReadCommitted;  // it must not transform records that may abort
  o.auto_commit = false;
  o.guarantee = Guarantee::kAtLeastOnce;  // handed out, committed later: by the transaction
  auto c = ConsumerAccess::make(t.bus, topic, group, o, /*bound=*/true);
  if (!c) return std::unexpected(c.error());
  TransactionState::Bound b{std::string(group), std::string(topic), std::make_unique<Consumer>(std::move(*c)), {}};
  for (uint32_t p : b.consumer->assignment()) b.stable.push_back(b.consumer->position(p));
  t.consumers.push_back(std::move(b));
  return t.consumers.back().consumer.get();
}

namespace {
// Before the commit decision: every bound consumer's position on each
// partition it moved on becomes a group offset of the transaction.
Status add_bound_offsets(TransactionalProducer& tp, TransactionState& t) {
  for (auto& b : t.consumers) {
    const auto& parts = b.consumer->assignment();
    for (size_t i = 0; i < parts.size(); ++i) {
      const uint64_t pos = b.consumer->position(parts[i]);
      if (pos == b.stable[i]) continue;
      if (auto ok = tp.add_offset(b.group, b.topic, parts[i], pos); !ok) return ok;
    }
  }
  return {};
}

// After a commit: the positions it committed are the new rewind points.
void settle_bound(TransactionState& t) {
  for (auto& b : t.consumers) {
    const auto& parts = b.consumer->assignment();
    for (size_t i = 0; i < parts.size(); ++i) b.stable[i] = b.consumer->position(parts[i]);
  }
}

// After an abort: every bound consumer goes back to where the last commit
// left it, so the records the lost transaction consumed are polled again.
void rewind_bound(TransactionState& t) {
  for (auto& b : t.consumers) {
    const auto& parts = b.consumer->assignment();
    for (size_t i = 0; i < parts.size(); ++i)
      if (b.consumer->position(parts[i]) != b.stable[i]) b.consumer->seek(parts[i], b.stable[i]);
  }
}
}  // namespace

Result<Producer*> TransactionalProducer::producer(std::string_view topic) {
  TransactionState& t = *state_;
  if (auto it = t.producers.find(topic); it != t.producers.end()) return it->second.get();
  auto ts = t.bus->topic(topic);
  if (!ts) return std::unexpected(ts.error());
  ProducerOptions o = t.options.producer;
  o.idempotent = true;
  o.producer_name = t.name;
  Producer p = ProducerAccess::make(t.bus, std::move(*ts), o);
  ProducerAccess::join_transaction(p, t);
  auto owned = std::make_unique<Producer>(std::move(p));
  Producer* raw = owned.get();
  t.producers.emplace(std::string(topic), std::move(owned));
  return raw;
}

Status TransactionalProducer::begin() {
  TransactionState& t = *state_;
  if (t.fenced) return std::unexpected(t.fence_error);
  if (t.open) return make_error(Errc::kInvalidArgument, "a transaction is already open");
  ProducerSlot& s = t.slot();
  uint64_t c = s.control.load(std::memory_order_acquire);
  if (format::producer_epoch(c) != t.id.epoch || format::producer_state(c) != kProducerReady) return lost_control(t);
  // relaxed (all three): published by the CAS below (release).
  s.deadline_ms.store(now_ms(*t.bus) + t.options.timeout_ns / 1'000'000, std::memory_order_relaxed);
  s.txn_parts.store(0, std::memory_order_relaxed);
  s.txn_offsets.store(0, std::memory_order_relaxed);
  const uint32_t txn = format::producer_txn(c) + 1;
  const uint64_t ongoing = make_producer_control(kProducerOngoing, t.id.epoch, t.bus->registry.self(), txn);
  // acq_rel: release, the deadline and counts above; acquire, the previous
  // transaction's completion.
  if (!s.control.compare_exchange_strong(c, ongoing, std::memory_order_acq_rel, std::memory_order_acquire))
    return lost_control(t);
  t.open = true;
  t.txn = txn;
  t.touched.clear();
  return {};
}

Status TransactionalProducer::commit() {
  TransactionState& t = *state_;
  if (t.fenced) return std::unexpected(t.fence_error);
  if (!t.open) return make_error(Errc::kInvalidArgument, "no transaction is open");
  if (auto ok = add_bound_offsets(*this, t); !ok) {
    (void)abort();  // e.g. more partitions than a transaction holds offsets for
    return ok;
  }
  ProducerSlot& s = t.slot();
  uint64_t ongoing = make_producer_control(kProducerOngoing, t.id.epoch, t.bus->registry.self(), t.txn);
  const uint64_t committing = make_producer_control(kProducerCommitting, t.id.epoch, t.bus->registry.self(), t.txn);
  // The decision. acq_rel: release, every entry and frame before it (a
  // helper that sees COMMITTING finds them); acquire, a helper's abort.
  if (!s.control.compare_exchange_strong(ongoing, committing, std::memory_order_acq_rel, std::memory_order_acquire)) {
    roll_back(t);
    rewind_bound(t);
    return lost_control(t);
  }
  t.open = false;
  settle_bound(t);  // decided: the offsets commit, by us or by a helper from the slot
  if (auto ok = t.finish(committing, kCommitted); !ok) return ok;
  // The ring hints: each partition's last frame of the transaction.
  for (const auto& x : t.touched)
    x.producer->record_committed(x.partition, x.last_offset, x.last_seq, x.last_count);
  t.touched.clear();
  s.txn_committed.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
  return {};
}

Status TransactionalProducer::abort() {
  TransactionState& t = *state_;
  if (t.fenced) return std::unexpected(t.fence_error);
  if (!t.open) return make_error(Errc::kInvalidArgument, "no transaction is open");
  ProducerSlot& s = t.slot();
  uint64_t ongoing = make_producer_control(kProducerOngoing, t.id.epoch, t.bus->registry.self(), t.txn);
  const uint64_t aborting = make_producer_control(kProducerAborting, t.id.epoch, t.bus->registry.self(), t.txn);
  t.open = false;
  rewind_bound(t);
  if (!s.control.compare_exchange_strong(ongoing, aborting, std::memory_order_acq_rel, std::memory_order_acquire)) {
    roll_back(t);
    return lost_control(t);
  }
  s.txn_aborted.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
  auto ok = t.finish(aborting, kAborted);
  roll_back(t);
  return ok;
}

bool TransactionalProducer::in_transaction() const noexcept { return state_->open; }

Status TransactionalProducer::add_offset(std::string_view group, std::string_view topic, uint32_t partition,
                                         uint64_t next_offset) {
  TransactionState& t = *state_;
  if (t.fenced) return std::unexpected(t.fence_error);
  if (!t.open) return make_error(Errc::kInvalidArgument, "no transaction is open");
  auto found = t.group_offsets(group, topic);
  if (!found) return std::unexpected(found.error());
  GroupOffsets* g = *found;
  if (partition >= g->partitions()) return make_error(Errc::kInvalidArgument, "partition out of range");
  // The group's offset now: the value the commit replaces (a consumer of
  // the group committing by itself meanwhile makes the CAS fail).
  const uint64_t expected = g->committed(partition);
  ProducerSlot& s = t.slot();
  const uint32_t n = s.txn_offsets.load(std::memory_order_relaxed);  // only we write it
  for (uint32_t i = 0; i < n; ++i) {
    TxnOffset& o = s.txn_offsets_list[i];
    // relaxed (every field here): only we write the entries; see
    // producer_format.h.
    if (o.group_hash.load(std::memory_order_relaxed) == name_hash(group) &&
        o.topic_hash.load(std::memory_order_relaxed) == name_hash(topic) &&
        o.partition.load(std::memory_order_relaxed) == partition) {
      // relaxed: read only after the decision (acq_rel) by whoever applies it.
      o.next_offset.store(next_offset, std::memory_order_relaxed);
      for (auto& p : t.offsets)
        if (p.group == g && p.partition == partition) p.next_offset = next_offset;
      return {};
    }
  }
  if (n >= kTxnMaxOffsets)
    return make_error(Errc::kTooLarge, "a transaction commits at most " + std::to_string(kTxnMaxOffsets) +
                                           " group offsets");
  TxnOffset& o = s.txn_offsets_list[n];
  // relaxed: published by the release store of the count below.
  o.group_hash.store(name_hash(group), std::memory_order_relaxed);
  o.topic_hash.store(name_hash(topic), std::memory_order_relaxed);
  o.partition.store(partition, std::memory_order_relaxed);
  o.next_offset.store(next_offset, std::memory_order_relaxed);
  o.expected.store(expected, std::memory_order_relaxed);
  t.offsets.push_back(TransactionState::PendingOffset{g, partition, expected, next_offset});
  // release: a helper that acquires the count sees the entry.
  s.txn_offsets.store(n + 1, std::memory_order_release);
  return {};
}

Result<std::vector<ProducerIdentityInfo>> Bus::list_producers() {
  if (!ipc::path_exists(state_->dir + "/producers/table")) return std::vector<ProducerIdentityInfo>{};
  auto table = state_->producers();
  if (!table) return std::unexpected(table.error());
  return (*table)->list(state_->registry);
}

Status Bus::abort_transaction(std::string_view name) {
  if (auto ok = validate_name(name, "producer"); !ok) return ok;
  auto table = state_->producers();
  if (!table) return std::unexpected(table.error());
  auto s = (*table)->find(name);
  if (!s) return make_error(Errc::kNotFound, "no producer identity named " + std::string(name));
  ProducerSlot& slot = (*table)->slot(*s);
  const uint64_t c = slot.control.load(std::memory_order_acquire);
  const ProducerSlotState st = producer_state(c);
  if (st != kProducerOngoing && st != kProducerCommitting && st != kProducerAborting)
    return make_error(Errc::kNotFound, "producer " + std::string(name) + " has no transaction open");
  const uint64_t pid = make_pid(slot.generation.load(std::memory_order_acquire), *s);
  return settle_transaction(*state_, slot, pid, c, st == kProducerOngoing);
}

uint64_t TransactionalProducer::producer_id() const noexcept { return state_->id.pid; }
uint16_t TransactionalProducer::producer_epoch() const noexcept { return state_->id.epoch; }

void ProducerAccess::join_transaction(Producer& p, TransactionState& t) {
  ProducerState& s = *p.state_;
  s.idem = std::make_unique<ProducerState::Idempotence>();
  s.idem->table = t.table;
  s.idem->id = t.id;
  s.idem->id.named = true;  // the transactional producer closes nothing
  s.idem->name = "transactional producer " + t.name;
  s.idem->parts.resize(s.topic->options.partitions);
  s.txn = &t;
}

}  // namespace sluice
