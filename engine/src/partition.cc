#include "partition.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "group_offsets.h"
#include "ipc/file_header.h"
#include "ipc/filesystem.h"
#include "ipc/wait_strategy.h"
#include "record_codec.h"

namespace sluice {

using namespace format;

namespace {
// A reader checks a stalled claim's owner once the claim has been stalled
// this long, and again at most this often: a check costs open+flock+close,
// so it must not happen in steady state, where a claim lasts well under a
// microsecond.
constexpr int64_t kStallCheckIntervalNs = 1'000'000;
// ... or after this many polls at the same claim (about a millisecond of
// spinning), so that repair does not depend on the clock moving.
constexpr uint32_t kStallPollsBeforeCheck = 65536;

uint64_t checked_cas_max(std::atomic<uint64_t>& a, uint64_t v) {
  uint64_t cur = a.load(std::memory_order_relaxed);
  // release: readers that acquire the new value see what preceded it.
  while (cur < v && !a.compare_exchange_weak(cur, v, std::memory_order_release,
                                             std::memory_order_relaxed)) {
  }
  return cur;
}
}  // namespace

size_t Partition::pooled_mappings(const TopicOptions& o) {
  constexpr size_t kUnbounded = 4, kMax = 16;
  if (o.retention_bytes <= 0) return kUnbounded;
  const uint64_t window = (static_cast<uint64_t>(o.retention_bytes) + o.segment_bytes - 1) / o.segment_bytes;
  return static_cast<size_t>(
      std::min<uint64_t>(kMax, std::max<uint64_t>(kUnbounded, window + 1 + max_spares(o) + 1)));
}

size_t Partition::max_spares(const TopicOptions& o) {
  constexpr uint64_t kSpareBytes = 32u << 20;
  return static_cast<size_t>(std::clamp<uint64_t>(kSpareBytes / o.segment_bytes, 2, 4));
}

Result<std::unique_ptr<Partition>> Partition::open(TopicState& topic, uint32_t index, bool create) {
  auto p = std::unique_ptr<Partition>(new Partition());
  p->topic_ = &topic;
  p->index_ = index;
  p->dir_ = topic.dir + "/" + std::to_string(index);
  p->pool_ = std::make_shared<MappingPool>(pooled_mappings(topic.options));
  const std::string path = p->dir_ + "/state";
  if (create && !ipc::path_exists(path)) {
    if (auto ok = ipc::make_dirs(p->dir_); !ok) return std::unexpected(ok.error());
    auto f = ipc::MappedFile::create_temp(path, kControlFileBytes, {});
    if (!f) return std::unexpected(f.error());
    PartitionParams params{index, 0};
    ipc::write_file_header(f->data(), ipc::FileKind::kPartitionState,
                           static_cast<uint32_t>(kPartitionControlOffset), kControlFileBytes,
                           &params, sizeof params);
    auto* c = reinterpret_cast<PartitionControl*>(f->data() + kPartitionControlOffset);
    c->back_pressure_limit.store(0, std::memory_order_relaxed);  // compute on first send
    if (auto pub = f->publish(); !pub) return std::unexpected(pub.error());
  }
  auto f = ipc::MappedFile::open(path, {});
  if (!f) return std::unexpected(f.error());
  if (auto ok = ipc::validate_file_header(f->data(), f->size(), ipc::FileKind::kPartitionState,
                                          sizeof(PartitionParams), path);
      !ok)
    return std::unexpected(ok.error());
  if (ipc::file_params<PartitionParams>(f->data()).partition != index)
    return make_error(Errc::kCorruption, "partition state " + path + " belongs to another partition");
  p->state_ = std::move(*f);
  return p;
}

Result<std::shared_ptr<Segment>> Partition::segment(uint64_t base_offset) {
  {
    std::lock_guard lock(mu_);
    auto it = segments_.find(base_offset);
    if (it != segments_.end()) return it->second;
  }
  auto seg = Segment::open(dir_ + "/" + segment_file_name(base_offset), topic_->segment_map_options(), pool_);
  if (!seg) return seg;
  if ((*seg)->params().partition != index_)
    return make_error(Errc::kCorruption, "segment " + (*seg)->path() + " belongs to another partition");
  // Retired and recycled between our open() and our lock: that segment is gone.
  if ((*seg)->base_offset() != base_offset)
    return make_error(Errc::kNotFound, "segment " + std::to_string(base_offset) + " was recycled");
  std::lock_guard lock(mu_);
  return segments_.emplace(base_offset, *seg).first->second;
}

Result<std::shared_ptr<Segment>> Partition::create_segment(uint64_t base_offset, uint64_t base_position,
                                                           uint32_t zero_data_bytes, bool owned) {
  const SegmentParams params = segment_params(base_offset, base_position);
  const std::string path = dir_ + "/" + segment_file_name(base_offset);
  if (zero_data_bytes < params.data_bytes && !owned) {
    // The exclusive writer's roll (roll() says why). Before the segment can
    // be published: a crash after it leaves the announcement in place.
    // relaxed base, release end: as in ProducerState::reserve(), whose
    // announcements this one replaces (the sealed segment needs none: nothing
    // past its END_OF_SEGMENT word is ever read).
    control().exclusive_dirty_base.store(base_offset, std::memory_order_relaxed);
    control().exclusive_dirty_end.store(params.data_bytes, std::memory_order_release);
  }
  std::shared_ptr<Segment> seg =
      ipc::path_exists(path) ? nullptr : recycle_spare(params, path, zero_data_bytes, owned);
  if (!seg) {
    auto created = Segment::create(path, params, topic_->segment_map_options(), pool_);
    if (!created) return created;
    seg = std::move(*created);
  }
  checked_cas_max(control().newest_base, base_offset);
  std::lock_guard lock(mu_);
  // Ours, even if a reader thread of this process cached the file first: its
  // object does not know how far this one is zeroed.
  segments_.emplace(base_offset, seg);
  return seg;
}

namespace {
// Spare (retired, recyclable) segment files: "<base>.spare".
constexpr std::string_view kSpareSuffix = ".spare";
constexpr std::string_view kRecyclingPrefix = ".recycling-";
std::string spare_file_name(uint64_t base) {
  std::string n = segment_file_name(base);
  return n.substr(0, n.size() - 4) + std::string(kSpareSuffix);
}
}  // namespace

std::optional<Partition::TakenSpare> Partition::take_spare(const SegmentParams& params) {
  // Takes the spare `name`: locked exclusively, its size checked, then
  // renamed to a name only we know. Every taker locks before it renames, so
  // a ".recycling-<pid>-" file nobody holds is one whose taker died holding
  // it: it is reclaimed like a spare (a live taker holds its lock until the
  // file is published, and then a user's).
  auto take = [&](const std::string& name) -> std::optional<TakenSpare> {
    std::string plain = name;  // "<base>.spare"
    if (name.starts_with(kRecyclingPrefix)) {
      const size_t dash = name.find('-', kRecyclingPrefix.size());
      if (dash == std::string::npos) return std::nullopt;
      plain = name.substr(dash + 1);
    }
    const std::string path = dir_ + "/" + name;
    TakenSpare t;
    switch (Segment::take_spare(path, params, &t.lock)) {
      case Segment::Recycled::kPublished: break;
      case Segment::Recycled::kUnfit: ::unlink(path.c_str()); return std::nullopt;  // not this topic's size
      default: return std::nullopt;                                                  // in use, or gone
    }
    t.spare = dir_ + "/" + plain;
    t.mine = dir_ + "/" + std::string(kRecyclingPrefix) + std::to_string(::getpid()) + "-" + plain;
    t.pid = ::getpid();
    if (::rename(path.c_str(), t.mine.c_str()) != 0) return std::nullopt;
    // The file we locked is the one we renamed: every taker locks first, so
    // nobody put another under `path` meanwhile; checked all the same.
    if (const auto id = t.lock.identity(); id.second == 0 || ipc::path_identity(t.mine) != id) {
      ::rename(t.mine.c_str(), path.c_str());
      return std::nullopt;
    }
    return t;
  };
  // The spares this process retired first, oldest first, without listing
  // the directory (a listing was ~7 us of each roll).
  for (;;) {
    std::string name;
    {
      std::lock_guard lock(mu_);
      if (own_spares_.empty()) break;
      name = std::move(own_spares_.front());
      own_spares_.pop_front();
    }
    if (auto t = take(name)) return t;
  }
  auto names = ipc::list_dir(dir_);
  if (!names) return std::nullopt;
  // Oldest spare first (names carry the retired base offset): it has had the
  // longest time to be released by every process.
  for (const auto& name : *names)
    if (name.ends_with(kSpareSuffix))
      if (auto t = take(name)) return t;
  return std::nullopt;
}

void Partition::give_back(TakenSpare& t) noexcept {
  // Not in a forked child: the file is its parent's, under its parent's lock.
  if (!t.mine.empty() && t.pid == ::getpid()) ::rename(t.mine.c_str(), t.spare.c_str());
  t.lock = ipc::FileLock{};
}

std::optional<Partition::TakenSpare> Partition::take_prepared() {
  std::lock_guard lock(mu_);
  std::optional<TakenSpare> t = std::move(prepared_);
  prepared_.reset();
  return t;
}

void Partition::give_back_prepared() {
  if (std::optional<TakenSpare> t = take_prepared()) give_back(*t);
}

SegmentParams Partition::segment_params(uint64_t base_offset, uint64_t base_position) const {
  SegmentParams params{};
  params.base_offset = base_offset;
  params.base_position = base_position;
  params.data_bytes = topic_->options.segment_bytes;
  params.index_interval_bytes = topic_->options.index_interval_bytes;
  params.partition = index_;
  return params;
}

void Partition::prepare_spare() {
  {
    std::lock_guard lock(mu_);
    if (prepared_) return;
  }
  std::optional<TakenSpare> t = take_spare(segment_params(0, 0));
  if (!t) return;
  std::lock_guard lock(mu_);
  if (!prepared_)
    prepared_ = std::move(t);
  else
    give_back(*t);  // another thread of ours prepared one meanwhile
}

Partition::~Partition() { give_back_prepared(); }

std::shared_ptr<Segment> Partition::recycle_spare(const SegmentParams& params, const std::string& path,
                                                  uint32_t zero_data_bytes, bool owned) {
  std::optional<TakenSpare> t = take_prepared();
  for (;;) {
    if (!t) t = take_spare(params);
    if (!t) return nullptr;
    std::shared_ptr<Segment> seg;
    switch (Segment::publish_spare(std::move(t->lock), t->mine, path, params, topic_->segment_map_options(), pool_,
                                   &seg, zero_data_bytes, owned)) {
      case Segment::Recycled::kPublished: return seg;
      case Segment::Recycled::kLostRace:  // the segment's file appeared meanwhile: nothing more to try
        give_back(*t);
        return nullptr;
      case Segment::Recycled::kInUse: give_back(*t); break;
      case Segment::Recycled::kUnfit: ::unlink(t->mine.c_str()); break;
    }
    t.reset();
  }
}

Result<std::shared_ptr<Segment>> Partition::newest_segment() {
  // acquire: pairs with the release CAS in create_segment(); the file under
  // that name was published before the base was.
  uint64_t base = control().newest_base.load(std::memory_order_acquire);
  auto seg = segment(base);
  if (seg || seg.error().code != Errc::kNotFound) return seg;
  if (base != 0) return seg;  // the newest segment is never deleted: damage
  return create_segment(0, 0);
}

Result<std::shared_ptr<Segment>> Partition::next_segment(const Segment& sealed, uint32_t eos_count,
                                                         uint32_t zero_data_bytes, bool owned) {
  const uint64_t base = sealed.base_offset() + eos_count;
  // Open it if it was published (newest_base reached it) or this process
  // knows it; else it is almost always not there yet, and looking for the
  // file first only added a failed open to every roll. A file created but
  // not yet published is found by create_segment() all the same.
  // acquire: pairs with the release CAS in create_segment(); the file is in
  // place before its base is published.
  if (control().newest_base.load(std::memory_order_acquire) >= base || is_cached(base)) {
    auto seg = segment(base);
    if (seg || seg.error().code != Errc::kNotFound) return seg;
  }
  return create_segment(base, sealed.base_position() + sealed.capacity(), zero_data_bytes, owned);
}

bool Partition::has_retention() const noexcept {
  return topic_->options.retention_bytes >= 0 || topic_->options.retention_ms >= 0;
}

Result<std::shared_ptr<Segment>> Partition::roll(const Segment& sealed, uint32_t eos_count, uint32_t zero_data_bytes,
                                                 bool owned) {
  auto next = next_segment(sealed, eos_count, zero_data_bytes, owned);
  if (next && has_retention())
    (void)enforce_retention(topic_->bus->clock->now_ns());  // best effort; Bus::housekeep reports errors
  return next;
}

namespace {
// Base offsets of the segment files among `names`, ascending.
std::vector<uint64_t> bases_among(const std::vector<std::string>& names) {
  std::vector<uint64_t> bases;
  for (const auto& n : names) {
    uint64_t b;
    if (parse_segment_file_name(n, &b)) bases.push_back(b);
  }
  std::sort(bases.begin(), bases.end());
  return bases;
}
}  // namespace

Result<std::vector<uint64_t>> Partition::segment_bases() const {
  auto names = ipc::list_dir(dir_);
  if (!names) return std::unexpected(names.error());
  return bases_among(*names);
}

bool Partition::is_cached(uint64_t base_offset) const {
  std::lock_guard lock(mu_);
  return segments_.contains(base_offset);
}

void Partition::forget_segment(uint64_t base_offset) {
  std::lock_guard lock(mu_);
  segments_.erase(base_offset);
}

void Partition::forget_segments_below(uint64_t base_offset) {
  std::lock_guard lock(mu_);
  segments_.erase(segments_.begin(), segments_.lower_bound(base_offset));
}

Result<IntentHold> Partition::acquire_intent(uint16_t owner) {
  const ipc::ProcessRegistry& registry = topic_->bus->registry;
  for (uint32_t i = 0; i < kClaimIntents; ++i) {
    ClaimIntent& e = intent(i);
    // acquire: a holder's release of the entry (or its stores) before it.
    uint64_t h = e.holder.load(std::memory_order_acquire);
    if (h != 0 && registry.is_alive(static_cast<ipc::OwnerId>(h))) continue;
    // acq_rel: one taker wins the entry.
    if (!e.holder.compare_exchange_strong(h, owner, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    // A dead holder's intent goes: until this store a repairer sees it as
    // ours, alive, and waits a little longer.
    e.position.store(0, std::memory_order_release);
    return IntentHold(&e);
  }
  return make_error(Errc::kBusy, "all " + std::to_string(kClaimIntents) + " claim-intent entries of " + dir_ +
                                     " are held by live producers: at most that many shared producers can "
                                     "write one partition at once");
}

bool Partition::live_writer_in(const Segment& seg, uint32_t from, uint32_t to) const {
  const uint64_t base = seg.base_position();
  const ipc::ProcessRegistry& registry = topic_->bus->registry;
  for (uint32_t i = 0; i < kClaimIntents; ++i) {
    ClaimIntent& e = intent(i);
    // acquire: pairs with the writer's release stores of its intent.
    const uint64_t at = e.position.load(std::memory_order_acquire);
    if (at == 0 || at - 1 < base + from || at - 1 >= base + to) continue;
    const uint64_t h = e.holder.load(std::memory_order_acquire);
    if (h != 0 && registry.is_alive(static_cast<ipc::OwnerId>(h))) return true;
  }
  return false;
}

Partition::ZeroWord Partition::look_at_zero_word(const Segment& seg, uint32_t p) const {
  // acquire: as the repairers' load of the tail (repair_gap).
  const uint64_t t = seg.control().tail_hint.load(std::memory_order_acquire);
  if (!tail_exact(t) || tail_position(t) < p) return {ZeroWord::kEnd, t};
  if (tail_position(t) == p) return {tail_sealed(t) ? ZeroWord::kSealed : ZeroWord::kEnd, t};
  if (live_writer_in(seg, p, tail_position(t))) return {ZeroWord::kLive, t};
  // A writer that published its frame and cleared its intent since the
  // caller's load stored its word first: read it again before anyone takes
  // the range's bytes for a gap's. acquire: as any walker's.
  if (seg.word(p).load(std::memory_order_acquire) != 0) return {ZeroWord::kPublished, t};
  return {ZeroWord::kGap, t};
}

bool Partition::measure_gap(const Segment& seg, uint32_t p, uint32_t count_before, uint64_t t, uint32_t* next_pos,
                            uint64_t* next_offset) const {
  const uint32_t end = tail_position(t);
  const uint64_t first = seg.base_offset() + count_before;
  // Scan for the next frame: a claim word whose base offset counts the
  // records between. A dead writer may have stored its base offset and
  // nothing else (Segment::claim_tail), so a non-zero word is taken only if
  // it reads as a frame's and its base offset fits: after `first`, by at
  // most one record per 32 bytes of the range.
  uint32_t q = std::min(end, p + kFrameHeaderBytes + kRecordHeaderBytes);
  uint64_t next = seg.base_offset() + tail_count(t);
  for (; q < end; q += kFrameAlign) {
    // acquire: a claim word's base offset was stored before it.
    const uint64_t qw = seg.word(q).load(std::memory_order_acquire);
    if (qw == 0 || !is_frame_state(claim_state(qw)) || claim_count(qw) == 0 ||
        claim_length(qw) < kFrameHeaderBytes + kRecordHeaderBytes || uint64_t{q} + claim_length(qw) > end)
      continue;
    // relaxed: as the repairers' store below (a frame's own base offset
    // was stored before its word, which we acquired).
    const uint64_t bo = std::atomic_ref<uint64_t>(seg.frame(q)->base_offset).load(std::memory_order_relaxed);
    if (bo > first && bo - first <= (q - p) / kRecordHeaderBytes) {
      next = bo;
      break;
    }
  }
  if (next <= first || next - first > kMaxRecordsPerFrame) return false;
  *next_pos = q;
  *next_offset = next;
  return true;
}

Partition::Gap Partition::repair_gap(Segment& seg, uint32_t p, uint32_t count_before, bool check_intents) {
  // acquire: pairs with the tail CAS of every claim the value shows (and of
  // those before it), whose intent stores precede it.
  const uint64_t t = seg.control().tail_hint.load(std::memory_order_acquire);
  if (!tail_exact(t)) return Gap::kNone;
  const uint32_t end = tail_position(t);
  if (end < p || (end == p && !tail_sealed(t)) || static_cast<uint64_t>(p) + kFrameHeaderBytes > seg.capacity())
    return Gap::kNone;
  // The live intents, read after the tail and before the words: a writer
  // whose intent was cleared had stored its word first (release), so the
  // loads below see it; one whose claim the tail above does not show claims
  // at or past `end`. Any live intent in [p, end) and we wait: the scan
  // below then reads only dead writers' ranges and the next frame's word,
  // never the inside of a frame a live writer is filling.
  if (check_intents && end > p && live_writer_in(seg, p, end)) return Gap::kLive;
  auto& w = seg.word(p);
  // acquire: as any walker's.
  if (w.load(std::memory_order_acquire) != 0) return Gap::kResolved;
  uint64_t replacement;
  if (end == p) {
    // Sealed here: no claim starts at p (it would have moved the tail), so
    // END_OF_SEGMENT is right whether the sealer died or is only slow; its
    // own store, if it comes, writes the same state.
    replacement = make_claim_word(kEndOfSegment, 0, 0, ipc::kNoOwner);
  } else {
    uint32_t q;
    uint64_t next;
    if (!measure_gap(seg, p, count_before, t, &q, &next)) return Gap::kCorrupt;
    const uint64_t first = seg.base_offset() + count_before;
    // The range's header names its first offset, like any frame's: a repair
    // of a gap before it counts from it. Every repairer stores the same.
    std::atomic_ref<uint64_t>(seg.frame(p)->base_offset).store(first, std::memory_order_relaxed);
    replacement = make_claim_word(kAborted, q - p, static_cast<uint32_t>(next - first), ipc::kNoOwner);
  }
  uint64_t expected = 0;
  // acq_rel: one repairer wins; the release half publishes the base offset.
  if (!w.compare_exchange_strong(expected, replacement, std::memory_order_acq_rel, std::memory_order_acquire))
    return Gap::kResolved;
  // relaxed: a statistic.
  control().repaired_claims.fetch_add(1, std::memory_order_relaxed);
  ipc::notify(topic_->control().wakeup);
  return Gap::kRepaired;
}

template <class Visit>
Partition::Walked Partition::walk_repairing(Segment& seg, bool check_intents, uint64_t* repaired, Visit&& visit) {
  uint32_t pos = 0, idx = 0;
  while (static_cast<uint64_t>(pos) + kFrameHeaderBytes <= seg.capacity()) {
    // acquire: as any walker's load of a frame word.
    const uint64_t w = seg.word(pos).load(std::memory_order_acquire);
    if (w == 0) {
      const Gap g = repair_gap(seg, pos, idx, check_intents);
      if (g == Gap::kRepaired) ++*repaired;
      if (g == Gap::kRepaired || g == Gap::kResolved) continue;  // read the word again
      return g == Gap::kNone ? Walked::kEnd : Walked::kGap;
    }
    if (claim_state(w) == kEndOfSegment) return Walked::kEnd;
    const uint32_t len = claim_length(w);
    if (!is_frame_state(claim_state(w)) || len < kFrameHeaderBytes || static_cast<uint64_t>(pos) + len > seg.capacity())
      return Walked::kCorrupt;
    if (!visit(pos, w)) return Walked::kStopped;
    pos += len;
    idx += claim_count(w);
  }
  return Walked::kEnd;
}

bool Partition::repair_gaps(Segment& seg, uint64_t* repaired) {
  *repaired = 0;
  return walk_repairing(seg, /*check_intents=*/false, repaired, [](uint32_t, uint64_t) { return true; }) ==
         Walked::kEnd;
}

SendStatus Partition::claim(uint32_t frame_length, uint32_t count, uint16_t owner, bool copying,
                            std::atomic<uint64_t>* intent, TailOwnership* own, std::shared_ptr<Segment>* cached,
                            Reservation* out, Error* error) {
  if (frame_length > topic_->options.segment_bytes) {
    *error = Error{Errc::kTooLarge, "a frame of " + std::to_string(frame_length) +
                                        " bytes does not fit in a segment of " +
                                        std::to_string(topic_->options.segment_bytes) + " bytes"};
    return SendStatus::kTooLarge;
  }
  if (!*cached) {
    auto seg = newest_segment();
    if (!seg) {
      *error = seg.error();
      return SendStatus::kError;
    }
    *cached = std::move(*seg);
  }
  for (int rolls = 0;; ++rolls) {
    Segment& seg = **cached;
    uint32_t pos, before;
    const ClaimState state = copying && seg.copy_claims() ? kClaimedCopy : kClaimed;
    // The owned tail: an owner's copying claim is an append past the tail,
    // published as an exclusive writer's (docs/architecture.md).
    if (copying && own != nullptr && own->owned_base != 0 &&
        seg.owned_begin(frame_length, count, *intent, *own, &pos, &before)) {
      out->segment = cached->get();
      out->position = pos;
      out->offset = seg.base_offset() + before;
      out->claimed = state;
      out->owned = true;
      return SendStatus::kOk;
    }
    switch (seg.try_claim(frame_length, count, owner, state, intent, own, &pos, &before)) {
      case Segment::ClaimOutcome::kOwned: {
        const SendStatus s = revoke_tail(seg, intent, error);
        if (s != SendStatus::kOk) return s;
        break;
      }
      case Segment::ClaimOutcome::kClaimed:
        if (own != nullptr && own->revoker_check_due()) [[unlikely]]
          release_dead_revoker(seg);
        out->segment = cached->get();
        out->position = pos;
        out->offset = seg.base_offset() + before;
        out->claimed = state;
        return SendStatus::kOk;
      case Segment::ClaimOutcome::kCorrupt:
        *error = Error{Errc::kCorruption, "segment " + seg.path() + " has an invalid frame word at position " +
                                              std::to_string(pos) + "; run `sluice verify`"};
        return SendStatus::kError;
      case Segment::ClaimOutcome::kSealed: {
        if (rolls > 64) {
          *error = Error{Errc::kIoError,
                         "segment roll did not converge in " + dir_};
          return SendStatus::kError;
        }
        // A writer whose cached segment fell behind (it was idle while
        // others filled several) goes to the newest at once instead of
        // through every segment in between.
        // acquire: pairs with the release CAS in create_segment().
        if (control().newest_base.load(std::memory_order_acquire) > seg.base_offset() + before) {
          if (auto newest = newest_segment()) {
            *cached = std::move(*newest);
            break;
          }
        }
        // An owner that sealed its segment rolls to the next one owned,
        // recycled without zeroing it whole, as an exclusive writer does
        // ("Recycling without zeroing"): a whole-segment memset per roll
        // was most of what kept a lone shared writer's 4 KiB stream below
        // the exclusive one's.
        const bool owned = own != nullptr && own->sealed_owned;
        if (own != nullptr) own->sealed_owned = false;
        auto next = owned ? roll(seg, before, Segment::kOwnerZeroAhead, true) : roll(seg, before);
        if (!next) {
          *error = next.error();
          return SendStatus::kError;
        }
        *cached = std::move(*next);
        if (owned && (*cached)->born_owned()) {
          // Ours (recycled by this call): its tail reads OWNED at 0 unless a
          // revoker came first, which owned_begin() then finds.
          own->owned_base = (*cached)->base_offset() + 1;
          own->expect = kTailExact | kTailOwned;
          own->dirty_end = (*cached)->capacity();
          own->zeroed_end = (*cached)->zeroed_prefix();
          own->solo = 0;
        }
        break;
      }
    }
  }
}

SendStatus Partition::revoke_tail(Segment& seg, const std::atomic<uint64_t>* mine, Error* error) {
  SegmentControl& c = seg.control();
  const ipc::ProcessRegistry& registry = topic_->bus->registry;
  const auto self = static_cast<uint32_t>(registry.self());
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::nanoseconds(topic_->options.claim_timeout_ns);
  auto stopped = [&](const std::string& who) {
    *error = Error{Errc::kBusy, who + " of " + dir_ + " has not moved for the topic's claim timeout (" +
                                    std::to_string(topic_->options.claim_timeout_ns / 1'000'000) +
                                    " ms) while the partition's tail was owned; other writers wait for it to run "
                                    "on or die"};
    return SendStatus::kBusy;
  };
  // One revocation at a time: take the slot, or wait for its holder to
  // finish (the tail is no longer OWNED), or take it from a dead holder.
  for (uint32_t spins = 0;; ++spins) {
    uint32_t holder = 0;
    // seq_cst: ordered before the barrier below, and against a taker's CAS
    // of the tail and its load of `revoker` (Segment::claim_tail).
    if (c.revoker.compare_exchange_strong(holder, self, std::memory_order_seq_cst, std::memory_order_acquire))
      break;
    // acquire: as any load of the tail.
    if (!tail_owned(c.tail_hint.load(std::memory_order_acquire))) return SendStatus::kOk;
    if (spins % 1024 == 1023) {
      if (!registry.is_alive(static_cast<ipc::OwnerId>(holder))) {
        if (c.revoker.compare_exchange_strong(holder, self, std::memory_order_seq_cst, std::memory_order_acquire))
          break;
      } else if (std::chrono::steady_clock::now() >= deadline) {
        return stopped("a writer revoking the tail");
      }
    }
    ipc::cpu_relax();
  }
  struct Done {
    std::atomic<uint32_t>& revoker;
    // release: an owner (or taker) that reads 0 after us sees the tail we
    // changed.
    ~Done() { revoker.store(0, std::memory_order_release); }
  } done{c.revoker};
  if (!tail_owned(c.tail_hint.load(std::memory_order_acquire))) return SendStatus::kOk;  // given back meanwhile
  // relaxed: a count that only makes writers slower to take the tail.
  c.revocations.fetch_add(1, std::memory_order_relaxed);
  // The owner's claims use no locked instruction; their store-load barrier
  // is this one (Segment::owned_begin). After it, an owner about to claim
  // either sees `revoker` and gives up, or has its intent visible below.
  if (!ipc::global_barrier()) {
    *error = Error{Errc::kIoError, "membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) failed in this process (" +
                                       std::string(std::strerror(errno)) + "), which a writer of " + dir_ +
                                       " needs to take back the tail another writer owns"};
    return SendStatus::kError;
  }
  // Wait out every append in flight past the tail: each live writer's
  // intent at or past it (the owner's append or give-back; a take's CAS
  // claim, or an owner's, lies below the tail once made) must be 0, or
  // move on, which ends the append it names. Intents below the tail are
  // CAS claims already made, which write below it: a stopped one holds
  // the readers, not us. A dead owner's frame in progress lies past the
  // frames, and take_owned_tail() zeroes it.
  // acquire: the tail after the barrier; an owner's append that stored it
  // had written its frame first.
  const uint64_t from = seg.base_position() + tail_position(c.tail_hint.load(std::memory_order_acquire));
  for (uint32_t i = 0; i < kClaimIntents; ++i) {
    ClaimIntent& e = intent(i);
    if (&e.position == mine) continue;
    // acquire: pairs with the writers' release stores of their intents.
    const uint64_t at = e.position.load(std::memory_order_acquire);
    if (at == 0 || at - 1 < from) continue;
    const auto h = static_cast<ipc::OwnerId>(e.holder.load(std::memory_order_acquire));
    for (uint32_t spins = 0; e.position.load(std::memory_order_acquire) == at; ++spins) {
      if (spins % 1024 == 1023) {
        if (h == ipc::kNoOwner || !registry.is_alive(h)) break;
        if (std::chrono::steady_clock::now() >= deadline) return stopped("a writer stopped in a claim");
      }
      ipc::cpu_relax();
    }
  }
  if (!seg.take_owned_tail()) {
    *error = Error{Errc::kCorruption, "segment " + seg.path() + " has an invalid frame word past its owned tail, "
                                                                "or its tail moved while owned; run `sluice verify`"};
    return SendStatus::kError;
  }
  return SendStatus::kOk;
}

void Partition::release_dead_revoker(Segment& seg) {
  auto& revoker = seg.control().revoker;
  // relaxed: a hint; the CAS below decides.
  uint32_t holder = revoker.load(std::memory_order_relaxed);
  if (holder == 0 || topic_->bus->registry.is_alive(static_cast<ipc::OwnerId>(holder))) return;
  // seq_cst: as revoke_tail()'s CAS of the slot, of which this is the
  // taking from a dead holder and the letting go at once; it fails if a
  // live writer took the slot meanwhile.
  revoker.compare_exchange_strong(holder, 0, std::memory_order_seq_cst, std::memory_order_relaxed);
}

bool Partition::abort_claim(Segment& seg, uint32_t position, uint64_t word) {
  uint64_t expected = word;
  // acq_rel: the owner's commit CAS and this one race on the same word;
  // exactly one wins. A reader that acquires ABORTED skips the frame without
  // reading its (possibly half-written) contents.
  if (!seg.word(position).compare_exchange_strong(expected, with_state(word, kAborted),
                                                  std::memory_order_acq_rel,
                                                  std::memory_order_acquire))
    return false;
  // relaxed: a statistic.
  control().repaired_claims.fetch_add(1, std::memory_order_relaxed);
  ipc::notify(topic_->control().wakeup);
  return true;
}

Partition::Stall Partition::resolve_stall(Segment& seg, uint32_t position, uint64_t word, StallTracker& t) {
  // The coarse clock: this runs on every poll that finds the frame CLAIMED.
  const int64_t now = topic_->bus->clock->coarse_now_ns();
  if (t.segment != &seg || t.position != position || t.word != word) {
    t = StallTracker{&seg, position, word, now, now, 0};
    return Stall::kPending;
  }
  // A PREPARED frame (read committed) has no claim timeout: its
  // transaction's deadline, in the producer slot, bounds it.
  // Nor does a CLAIMED_COPY one: its writer publishes with a plain store,
  // which an abort of a live writer's claim would race (segment_format.h).
  const bool prepared = claim_state(word) == kPrepared;
  const bool timed_out = !prepared && claim_state(word) != kClaimedCopy &&
                         now - t.since_ns >= topic_->options.claim_timeout_ns;
  const bool check_due = now - t.last_check_ns >= kStallCheckIntervalNs || ++t.polls >= kStallPollsBeforeCheck;
  if (!timed_out && !check_due) return Stall::kPending;
  t.last_check_ns = now;
  t.polls = 0;
  if (prepared) return resolve_prepared(seg, position, word) ? Stall::kResolved : Stall::kPending;
  if (!timed_out && topic_->bus->registry.is_alive(claim_owner(word))) return Stall::kPending;
  if (abort_claim(seg, position, word)) return Stall::kRepaired;
  return Stall::kResolved;  // the owner committed, or another reader repaired it
}

uint64_t Partition::end_offset() {
  auto seg = newest_segment();
  if (!seg) return start_offset();
  for (int i = 0; i < 64; ++i) {
    SegmentEnd e = (*seg)->find_end();
    if (e.position == UINT32_MAX) return (*seg)->base_offset() + e.count;
    if (!e.sealed) return (*seg)->base_offset() + e.count;
    auto next = segment((*seg)->base_offset() + e.count);
    if (!next) return (*seg)->base_offset() + e.count;
    seg = std::move(next);
  }
  return (*seg)->base_offset();
}

uint64_t Partition::end_position() {
  auto seg = newest_segment();
  if (!seg) return 0;
  SegmentEnd e = (*seg)->find_end();
  if (e.position == UINT32_MAX) return (*seg)->base_position();
  return (*seg)->base_position() + e.position;
}

namespace {
// The newest record timestamp in a segment (INT64_MIN if none).
int64_t max_timestamp(const Segment& seg) {
  int64_t ts = INT64_MIN;
  uint32_t pos = 0;
  for (uint64_t k = seg.slot_count(); k-- > 0;) {
    const IndexSlot& s = seg.slot(k);
    if (s.rel_offset_plus_1.load(std::memory_order_acquire) != 0) {
      pos = s.position;
      break;
    }
  }
  for (uint64_t k = 0; k < seg.slot_count(); ++k)
    if (seg.slot(k).rel_offset_plus_1.load(std::memory_order_acquire) != 0)
      ts = std::max(ts, seg.slot(k).timestamp_ns);
  // Frames after the last indexed one.
  while (static_cast<uint64_t>(pos) + kFrameHeaderBytes <= seg.capacity()) {
    const uint64_t w = seg.word(pos).load(std::memory_order_acquire);
    const uint32_t len = claim_length(w);
    if (w == 0 || claim_state(w) == kEndOfSegment || len < kFrameHeaderBytes ||
        static_cast<uint64_t>(pos) + len > seg.capacity())
      break;
    if (claim_state(w) == kCommitted) {
      RecordHeader h;
      std::memcpy(&h, seg.data() + pos + kFrameHeaderBytes, sizeof h);
      ts = std::max(ts, h.timestamp_ns);
    }
    pos += len;
  }
  return ts;
}
}  // namespace

bool Partition::holds_prepared(Segment& s) {
  if (!s.may_hold_prepared()) return false;  // no transaction ever wrote here
  // A range whose writer died before its claim word may hide a PREPARED
  // frame after it: measured and stepped over, or, if a live writer may be
  // in it, the segment is held. An undecided transaction whose holder died
  // or ran late is aborted on the way (housekeeping is a helper too); a
  // live one in time holds retention.
  uint64_t repaired = 0;
  const Walked end = walk_repairing(s, /*check_intents=*/true, &repaired, [&](uint32_t pos, uint64_t w) {
    return claim_state(w) != kPrepared || resolve_prepared(s, pos, w);
  });
  return end == Walked::kStopped || end == Walked::kGap;
}

Result<uint64_t> Partition::enforce_retention(int64_t now_ns) {
  const TopicOptions& o = topic_->options;
  if (o.retention_bytes < 0 && o.retention_ms < 0) return 0;
  // One listing for the segments and the spares.
  auto names = ipc::list_dir(dir_);
  if (!names) return std::unexpected(names.error());
  const std::vector<uint64_t> bases = bases_among(*names);
  if (bases.size() < 2) return 0;
  std::vector<std::shared_ptr<Segment>> segs;
  uint64_t total = 0;
  for (uint64_t b : bases) {
    auto s = segment(b);
    if (!s) continue;  // deleted meanwhile by another process
    total += (*s)->find_end().position;
    segs.push_back(std::move(*s));
  }
  uint64_t protect_from = UINT64_MAX;  // back-pressure: first offset a group still needs
  if (o.retention_mode == RetentionMode::kBackPressure) {
    auto min = min_committed_offset(*topic_, index_);
    if (!min) return std::unexpected(min.error());  // not knowing what a group needs, remove nothing
    protect_from = *min;
  }
  uint64_t removed = 0;
  size_t spares = 0;
  for (const auto& n : *names) spares += n.ends_with(kSpareSuffix);
  for (size_t i = 0; i + 1 < segs.size(); ++i) {
    Segment& s = *segs[i];
    const uint64_t used = s.find_end().position;
    const bool by_bytes = o.retention_bytes >= 0 && total - used >= static_cast<uint64_t>(o.retention_bytes);
    const bool by_age = o.retention_ms >= 0 && max_timestamp(s) < now_ns - o.retention_ms * 1'000'000;
    const uint64_t next_base = segs[i + 1]->base_offset();
    const bool consumed = o.retire_consumed && protect_from != UINT64_MAX && next_base <= protect_from;
    if (!by_bytes && !by_age && !consumed) break;
    if (protect_from != UINT64_MAX && protect_from < next_base) break;
    if (holds_prepared(s)) break;  // held at the last stable offset
    checked_cas_max(control().start_offset, next_base);
    // Keep a few retired files to recycle: a roll then reuses pages (and this
    // process's mappings of them) instead of allocating and faulting new ones.
    const std::string spare_name = spare_file_name(s.base_offset());
    const bool keep = spares < max_spares(o) && ::rename(s.path().c_str(), (dir_ + "/" + spare_name).c_str()) == 0;
    if (keep) {
      ++spares;
      std::lock_guard lock(mu_);
      own_spares_.push_back(spare_name);
    } else if (::unlink(s.path().c_str()) != 0 && errno != ENOENT) {
      return errno_error(errno, "cannot delete segment " + s.path());
    }
    removed += next_base - s.base_offset();
    total -= used;
  }
  forget_segments_below(start_offset());
  return removed;
}

Status Partition::clean_exclusive_leftovers() {
  auto& c = control();
  const uint64_t dirty_end = c.exclusive_dirty_end.load(std::memory_order_acquire);
  if (dirty_end == 0) return {};
  const uint64_t base = c.exclusive_dirty_base.load(std::memory_order_acquire);
  auto seg = segment(base);
  if (seg) {
    SegmentEnd e = (*seg)->find_end();
    if (e.position != UINT32_MAX && !e.sealed && e.position < dirty_end) {
      const uint64_t end = std::min<uint64_t>(dirty_end, (*seg)->capacity());
      std::memset((*seg)->data() + e.position, 0, end - e.position);
    }
  }
  c.exclusive_dirty_end.store(0, std::memory_order_release);
  return {};
}

Result<ipc::FileLock> Partition::lock_writer(bool exclusive) {
  const std::string path = dir_ + "/writer.lock";
  using Mode = ipc::FileLock::Mode;
  auto lock = ipc::FileLock::try_lock(path, exclusive ? Mode::kExclusive : Mode::kShared);
  if (!lock) {
    if (lock.error().code == Errc::kBusy)
      return make_error(Errc::kBusy, exclusive ? "partition " + std::to_string(index_) + " of topic " +
                                                     topic_->name + " already has writers"
                                               : "partition " + std::to_string(index_) + " of topic " +
                                                     topic_->name + " has an exclusive writer");
    return lock;
  }
  // acquire: pairs with the exclusive writer's release store of dirty_end.
  if (control().exclusive_dirty_end.load(std::memory_order_acquire) == 0) return lock;
  // A dead exclusive writer left bytes past the tail. Clean them while
  // holding the lock exclusively, so no other writer appends meanwhile.
  if (!exclusive) {
    auto conv = lock->try_convert(Mode::kExclusive);
    if (!conv) return make_error(Errc::kBusy, "partition " + std::to_string(index_) +
                                                  " is being cleaned up after a dead exclusive writer; retry");
  }
  if (auto ok = clean_exclusive_leftovers(); !ok) return std::unexpected(ok.error());
  if (!exclusive) {
    if (auto conv = lock->try_convert(Mode::kShared); !conv) return std::unexpected(conv.error());
  }
  return lock;
}

}  // namespace sluice
