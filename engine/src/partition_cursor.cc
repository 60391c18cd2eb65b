#include "partition_cursor.h"

#include <algorithm>

#include "record_codec.h"

namespace sluice {

using namespace format;

uint64_t PartitionCursor::position() const noexcept {
  return segment_ ? segment_->base_position() + frame_pos_ : 0;
}

void PartitionCursor::leave_frame() noexcept {
  frame_pos_ += frame_len_;
  frame_len_ = 0;
  frame_count_ = 0;
  rec_index_ = 0;
}

PartitionCursor::Step PartitionCursor::corrupt(std::string what) {
  error_ = Error{Errc::kCorruption, "topic " + partition_->topic().name + " partition " +
                                        std::to_string(partition_->index()) + ", segment " +
                                        segment_->path() + ", position " + std::to_string(frame_pos_) +
                                        ", offset " + std::to_string(next_offset_) + ": " + what};
  // relaxed: a statistic.
  partition_->control().corrupt_frames.fetch_add(1, std::memory_order_relaxed);
  return Step::kCorrupt;
}

bool PartitionCursor::eos_wait_over(uint64_t next_base) {
  const int64_t now = partition_->topic().bus->clock->coarse_now_ns();
  if (eos_since_ns_ == 0 || eos_base_ != next_base) {
    eos_since_ns_ = now;
    eos_base_ = next_base;
    eos_polls_ = 0;
    return false;
  }
  return now - eos_since_ns_ >= kCreateNextAfterNs || ++eos_polls_ >= kCreateNextAfterPolls;
}

PartitionCursor::Step PartitionCursor::enter_segment_after_eos() {
  const uint64_t next_base = next_offset_;
  // A caught-up reader polls here from the seal until the writer has made
  // the next segment (recycling one takes a millisecond). While the
  // partition's newest segment is older than the one we want, it is not
  // there yet: no file lookups (an open and a directory listing, per poll;
  // queue workers spent their CPU on them). acquire: pairs with the release
  // CAS in create_segment(), after the file is in place. A writer that died
  // between its file and that CAS leaves the hint behind; once the wait for
  // a dead writer is over the lookups below run and find the file.
  if (next_base > partition_->control().newest_base.load(std::memory_order_acquire) && !eos_wait_over(next_base))
    return Step::kEmpty;
  auto next = partition_->segment(next_base);
  if (!next && next.error().code == Errc::kNotFound) {
    // Cases, checked in this order because a writer may create the segment
    // (and even fill it and the next) while we look:
    //   1. retention removed it: out of range;
    //   2. it exists now: open it;
    //   3. a later one exists but not it: lost, a gap (corruption);
    //   4. nothing after us: create it (any reader or writer may).
    if (next_base < partition_->start_offset()) return Step::kOutOfRange;  // 1
    auto bases = partition_->segment_bases();
    if (!bases) {
      error_ = bases.error();
      return Step::kCorrupt;
    }
    if (std::binary_search(bases->begin(), bases->end(), next_base)) {  // 2
      next = partition_->segment(next_base);
    } else if (auto it = std::upper_bound(bases->begin(), bases->end(), next_base); it != bases->end()) {  // 3
      if (next_base < partition_->start_offset()) return Step::kOutOfRange;  // retention raced the listing
      return corrupt("segment " + std::to_string(next_base) + " is missing; offsets " + std::to_string(next_base) +
                     ".." + std::to_string(*it - 1) + " are lost");
    } else {  // 4
      // Normally the writer that sealed the segment creates the next one,
      // and a reader must not race it: its file would win over the spare the
      // writer is recycling (zeroing 64 MiB takes milliseconds), and the log
      // would allocate and fault in fresh memory on every roll. A reader
      // creates it only when the writer seems to have died in between.
      if (!eos_wait_over(next_base)) return Step::kEmpty;
      next = partition_->next_segment(*segment_, static_cast<uint32_t>(next_base - segment_->base_offset()));
    }
  }
  if (!next) {
    if (next.error().code == Errc::kNotFound) return Step::kEmpty;
    error_ = next.error();  // the next segment exists but cannot be used
    return Step::kCorrupt;
  }
  move_forward_to(std::move(*next));
  frame_pos_ = 0;
  frame_len_ = 0;
  frame_count_ = 0;
  return Step::kRecord;  // "continue": the caller loops
}

PartitionCursor::Step PartitionCursor::next(RecordView* out) noexcept {
  if (!segment_) {
    if (auto ok = seek(next_offset_); !ok) {
      if (ok.error().code == Errc::kOffsetOutOfRange) return Step::kOutOfRange;
      error_ = ok.error();  // e.g. a segment that fails validation
      return Step::kCorrupt;
    }
  }
  for (;;) {
    if (frame_count_ != 0) {  // inside a committed frame
      uint32_t padded;
      const uint32_t frame_end = frame_pos_ + frame_len_;
      DecodeStatus st = decode_record(segment_->data() + rec_pos_, frame_end - rec_pos_, seed_,
                                      rec_index_, verify_, out, &padded);
      if (st != DecodeStatus::kOk) return corrupt(decode_status_text(st));
      const FrameHeader* f = segment_->frame(frame_pos_);
      out->partition = partition_->index();
      out->offset = next_offset_;
      out->producer_id = f->producer_id;
      out->producer_epoch = f->producer_epoch;
      out->attributes = f->attributes;
      out->sequence = f->base_sequence + rec_index_;
      out->position = segment_->base_position() + frame_pos_;
      rec_pos_ += padded;
      ++next_offset_;
      if (++rec_index_ == frame_count_) {
        if (rec_pos_ > frame_end) return corrupt("records overrun their frame");
        leave_frame();
      }
      return Step::kRecord;
    }
    if (static_cast<uint64_t>(frame_pos_) + kFrameHeaderBytes > segment_->capacity()) {
      Step s = enter_segment_after_eos();
      if (s != Step::kRecord) return s;
      continue;
    }
    // The reader watches the next frame's word itself, not the segment's
    // tail hint: waiting on the hint puts two more line transfers (the
    // writer's hint store, our load of it) between a commit and its reader,
    // about 80 ns of a 0.4 us round trip, and measured no faster when
    // streaming either (docs/architecture.md, "Reading").
    // acquire: pairs with the writer's publishing CAS/store of the word; the
    // frame's bytes written before it are visible once we see COMMITTED.
    const uint64_t w = segment_->word(frame_pos_).load(std::memory_order_acquire);
    if (w == 0) {
      if (!gap_check_due()) [[likely]]
        return Step::kEmpty;
      const auto before = static_cast<uint32_t>(next_offset_ - segment_->base_offset());
      switch (partition_->repair_gap(*segment_, frame_pos_, before, /*check_intents=*/true)) {
        case Partition::Gap::kRepaired:
          ++repairs_;
          last_repaired_first_ = next_offset_;
          // acquire: as the load above.
          last_repaired_end_ = next_offset_ + claim_count(segment_->word(frame_pos_).load(std::memory_order_acquire));
          continue;
        case Partition::Gap::kResolved: continue;
        case Partition::Gap::kCorrupt:
          return corrupt("a claimed range whose claim word reads 0 cannot be measured");
        case Partition::Gap::kNone:
        case Partition::Gap::kLive: return Step::kEmpty;
      }
    }
    const ClaimState state = claim_state(w);
    if (state == kEndOfSegment) {
      Step s = enter_segment_after_eos();
      if (s != Step::kRecord) return s;
      continue;
    }
    const uint32_t len = claim_length(w);
    const uint32_t count = claim_count(w);
    if (len < kFrameHeaderBytes || static_cast<uint64_t>(frame_pos_) + len > segment_->capacity() ||
        count == 0 || !is_frame_state(state))
      return corrupt("invalid frame word");
    // Read committed: an undecided transaction's frame is the last stable
    // offset. Its decision (a flip of this word) wakes us like a commit; if
    // its holder died or ran late, resolve_stall() has the transaction
    // aborted, like a dead writer's claim.
    if (is_open_claim(state) || (state == kPrepared && !uncommitted_)) {
      switch (partition_->resolve_stall(*segment_, frame_pos_, w, stall_)) {
        case Partition::Stall::kPending: return Step::kPending;
        case Partition::Stall::kRepaired:
          ++repairs_;
          last_repaired_first_ = next_offset_;
          last_repaired_end_ = next_offset_ + count;
          break;
        case Partition::Stall::kResolved: break;
      }
      continue;  // read the word again: ABORTED or COMMITTED now
    }
    if (state == kAborted) {
      next_offset_ += count;
      frame_len_ = len;
      leave_frame();
      continue;
    }
    const FrameHeader* f = segment_->frame(frame_pos_);
    if (f->base_offset != next_offset_)
      return corrupt("frame holds offset " + std::to_string(f->base_offset) + ", expected " +
                     std::to_string(next_offset_));
    frame_len_ = len;
    frame_count_ = count;
    rec_pos_ = frame_pos_ + kFrameHeaderBytes;
    rec_index_ = 0;
    seed_ = frame_seed(f);  // always: a saved cursor may verify later
  }
}

bool PartitionCursor::gap_check_due() noexcept {
  if (gap_segment_ != segment_.get() || gap_pos_ != frame_pos_) {
    gap_segment_ = segment_.get();
    gap_pos_ = frame_pos_;
    gap_polls_ = 0;
    gap_checked_ns_ = 0;
    return false;
  }
  // A caught-up reader spins here: a check (a load of the tail line, which
  // writers own) every few thousand polls, or every 10 ms of the coarse
  // clock for a reader that polls rarely (parked between polls).
  if (++gap_polls_ >= kGapPollsBeforeCheck) {
    gap_polls_ = 0;
    return true;
  }
  if ((gap_polls_ & 63) != 0) return false;
  const int64_t now = partition_->topic().bus->clock->coarse_now_ns();
  if (gap_checked_ns_ == 0 || now - gap_checked_ns_ < kGapCheckIntervalNs) {
    if (gap_checked_ns_ == 0) gap_checked_ns_ = now;
    return false;
  }
  gap_checked_ns_ = now;
  return true;
}

bool PartitionCursor::claims_ahead() const noexcept {
  if (!segment_) return false;
  const uint64_t t = segment_->control().tail_hint.load(std::memory_order_seq_cst);
  return tail_exact(t) && (tail_position(t) > frame_pos_ || (tail_sealed(t) && tail_position(t) == frame_pos_ &&
                                                             static_cast<uint64_t>(frame_pos_) + kFrameHeaderBytes <=
                                                                 segment_->capacity()));
}

uint64_t PartitionCursor::skip_corrupt() {
  if (!segment_) return 0;
  const uint64_t from = next_offset_;
  const bool word_in_bounds = static_cast<uint64_t>(frame_pos_) + kFrameHeaderBytes <= segment_->capacity();
  const uint64_t w = word_in_bounds ? segment_->word(frame_pos_).load(std::memory_order_acquire) : 0;
  const uint32_t len = claim_length(w);
  if (frame_count_ != 0 || (len >= kFrameHeaderBytes && static_cast<uint64_t>(frame_pos_) + len <= segment_->capacity() &&
                            claim_count(w) > 0 && is_frame_state(claim_state(w)))) {
    // The frame's word is sane: skip the whole frame.
    const uint64_t frame_first = next_offset_ - rec_index_;
    next_offset_ = frame_first + claim_count(w);
    frame_len_ = len;
    leave_frame();
    return next_offset_ - from;
  }
  // The word itself is damaged: resynchronise at the next index slot past it.
  for (uint64_t k = frame_pos_ / segment_->index_interval() + 1; k < segment_->slot_count(); ++k) {
    const IndexSlot& s = segment_->slot(k);
    const uint32_t v = s.rel_offset_plus_1.load(std::memory_order_acquire);
    if (v != 0 && s.position > frame_pos_ && segment_->base_offset() + v - 1 >= next_offset_) {
      frame_pos_ = s.position;
      frame_len_ = 0;
      frame_count_ = 0;
      next_offset_ = segment_->base_offset() + v - 1;
      return next_offset_ - from;
    }
  }
  // Nothing indexed after it: try the next segment.
  if (auto bases = partition_->segment_bases()) {
    auto it = std::upper_bound(bases->begin(), bases->end(), segment_->base_offset());
    if (it != bases->end()) {
      if (auto later = partition_->segment(*it)) {
        segment_ = std::move(*later);
        frame_pos_ = frame_len_ = frame_count_ = 0;
        next_offset_ = segment_->base_offset();
        return next_offset_ - from;
      }
    }
  }
  return 0;
}

void PartitionCursor::move_forward_to(std::shared_ptr<Segment> later) {
  // The segment we leave stays alive (views may point into it) only through
  // left_ until the next poll; not through this process's cache, or its use
  // lock would keep a recycler from it for as long as the log start allows
  // (queue workers that seek past segments the others read made the
  // publisher allocate a fresh segment at a third of its rolls).
  partition_->forget_segment(segment_->base_offset());
  left_.push_back(std::move(segment_));
  segment_ = std::move(later);
  // Retention may have deleted the segments behind us; drop this process's
  // mappings of them so that their memory (tmpfs pages) is freed.
  partition_->forget_segments_below(partition_->start_offset());
}

Status PartitionCursor::walk_to(std::shared_ptr<Segment> seg, uint32_t position, uint64_t frame_offset,
                                uint64_t offset) {
  if (segment_ && seg->base_offset() > segment_->base_offset())
    move_forward_to(std::move(seg));
  else
    segment_ = std::move(seg);
  frame_pos_ = position;
  frame_len_ = frame_count_ = rec_index_ = 0;
  next_offset_ = frame_offset;
  while (next_offset_ < offset) {
    if (static_cast<uint64_t>(frame_pos_) + kFrameHeaderBytes > segment_->capacity()) break;
    const uint64_t w = segment_->word(frame_pos_).load(std::memory_order_acquire);
    if (w == 0) {
      // A range whose writer died before its claim word is measured and
      // stepped over; one whose word is on its way (or the end) is where the
      // seek lands, and next() goes on from there.
      const auto before = static_cast<uint32_t>(next_offset_ - segment_->base_offset());
      const Partition::Gap g = partition_->repair_gap(*segment_, frame_pos_, before, /*check_intents=*/true);
      if (g == Partition::Gap::kRepaired || g == Partition::Gap::kResolved) continue;
      break;
    }
    if (claim_state(w) == kEndOfSegment) break;
    const uint32_t len = claim_length(w);
    const uint32_t count = claim_count(w);
    if (len < kFrameHeaderBytes || static_cast<uint64_t>(frame_pos_) + len > segment_->capacity()) break;
    if (next_offset_ + count > offset) {
      const bool readable = claim_state(w) == kCommitted || (uncommitted_ && claim_state(w) == kPrepared);
      if (!readable) break;  // land on the frame; next() handles it
      // Inside a committed batch: step over its first records.
      const FrameHeader* f = segment_->frame(frame_pos_);
      frame_len_ = len;
      frame_count_ = count;
      rec_pos_ = frame_pos_ + kFrameHeaderBytes;
      seed_ = frame_seed(f);  // always: a saved cursor may verify later
      while (next_offset_ < offset) {
        RecordView v;
        uint32_t padded;
        if (decode_record(segment_->data() + rec_pos_, frame_pos_ + len - rec_pos_, seed_, rec_index_,
                          false, &v, &padded) != DecodeStatus::kOk)
          return make_error(Errc::kCorruption, "cannot seek inside a damaged frame in " + segment_->path());
        rec_pos_ += padded;
        ++rec_index_;
        ++next_offset_;
      }
      return {};
    }
    frame_pos_ += len;
    next_offset_ += count;
  }
  return {};
}

Result<bool> PartitionCursor::seek_within_segment(std::shared_ptr<Segment> seg, uint64_t offset) {
  const uint64_t base = seg->base_offset();
  auto [pos, rel] = seg->index_lookup(static_cast<uint32_t>(std::min<uint64_t>(offset - base, UINT32_MAX)));
  if (auto ok = walk_to(seg, pos, base + rel, offset); !ok) return std::unexpected(ok.error());
  if (next_offset_ >= offset) return true;
  // Short of it: fine if the walk stopped at a frame it may not step over
  // (claimed, undecided), or at the end of the newest segment (offset is
  // past the log's end: the cursor waits there, as seek() leaves it).
  // Otherwise offset lies in a later segment.
  if (static_cast<uint64_t>(frame_pos_) + kFrameHeaderBytes > seg->capacity()) return false;
  const uint64_t w = seg->word(frame_pos_).load(std::memory_order_acquire);
  if (w != 0) return claim_state(w) != kEndOfSegment;
  // acquire: as in enter_segment_after_eos().
  return base == partition_->control().newest_base.load(std::memory_order_acquire);
}

Status PartitionCursor::seek(uint64_t offset) {
  const uint64_t start = partition_->start_offset();
  if (offset < start) {
    // Remember where we wanted to be: the reset that follows reports it.
    segment_.reset();
    next_offset_ = offset;
    return make_error(Errc::kOffsetOutOfRange, "offset " + std::to_string(offset) + " of partition " +
                                                   std::to_string(partition_->index()) +
                                                   " was removed by retention (log starts at " +
                                                   std::to_string(start) + ")");
  }
  // Without listing the directory where a segment at hand may hold the
  // offset: the current one, then the newest (this process has it mapped).
  // Queue workers that share a level seek past the others' offsets once per
  // batch; a listing per seek was most of their system time.
  if (segment_ && offset >= segment_->base_offset()) {
    auto within = seek_within_segment(segment_, offset);
    if (!within) return std::unexpected(within.error());
    if (*within) return {};
  }
  // acquire: pairs with the release CAS in create_segment().
  if (const uint64_t newest = partition_->control().newest_base.load(std::memory_order_acquire);
      offset >= newest && (!segment_ || segment_->base_offset() != newest)) {
    if (auto seg = partition_->segment(newest)) {
      auto within = seek_within_segment(std::move(*seg), offset);
      if (!within) return std::unexpected(within.error());
      if (*within) return {};
    }
  }
  auto bases = partition_->segment_bases();
  if (!bases) return std::unexpected(bases.error());
  if (bases->empty()) {
    auto seg = partition_->newest_segment();
    if (!seg) return std::unexpected(seg.error());
    return walk_to(*seg, 0, (*seg)->base_offset(), offset);
  }
  auto it = std::upper_bound(bases->begin(), bases->end(), offset);
  if (it != bases->begin()) --it;
  for (; it != bases->end(); ++it) {
    auto seg = partition_->segment(*it);
    if (!seg) {
      if (seg.error().code == Errc::kNotFound) continue;  // deleted by retention meanwhile
      return std::unexpected(seg.error());
    }
    auto [pos, rel] = (*seg)->index_lookup(static_cast<uint32_t>(std::min<uint64_t>(offset - std::min(offset, *it), UINT32_MAX)));
    if (offset < *it) pos = 0, rel = 0;
    return walk_to(*seg, pos, *it + rel, offset);
  }
  return make_error(Errc::kOffsetOutOfRange, "no segment holds offset " + std::to_string(offset));
}

Status PartitionCursor::seek_to_end() { return seek(partition_->end_offset()); }

Status PartitionCursor::seek_to_time(int64_t unix_ns) {
  auto bases = partition_->segment_bases();
  if (!bases) return std::unexpected(bases.error());
  // The first segment whose index reaches unix_ns; failing that, the last
  // indexed frame of the newest segment. Index slots hold the timestamp of a
  // frame's first record only, so the walk starts one slot early.
  std::shared_ptr<Segment> from;
  uint32_t pos = 0, rel = 0;
  for (uint64_t base : *bases) {
    auto seg = partition_->segment(base);
    if (!seg) {
      if (seg.error().code == Errc::kNotFound) continue;
      return std::unexpected(seg.error());
    }
    from = *seg;
    if ((*seg)->index_lookup_time(unix_ns, &pos, &rel)) break;
  }
  if (!from) return seek_to_end();
  if (auto ok = walk_to(from, pos, from->base_offset() + rel, from->base_offset() + rel); !ok) return ok;
  const bool saved_verify = verify_;
  verify_ = false;
  for (;;) {
    PartitionCursor before = *this;
    RecordView v;
    const Step s = next(&v);
    if (s != Step::kRecord || v.timestamp_ns >= unix_ns) {
      *this = before;
      break;
    }
  }
  verify_ = saved_verify;
  return {};
}

}  // namespace sluice
