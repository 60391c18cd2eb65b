#include "segment.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <unistd.h>

#include "ipc/filesystem.h"

namespace sluice {

using namespace format;

std::string segment_file_name(uint64_t base_offset) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020" PRIu64 ".seg", base_offset);
  return buf;
}

bool parse_segment_file_name(const std::string& name, uint64_t* base_offset) {
  if (name.size() != 24 || name.compare(20, 4, ".seg") != 0) return false;
  uint64_t v = 0;
  for (int i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    uint64_t d = static_cast<uint64_t>(name[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *base_offset = v;
  return true;
}

Segment::~Segment() {
  // Keep the mapping for reuse if this file is recycled; the use lock is
  // released when use_lock_ is destroyed after this body.
  if (auto pool = pool_.lock(); pool && file_.is_mapped()) pool->put(identity_, std::move(file_));
}

Result<std::shared_ptr<Segment>> Segment::from_file(const std::string& path, ipc::MappedFile file,
                                                   ipc::FileLock use_lock,
                                                   const std::shared_ptr<MappingPool>& pool) {
  auto ok = ipc::validate_file_header(file.data(), file.size(), ipc::FileKind::kSegment,
                                      sizeof(SegmentParams), path);
  if (!ok) return std::unexpected(ok.error());
  const auto& p = ipc::file_params<SegmentParams>(file.data());
  const auto& h = *reinterpret_cast<const ipc::FileHeader*>(file.data());
  if (p.index_interval_bytes < 64 || p.data_bytes == 0 || p.data_bytes % kFrameAlign != 0 ||
      h.data_offset != data_offset_for(p.data_bytes, p.index_interval_bytes) ||
      h.data_offset + static_cast<uint64_t>(p.data_bytes) != file.size())
    return make_error(Errc::kCorruption, "segment " + path + " has inconsistent sizes");
  auto seg = std::shared_ptr<Segment>(new Segment());
  seg->path_ = path;
  seg->params_ = p;
  seg->data_ = file.data() + h.data_offset;
  seg->slot_count_ = index_slot_count(p.data_bytes, p.index_interval_bytes);
  seg->copy_claims_ = h.format_version >= kCopyClaimVersion;
  if ((p.index_interval_bytes & (p.index_interval_bytes - 1)) == 0) seg->index_mask_ = p.index_interval_bytes - 1;
  seg->identity_ = use_lock.identity();
  seg->use_lock_ = std::move(use_lock);
  seg->pool_ = pool;
  seg->file_ = std::move(file);
  return seg;
}

namespace {
// Maps the file `lock` holds: a pooled mapping of the same inode if there is
// one (no page faults), else a new mapping through /proc/self/fd, which names
// exactly the locked inode whatever happens to `path` meanwhile.
Result<ipc::MappedFile> map_locked(const ipc::FileLock& lock, const std::string& path, const ipc::MapOptions& map,
                                   const std::shared_ptr<MappingPool>& pool) {
  if (pool)
    if (auto f = pool->take(lock.identity())) return std::move(*f);
  return ipc::MappedFile::open(lock.fd_path(), map, path);
}
}  // namespace

Result<std::shared_ptr<Segment>> Segment::create(const std::string& path,
                                                 const SegmentParams& params,
                                                 const ipc::MapOptions& map,
                                                 const std::shared_ptr<MappingPool>& pool) {
  if (ipc::path_exists(path)) return open(path, map, pool);
  const uint64_t data_offset = data_offset_for(params.data_bytes, params.index_interval_bytes);
  const uint64_t bytes = data_offset + params.data_bytes;
  auto file = ipc::MappedFile::create_temp(path, bytes, map);
  if (!file) return std::unexpected(file.error());
  ipc::write_file_header(file->data(), ipc::FileKind::kSegment, static_cast<uint32_t>(data_offset),
                         bytes, &params, sizeof params);
  auto lock = ipc::FileLock::try_lock_existing(file->temp_path(), ipc::FileLock::Mode::kShared);
  if (!lock) return std::unexpected(lock.error());
  auto published = file->publish();
  if (!published) return std::unexpected(published.error());
  if (!*published) return open(path, map, pool);  // another process created it first
  return from_file(path, std::move(*file), std::move(*lock), pool);
}

Result<std::shared_ptr<Segment>> Segment::open(const std::string& path, const ipc::MapOptions& map,
                                               const std::shared_ptr<MappingPool>& pool) {
  auto lock = ipc::FileLock::try_lock_existing(path, ipc::FileLock::Mode::kShared);
  if (!lock) {
    if (lock.error().code == Errc::kBusy)  // a recycler holds it: this segment is gone
      return make_error(Errc::kNotFound, "segment " + path + " is being recycled");
    return std::unexpected(lock.error());
  }
  auto file = map_locked(*lock, path, map, pool);
  if (!file) return std::unexpected(file.error());
  return from_file(path, std::move(*file), std::move(*lock), pool);
}

Segment::Recycled Segment::take_spare(const std::string& spare_path, const SegmentParams& params,
                                      ipc::FileLock* out) {
  auto lock = ipc::FileLock::try_lock_existing(spare_path, ipc::FileLock::Mode::kExclusive);
  if (!lock) return lock.error().code == Errc::kBusy ? Recycled::kInUse : Recycled::kUnfit;
  const uint64_t data_offset = data_offset_for(params.data_bytes, params.index_interval_bytes);
  if (lock->size() != data_offset + params.data_bytes) return Recycled::kUnfit;
  *out = std::move(*lock);
  return Recycled::kPublished;
}

Segment::Recycled Segment::publish_spare(ipc::FileLock lock, const std::string& spare_path, const std::string& path,
                                         const SegmentParams& params, const ipc::MapOptions& map,
                                         const std::shared_ptr<MappingPool>& pool, std::shared_ptr<Segment>* out,
                                         uint32_t zero_data_bytes, bool owned) {
  const uint64_t data_offset = data_offset_for(params.data_bytes, params.index_interval_bytes);
  const uint64_t bytes = data_offset + params.data_bytes;
  auto file = map_locked(lock, path, map, pool);
  if (!file) return Recycled::kUnfit;
  // Nobody else uses the file (we hold it exclusively) and nobody can find it
  // (it is under a name only we know): rewrite its header and index, and as
  // much of its data region as asked (the rest is the caller's to zero before
  // it writes there: a lazily recycled segment, docs/architecture.md).
  const uint64_t zero_data = std::min<uint64_t>(zero_data_bytes, params.data_bytes);
  std::memset(file->data(), 0, data_offset + zero_data);
  ipc::write_file_header(file->data(), ipc::FileKind::kSegment, static_cast<uint32_t>(data_offset), bytes,
                         &params, sizeof params);
  if (owned) {
    // Before the rename publishes it (release, below): whoever opens it
    // finds the tail owned and the whole region announced dirty.
    auto& c = *reinterpret_cast<SegmentControl*>(file->data() + kControlOffset);
    c.owner_dirty_end.store(params.data_bytes, std::memory_order_relaxed);
    c.tail_hint.store(kTailExact | kTailOwned, std::memory_order_relaxed);
  }
  if (!lock.try_convert(ipc::FileLock::Mode::kShared)) return Recycled::kUnfit;
  if (!ipc::rename_noreplace(spare_path, path)) {
    pool->put(lock.identity(), std::move(*file));
    return errno == EEXIST ? Recycled::kLostRace : Recycled::kUnfit;
  }
  auto seg = from_file(path, std::move(*file), std::move(lock), pool);
  if (!seg) return Recycled::kUnfit;
  (*seg)->zeroed_prefix_ = static_cast<uint32_t>(zero_data);
  (*seg)->born_owned_ = owned;
  *out = std::move(*seg);
  return Recycled::kPublished;
}

Segment::ClaimOutcome Segment::try_claim(uint32_t frame_length, uint32_t count, uint16_t owner, ClaimState state,
                                         std::atomic<uint64_t>* intent, TailOwnership* own, uint32_t* position,
                                         uint32_t* count_before) noexcept {
  if (copy_claims_) return claim_tail(frame_length, count, owner, state, *intent, own, position, count_before);
  return claim_walk(frame_length, count, owner, state, position, count_before);
}

// The tail claim (version 3): a CAS on the tail word, in the header page,
// which only writers touch in steady state; then the claim word at the
// frame, by a plain store (docs/architecture.md, "The tail claim").
Segment::ClaimOutcome Segment::claim_tail(uint32_t frame_length, uint32_t count, uint16_t owner, ClaimState state,
                                          std::atomic<uint64_t>& intent, TailOwnership* own, uint32_t* position,
                                          uint32_t* count_before) noexcept {
  auto& tail = control().tail_hint;
  // relaxed: the CAS below checks the value.
  uint64_t t = tail.load(std::memory_order_relaxed);
  const uint64_t self = base_offset() + 1;
  for (;;) {
    if (!tail_exact(t)) [[unlikely]] {
      if (!make_exact(&t)) {
        intent.store(0, std::memory_order_release);  // an earlier try's
        *position = tail_position(t);
        *count_before = tail_count(t);
        return ClaimOutcome::kCorrupt;
      }
      continue;
    }
    const uint32_t pos = tail_position(t);
    const uint32_t idx = tail_count(t);
    *position = pos;
    *count_before = idx;
    if (tail_sealed(t)) {
      // An earlier try's intent must not stay: it names the position of the
      // claim that beat it, whose range it would hold if that writer died.
      intent.store(0, std::memory_order_release);
      return ClaimOutcome::kSealed;
    }
    // The owned tail (docs/architecture.md, "The owned tail"): its owner
    // may CAS it too (a claim the plain path does not make, or the seal),
    // unless a revocation is under way; anyone else takes it back first.
    bool owner_claim = own != nullptr && own->owned_base == self && t == own->expect;
    if (owner_claim) {
      // relaxed store and load with no fence between: as in owned_begin().
      intent.store(base_position() + pos + 1, std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);
      if (control().revoker.load(std::memory_order_acquire) != 0) owner_claim = false;
    } else if (own != nullptr && own->owned_base == self) {
      own->owned_base = 0;  // revoked meanwhile
      own->solo = 0;
    }
    if (tail_owned(t) && !owner_claim) {
      intent.store(0, std::memory_order_release);  // a revoker holds no intent
      if (own != nullptr) {
        own->owned_base = 0;
        own->solo = 0;
      }
      return ClaimOutcome::kOwned;
    }
    const bool fits = static_cast<uint64_t>(pos) + frame_length <= capacity() &&
                      static_cast<uint64_t>(idx) + count <= kMaxTailCount;
    // Taking the tail: after enough claims in a row that no other writer's
    // came between (this one too: the tail is where our last one left it),
    // more after every revocation of this segment's tail, and not while one
    // is under way. relaxed: heuristics; the seq_cst load after our CAS
    // decides.
    const bool solo = own != nullptr && t == (own->expect & ~kTailOwned);
    const bool take =
        fits && solo && !owner_claim && own->may_own && state == kClaimedCopy &&
        own->solo >= (TailOwnership::kSoloClaimsToOwn
                      << std::min<uint32_t>(control().revocations.load(std::memory_order_relaxed), 20)) &&
        control().revoker.load(std::memory_order_relaxed) == 0;
    const uint64_t next = fits ? pack_tail(pos + frame_length, idx + count) | kTailExact |
                                     (owner_claim || take ? kTailOwned : 0)
                               : (t | kTailSealed) & ~kTailOwned;
    // release: a repairer that sees our claim in the tail sees this intent
    // (topic_format.h, ClaimIntent).
    intent.store(base_position() + pos + 1, std::memory_order_release);
    // seq_cst on success: the claim is ordered after the intent store and
    // before our writes into the frame, and an idempotent writer's load of
    // its producer slot after it takes part in the fencing handshake
    // (docs/exactly-once.md, section 3; on x86 one locked instruction
    // whatever the order). relaxed on failure: only a new guess.
    if (!tail.compare_exchange_weak(t, next, std::memory_order_seq_cst, std::memory_order_relaxed)) continue;
    if (own != nullptr) {
      own->solo = solo || owner_claim ? own->solo + 1 : 0;
      own->expect = next;
      own->sealed_owned = !fits && owner_claim;
      if (!fits) own->owned_base = 0;
      if (take) {
        // seq_cst: after our CAS in the single total order. A revoker that
        // took its slot before it is seen here; one that takes it after
        // sees our OWNED tail, and waits for our intents.
        own->solo = 0;
        if (control().revoker.load(std::memory_order_seq_cst) == 0) {
          own->owned_base = self;
          own->dirty_end = 0;            // announce afresh
          own->zeroed_end = UINT32_MAX;  // taken by a claim: zeroed in whole
        } else {
          // A revocation is under way: we do not own the tail, and leave
          // the bit for a revoker to clear. Clearing it ourselves would let
          // writers claim past the tail while that revoker may still be
          // zeroing there (it did not wait for us: our intent lies below the
          // tail). If it had ended the ownership before our CAS, the bit
          // stays until the next writer revokes it: a membarrier, no more.
          own->expect = next & ~kTailOwned;
        }
      }
    }
    if (!fits) {
      // release (both stores): a reader that sees END_OF_SEGMENT, or a
      // repairer that sees our intent cleared, sees the seal.
      if (static_cast<uint64_t>(pos) + kFrameHeaderBytes <= capacity())
        word(pos).store(make_claim_word(kEndOfSegment, 0, 0, owner), std::memory_order_release);
      intent.store(0, std::memory_order_release);
      return ClaimOutcome::kSealed;
    }
    // An owner's CAS claim in a segment its roll recycled lazily: the word
    // past the frame must read 0 (its intent is still raised).
    if (owner_claim) zero_ahead_owned(*own, pos + frame_length);
    // The frame's base offset before its word: a repairer of a 0 word
    // before this frame counts the records between them from it.
    frame(pos)->base_offset = base_offset() + idx;
    // release: pairs with the acquire loads of walkers and repairers, who
    // then see the base offset. Our intent stays until the word is stored.
    word(pos).store(make_claim_word(state, frame_length, count, owner), std::memory_order_release);
    intent.store(0, std::memory_order_release);
    return ClaimOutcome::kClaimed;
  }
}

bool Segment::make_exact(uint64_t* t) const noexcept {
  const SegmentEnd e = walk_end(*t);
  if (e.position == UINT32_MAX) return false;
  const uint64_t exact = pack_tail(e.position, e.count) | kTailExact | (e.sealed ? kTailSealed : 0);
  // acq_rel on success, acquire on failure: as any claim's CAS on the tail.
  // Nothing can be claimed here while the word is not EXACT, so every
  // writer that walks computes the same end; a loser reloads the winner's.
  if (control().tail_hint.compare_exchange_strong(*t, exact, std::memory_order_acq_rel, std::memory_order_acquire))
    *t = exact;
  return true;
}

// The claim walk (version-1 and 2 segments). Cases at the word under `pos`:
//   1. 0 and the frame fits: CAS 0 -> CLAIMED. Won: done. Lost: the word now
//      holds another writer's claim; continue as in 3.
//   2. 0 and the frame does not fit: CAS 0 -> END_OF_SEGMENT (sealing), or
//      find that someone else sealed or claimed it first.
//   3. a claim (any state but END_OF_SEGMENT): step over it.
//   4. END_OF_SEGMENT, or no room left for even a claim word: sealed.
Segment::ClaimOutcome Segment::claim_walk(uint32_t frame_length, uint32_t count, uint16_t owner, ClaimState state,
                                          uint32_t* position, uint32_t* count_before) noexcept {
  // acquire: pairs with the release CAS in advance_hint(); the frames before
  // the hint are claimed, so their words are non-zero for this walk.
  const uint64_t hint = control().tail_hint.load(std::memory_order_acquire);
  uint32_t pos = tail_position(hint);
  uint32_t idx = tail_count(hint);
  const uint64_t desired = make_claim_word(state, frame_length, count, owner);
  for (;;) {
    if (static_cast<uint64_t>(pos) + kFrameHeaderBytes > capacity()) {  // case 4
      *position = pos;
      *count_before = idx;
      return ClaimOutcome::kSealed;
    }
    auto& w = word(pos);
    // acquire: a non-zero word read here was CASed by another writer; we only
    // use its length and count, which that CAS wrote.
    uint64_t cur = w.load(std::memory_order_acquire);
    if (cur == 0) {
      const bool fits = static_cast<uint64_t>(pos) + frame_length <= capacity() &&
                        static_cast<uint64_t>(idx) + count <= UINT32_MAX;
      const uint64_t next = fits ? desired : make_claim_word(kEndOfSegment, 0, 0, owner);
      // seq_cst on success: the claim is ordered before our writes into the
      // frame (acquire) and after the walk (release, for advance_hint users),
      // and an idempotent writer's load of its producer slot after it takes
      // part in the fencing handshake (docs/exactly-once.md, section 3; on
      // x86 the same locked instruction as acq_rel).
      // acquire on failure: as for the load above.
      if (w.compare_exchange_strong(cur, next, std::memory_order_seq_cst,
                                    std::memory_order_acquire)) {
        *position = pos;
        *count_before = idx;
        if (!fits) {  // case 2
          advance_hint(capacity(), idx);
          return ClaimOutcome::kSealed;
        }
        advance_hint(pos + frame_length, idx + count);
        return ClaimOutcome::kClaimed;  // case 1
      }
      // Lost the race: `cur` holds the winner's word; fall through.
    }
    if (claim_state(cur) == kEndOfSegment) {  // case 4
      advance_hint(capacity(), idx);  // the sealer may have died before doing it
      *position = pos;
      *count_before = idx;
      return ClaimOutcome::kSealed;
    }
    const uint32_t len = claim_length(cur);
    const ClaimState st = claim_state(cur);
    if (len < kFrameHeaderBytes || !is_frame_state(st) ||
        static_cast<uint64_t>(pos) + len > capacity()) {
      *position = pos;
      *count_before = idx;
      return ClaimOutcome::kCorrupt;
    }
    pos += len;  // case 3
    idx += claim_count(cur);
  }
}

void Segment::advance_hint(uint32_t position, uint32_t count) const noexcept {
  auto& hint = control().tail_hint;
  uint64_t cur = hint.load(std::memory_order_relaxed);
  const uint64_t next = pack_tail(position, count);
  // Fetch-max: a writer whose frame ends further must not be undone by a
  // slower one, or a reader would stop short of a committed frame.
  // release on success: pairs with the acquire loads in try_claim(),
  // find_end() and PartitionCursor::next(); our claim CAS (before this) is
  // visible to whoever sees the new hint.
  while (tail_position(cur) < position &&
         !hint.compare_exchange_weak(cur, next, std::memory_order_release, std::memory_order_relaxed)) {
  }
}

void Segment::give_back(TailOwnership& own, std::atomic<uint64_t>& intent) noexcept {
  if (own.owned_base != base_offset() + 1) return;
  own.owned_base = 0;
  if (own.zeroed_end < capacity()) return;  // stale bytes past our zeros: a revoker zeroes them
  uint64_t t = own.expect;
  // As a claim's: relaxed store and load, the revoker's barrier between.
  intent.store(base_position() + tail_position(t) + 1, std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (control().revoker.load(std::memory_order_acquire) == 0) {
    // acq_rel: as any CAS of the tail; it fails if a revoker changed it.
    control().tail_hint.compare_exchange_strong(t, t & ~kTailOwned, std::memory_order_acq_rel,
                                                std::memory_order_relaxed);
  }
  intent.store(0, std::memory_order_release);
}

bool Segment::take_owned_tail() noexcept {
  auto& c = control();
  auto& tail = c.tail_hint;
  // acquire: as any load of the tail; the owner's frames below it are seen.
  uint64_t t = tail.load(std::memory_order_acquire);
  if (!tail_owned(t)) return true;
  // Nobody else changes an OWNED tail while its owner cannot claim: the
  // CAS below fails only if someone did (our caller broke the contract).
  const uint64_t owned = t;
  // The owner publishes a frame before it stores the tail past it: it may
  // have died between the two.
  const SegmentEnd e = walk_end(t);
  if (e.position == UINT32_MAX) return false;
  // acquire: pairs with the owner's release store of its announcement.
  const uint32_t dirty = std::min(c.owner_dirty_end.load(std::memory_order_acquire), capacity());
  if (!e.sealed && dirty > e.position) {
    // Only a dead owner leaves bytes there (a live one was waited for, or
    // gave up before writing). The word at the end reads 0 (the walk
    // stopped there).
    zero_stray(e.position + 8, dirty);
  }
  c.owner_dirty_end.store(0, std::memory_order_relaxed);
  const uint64_t next = pack_tail(e.position, e.count) | kTailExact | (e.sealed ? kTailSealed : 0);
  // release: the zeros before the tail that lets writers claim over them.
  tail.compare_exchange_strong(t, next, std::memory_order_release, std::memory_order_relaxed);
  return t == owned || !tail_owned(t);
}

uint32_t Segment::zero_stray(uint32_t from, uint32_t to) noexcept {
  // relaxed loads: no live writer is in the range (REQUIRES).
  uint32_t last = from;
  for (uint32_t p = from; static_cast<uint64_t>(p) + 8 <= to; p += 8)
    if (word(p).load(std::memory_order_relaxed) != 0) last = p + 8;
  if (last > from) std::memset(data() + from, 0, last - from);
  return last - from;
}

SegmentEnd Segment::find_end() const noexcept {
  // acquire: pairs with the claims' CAS on the tail, or the release CAS in
  // advance_hint() and store in store_hint().
  const uint64_t hint = control().tail_hint.load(std::memory_order_acquire);
  // An OWNED tail may trail a frame its owner published: walk from it.
  if (tail_exact(hint) && !tail_owned(hint)) {
    const uint32_t pos = tail_position(hint);
    return {pos, tail_count(hint), tail_sealed(hint) || static_cast<uint64_t>(pos) + kFrameHeaderBytes > capacity()};
  }
  return walk_end(hint);
}

SegmentEnd Segment::walk_end(uint64_t hint) const noexcept {
  uint32_t pos = tail_position(hint);
  uint32_t idx = tail_count(hint);
  for (;;) {
    if (static_cast<uint64_t>(pos) + kFrameHeaderBytes > capacity()) return {pos, idx, true};
    const uint64_t cur = word(pos).load(std::memory_order_acquire);
    if (cur == 0) return {pos, idx, false};
    if (claim_state(cur) == kEndOfSegment) return {pos, idx, true};
    const uint32_t len = claim_length(cur);
    if (len < kFrameHeaderBytes || static_cast<uint64_t>(pos) + len > capacity())
      return {UINT32_MAX, idx, false};
    pos += len;
    idx += claim_count(cur);
  }
}

void Segment::index_slots(uint32_t position, uint32_t length, uint32_t rel_offset,
                          int64_t timestamp_ns) const noexcept {
  const uint32_t interval = index_interval();
  // Slots k with position <= k * I < position + length.
  uint64_t first = (static_cast<uint64_t>(position) + interval - 1) / interval;
  const uint64_t end = static_cast<uint64_t>(position) + length;
  for (uint64_t k = first; k * interval < end && k < slot_count_; ++k) {
    IndexSlot& s = slot(k);
    s.position = position;
    s.timestamp_ns = timestamp_ns;
    // release: pairs with the acquire loads in index_lookup*(); a reader that
    // sees the offset also sees position and timestamp.
    s.rel_offset_plus_1.store(rel_offset + 1, std::memory_order_release);
  }
}

std::pair<uint32_t, uint32_t> Segment::index_lookup(uint32_t rel_offset) const noexcept {
  // Slots are filled in position order, and so in offset order; binary search
  // over the filled ones, treating empty slots as "go left".
  uint64_t lo = 0, hi = slot_count_;
  std::pair<uint32_t, uint32_t> best{0, 0};
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    const IndexSlot& s = slot(mid);
    const uint32_t v = s.rel_offset_plus_1.load(std::memory_order_acquire);
    if (v == 0 || v - 1 > rel_offset) {
      hi = mid;
    } else {
      if (s.position < capacity()) best = {s.position, v - 1};
      lo = mid + 1;
    }
  }
  return best;
}

bool Segment::index_lookup_time(int64_t ts, uint32_t* position, uint32_t* rel_offset) const noexcept {
  int64_t running_max = INT64_MIN;
  uint32_t prev_pos = 0, prev_rel = 0;
  for (uint64_t k = 0; k < slot_count_; ++k) {
    const IndexSlot& s = slot(k);
    const uint32_t v = s.rel_offset_plus_1.load(std::memory_order_acquire);
    if (v == 0) continue;
    running_max = std::max(running_max, s.timestamp_ns);
    if (running_max >= ts) {
      // The target may sit in frames between the previous slot and this one.
      *position = prev_pos;
      *rel_offset = prev_rel;
      return true;
    }
    if (s.position < capacity()) {
      prev_pos = s.position;
      prev_rel = v - 1;
    }
  }
  *position = prev_pos;
  *rel_offset = prev_rel;
  return false;
}

}  // namespace sluice
