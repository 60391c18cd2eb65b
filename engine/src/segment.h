// One segment file of a partition: its mapping, the lock-free claim walk and
// the index slots. Layout and encodings: segment_format.h.
#pragma once

#include <sluice/status.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "ipc/file_lock.h"
#include "ipc/mapped_file.h"
#include "mapping_pool.h"
#include "segment_format.h"

namespace sluice {

// Where the claimed frames of a segment end, as seen by one walk.
struct SegmentEnd {
  uint32_t position;  // data position just past the last frame walked
  uint32_t count;     // records before `position`
  bool sealed;        // an END_OF_SEGMENT word (or the capacity) was reached
};

// A shared writer's side of the owned tail (docs/architecture.md, "The owned
// tail"), one per writer and partition, touched only by its thread.
struct TailOwnership {
  // Claims in a row before a writer may take the tail, doubled by each
  // revocation the segment has seen.
  static constexpr uint32_t kSoloClaimsToOwn = 64;
  bool may_own = false;  // a plain producer's writer, in a process registered for membarrier
  // The base offset + 1 of the segment whose tail we own; 0: none. With
  // `expect`, the tail word our last claim left: we still own the tail
  // while it reads that (positions only grow, and a revoker changes it).
  uint64_t owned_base = 0;
  uint64_t expect = 0;
  uint32_t solo = 0;       // our claims in a row that no other writer's came between
  uint32_t dirty_end = 0;  // what we announced in SegmentControl::owner_dirty_end
  // Where the zeros past our tail end: the capacity, unless our roll
  // recycled the owned segment without zeroing it whole; owned_begin()
  // then zeroes ahead, so that the word past each frame reads 0.
  uint32_t zeroed_end = UINT32_MAX;
  bool sealed_owned = false;  // our last claim sealed a segment we owned: our roll may own the next

  // Every kSoloClaimsToOwn claims in a row while not owning: time to see
  // whether a dead revoker's slot is what keeps us from owning
  // (Partition::release_dead_revoker).
  bool revoker_check_due() const noexcept {
    return may_own && owned_base == 0 && solo != 0 && solo % kSoloClaimsToOwn == 0;
  }
};

// A process that uses a segment holds a shared flock on the segment file for
// as long as it does (the "use lock"); a recycler must take it exclusively,
// so a file is never rewritten under a process still reading it. When the
// Segment is destroyed its mapping goes to the partition's MappingPool.
class Segment {
 public:
  ~Segment();
  // Creates <dir>/<base>.seg preallocated and zeroed, or opens the one another
  // process published first. Errors: kNoSpace, kIoError, validation errors.
  static Result<std::shared_ptr<Segment>> create(const std::string& path,
                                                 const format::SegmentParams& params,
                                                 const ipc::MapOptions& map,
                                                 const std::shared_ptr<MappingPool>& pool);
  // Opens a published segment. kNotFound if it does not exist or is being
  // recycled right now.
  static Result<std::shared_ptr<Segment>> open(const std::string& path, const ipc::MapOptions& map,
                                               const std::shared_ptr<MappingPool>& pool);
  enum class Recycled : uint8_t { kPublished, kInUse, kLostRace, kUnfit };
  // A retired segment file (a spare) made into a new segment, in two steps
  // so that the first can come well before a roll (Partition::take_spare,
  // Partition::prepare_spare).
  // take_spare(): locks the file at `spare_path` exclusively into *lock and
  // checks its size against `params`'. kPublished: taken; kInUse: a process
  // holds it; kUnfit: its size does not match (or it is gone).
  // publish_spare(): with that lock, the file renamed by the caller to
  // `spare_path` (a name no one else picks): header and index zeroed, new
  // header, the first `zero_data_bytes` of the data region zeroed (all of it
  // by default), linked at `path`. kLostRace: `path` already exists (the
  // file stays at spare_path); kUnfit: it cannot be mapped or linked.
  // `owned`: the segment is published with its tail OWNED (by the caller,
  // a shared writer's roll, docs/architecture.md "The owned tail") and
  // announced dirty in whole (owner_dirty_end = capacity), so that a data
  // region zeroed only `zero_data_bytes` deep is never claimed over by
  // anyone but its owner until a revoker has zeroed it.
  static Recycled take_spare(const std::string& spare_path, const format::SegmentParams& params,
                             ipc::FileLock* lock);
  static Recycled publish_spare(ipc::FileLock lock, const std::string& spare_path, const std::string& path,
                                const format::SegmentParams& params, const ipc::MapOptions& map,
                                const std::shared_ptr<MappingPool>& pool, std::shared_ptr<Segment>* out,
                                uint32_t zero_data_bytes = UINT32_MAX, bool owned = false);

