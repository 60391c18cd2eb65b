#include "admin.h"

#include <cstring>

#include "group_offsets.h"
#include "ipc/filesystem.h"
#include "partition_cursor.h"
#include "producer_format.h"
#include "segment_format.h"

namespace sluice::admin {

namespace {

using namespace format;

// The first frame of a partition not decided yet (a transaction's PREPARED
// frame or a claim in flight): its first record's offset is the LSO.
struct UndecidedFrame {
  std::shared_ptr<Segment> segment;  // keeps the frame's bytes mapped and unrecycled
  uint32_t position = 0;
  uint64_t offset = 0;
  uint64_t word = 0;  // as loaded; 0: a claimed range whose word is not written yet
  bool live_gap = false;  // word 0 and a live writer's intent lies in the range
};

// The first undecided frame of `seg` holding an offset in [from, limit), by
// stepping over frame words. Reads only: a describe resolves nothing and
// never waits for a writer; frames claimed past `limit` (read before the
// walk) are not looked at, and a word that cannot be valid ends the walk
// (readers and `sluice verify` report it). A 0 word below the EXACT tail is
// a claim whose word is not written yet: undecided too.
std::optional<UndecidedFrame> first_undecided_in(Partition& p, const std::shared_ptr<Segment>& seg, uint64_t from,
                                                 uint64_t limit) {
  uint64_t offset = seg->base_offset();
  for (uint32_t pos = 0; offset < limit && uint64_t{pos} + kFrameHeaderBytes <= seg->capacity();) {
    // acquire: as any walker's load of a frame word; pairs with the writer's
    // publishing CAS, so a PREPARED frame's header and records are complete.
    const uint64_t w = seg->word(pos).load(std::memory_order_acquire);
    if (w == 0) {
      const Partition::ZeroWord z = p.look_at_zero_word(*seg, pos);
      if (z.kind == Partition::ZeroWord::kPublished) continue;
      if (z.kind != Partition::ZeroWord::kLive && z.kind != Partition::ZeroWord::kGap) return std::nullopt;
      if (offset < from) return std::nullopt;
      return UndecidedFrame{seg, pos, offset, 0, z.kind == Partition::ZeroWord::kLive};
    }
    const ClaimState st = claim_state(w);
    const uint32_t len = claim_length(w);
    const uint32_t count = claim_count(w);
    if (st == kEndOfSegment || !is_frame_state(st) || len < kFrameHeaderBytes || count == 0 ||
        uint64_t{pos} + len > seg->capacity())
      return std::nullopt;
    if ((is_open_claim(st) || st == kPrepared) && offset + count > from) return UndecidedFrame{seg, pos, offset, w};
    offset += count;
    pos += len;
  }
  return std::nullopt;
}

// The partition's first undecided frame below `end`, if any. Walks only the
// segments a transactional writer marked (SegmentControl.prepared_mark) and
// the newest two, where claims are in flight: a log without transactions
// pays for two segments at most.
std::optional<UndecidedFrame> first_undecided(Partition& p, const std::vector<std::shared_ptr<Segment>>& segs,
                                              uint64_t end) {
  const uint64_t from = p.start_offset();
  for (size_t i = 0; i < segs.size(); ++i) {
    if (!segs[i]->may_hold_prepared() && i + 2 < segs.size()) continue;
    const uint64_t limit = i + 1 < segs.size() ? std::min(segs[i + 1]->base_offset(), end) : end;
    if (auto f = first_undecided_in(p, segs[i], from, limit)) return f;
  }
  return std::nullopt;
}

// Who holds the LSO at `f`: the claimer of a CLAIMED frame, or the identity
// a PREPARED frame's header names, as its producer slot says now (the rules
// of Partition::resolve_prepared, read without acting). No byte is trusted:
// the header must agree with the walk, the pid must name an identity of
// the table.
std::optional<StableOffsetHolder> holder_of(BusState& bus, const UndecidedFrame& f) {
  StableOffsetHolder h;
  if (f.word == 0) {  // a claim whose word is not written yet: its intent names the writer
    h.state = "claimed";
    h.alive = f.live_gap;
    return h;
  }
  if (is_open_claim(claim_state(f.word))) {  // its header may not be written yet
    h.state = "claimed";
    h.alive = bus.registry.is_alive(claim_owner(f.word));
    return h;
  }
  // The header and records were written before the PREPARED word was
  // published, and a frame's bytes never change afterwards.
  const FrameHeader* fh = f.segment->frame(f.position);
  if (fh->base_offset != f.offset || claim_length(f.word) < kFrameHeaderBytes + kRecordHeaderBytes) return std::nullopt;
  RecordHeader first;
  std::memcpy(&first, f.segment->data() + f.position + kFrameHeaderBytes, sizeof first);
  h.pid = fh->producer_id;
  h.epoch = fh->producer_epoch;
  h.held_ns = std::max<int64_t>(0, bus.clock->now_ns() - first.timestamp_ns);
  h.state = "straggler";
  auto table = bus.producers();
  if (!table || h.pid == 0 || !(*table)->exists(h.pid)) return h;
  const ProducerSlot& slot = (*table)->slot(pid_slot(h.pid));
  // acquire: pairs with the release/acq_rel CASes of the holder and helpers;
  // the deadline was published with the begin CAS.
  const uint64_t c = slot.control.load(std::memory_order_acquire);
  static constexpr const char* kOpen[8] = {nullptr,    nullptr,    nullptr, "ongoing",
                                           "committing", "aborting", nullptr, nullptr};
  const char* state = kOpen[producer_state(c) & 7];
  if (producer_epoch(c) != h.epoch || state == nullptr) return h;  // its transaction is over
  // The name was written before the generation exists() acquired; checked
  // again after the copy, as a reused slot gets a new name and generation.
  h.name.assign(slot.name, strnlen(slot.name, kProducerNameBytes));
  if (!(*table)->exists(h.pid)) {  // the slot went to another identity meanwhile: this one is gone
    h.name.clear();
    return h;
  }
  h.state = state;
  h.alive = bus.registry.is_alive(producer_owner(c));
  // relaxed: informational, published with the control word acquired above.
  if (producer_state(c) == kProducerOngoing) h.deadline_unix_ms = slot.deadline_ms.load(std::memory_order_relaxed);
  return h;
}

// The partition's segments, oldest first (those retention removes meanwhile
// are left out).
Result<std::vector<std::shared_ptr<Segment>>> segments_of(Partition& p) {
  auto bases = p.segment_bases();
  if (!bases) return std::unexpected(bases.error());
  std::vector<std::shared_ptr<Segment>> segs;
  for (uint64_t b : *bases)
    if (auto seg = p.segment(b)) segs.push_back(std::move(*seg));
  return segs;
}

// Sets *stable and *held_by: the partition's LSO below `end` and its holder.
void find_stable_offset(Partition& p, const std::vector<std::shared_ptr<Segment>>& segs, uint64_t end,
                        uint64_t* stable, std::optional<StableOffsetHolder>* held_by) {
  *stable = end;
  auto f = first_undecided(p, segs, end);
  if (!f) return;
  *stable = f->offset;
  *held_by = holder_of(*p.topic().bus, *f);
}
}  // namespace

Result<TopicDescription> describe_topic(BusState& bus, std::string_view name) {
  auto topic = bus.topic(name);
  if (!topic) return std::unexpected(topic.error());
  TopicDescription d;
  d.name = std::string(name);
  d.options = (*topic)->options;
  for (auto& p : (*topic)->partitions) {
    PartitionInfo info;
    info.partition = p->index();
    info.start_offset = p->start_offset();
    info.repaired_claims = p->control().repaired_claims.load(std::memory_order_relaxed);
    auto segs = segments_of(*p);
    if (!segs) return std::unexpected(segs.error());
    for (const auto& seg : *segs) {
      SegmentEnd e = seg->find_end();
      SegmentInfo si;
      si.base_offset = seg->base_offset();
      si.end_offset = si.base_offset + e.count;
      si.bytes_used = e.position == UINT32_MAX ? 0 : e.position;
      si.capacity = seg->capacity();
      si.sealed = e.sealed;
      si.path = seg->path();
      info.bytes += si.bytes_used;
      info.segments.push_back(std::move(si));
    }
    info.end_offset = info.segments.empty() ? info.start_offset : info.segments.back().end_offset;
    if (info.start_offset < (info.segments.empty() ? 0 : info.segments.front().base_offset))
      info.start_offset = info.segments.front().base_offset;
    find_stable_offset(*p, *segs, info.end_offset, &info.stable_offset, &info.held_by);
    d.partitions.push_back(std::move(info));
  }
  return d;
}

Result<uint64_t> position_of_offset(Partition& partition, uint64_t offset) {
  PartitionCursor c(partition, false);
  if (auto ok = c.seek(offset); !ok) return std::unexpected(ok.error());
  return c.position();
}

PartitionLag partition_lag(Partition& partition, uint64_t committed, int64_t now_ns) {
  PartitionLag lag;
  lag.topic = partition.topic().name;
  lag.partition = partition.index();
  lag.committed = committed;
  lag.end_offset = partition.end_offset();
  const uint64_t from = committed == kNoOffset ? partition.start_offset()
                                               : std::max(committed, partition.start_offset());
  lag.stable_offset = lag.end_offset;
  // Not from the group's position: a read-uncommitted group may be past the LSO.
  if (auto segs = segments_of(partition))
    find_stable_offset(partition, *segs, lag.end_offset, &lag.stable_offset, &lag.held_by);
  if (from >= lag.end_offset) return lag;
  lag.lag_records = lag.end_offset - from;
  lag.lag_stable_records = lag.stable_offset > from ? lag.stable_offset - from : 0;
  PartitionCursor c(partition, false);
  if (!c.seek(from)) return lag;
  const uint64_t from_pos = c.position();
  const uint64_t end_pos = partition.end_position();
  lag.lag_bytes = end_pos > from_pos ? end_pos - from_pos : 0;
  RecordView v;
  for (int i = 0; i < 1024; ++i) {  // skip aborted frames; stop at a pending one
    PartitionCursor::Step s = c.next(&v);
    if (s == PartitionCursor::Step::kRecord) {
      lag.oldest_unconsumed_age_ns = std::max<int64_t>(0, now_ns - v.timestamp_ns);
      break;
    }
    if (s != PartitionCursor::Step::kRecord) break;
  }
  return lag;
}

Result<GroupDescription> describe_group(BusState& bus, std::string_view group) {
  if (auto ok = validate_name(group, "group"); !ok) return std::unexpected(ok.error());
  const std::string dir = bus.group_dir(group);
  auto names = ipc::list_dir(dir);
  if (!names) return make_error(Errc::kNotFound, "unknown group " + std::string(group));
  GroupDescription d;
  d.group = std::string(group);
  const int64_t now = bus.clock->now_ns();
  for (const auto& n : *names) {
    const std::string suffix = ".offsets";
    if (n.size() <= suffix.size() || n.compare(n.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    const std::string topic_name = n.substr(0, n.size() - suffix.size());
    auto topic = bus.topic(topic_name);
    if (!topic) continue;  // deleted topic
    auto offsets = GroupOffsets::open(bus, group, **topic, false);
    if (!offsets) return std::unexpected(offsets.error());
    for (auto& p : (*topic)->partitions) {
      const uint64_t c = (*offsets)->committed(p->index());
      PartitionLag lag = partition_lag(*p, c == format::kNoCommit ? kNoOffset : c, now);
      lag.last_commit_unix_ns = (*offsets)->slot(p->index()).commit_unix_ns.load(std::memory_order_relaxed);
      d.partitions.push_back(std::move(lag));
    }
  }
  return d;
}

Result<uint64_t> resolve_seek(Partition& partition, SeekTarget target) {
  switch (target.kind) {
    case SeekTarget::Kind::kBeginning: return partition.start_offset();
    case SeekTarget::Kind::kEnd: return partition.end_offset();
    case SeekTarget::Kind::kOffset: {
      const uint64_t o = static_cast<uint64_t>(target.value);
      return std::clamp(o, partition.start_offset(), partition.end_offset());
    }
    case SeekTarget::Kind::kTime: {
      PartitionCursor c(partition, false);
      if (auto ok = c.seek_to_time(target.value * 1'000'000); !ok) return std::unexpected(ok.error());
      return c.next_offset();
    }
  }
  return make_error(Errc::kInvalidArgument, "unknown seek target");
}

Status seek_group(BusState& bus, std::string_view group, std::string_view topic_name, SeekTarget target,
                  std::optional<uint32_t> partition) {
  if (auto ok = validate_name(group, "group"); !ok) return ok;
  auto topic = bus.topic(topic_name);
  if (!topic) return std::unexpected(topic.error());
  if (partition && *partition >= (*topic)->options.partitions)
    return make_error(Errc::kInvalidArgument, "partition " + std::to_string(*partition) + " out of range for topic " +
                                                  std::string(topic_name));
  auto offsets = GroupOffsets::open(bus, group, **topic, true);
  if (!offsets) return std::unexpected(offsets.error());
  for (auto& p : (*topic)->partitions) {
    if (partition && p->index() != *partition) continue;
    auto to = resolve_seek(*p, target);
    if (!to) return std::unexpected(to.error());
    // An operator's seek starts over: an in-place retry's attempt count
    // (even for the very record sought to) does not survive it, whether or
    // not a member is running to notice the seek.
    (*offsets)->clear_retry_attempts(p->index());
    if (auto ok = (*offsets)->commit(p->index(), *to, bus.clock->now_ns(), true); !ok) return ok;
    // release: a member that acquires the new epoch re-reads the offset above.
    (*offsets)->slot(p->index()).seek_epoch.fetch_add(1, std::memory_order_release);
  }
  invalidate_back_pressure_limits(**topic);
  return {};
}

}  // namespace sluice::admin
