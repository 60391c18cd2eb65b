#include "admin.h"

#include "group_offsets.h"
#include "ipc/filesystem.h"
#include "partition_cursor.h"

namespace sluice::admin {

namespace {
// The partition's last stable offset: its first undecided frame (a
// transaction's PREPARED frame or a claim in flight), or `end`. Walks only
// the segments a transactional writer marked (SegmentControl.prepared_mark)
// and the newest two, where claims are in flight; a pass that meets an
// undecided frame only notes it (nothing is resolved on a first sight).
uint64_t last_stable_offset(Partition& p, const std::vector<std::shared_ptr<Segment>>& segs, uint64_t end) {
  for (size_t i = 0; i < segs.size(); ++i) {
    if (!segs[i]->may_hold_prepared() && i + 2 < segs.size()) continue;
    const uint64_t limit = i + 1 < segs.size() ? segs[i + 1]->base_offset() : end;
    PartitionCursor c(p, false, Isolation::kReadCommitted);
    if (!c.seek(std::max(segs[i]->base_offset(), p.start_offset()))) continue;
    RecordView v;
    while (c.next_offset() < limit) {
      const PartitionCursor::Step st = c.next(&v);
      if (st == PartitionCursor::Step::kPending) return c.next_offset();
      if (st != PartitionCursor::Step::kRecord) break;
    }
  }
  return end;
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
    auto bases = p->segment_bases();
    if (!bases) return std::unexpected(bases.error());
    std::vector<std::shared_ptr<Segment>> segs;
    for (uint64_t b : *bases) {
      auto seg = p->segment(b);
      if (!seg) continue;
      segs.push_back(*seg);
      SegmentEnd e = (*seg)->find_end();
      SegmentInfo si;
      si.base_offset = b;
      si.end_offset = b + e.count;
      si.bytes_used = e.position == UINT32_MAX ? 0 : e.position;
      si.capacity = (*seg)->capacity();
      si.sealed = e.sealed;
      si.path = (*seg)->path();
      info.bytes += si.bytes_used;
      info.segments.push_back(std::move(si));
    }
    info.end_offset = info.segments.empty() ? info.start_offset : info.segments.back().end_offset;
    if (info.start_offset < (info.segments.empty() ? 0 : info.segments.front().base_offset))
      info.start_offset = info.segments.front().base_offset;
    info.stable_offset = last_stable_offset(*p, segs, info.end_offset);
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
  {
    // Walk from the group's position to the first undecided frame.
    PartitionCursor s(partition, false, Isolation::kReadCommitted);
    RecordView v;
    if (s.seek(std::min(from, lag.end_offset)))
      for (;;) {
        const PartitionCursor::Step st = s.next(&v);
        if (st == PartitionCursor::Step::kRecord) continue;
        if (st == PartitionCursor::Step::kPending) lag.stable_offset = s.next_offset();
        break;
      }
  }
  if (from >= lag.end_offset) return lag;
  lag.lag_records = lag.end_offset - from;
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