  const std::string& path() const noexcept { return path_; }
  uint64_t base_offset() const noexcept { return params_.base_offset; }
  uint64_t base_position() const noexcept { return params_.base_position; }
  uint32_t capacity() const noexcept { return params_.data_bytes; }
  uint32_t index_interval() const noexcept { return params_.index_interval_bytes; }
  const format::SegmentParams& params() const noexcept { return params_; }
  std::byte* data() const noexcept { return data_; }
  format::SegmentControl& control() const noexcept {
    return *reinterpret_cast<format::SegmentControl*>(file_.data() + format::kControlOffset);
  }
  format::FrameHeader* frame(uint32_t position) const noexcept {
    return reinterpret_cast<format::FrameHeader*>(data_ + position);
  }
  std::atomic<uint64_t>& word(uint32_t position) const noexcept { return frame(position)->claim; }
  uint64_t slot_count() const noexcept { return slot_count_; }
  format::IndexSlot& slot(uint64_t k) const noexcept {
    return reinterpret_cast<format::IndexSlot*>(file_.data() + format::kIndexOffset)[k];
  }
  const ipc::MappedFile& file() const noexcept { return file_; }
  // How much of the data region is known zero past the frames: capacity(),
  // except in a segment this process recycled for an exclusive writer
  // without zeroing it whole (Partition::roll, docs/architecture.md,
  // "Recycling without zeroing"); that writer zeroes the rest ahead of it.
  uint32_t zeroed_prefix() const noexcept { return zeroed_prefix_ < capacity() ? zeroed_prefix_ : capacity(); }
  // Whether this process published the segment with its tail OWNED (an
  // owner's roll, publish_spare(..., owned)).
  bool born_owned() const noexcept { return born_owned_; }

  // Whether writers claim CLAIMED_COPY here (segment format version 3 on):
  // see segment_format.h.
  bool copy_claims() const noexcept { return copy_claims_; }

  enum class ClaimOutcome : uint8_t { kClaimed, kSealed, kCorrupt, kOwned };
  // Reserves `frame_length` bytes holding `count` records for `owner`, in
  // `state` (kClaimed, or kClaimedCopy where copy_claims()). On kClaimed, *position and *count_before locate the frame
  // and its first record (base_offset() + *count_before). kSealed: the
  // segment is full (this call may have sealed it); use the next one, whose
  // base offset is base_offset() + *count_before. kCorrupt: the walk met a
  // word that cannot be valid (position in *position). kOwned: another
  // writer owns the tail; Partition::revoke_tail() takes it back, then the
  // caller claims again.
  // Thread-safety: any number of threads and processes concurrently.
  // Version 3 (copy_claims()): the tail claim, a CAS on the EXACT tail word;
  // `intent` is the writer's ClaimIntent::position (topic_format.h) and must
  // not be null; `own` (may be null: never owns) is the writer's side of
  // the owned tail, which a CLAIMED_COPY claim may take. Older versions: the
  // claim walk, a CAS on the word at the end of the frames; `intent` and
  // `own` are not used.
  ClaimOutcome try_claim(uint32_t frame_length, uint32_t count, uint16_t owner, format::ClaimState state,
                         std::atomic<uint64_t>* intent, TailOwnership* own, uint32_t* position,
                         uint32_t* count_before) noexcept;

