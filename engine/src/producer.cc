#include <sluice/bus.h>
#include <sluice/producer.h>

#include <bit>
#include <chrono>
#include <cstring>
#include <thread>

#include "admin.h"
#include "group_offsets.h"
#include "producer_state.h"
#include "record_codec.h"

namespace sluice {

using namespace format;

namespace {
// An exclusive writer announces its dirty bound this far ahead at a time, so
// the announcement costs one store per 64 KiB, not one per record.
constexpr uint32_t kDirtyAhead = 64u << 10;
// An exclusive writer in a segment it recycled lazily zeroes this much ahead
// of its tail at a time (a roll zeroes the first chunk).
constexpr uint32_t kZeroAhead = 64u << 10;
// ... except for frames this large, which only zero the word after them.
constexpr uint32_t kZeroWordOnlyFrameBytes = 1024;
// How far ahead of the tail publish() prefetches for writing.
constexpr uint64_t kPrefetchAheadBytes = 1024;
// send() composes frames up to this size on the stack (copy_staged_frame).
constexpr uint32_t kStagedFrameBytes = 256;
// send() checksums values this large from the caller's buffer
// (encode_sealed_record); smaller ones in one call over the mapping.
constexpr uint32_t kSealFromSourceBytes = 1024;

// A frame header's fields after its claim word, in three 8-byte stores.
// frame_seed() loads them back 8 bytes at a time right after, and a load is
// forwarded from the store buffer only from one store that covers it: from
// the epoch's, attributes' and sequence's three narrower stores it waited
// for them to reach the cache, which in the mapping means the line's trip
// from the reader's core. That wait was a quarter of the 4 KiB producer's
// time (docs/architecture.md, "Store forwarding").
void fill_frame_header(FrameHeader* f, uint64_t base_offset, uint16_t attributes, uint64_t producer_id,
                       uint16_t producer_epoch, uint32_t base_sequence) noexcept {
  static_assert(std::endian::native == std::endian::little);  // the format's byte order
  static_assert(offsetof(FrameHeader, attributes) == offsetof(FrameHeader, producer_epoch) + 2 &&
                offsetof(FrameHeader, base_sequence) == offsetof(FrameHeader, producer_epoch) + 4);
  f->base_offset = base_offset;
  f->producer_id = producer_id;
  const uint64_t last = uint64_t{producer_epoch} | uint64_t{attributes} << 16 | uint64_t{base_sequence} << 32;
  std::memcpy(reinterpret_cast<std::byte*>(f) + offsetof(FrameHeader, producer_epoch), &last, sizeof last);
}
}  // namespace

ProducerState::~ProducerState() {
  if (idem) idem->table->close_identity(idem->id);
  for (size_t p = 0; p < writers.size(); ++p) {
    if (!writers[p].ready) continue;
    if (options.exclusive)
      release_exclusive(p);
    else if (writers[p].intent.position() != nullptr)
      writers[p].segment->give_back(writers[p].own, *writers[p].intent.position());
  }
}

void ProducerState::release_exclusive(size_t p) noexcept {
  Writer& w = writers[p];
  Partition& part = *topic->partitions[p];
  // Our last roll's retention, if it was left to a send that did not come,
  // and the spare taken for a roll that will not come.
  if (w.retention_due) (void)part.enforce_retention(bus->clock->now_ns());
  w.retention_due = false;
  part.give_back_prepared();
  if (w.segment && w.zeroed_end < w.segment->capacity()) {
    // A segment we recycled lazily: zero the rest, as any writer after us
    // expects zeros past the tail.
    std::memset(w.segment->data() + w.zeroed_end, 0, w.segment->capacity() - w.zeroed_end);
    w.zeroed_end = w.segment->capacity();
  }
  // release: the zeros above come before the withdrawal; nothing past the
  // tail is left to clean.
  part.control().exclusive_dirty_end.store(0, std::memory_order_release);
}

void ProducerState::zero_ahead(Writer& w, uint32_t start, uint32_t end) noexcept {
  const uint32_t capacity = w.segment->capacity();
  if (end - start >= kZeroWordOnlyFrameBytes) {
    // A large frame overwrites the stale bytes under it (its padding aside,
    // which nothing reads): only the word after it must be zeroed. Zeroing
    // its lines too cost a fifth of a 4 KiB stream.
    if (uint64_t{end} + sizeof(uint64_t) <= capacity) w.segment->word(end).store(0, std::memory_order_relaxed);
    w.zeroed_end = static_cast<uint32_t>(std::min<uint64_t>(uint64_t{end} + sizeof(uint64_t), capacity));
    return;
  }
  // Small frames: a chunk at a time, one memset per 64 KiB, ahead of the
  // lines the frames will be written to.
  const uint64_t want = (uint64_t{end} + kFrameHeaderBytes + kZeroAhead - 1) / kZeroAhead * kZeroAhead;
  const uint32_t to = static_cast<uint32_t>(std::min<uint64_t>(want, capacity));
  std::memset(w.segment->data() + w.zeroed_end, 0, to - w.zeroed_end);
  w.zeroed_end = to;
}

SendStatus ProducerState::open_writer(uint32_t partition, Writer** out) {
  Writer& w = writers[partition];
  Partition& part = *topic->partitions[partition];
  auto lock = part.lock_writer(options.exclusive);
  if (!lock) return fail(lock.error().code == Errc::kBusy ? SendStatus::kBusy : SendStatus::kError, lock.error());
  w.lock = std::move(*lock);
  auto seg = part.newest_segment();
  if (!seg) return fail(SendStatus::kError, seg.error());
  w.segment = std::move(*seg);
  if (!options.exclusive) {
    auto intent = part.acquire_intent(owner);
    if (!intent) {
      w = Writer{};  // lets go of writer.lock too
      return fail(SendStatus::kBusy, intent.error());
    }
    w.intent = std::move(*intent);
    // The owned tail's plain claims skip the fencing handshake's barrier
    // and need the revokers' membarrier to reach us: plain producers in a
    // registered process only.
    w.own.may_own = release_publish && !idem;
  } else {
    // Walk to the real end: the last writer may have sealed this segment.
    for (;;) {
      SegmentEnd e = w.segment->find_end();
      if (e.position == UINT32_MAX)
        return fail(SendStatus::kError, Error{Errc::kCorruption, "invalid frame in " + w.segment->path()});
      if (!e.sealed) {
        // A shared writer that owned the tail and died (no shared writer
        // is live while we hold the lock) may have left a frame in
        // progress past the frames: zeroed, and the tail EXACT again.
        if (!w.segment->take_owned_tail()) {
          w = Writer{};
          return fail(SendStatus::kError, Error{Errc::kCorruption, "invalid frame past the tail of " + part.dir() +
                                                                       "; run `sluice verify`"});
        }
        // relaxed: nobody else writes the segment; a dead revoker's slot
        // would keep shared writers from owning it again.
        w.segment->control().revoker.store(0, std::memory_order_relaxed);
        // Shared writers that died between their tail claim and their
        // claim word left 0 words below the tail; our hint stores make the
        // tail a hint again, under which readers cannot repair them: we do,
        // first (no shared writer is live while we hold the lock).
        uint64_t repaired = 0;
        if (!part.repair_gaps(*w.segment, &repaired)) {
          w = Writer{};
          return fail(SendStatus::kError,
                      Error{Errc::kCorruption, "claims whose writers died before their claim words cannot be "
                                               "measured in " + part.dir() + "; run `sluice verify`"});
        }
        w.tail_position = e.position;
        w.tail_count = e.count;
        w.zeroed_end = w.segment->zeroed_prefix();
        break;
      }
      auto next = part.next_segment(*w.segment, e.count);
      if (!next) return fail(SendStatus::kError, next.error());
      w.segment = std::move(*next);
    }
  }
  w.ready = true;
  *out = &w;
  return SendStatus::kOk;
}

uint32_t ProducerState::choose_partition_slow(std::string_view key) {
  const uint32_t n = topic->options.partitions;
  if (!key.empty()) return static_cast<uint32_t>(key_hash(key) % n);
  if (keyless_left == 0) {
    keyless_partition = (keyless_partition + 1) % n;
    keyless_left = options.keyless == KeylessPartitioning::kSticky ? options.sticky_records : 1;
  }
  --keyless_left;
  return keyless_partition;
}

SendStatus ProducerState::check_back_pressure(uint32_t partition, uint32_t frame_length, const Writer& w) {
  Partition& part = *topic->partitions[partition];
  auto& limit = part.control().back_pressure_limit;
  // The tail from our own cached segment: no lock, no lookup on this path.
  // relaxed: an estimate; the limit is a soft window, not an invariant.
  const uint32_t pos = options.exclusive ? w.tail_position
                                         : tail_position(w.segment->control().tail_hint.load(std::memory_order_relaxed));
  const uint64_t end = w.segment->base_position() + std::min(pos, w.segment->capacity()) + frame_length;
  if (below_back_pressure_limit(partition, end)) return SendStatus::kOk;
  // acquire: if the limit we read was a reset to 0 (a new group's, release),
  // the group's groups_generation bump before it is seen below, and the
  // group with it.
  std::atomic_thread_fence(std::memory_order_acquire);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(options.back_pressure_timeout_ns);
  for (;;) {
    auto min = min_committed_offset(*topic, partition);
    if (!min) return fail(SendStatus::kError, min.error());
    uint64_t bound = UINT64_MAX;
    if (*min != kNoCommit) {
      auto pos = admin::position_of_offset(part, std::max(*min, part.start_offset()));
      if (!pos) return fail(SendStatus::kError, pos.error());
      bound = *pos + static_cast<uint64_t>(topic->options.retention_bytes);
    }
    limit.store(bound, std::memory_order_relaxed);
    if (end <= bound) return SendStatus::kOk;
    if (std::chrono::steady_clock::now() >= deadline) return SendStatus::kBackPressured;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

SendStatus ProducerState::reserve(uint32_t partition, uint32_t frame_length, uint32_t count,
                                  Partition::Reservation* out, std::byte* stage, bool copying) {
  if (partition >= topic->options.partitions)
    return fail(SendStatus::kError, Error{Errc::kInvalidArgument, "partition " + std::to_string(partition) +
                                                                     " out of range for topic " + topic->name});
  if (frame_length > topic->options.segment_bytes)
    return fail(SendStatus::kTooLarge,
                Error{Errc::kTooLarge, "a frame of " + std::to_string(frame_length) +
                                           " bytes does not fit in a segment of " +
                                           std::to_string(topic->options.segment_bytes) + " bytes"});
  Writer* w;
  if (SendStatus s = writer(partition, &w); s != SendStatus::kOk) return s;
  if (idem) [[unlikely]] {
    if (idem->fenced) return fenced_error();
    if (txn && !txn_open()) [[unlikely]]
      return fail(SendStatus::kError, Error{Errc::kInvalidArgument, "a transactional producer sends inside "
                                                                    "begin() .. commit() or abort()"});
    if (idem->claim_open)  // it holds the next sequence
      return fail(SendStatus::kError, Error{Errc::kInvalidArgument, "an idempotent producer's open Claim must be "
                                                                    "committed or aborted before the next send"});
    // After the writer lock: an exclusive partition's previous instance has
    // closed or died, so nothing of ours is appended behind the walk.
    if (!idem->parts[partition].ready)
      if (SendStatus s = take_over(partition); s != SendStatus::kOk) return s;
  }
  if (topic->options.retention_mode == RetentionMode::kBackPressure)
    if (SendStatus s = check_back_pressure(partition, frame_length, *w); s != SendStatus::kOk) return s;
  Partition& part = *topic->partitions[partition];
  if (!options.exclusive) {
    Error err{Errc::kIoError, ""};
    SendStatus s = part.claim(frame_length, count, owner, copying && txn == nullptr, w->intent.position(),
                              &w->own, &w->segment, out, &err);
    if (s != SendStatus::kOk) return fail(s, std::move(err));
  } else {
    if (w->retention_due) [[unlikely]] {
      w->retention_due = false;
      (void)part.enforce_retention(bus->clock->now_ns());  // best effort, as in Partition::roll()
    }
    if (!w->spare_asked && w->tail_position >= w->segment->capacity() / 2) [[unlikely]] {
      // Half-way: the spare our roll will recycle, taken now (a bounded
      // log has them; docs/architecture.md, "What a roll costs").
      w->spare_asked = true;
      if (part.has_retention()) part.prepare_spare();
    }
    if (static_cast<uint64_t>(w->tail_position) + frame_length > w->segment->capacity()) {
      // Seal with END_OF_SEGMENT unless not even a frame header fits.
      if (static_cast<uint64_t>(w->tail_position) + kFrameHeaderBytes <= w->segment->capacity())
        w->segment->word(w->tail_position).store(make_claim_word(kEndOfSegment, 0, 0, owner), std::memory_order_release);
      w->segment->store_hint(w->segment->capacity(), w->tail_count);
      // A spare is recycled zeroed only kZeroAhead bytes deep: zeroing a
      // whole segment at the roll cost a fifth of a 4 KiB stream, and wrote
      // every line twice, the zeros long evicted by the time the records
      // came (docs/architecture.md, "Recycling without zeroing").
      // The roll without its retention, which our next reserve() runs: a
      // send that rolls pays for the next segment only, and the p99.9 of a
      // 4 KiB pingpong, where both directions roll in the same round trip,
      // is that send (docs/architecture.md, "What a roll costs").
      auto next = part.next_segment(*w->segment, w->tail_count, kZeroAhead);
      if (!next) return fail(SendStatus::kError, next.error());
      w->retention_due = part.has_retention();
      w->spare_asked = false;
      w->segment = std::move(*next);
      w->tail_position = 0;
      w->tail_count = 0;
      w->zeroed_end = w->segment->zeroed_prefix();
      // A lazily recycled segment was announced dirty in whole by the roll.
      w->dirty_end = w->zeroed_end < w->segment->capacity() ? w->segment->capacity() : 0;
    }
    const uint32_t end = w->tail_position + frame_length;
    // The word at the new tail must read 0 before this frame is published.
    if (uint64_t{end} + kFrameHeaderBytes > w->zeroed_end && w->zeroed_end < w->segment->capacity())
      zero_ahead(*w, w->tail_position, end);
    if (end > w->dirty_end) {
      // Announce how far we may write before writing there, so that whoever
      // takes the partition after our death can zero it (see topic_format.h).
      // Cross-process ordering of this store before the frame's bytes: x86
      // stores become visible in program order, and a killed process's
      // executed stores are not lost; elsewhere a full fence orders them.
      w->dirty_end = std::min<uint64_t>(w->segment->capacity(), uint64_t{end} + kDirtyAhead);
      part.control().exclusive_dirty_base.store(w->segment->base_offset(), std::memory_order_relaxed);
      part.control().exclusive_dirty_end.store(w->dirty_end, std::memory_order_release);
#if !defined(__x86_64__)
      std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
    }
    out->segment = w->segment.get();
    out->position = w->tail_position;
    out->offset = w->segment->base_offset() + w->tail_count;
    w->tail_position = end;
    w->tail_count += count;
  }
  out->partition = partition;
  FrameHeader* f = stage != nullptr ? reinterpret_cast<FrameHeader*>(stage) : out->segment->frame(out->position);
  const uint16_t attributes = options.exclusive ? kAttrExclusiveWriter : 0;
  if (idem) [[unlikely]]
    fill_frame_header(f, out->offset, attributes, idem->id.pid, idem->id.epoch, idem->parts[partition].next_seq);
  else
    fill_frame_header(f, out->offset, attributes, 0, 0, 0);
  return SendStatus::kOk;
}

namespace {
// memcpy() for a value of a staged frame (a few hundred bytes), inline: 16-byte
// moves, the last one overlapping, and no call, whose clobbered registers
// cost the straight-line send spills (docs/architecture.md, "Stores per
// record"). Reads and writes only [from, from + n) and [to, to + n).
[[gnu::always_inline]] inline void copy_small(std::byte* to, const void* from, size_t n) noexcept {
  const auto* src = static_cast<const std::byte*>(from);
  if (n >= 16) {
    for (size_t i = 0; i + 16 < n; i += 16) std::memcpy(to + i, src + i, 16);
    std::memcpy(to + n - 16, src + n - 16, 16);
  } else if (n >= 8) {
    std::memcpy(to, src, 8);
    std::memcpy(to + n - 8, src + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(to, src, 4);
    std::memcpy(to + n - 4, src + n - 4, 4);
  } else if (n != 0) {
    to[0] = src[0];
    to[n / 2] = src[n / 2];
    to[n - 1] = src[n - 1];
  }
}

// Copies a frame composed off the mapping into it, the lines after the
// first one first and then the first line, less the claim word, which the
// caller stores last. A caught-up reader polls that first line: this way
// all of its stores reach the store buffer together, right before the claim
// word, and the line crosses to the writer's core once per frame instead of
// once per field (docs/architecture.md, "The order of the stores").
void copy_staged_frame(std::byte* frame, const std::byte* stage, uint32_t position, uint32_t frame_length) noexcept {
  const uint32_t first_line = std::min(frame_length, ((position + 64) & ~63u) - position);
  if (frame_length > first_line) std::memcpy(frame + first_line, stage + first_line, frame_length - first_line);
  std::memcpy(frame + 8, stage + 8, first_line - 8);
}

// An exclusive writer's publication of its frame at `position`, whose
// records end at relative offset `count_after`: the word, then the hint.
// `release`: a plain release store, for a producer outside a transaction in
// a process registered as a release publisher (ipc/wait_strategy.h); with an xchg the
// writer stalled on every record until the frame's lines reached its core:
// 64 B stream 11.8-12.0 -> 12.8-12.9 M msg/s, 4 KiB 5.19-5.32 -> 5.39-5.43
// GB/s (interleaved). Else seq_cst, which also orders the store before
// notify()'s load of `parked`.
[[gnu::always_inline]] inline void publish_exclusive(Segment& seg, uint32_t position, uint32_t frame_length,
                                                     uint32_t count_after, uint64_t word, bool release) noexcept {
  // release (both): publishes the frame; pairs with the reader's acquire
  // load of the word.
  if (release)
    seg.frame(position)->claim.store(word, std::memory_order_release);
  else
    seg.frame(position)->claim.store(word, std::memory_order_seq_cst);
  seg.store_hint(position + frame_length, count_after);
}

// A shared writer's publication of its frame at `position`, claimed in
// state `claimed`. CLAIMED_COPY: a plain store, which nothing but a dead
// owner's repairer races (segment_format.h); with an xchg or a CAS the
// writer stalled on every record until the frame's lines reached its core
// (docs/architecture.md, "The copy claim"). `release`: a release store, in
// a process registered as a release publisher (ipc/wait_strategy.h), else
// seq_cst, which also orders it before notify()'s load of `parked`.
// CLAIMED: the CAS CLAIMED -> `word`, seq_cst for the same reasons; exactly
// one of it and a repairer's CAS wins. false: a repairer aborted the claim
// as stalled.
[[gnu::always_inline]] inline bool publish_shared(Segment& seg, uint32_t position, uint64_t word, ClaimState claimed,
                                                  bool release) noexcept {
  auto& w = seg.frame(position)->claim;
  if (claimed == kClaimedCopy) {
    // release (both): publishes the frame; pairs with the reader's acquire
    // load of the word.
    if (release)
      w.store(word, std::memory_order_release);
    else
      w.store(word, std::memory_order_seq_cst);
    return true;
  }
  uint64_t expected = with_state(word, kClaimed);
  return w.compare_exchange_strong(expected, word, std::memory_order_seq_cst, std::memory_order_relaxed);
}

// After a frame ending at `end` was published (with a release store if
// `release`): wakes parked consumers, and asks for the lines the next frames
// will use, for writing: a miss on them would be paid in full by the next
// publish's barrier or by the stores queued behind them.
[[gnu::always_inline]] inline void after_publish(ipc::WakeupWord& wakeup, const Segment& seg, uint64_t end,
                                                 bool release) noexcept {
  if (release)
    ipc::notify_after_release(wakeup);
  else
    ipc::notify(wakeup);
  const uint64_t ahead = end + kPrefetchAheadBytes;
  if (ahead + 128 <= seg.capacity()) {
    __builtin_prefetch(seg.data() + ahead, 1, 3);
    __builtin_prefetch(seg.data() + ahead + 64, 1, 3);
  }
}
}  // namespace

SendStatus ProducerState::aborted_as_stalled(uint64_t offset) {
  return fail(SendStatus::kAborted, Error{Errc::kAborted, "claim at offset " + std::to_string(offset) +
                                                             " was aborted as stalled before its commit"});
}

SendStatus ProducerState::publish(const Partition::Reservation& r, uint32_t frame_length,
                                  uint32_t count, int64_t first_timestamp_ns, std::byte* stage, bool sealed) {
  Segment& seg = *r.segment;
  std::byte* const frame = stage != nullptr ? stage : seg.data() + r.position;
  const FrameHeader* h = reinterpret_cast<const FrameHeader*>(frame);  // where reserve() wrote the header
  // A frame we abort must be in the mapping as it would have been published.
  auto abort_frame = [&] {
    if (stage != nullptr) copy_staged_frame(seg.data() + r.position, stage, r.position, frame_length);
  };
  // The writer's side of the fencing handshake: after our claim (seq_cst),
  // before publishing (docs/exactly-once.md, section 3).
  if (idem && !idem->table->holds(idem->id)) [[unlikely]] {
    abort_frame();
    return fenced(r, frame_length, count);
  }
  // A transaction's frame: named in the producer slot before it is
  // published, so that whoever decides the transaction finds it.
  if (txn) [[unlikely]] {
    seg.mark_prepared();  // retention must walk this segment for live transactions
    if (auto ok = note_txn_frame(r, h->base_sequence, count); !ok) {
      abort_frame();
      abort_own(r, frame_length, count);
      return fail(ok.error().code == Errc::kTooLarge ? SendStatus::kTooLarge : SendStatus::kError, ok.error());
    }
  }
  if (!sealed) {
    const uint64_t seed = frame_seed(h);
    std::byte* rec = frame + kFrameHeaderBytes;
    seal_record(rec, seed, 0);
    for (uint32_t i = 1; i < count; ++i) {
      uint32_t len;
      std::memcpy(&len, rec, sizeof len);
      rec += align_up(len);
      seal_record(rec, seed, i);
    }
  }
  if (stage != nullptr) copy_staged_frame(seg.data() + r.position, stage, r.position, frame_length);
  seg.index_frame(r.position, frame_length, static_cast<uint32_t>(r.offset - seg.base_offset()), first_timestamp_ns);
  // A transaction's frame is published PREPARED: read-committed readers wait
  // at it until the transaction's decision flips it.
  const uint64_t committed = make_claim_word(txn ? kPrepared : kCommitted, frame_length, count, owner);
  // A transaction's frames keep the seq_cst store: its decision protocol
  // was argued with it (docs/exactly-once.md). An idempotent exclusive
  // writer needs none: the writer lock is its fence (ibid., "Exclusive
  // mode"), and its producer entry's head is a release store after the word.
  const bool plain_release = release_publish && txn == nullptr && (options.exclusive || r.claimed == kClaimedCopy);
  if (options.exclusive) {
    publish_exclusive(seg, r.position, frame_length, static_cast<uint32_t>(r.offset - seg.base_offset()) + count,
                      committed, plain_release);
  } else if (r.owned) {
    // The owned tail's append: the word, then the tail (owned_begin() in
    // Partition::claim took it; only a release publisher's plain producer
    // owns).
    Writer& w = writers[r.partition];
    seg.owned_end(r.position, frame_length, static_cast<uint32_t>(r.offset - seg.base_offset()), count, committed,
                  *w.intent.position(), w.own);
  } else if (!publish_shared(seg, r.position, committed, r.claimed, plain_release)) {
    return aborted_as_stalled(r.offset);
  }
  if (idem) [[unlikely]] {
    if (txn)  // recorded at the commit
      idem->parts[r.partition].next_seq = h->base_sequence + count;
    else
      record_committed(r.partition, r.offset, h->base_sequence, count);
  }
  after_publish(topic->control().wakeup, seg, uint64_t{r.position} + frame_length, plain_release);
  return SendStatus::kOk;
}

namespace {
// Composes a small record's frame in `stage` (its header's claim word
// aside) and seals it: what send_small_exclusive() and send_small_shared()
// write before copying it in.
[[gnu::always_inline]] inline void compose_small(std::byte* stage, uint64_t offset, uint16_t attributes,
                                                 const ProducerIdentity* id, uint32_t sequence, const Message& m,
                                                 uint64_t headers_bytes, uint32_t frame_length, int64_t ts) noexcept {
  auto* f = reinterpret_cast<FrameHeader*>(stage);
  if (id != nullptr)
    fill_frame_header(f, offset, attributes, id->pid, id->epoch, sequence);
  else
    fill_frame_header(f, offset, attributes, 0, 0, 0);
  std::memset(stage + frame_length - 8, 0, 8);  // the padding, if any (stack bytes must not leak into the log)
  std::byte* const rec = stage + kFrameHeaderBytes;
  std::byte* const value =
      write_record(rec, m.key, m.headers, headers_bytes, nullptr, static_cast<uint32_t>(m.value.size()), ts);
  copy_small(value, m.value.data(), m.value.size());
  seal_record(rec, frame_seed(f), 0);
}
}  // namespace

// send()'s straight lines for the commonest case: one small record from a
// producer outside a transaction with nothing but the append itself to do,
// the back-pressure window open (an idempotent one: not fenced, no open
// Claim, the partition taken over). They do what
// reserve() and publish() do in that case, in one inlined body: through
// them a 64-byte record took about 620 instructions and 112 stores, most of
// them pushes, spills and out-parameters, and a store is what waits here,
// behind the store to the line the reader polls (docs/architecture.md, "The
// straight-line send"). One per mode: a body for both cost the exclusive
// stream 4.5%. They return false when the case does not hold, having
// changed nothing (the shared one may have sealed the segment, which the
// general path then rolls).
//
// Exclusive: room in the segment, no roll, no zeroing ahead, no dirty-bound
// announcement due.
template <bool kIdempotent>
[[gnu::always_inline]] inline bool ProducerState::send_small_exclusive(uint32_t partition, const Message& m,
                                                                       uint64_t headers_bytes, uint32_t frame_length,
                                                                       int64_t ts, SendResult* out) noexcept {
  Writer* const open = open_writer_of(partition);
  if (open == nullptr) [[unlikely]]
    return false;
  Writer& w = *open;
  // The fencing check first: nothing of ours is in the mapping yet, and the
  // writer lock keeps a newer instance off this partition until we let go.
  if (kIdempotent && (!idem_ready(partition) || !idem->table->holds(idem->id))) [[unlikely]]
    return false;
  Segment& seg = *w.segment;
  const uint32_t position = w.tail_position;
  const uint32_t end = position + frame_length;
  if (uint64_t{end} + kFrameHeaderBytes > w.zeroed_end || end > w.dirty_end) [[unlikely]]
    return false;  // also when the frame would not fit: zeroed_end <= capacity
  if (topic->options.retention_mode == RetentionMode::kBackPressure &&
      !below_back_pressure_limit(partition, seg.base_position() + end)) [[unlikely]]
    return false;  // check_back_pressure() decides
  const uint32_t rel_offset = w.tail_count;
  const uint64_t offset = seg.base_offset() + rel_offset;
  const uint32_t sequence = kIdempotent ? idem->parts[partition].next_seq : 0;
  alignas(16) std::byte stage[kStagedFrameBytes];
  compose_small(stage, offset, kAttrExclusiveWriter, kIdempotent ? &idem->id : nullptr, sequence, m,
                headers_bytes, frame_length, ts);
  copy_staged_frame(seg.data() + position, stage, position, frame_length);
  seg.index_frame(position, frame_length, rel_offset, ts);
  publish_exclusive(seg, position, frame_length, rel_offset + 1, make_claim_word(kCommitted, frame_length, 1, owner),
                    release_publish);
  w.tail_position = end;
  w.tail_count = rel_offset + 1;
  if constexpr (kIdempotent) {
    record_committed(partition, offset, sequence, 1);
    out->sequence = sequence;
  }
  after_publish(topic->control().wakeup, seg, end, release_publish);
  out->status = SendStatus::kOk;
  out->offset = offset;
  return true;
}

// Shared: the claim lands in the cached segment (a sealed one goes the
// general way, which rolls).
template <bool kIdempotent>
[[gnu::always_inline]] inline bool ProducerState::send_small_shared(uint32_t partition, const Message& m,
                                                                    uint64_t headers_bytes, uint32_t frame_length,
                                                                    int64_t ts, SendResult* out) noexcept {
  Writer* const open = open_writer_of(partition);
  if (open == nullptr) [[unlikely]]
    return false;
  Writer& w = *open;
  if (kIdempotent && !idem_ready(partition)) [[unlikely]]
    return false;
  Segment& seg = *w.segment;
  // relaxed: an estimate, as in check_back_pressure(), which decides.
  if (topic->options.retention_mode == RetentionMode::kBackPressure &&
      !below_back_pressure_limit(partition, seg.base_position() +
                                                tail_position(seg.control().tail_hint.load(std::memory_order_relaxed)) +
                                                frame_length)) [[unlikely]]
    return false;
  uint32_t position;
  uint32_t rel_offset;
  alignas(16) std::byte stage[kStagedFrameBytes];
  // The owned tail (docs/architecture.md): the tail is ours, so the frame
  // is written and published as an exclusive writer's, then the tail
  // stored past it. Plain producers only: an idempotent one's fencing
  // check needs the barrier of a CAS claim.
  if constexpr (!kIdempotent) {
    std::atomic<uint64_t>& intent = *w.intent.position();
    if (w.own.owned_base != 0 && seg.owned_begin(frame_length, 1, intent, w.own, &position, &rel_offset)) {
      const uint64_t offset = seg.base_offset() + rel_offset;
      compose_small(stage, offset, 0, nullptr, 0, m, headers_bytes, frame_length, ts);
      copy_staged_frame(seg.data() + position, stage, position, frame_length);
      seg.index_frame(position, frame_length, rel_offset, ts);
      seg.owned_end(position, frame_length, rel_offset, 1, make_claim_word(kCommitted, frame_length, 1, owner),
                    intent, w.own);
      after_publish(topic->control().wakeup, seg, uint64_t{position} + frame_length, true);
      out->offset = offset;
      out->status = SendStatus::kOk;
      return true;
    }
  }
  const ClaimState claimed = seg.copy_claims() ? kClaimedCopy : kClaimed;
  if (seg.try_claim(frame_length, 1, owner, claimed, w.intent.position(), &w.own, &position, &rel_offset) !=
      Segment::ClaimOutcome::kClaimed) [[unlikely]]
    return false;  // sealed (the general path rolls), owned by another writer (it revokes) or corrupt (it reports)
  if constexpr (!kIdempotent)
    if (w.own.revoker_check_due()) [[unlikely]]
      topic->partitions[partition]->release_dead_revoker(seg);
  const uint64_t offset = seg.base_offset() + rel_offset;
  const uint32_t sequence = kIdempotent ? idem->parts[partition].next_seq : 0;
  compose_small(stage, offset, 0, kIdempotent ? &idem->id : nullptr, sequence, m, headers_bytes, frame_length, ts);
  copy_staged_frame(seg.data() + position, stage, position, frame_length);
  out->offset = offset;
  // The writer's side of the fencing handshake: after our claim (seq_cst),
  // before publishing (docs/exactly-once.md, section 3).
  if (kIdempotent && !idem->table->holds(idem->id)) [[unlikely]] {
    out->status = fenced(Partition::Reservation{&seg, position, offset, partition, claimed}, frame_length, 1);
    return true;
  }
  seg.index_frame(position, frame_length, rel_offset, ts);
  const bool release = release_publish && claimed == kClaimedCopy;
  if (!publish_shared(seg, position, make_claim_word(kCommitted, frame_length, 1, owner), claimed, release))
      [[unlikely]] {
    out->status = aborted_as_stalled(offset);
    return true;
  }
  if constexpr (kIdempotent) {
    record_committed(partition, offset, sequence, 1);
    out->sequence = sequence;
  }
  after_publish(topic->control().wakeup, seg, uint64_t{position} + frame_length, release);
  out->status = SendStatus::kOk;
  return true;
}

Producer ProducerAccess::make(std::shared_ptr<BusState> bus, std::shared_ptr<TopicState> topic,
                              const ProducerOptions& options) {
  auto s = std::make_unique<ProducerState>();
  s->owner = bus->registry.self();
  s->writers.resize(topic->options.partitions);
  s->keyless_partition = static_cast<uint32_t>(bus->registry.self_slot()) % topic->options.partitions;
  s->bus = std::move(bus);
  s->topic = std::move(topic);
  s->options = options;
  s->release_publish = ipc::register_release_publisher();
  return Producer(std::move(s));
}

Result<Producer> Bus::create_producer(std::string_view topic, const ProducerOptions& options) {
  auto t = state_->topic(topic);
  if (!t) return std::unexpected(t.error());
  if (!options.idempotent && !options.producer_name.empty())
    return make_error(Errc::kInvalidArgument, "a producer_name needs idempotent = true");
  Producer p = ProducerAccess::make(state_, std::move(*t), options);
  if (options.idempotent)
    if (auto ok = ProducerAccess::make_idempotent(p, options.producer_name); !ok) return std::unexpected(ok.error());
  return p;
}

Producer::Producer(std::unique_ptr<ProducerState> state) : state_(std::move(state)) {}
Producer::Producer(Producer&&) noexcept = default;
Producer& Producer::operator=(Producer&&) noexcept = default;
Producer::~Producer() = default;

uint32_t Producer::partition_for_key(std::string_view key) const noexcept {
  return static_cast<uint32_t>(key_hash(key) % state_->topic->options.partitions);
}
uint32_t Producer::partition_count() const noexcept { return state_->topic->options.partitions; }
const Error& Producer::last_error() const noexcept { return state_->last_error; }

namespace {
// Size of one record in a frame, or 0 if it cannot be encoded.
uint64_t padded_record_size(const Message& m) {
  const uint64_t hb = headers_block_bytes(m.headers);
  if (hb == UINT64_MAX) return 0;
  return (record_size(m.key, hb, m.value.size()) + kFrameAlign - 1) & ~uint64_t{kFrameAlign - 1};
}
}  // namespace

SendResult Producer::send(const Message& m, std::optional<uint32_t> partition) noexcept {
  // The one-record case of send_batch(), kept straight-line: it is the path
  // latency-sensitive users take for every record.
  ProducerState& s = *state_;
  // The clock first: before the claim (a CLAIMED_COPY window runs no code
  // but the library's, and a BusOptions clock is the caller's), and before
  // anything else is live: in the middle of the straight lines the call
  // cost spills (docs/architecture.md, "Stores per record").
  const int64_t ts = m.timestamp_ns != 0 ? m.timestamp_ns : s.bus->clock->now_ns();
  SendResult result;
  const uint64_t hb = headers_block_bytes(m.headers);
  const uint64_t rec = hb == UINT64_MAX ? UINT64_MAX : record_size(m.key, hb, m.value.size());
  if (rec >= UINT32_MAX - kFrameHeaderBytes - kFrameAlign) {
    result.status = s.fail(SendStatus::kTooLarge, Error{Errc::kTooLarge, "record too large for the format"});
    return result;
  }
  const uint32_t frame = kFrameHeaderBytes + align_up(static_cast<uint32_t>(rec));
  result.partition = s.choose_partition(m.key, partition);
  if (frame <= kStagedFrameBytes && s.txn == nullptr) {
    // One instance per mode and per idempotence: the plain paths carry no
    // idempotence code (with it, the plain exclusive stream lost 8%).
    const bool sent = s.options.exclusive
                          ? (s.idem ? s.send_small_exclusive<true>(result.partition, m, hb, frame, ts, &result)
                                    : s.send_small_exclusive<false>(result.partition, m, hb, frame, ts, &result))
                          : (s.idem ? s.send_small_shared<true>(result.partition, m, hb, frame, ts, &result)
                                    : s.send_small_shared<false>(result.partition, m, hb, frame, ts, &result));
    if (sent) return result;
  }
  Partition::Reservation r;
  // A small frame is composed on the stack and copied in at publish
  // (copy_staged_frame says why); a large one is written in place.
  alignas(16) std::byte stage_buffer[kStagedFrameBytes];
  std::byte* const stage = frame <= kStagedFrameBytes ? stage_buffer : nullptr;
  result.status = s.reserve(result.partition, frame, 1, &r, stage, /*copying=*/true);
  if (result.status != SendStatus::kOk) return result;
  if (s.idem) [[unlikely]] result.sequence = s.idem->parts[result.partition].next_seq;
  result.offset = r.offset;
  if (stage != nullptr) std::memset(stage + frame - 8, 0, 8);  // the padding, as in compose_small()
  std::byte* const at = (stage != nullptr ? stage : r.segment->data() + r.position) + kFrameHeaderBytes;
  const auto value_bytes = static_cast<uint32_t>(m.value.size());
  if (stage == nullptr && value_bytes >= kSealFromSourceBytes) {
    encode_sealed_record(at, m.key, m.headers, hb, m.value.data(), value_bytes, ts,
                         frame_seed(r.segment->frame(r.position)));
    result.status = s.publish(r, frame, 1, ts, nullptr, /*sealed=*/true);
  } else {
    encode_record(at, m.key, m.headers, hb, m.value.data(), value_bytes, ts);
    result.status = s.publish(r, frame, 1, ts, stage);
  }
  return result;
}

SendResult Producer::send_batch(std::span<const Message> batch, std::optional<uint32_t> partition) noexcept {
  ProducerState& s = *state_;
  SendResult result;
  if (batch.empty() || batch.size() > kMaxRecordsPerFrame) {
    result.status = s.fail(SendStatus::kError, Error{Errc::kInvalidArgument, "a batch holds 1 to 65535 records"});
    return result;
  }
  uint64_t frame = kFrameHeaderBytes;
  for (const Message& m : batch) {
    const uint64_t r = padded_record_size(m);
    if (r == 0 || r > UINT32_MAX) {
      result.status = s.fail(SendStatus::kTooLarge, Error{Errc::kTooLarge, "record too large for the format"});
      return result;
    }
    frame += r;
  }
  if (frame > UINT32_MAX) {
    result.status = s.fail(SendStatus::kTooLarge, Error{Errc::kTooLarge, "batch too large for one frame"});
    return result;
  }
  const uint32_t p = s.choose_partition(batch[0].key, partition);
  result.partition = p;
  Partition::Reservation r;
  const uint32_t count = static_cast<uint32_t>(batch.size());
  int64_t now = 0;  // before the claim, as in send()
  for (const Message& m : batch)
    if (m.timestamp_ns == 0) {
      now = s.bus->clock->now_ns();
      break;
    }
  result.status = s.reserve(p, static_cast<uint32_t>(frame), count, &r, nullptr, /*copying=*/true);
  if (result.status != SendStatus::kOk) return result;
  if (s.idem) [[unlikely]] result.sequence = s.idem->parts[p].next_seq;
  std::byte* rec = r.segment->data() + r.position + kFrameHeaderBytes;
  int64_t first_ts = 0;
  for (uint32_t i = 0; i < count; ++i) {
    const Message& m = batch[i];
    const int64_t ts = m.timestamp_ns != 0 ? m.timestamp_ns : now;
    if (i == 0) first_ts = ts;
    const uint64_t hb = headers_block_bytes(m.headers);
    encode_record(rec, m.key, m.headers, hb, m.value.data(), static_cast<uint32_t>(m.value.size()), ts);
    rec += padded_record_size(m);
  }
  result.offset = r.offset;
  result.status = s.publish(r, static_cast<uint32_t>(frame), count, first_ts);
  return result;
}

SendStatus Producer::try_claim(const ClaimSpec& spec, Claim& out) noexcept {
  ProducerState& s = *state_;
  out.abort();
  if (s.txn)
    return s.fail(SendStatus::kError,
                  Error{Errc::kInvalidArgument, "zero-copy claims do not join transactions; use send()"});
  const uint64_t hb = headers_block_bytes(spec.headers);
  const uint64_t rec = hb == UINT64_MAX ? UINT64_MAX : record_size(spec.key, hb, spec.value_bytes);
  if (rec >= UINT32_MAX - kFrameHeaderBytes - kFrameAlign)
    return s.fail(SendStatus::kTooLarge, Error{Errc::kTooLarge, "record too large for the format"});
  const uint32_t frame = kFrameHeaderBytes + align_up(static_cast<uint32_t>(rec));
  const uint32_t p = s.choose_partition(spec.key, spec.partition);
  Partition::Reservation r;
  if (SendStatus st = s.reserve(p, frame, 1, &r, nullptr, /*copying=*/false); st != SendStatus::kOk) return st;
  const int64_t ts = spec.timestamp_ns != 0 ? spec.timestamp_ns : s.bus->clock->now_ns();
  std::byte* value = encode_record(r.segment->data() + r.position + kFrameHeaderBytes, spec.key, spec.headers, hb,
                                   nullptr, spec.value_bytes, ts);
  out.keep_alive_ = s.writers[p].segment;  // the segment r.segment points to
  out.frame_ = r.segment->data() + r.position;
  out.value_ = std::span<std::byte>(value, spec.value_bytes);
  out.partition_ = p;
  out.offset_ = r.offset;
  out.producer_ = state_.get();
  if (s.idem) s.idem->claim_open = true;
  return SendStatus::kOk;
}

Claim::Claim(Claim&& o) noexcept
    : keep_alive_(std::move(o.keep_alive_)), frame_(o.frame_), value_(o.value_), partition_(o.partition_),
      offset_(o.offset_), producer_(o.producer_) {
  o.frame_ = nullptr;
}
Claim& Claim::operator=(Claim&& o) noexcept {
  if (this != &o) {
    abort();
    keep_alive_ = std::move(o.keep_alive_);
    frame_ = o.frame_;
    value_ = o.value_;
    partition_ = o.partition_;
    offset_ = o.offset_;
    producer_ = o.producer_;
    o.frame_ = nullptr;
  }
  return *this;
}
Claim::~Claim() { abort(); }

SendStatus Claim::commit() noexcept {
  if (frame_ == nullptr) return SendStatus::kError;
  auto* seg = static_cast<Segment*>(keep_alive_.get());
  Partition::Reservation r{seg, static_cast<uint32_t>(frame_ - seg->data()), offset_, partition_};
  RecordHeader h;
  std::memcpy(&h, frame_ + kFrameHeaderBytes, sizeof h);
  const uint32_t frame = kFrameHeaderBytes + align_up(h.length);
  SendStatus st = producer_->publish(r, frame, 1, h.timestamp_ns);
  if (producer_->idem) producer_->idem->claim_open = false;
  frame_ = nullptr;
  keep_alive_.reset();
  return st;
}

void Claim::abort() noexcept {
  if (frame_ == nullptr) return;
  auto* seg = static_cast<Segment*>(keep_alive_.get());
  const uint32_t pos = static_cast<uint32_t>(frame_ - seg->data());
  RecordHeader h;
  std::memcpy(&h, frame_ + kFrameHeaderBytes, sizeof h);
  const uint32_t frame = kFrameHeaderBytes + align_up(h.length);
  const uint64_t aborted = make_claim_word(kAborted, frame, 1, producer_->owner);
  auto& word = seg->word(pos);
  if (producer_->options.exclusive) {
    word.store(aborted, std::memory_order_seq_cst);
    seg->store_hint(pos + frame, static_cast<uint32_t>(offset_ - seg->base_offset()) + 1);
  } else {
    uint64_t expected = make_claim_word(kClaimed, frame, 1, producer_->owner);
    word.compare_exchange_strong(expected, aborted, std::memory_order_seq_cst, std::memory_order_relaxed);
  }
  ipc::notify(producer_->topic->control().wakeup);
  if (producer_->idem) producer_->idem->claim_open = false;  // the sequence is given again
  frame_ = nullptr;
  keep_alive_.reset();
}

}  // namespace sluice