  // The owner's append (docs/architecture.md, "The owned tail"), for a
  // frame of `frame_length` bytes holding `count` records, in two halves
  // around the caller's writing of the whole frame: owned_begin() checks
  // that `own` still owns this segment's tail and no revocation is under
  // way, stores the intent, announces how far it may write, and gives the
  // position and the record's index; owned_end() publishes the frame's word
  // (0 -> `claim_word`, a release store), stores the tail past the frame and
  // clears the intent. No locked instruction. false: not owned (any more),
  // a revocation is under way (the ownership is dropped), or the frame does
  // not fit (try_claim() seals); nothing was written.
  [[gnu::always_inline]] bool owned_begin(uint32_t frame_length, uint32_t count, std::atomic<uint64_t>& intent,
                                          TailOwnership& own, uint32_t* position, uint32_t* count_before) noexcept {
    if (own.owned_base != base_offset() + 1) return false;
    const uint64_t t = own.expect;
    const uint32_t pos = format::tail_position(t);
    const uint32_t idx = format::tail_count(t);
    if (uint64_t{pos} + frame_length > capacity() || uint64_t{idx} + count > format::kMaxTailCount) [[unlikely]]
      return false;
    auto& c = control();
    // relaxed, then no fence: the store-load barrier between our intent and
    // the load of `revoker` is the revoker's membarrier (GLOBAL_EXPEDITED),
    // which runs a full barrier on our CPU if we are running. Either our
    // intent is visible to the revoker after its barrier, and it waits for
    // us to clear it, or our load comes after that barrier and sees it.
    intent.store(base_position() + pos + 1, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    // acquire: a revoker that finished before us (its release store of 0)
    // changed the tail before; the tail load below then sees that.
    // relaxed tail load: only we store it while it reads our `expect`.
    if (c.revoker.load(std::memory_order_acquire) != 0 || c.tail_hint.load(std::memory_order_relaxed) != t)
        [[unlikely]] {
      intent.store(0, std::memory_order_release);
      own.owned_base = 0;
      own.solo = 0;
      return false;
    }
    const uint32_t end = pos + frame_length;
    zero_ahead_owned(own, end);
    if (end > own.dirty_end) [[unlikely]] {
      // Announced before we write past it, so that whoever takes the tail
      // after our death zeroes it. Ordered before the frame's bytes: x86
      // stores become visible in program order, and a killed process's
      // executed stores are not lost; elsewhere a full fence orders them.
      own.dirty_end = static_cast<uint32_t>(std::min<uint64_t>(capacity(), uint64_t{end} + kOwnerDirtyAhead));
      c.owner_dirty_end.store(own.dirty_end, std::memory_order_release);
#if !defined(__x86_64__)
      std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
    }
    *position = pos;
    *count_before = idx;
    return true;
  }
  [[gnu::always_inline]] void owned_end(uint32_t position, uint32_t frame_length, uint32_t count_before,
                                        uint32_t count, uint64_t claim_word, std::atomic<uint64_t>& intent,
                                        TailOwnership& own) noexcept {
    // release: publishes the frame to readers (only a release publisher's
    // writer owns: TailOwnership::may_own).
    word(position).store(claim_word, std::memory_order_release);
    const uint64_t next =
        format::pack_tail(position + frame_length, count_before + count) | format::kTailExact | format::kTailOwned;
    // release: a walker that sees the tail sees the frames below it.
    control().tail_hint.store(next, std::memory_order_release);
    own.expect = next;
    // release: a revoker that sees the intent cleared sees the tail.
    intent.store(0, std::memory_order_release);
  }

  // In a segment the owner's roll recycled without zeroing it whole
  // (announced dirty in whole): makes the word past a frame ending at `end`
  // read 0 before the frame is published, a chunk at a time, ahead of the
  // frames. REQUIRES: `own` owns the tail, its intent raised.
  [[gnu::always_inline]] void zero_ahead_owned(TailOwnership& own, uint32_t end) noexcept {
    if (uint64_t{end} + format::kFrameHeaderBytes <= own.zeroed_end) [[likely]]
      return;
    const uint64_t want =
        (uint64_t{end} + format::kFrameHeaderBytes + kOwnerZeroAhead - 1) / kOwnerZeroAhead * kOwnerZeroAhead;
    const uint32_t to = static_cast<uint32_t>(std::min<uint64_t>(want, capacity()));
    if (to > own.zeroed_end) std::memset(data() + own.zeroed_end, 0, to - own.zeroed_end);
    own.zeroed_end = to;
  }

  // An owner's release of the tail it owns here (a closing producer, not
  // claiming), so that the next writer need not revoke it. Nothing if `own`
  // does not own it (any more), or a revocation is under way (which ends
  // it), or its roll recycled the segment without zeroing it whole: then
  // the tail stays OWNED, and the next writer's revocation zeroes the rest
  // before anyone claims over it. The intent is raised meanwhile, as for a
  // claim: a revoker waits for it before it zeroes past the tail, which a
  // writer after our release may already be writing.
  void give_back(TailOwnership& own, std::atomic<uint64_t>& intent) noexcept;

  // Where the claims end: the tail word itself when EXACT (and not OWNED),
  // else a walk from it. Returns sealed=false,position=UINT32_MAX on a
  // corrupt word.
  SegmentEnd find_end() const noexcept;
  // Takes an OWNED tail back from an owner that cannot be claiming: walks
  // past the frames it published, zeroes what it finds non-zero past them
  // up to owner_dirty_end (a dead owner's frame in progress, or the old
  // bytes of a lazily recycled segment), and makes the tail EXACT there.
  // REQUIRES: no claim of a live owner in flight and none to come
  // (Partition::revoke_tail() after its barrier and wait; the exclusive
  // writer lock; recovery). false: the walk met a corrupt word (nothing
  // changed).
  bool take_owned_tail() noexcept;
  // Zeroes [from, to) up to the end of its last non-zero 8-byte word, and
  // writes nothing if every word there reads 0 (readers poll the word at
  // a segment's end: the usual call must not store into its line). Returns
  // the bytes zeroed. REQUIRES: from, to multiples of 8, to <= capacity(),
  // no live writer in [from, to).
  uint32_t zero_stray(uint32_t from, uint32_t to) noexcept;

  // How far ahead of its frames an owner announces it may write, and
  // zeroes in a segment its roll recycled lazily.
  static constexpr uint32_t kOwnerDirtyAhead = 64 << 10;
  static constexpr uint32_t kOwnerZeroAhead = 64 << 10;

  // Fills the index slots covered by the frame [position, position + length).
  // Most frames cover none; with a power-of-two interval (every topic's
  // default) that costs one comparison and no division.
  void index_frame(uint32_t position, uint32_t length, uint32_t rel_offset,
                   int64_t timestamp_ns) const noexcept {
    const uint64_t m = index_mask_;
    if (m != 0 && ((uint64_t{position} + m) & ~m) >= uint64_t{position} + length) return;
    index_slots(position, length, rel_offset, timestamp_ns);
  }
  // The closest indexed frame at or before `rel_offset`: its position and the
  // relative offset of its first record. (0, 0) when none.
  std::pair<uint32_t, uint32_t> index_lookup(uint32_t rel_offset) const noexcept;
  // The first indexed frame whose running maximum timestamp reaches `ts`, as
  // (position, rel_offset); nullopt if no slot reaches it.
  bool index_lookup_time(int64_t ts, uint32_t* position, uint32_t* rel_offset) const noexcept;

  // The tail word when not EXACT (segment_format.h) is a monotonic hint
  // and every frame below it has a non-zero word; walks start there
  // (readers watch words, see docs/architecture.md). A sealed segment's
  // hint is (capacity, count at the seal).
  // advance_hint: fetch-max, for any number of writers (version-1 and 2
  // segments' claim walk; recovery).
  void advance_hint(uint32_t position, uint32_t count) const noexcept;
  // Marks the segment as holding (or having held) a PREPARED frame; a
  // transactional writer calls it before publishing one here.
  void mark_prepared() const noexcept {
    auto& mark = control().prepared_mark;
    // relaxed load: set once and never cleared, so a stale 0 only costs the
    // store. The store is ordered before the frame's publishing (seq_cst
    // CAS or store), so whoever sees the PREPARED word sees the mark.
    if (mark.load(std::memory_order_relaxed) == 0) mark.store(1, std::memory_order_relaxed);
  }
  // Whether a PREPARED frame was ever published here. acquire: pairs with
  // the publishing of a PREPARED word after mark_prepared().
  bool may_hold_prepared() const noexcept { return control().prepared_mark.load(std::memory_order_acquire) != 0; }
  // store_hint: the exclusive writer's plain store (it alone moves the hint;
  // it may commit zero-copy claims out of order, hence the comparison; a
  // frame below the hint whose word is still 0 is one such claim, and
  // readers wait at it).
  void store_hint(uint32_t position, uint32_t count) const noexcept {
    auto& hint = control().tail_hint;
    // relaxed: only this writer stores the hint.
    if (format::tail_position(hint.load(std::memory_order_relaxed)) >= position) return;
    // release: pairs with the acquire loads of the hint by readers and
    // writers; the frame words below `position` are visible to them.
    hint.store(format::pack_tail(position, count), std::memory_order_release);
  }

 private:
  std::string path_;  // its name now (a pooled mapping may remember an older one)
  ipc::MappedFile file_;
  ipc::FileLock use_lock_;
  FileIdentity identity_{};
  std::weak_ptr<MappingPool> pool_;
  format::SegmentParams params_{};
  std::byte* data_ = nullptr;
  uint64_t slot_count_ = 0;
  uint64_t index_mask_ = 0;  // interval - 1 if the interval is a power of two, else 0
  uint32_t zeroed_prefix_ = UINT32_MAX;
  bool born_owned_ = false;
  bool copy_claims_ = false;

  void index_slots(uint32_t position, uint32_t length, uint32_t rel_offset, int64_t timestamp_ns) const noexcept;
  ClaimOutcome claim_tail(uint32_t frame_length, uint32_t count, uint16_t owner, format::ClaimState state,
                          std::atomic<uint64_t>& intent, TailOwnership* own, uint32_t* position,
                          uint32_t* count_before) noexcept;
  ClaimOutcome claim_walk(uint32_t frame_length, uint32_t count, uint16_t owner, format::ClaimState state,
                          uint32_t* position, uint32_t* count_before) noexcept;
  // Walks from the hint `hint` to the end of the frames.
  SegmentEnd walk_end(uint64_t hint) const noexcept;
  // A shared writer meeting a tail word that is only a hint: walks to the
  // end and CASes the word to it, EXACT. *t: the tail word now. false: the
  // walk met a corrupt word.
  bool make_exact(uint64_t* t) const noexcept;

  static Result<std::shared_ptr<Segment>> from_file(const std::string& path, ipc::MappedFile file,
                                                   ipc::FileLock use_lock,
                                                   const std::shared_ptr<MappingPool>& pool);
};

std::string segment_file_name(uint64_t base_offset);
// Parses "<20 digits>.seg"; false for anything else.
bool parse_segment_file_name(const std::string& name, uint64_t* base_offset);

}  // namespace sluice
