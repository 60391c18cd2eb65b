#include "queue_state.h"

#include <sluice/bus.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "ipc/file_header.h"
#include "ipc/filesystem.h"
#include "partition.h"
#include "partition_cursor.h"
#include "queue_worker_table.h"
#include "topic_ops.h"

namespace sluice {

using namespace format;

std::string queue_topic_name(std::string_view queue) { return std::string(kQueueTopicPrefix) + std::string(queue); }

namespace {
constexpr int64_t kMaxDelayNs = kMaxQueueDelayMs * 1'000'000;

std::string queue_dir(const BusState& bus, std::string_view name) { return bus.dir + "/queues/" + std::string(name); }

TopicOptions log_options(const QueueOptions& o) {
  TopicOptions t;
  t.partitions = o.priorities;
  t.segment_bytes = o.segment_bytes;
  // Nothing unsettled is deleted (the floors are the @queue group's
  // offsets), and publishers wait when a level is max_depth_bytes deep.
  t.retention_mode = RetentionMode::kBackPressure;
  t.retention_bytes = o.max_depth_bytes;
  t.retire_consumed = true;  // settled segments go (recycled) at once
  t.prefault_segments = o.prefault_segments;
  t.auto_offset_reset = OffsetReset::kEarliest;
  return t;
}
}  // namespace

Status validate_queue_options(const QueueOptions& o) {
  auto bad = [](std::string m) { return make_error(Errc::kInvalidArgument, std::move(m)); };
  if (o.priorities < 1 || o.priorities > kMaxPriorities)
    return bad("priorities must be 1.." + std::to_string(kMaxPriorities));
  if (o.window < 64 || o.window > (1u << 24) || (o.window & (o.window - 1)) != 0)
    return bad("window must be a power of two between 64 and 16777216");
  if (o.lease_ns < 1'000'000 || o.lease_ns > kMaxDelayNs) return bad("lease must be between 1 ms and 14 days");
  const RetryPolicy& r = o.retry;
  if (r.max_receives < 1 || r.max_receives > kMaxAttempts) return bad("max receives must be 1..255");
  if (r.base_delay_ns < 0 || r.max_delay_ns < 0 || r.jitter_ns < 0 || r.max_delay_ns + r.jitter_ns > kMaxDelayNs ||
      r.base_delay_ns > kMaxDelayNs)
    return bad("retry delays must be between 0 and 14 days");
  if (!(r.multiplier >= 1.0 && r.multiplier <= 1000.0)) return bad("retry multiplier must be between 1 and 1000");
  if (o.dedup_window_ns < 1'000'000 || o.dedup_window_ns > kMaxDelayNs)
    return bad("de-duplication window must be between 1 ms and 14 days");
  if (o.dedup_capacity < kDedupWays || o.dedup_capacity > (1u << 24) || o.dedup_capacity % kDedupWays != 0)
    return bad("de-duplication capacity must be a multiple of 8 between 8 and 16777216");
  if (!o.dead_letter_queue.empty() && o.dead_letter_queue != "-")
    if (auto ok = validate_name(o.dead_letter_queue, "dead-letter queue"); !ok) return ok;
  if (auto ok = validate_topic_options(log_options(o)); !ok) return ok;
  return {};
}

Status create_queue_files(BusState& bus, std::string_view name, const QueueOptions& options,
                          bool is_dead_letter_queue) {
  if (auto ok = validate_name(name, "queue"); !ok) return ok;
  if (auto ok = validate_queue_options(options); !ok) return ok;
  const std::string dir = queue_dir(bus, name);
  const std::string path = dir + "/state";
  if (ipc::path_exists(path)) return make_error(Errc::kAlreadyExists, "queue " + std::string(name) + " already exists");
  // The topic first, the state file last: the queue exists once its state
  // file is published. A creator that died in between left a topic that the
  // next creation reuses.
  if (auto ok = create_topic_files(bus, queue_topic_name(name), log_options(options), true);
      !ok && ok.error().code != Errc::kAlreadyExists)
    return ok;
  if (auto ok = ipc::make_dirs(dir); !ok) return ok;
  {
    DedupParams d{options.dedup_capacity / kDedupWays, format::kDedupFullHashBuckets, options.dedup_window_ns};
    const uint64_t bytes = dedup_file_bytes(d.buckets);
    auto f = ipc::MappedFile::create_temp(dir + "/dedup", bytes, {});
    if (!f) return std::unexpected(f.error());
    ipc::write_file_header(f->data(), ipc::FileKind::kQueueDedup, static_cast<uint32_t>(kDedupBucketsOffset), bytes,
                           &d, sizeof d);
    if (auto pub = f->publish(); !pub) return std::unexpected(pub.error());  // lost a race: the winner's is as good
  }
  QueueParams p{};
  p.priorities = options.priorities;
  p.window = options.window;
  p.lease_ns = options.lease_ns;
  p.epoch_unix_ms = bus.clock->now_ns() / 1'000'000;
  p.max_receives = options.retry.max_receives;
  p.flags = is_dead_letter_queue ? kQueueFlagIsDeadLetterQueue : 0;
  p.base_delay_ns = options.retry.base_delay_ns;
  p.max_delay_ns = options.retry.max_delay_ns;
  p.jitter_ns = options.retry.jitter_ns;
  p.multiplier = options.retry.multiplier;
  p.dedup_window_ns = options.dedup_window_ns;
  p.dedup_capacity = options.dedup_capacity;
  p.max_depth_bytes = options.max_depth_bytes;
  p.workers_offset = queue_workers_offset(p.priorities, p.window);
  p.worker_slots = kQueueWorkerSlots;
  p.worker_slot_bytes = sizeof(QueueWorkerSlot);
  std::string dlq = options.dead_letter_queue.empty() ? std::string(name) + ".dlq" : options.dead_letter_queue;
  if (dlq == name) return make_error(Errc::kInvalidArgument, "queue " + std::string(name) + " cannot be its own dead-letter queue");
  if (dlq == "-" || is_dead_letter_queue) dlq.clear();  // a DLQ's own failures are only counted
  if (dlq.size() >= sizeof p.dead_letter_queue)
    return make_error(Errc::kInvalidName, "dead-letter queue name " + dlq + " is too long");
  std::memcpy(p.dead_letter_queue, dlq.data(), dlq.size());
  const uint64_t bytes = queue_file_bytes(p.priorities, p.window);
  auto f = ipc::MappedFile::create_temp(path, bytes, {});
  if (!f) return std::unexpected(f.error());
  ipc::write_file_header(f->data(), ipc::FileKind::kQueueState, static_cast<uint32_t>(kQueueLevelsOffset), bytes, &p,
                         sizeof p);
  // Lap 0: slot i waits for offset i (FREE(0) is the zero word).
  auto* slots = reinterpret_cast<std::atomic<uint64_t>*>(f->data() + kQueueSlotsOffset);
  for (uint64_t l = 0; l < p.priorities; ++l)
    for (uint64_t i = 0; i < p.window; ++i)
      // relaxed: the file is published by link() after this; openers map it then.
      slots[l * p.window + i].store(free_slot(i), std::memory_order_relaxed);
  auto pub = f->publish();
  if (!pub) return std::unexpected(pub.error());
  if (!*pub) return make_error(Errc::kAlreadyExists, "queue " + std::string(name) + " already exists");
  return {};
}

Result<std::unique_ptr<QueueState>> open_queue(BusState& bus, std::string_view name) {
  if (auto ok = validate_name(name, "queue"); !ok) return std::unexpected(ok.error());
  const std::string path = queue_dir(bus, name) + "/state";
  if (!ipc::path_exists(path)) return make_error(Errc::kNotFound, "unknown queue " + std::string(name));
  auto f = ipc::MappedFile::open(path, {});
  if (!f) return std::unexpected(f.error());
  if (auto ok = ipc::validate_file_header(f->data(), f->size(), ipc::FileKind::kQueueState, sizeof(QueueParams), path);
      !ok)
    return std::unexpected(ok.error());
  auto q = std::make_unique<QueueState>();
  q->bus = &bus;
  q->name = std::string(name);
  q->params = ipc::file_params<QueueParams>(f->data());
  const QueueParams& p = q->params;
  uint32_t version = 0;
  std::memcpy(&version, f->data() + offsetof(ipc::FileHeader, format_version), sizeof version);
  if (p.priorities < 1 || p.priorities > kMaxPriorities || p.window < 64 || p.window > (1u << 24) ||
      (p.window & (p.window - 1)) != 0 ||
      f->size() != (version >= 2 ? queue_file_bytes(p.priorities, p.window)
                                 : queue_file_bytes_v1(p.priorities, p.window)) ||
      p.max_receives < 1 || p.max_receives > kMaxAttempts)
    return make_error(Errc::kCorruption, "queue state " + path + " holds invalid parameters");
  if (version >= 2) {
    // The worker table must lie after the group words and inside the file:
    // never index the mapping with numbers the file gave us unchecked.
    const uint64_t size = f->size();
    const bool fits = p.worker_slot_bytes == sizeof(QueueWorkerSlot) && p.worker_slots >= 1 &&
                      p.worker_slots <= kQueueWorkerSlots && p.workers_offset % alignof(QueueWorkerSlot) == 0 &&
                      p.workers_offset >= queue_workers_offset(p.priorities, p.window) && p.workers_offset <= size &&
                      uint64_t{p.worker_slots} * p.worker_slot_bytes <= size - p.workers_offset;
    if (!fits)
      return make_error(Errc::kCorruption,
                        "queue state " + path + ": its worker table (offset " + std::to_string(p.workers_offset) +
                            ", " + std::to_string(p.worker_slots) + " slots of " +
                            std::to_string(p.worker_slot_bytes) + " bytes) does not fit its " + std::to_string(size) +
                            " bytes");
    q->worker_slots = p.worker_slots;
  }
  q->file = std::move(*f);
  auto log = bus.topic(queue_topic_name(name), true);
  if (!log) return std::unexpected(log.error());
  if ((*log)->options.partitions != p.priorities)
    return make_error(Errc::kCorruption, "queue " + std::string(name) + ": its topic has " +
                                             std::to_string((*log)->options.partitions) + " partitions for " +
                                             std::to_string(p.priorities) + " priorities");
  q->log = std::move(*log);
  auto floors = GroupOffsets::open(bus, kQueueGroup, *q->log, true, true);
  if (!floors) return std::unexpected(floors.error());
  q->floors = std::move(*floors);
  const std::string dedup_path = queue_dir(bus, name) + "/dedup";
  auto d = ipc::MappedFile::open(dedup_path, {});
  if (!d) return std::unexpected(d.error());
  if (auto ok = ipc::validate_file_header(d->data(), d->size(), ipc::FileKind::kQueueDedup, sizeof(DedupParams),
                                          dedup_path);
      !ok)
    return std::unexpected(ok.error());
  q->dedup_params = ipc::file_params<DedupParams>(d->data());
  if (q->dedup_params.buckets == 0 || d->size() != dedup_file_bytes(q->dedup_params.buckets) ||
      q->dedup_params.window_ns <= 0 || (q->dedup_params.flags & ~format::kDedupFullHashBuckets) != 0)
    return make_error(Errc::kCorruption, "queue de-duplication table " + dedup_path + " holds invalid parameters");
  q->dedup = std::move(*d);
  return q;
}

QueueLevelStats QueueStats::total() const {
  QueueLevelStats t;
  for (const auto& l : levels) {
    t.published += l.published;
    t.settled_below += l.settled_below;
    t.depth += l.depth;
    t.unsettled += l.unsettled;
    t.in_flight += l.in_flight;
    t.ready += l.ready;
    t.delayed += l.delayed;
    t.received += l.received;
    t.acked += l.acked;
    t.nacked += l.nacked;
    t.dead_lettered += l.dead_lettered;
    t.redelivered += l.redelivered;
    t.owner_deaths += l.owner_deaths;
    t.lease_lost += l.lease_lost;
    t.oldest_unsettled_age_ns = std::max(t.oldest_unsettled_age_ns, l.oldest_unsettled_age_ns);
  }
  return t;
}

Result<QueueStats> queue_stats(BusState& bus, std::string_view name) {
  auto q = open_queue(bus, name);
  if (!q) return std::unexpected(q.error());
  QueueStats out;
  out.name = std::string(name);
  out.dead_letter_queue = (*q)->dead_letter_queue();
  // relaxed: a statistic.
  out.breaker = static_cast<BreakerStatus>(breaker_state((*q)->breaker().load(std::memory_order_relaxed)));
  const QueueParams& p = (*q)->params;
  out.is_dead_letter_queue = (p.flags & kQueueFlagIsDeadLetterQueue) != 0;
  QueueOptions& o = out.options;
  o.priorities = p.priorities;
  o.window = p.window;
  o.lease_ns = p.lease_ns;
  o.retry = RetryPolicy{p.max_receives, p.base_delay_ns, p.multiplier, p.max_delay_ns, p.jitter_ns};
  o.dead_letter_queue = out.dead_letter_queue.empty() ? "-" : out.dead_letter_queue;
  o.dedup_window_ns = p.dedup_window_ns;
  o.dedup_capacity = p.dedup_capacity;
  o.segment_bytes = (*q)->log->options.segment_bytes;
  o.max_depth_bytes = p.max_depth_bytes;
  const int64_t now = bus.clock->now_ns();
  for (uint32_t l = 0; l < (*q)->levels(); ++l) {
    QueueLevel& L = (*q)->level(l);
    QueueLevelStats s;
    Partition& part = *(*q)->log->partitions[l];
    // relaxed: statistics; each value is a snapshot of its own.
    const uint64_t floor = L.ack_floor.load(std::memory_order_acquire);
    const uint64_t next = L.deliver_next.load(std::memory_order_acquire);
    s.published = std::max(part.end_offset(), next);
    s.settled_below = floor;
    s.depth = s.published - floor;
    uint64_t done = 0;
    for (uint64_t o = floor; o < next && o - floor < (*q)->window(); ++o) {
      const uint64_t w = (*q)->slot(l, o).load(std::memory_order_relaxed);
      switch (slot_state(w)) {
        case kSlotLeased: ++s.in_flight; break;
        case kSlotReady: ++s.ready; break;
        case kSlotDelayed: ++s.delayed; break;
        case kSlotDone: ++done; break;
        default: break;
      }
    }
    s.unsettled = s.depth - std::min(done, s.depth);
    s.received = L.received.load(std::memory_order_relaxed);
    s.acked = L.acked.load(std::memory_order_relaxed);
    s.nacked = L.nacked.load(std::memory_order_relaxed);
    s.dead_lettered = L.dead_lettered.load(std::memory_order_relaxed);
    s.redelivered = L.redelivered.load(std::memory_order_relaxed);
    s.owner_deaths = L.owner_deaths.load(std::memory_order_relaxed);
    s.lease_lost = L.lease_lost.load(std::memory_order_relaxed);
    if (floor < s.published) {
      PartitionCursor c(part, false);
      RecordView v;
      if (c.seek(floor) && c.next(&v) == PartitionCursor::Step::kRecord)
        s.oldest_unsettled_age_ns = std::max<int64_t>(0, now - v.timestamp_ns);
    }
    out.levels.push_back(s);
  }
  out.tracks_workers = (*q)->worker_slots > 0;
  out.workers = read_worker_table(**q);
  return out;
}

// ---- Bus: queue administration -------------------------------------------

Status Bus::create_queue(std::string_view name, const QueueOptions& options) {
  return create_queue_files(*state_, name, options);
}

Result<std::vector<std::string>> Bus::list_queues() const {
  std::vector<std::string> out;
  const std::string root = state_->dir + "/queues";
  if (!ipc::path_exists(root)) return out;
  auto names = ipc::list_dir(root);
  if (!names) return std::unexpected(names.error());
  for (auto& n : *names)
    if (validate_name(n, "queue") && ipc::path_exists(root + "/" + n + "/state")) out.push_back(n);
  std::sort(out.begin(), out.end());
  return out;
}

Result<QueueStats> Bus::queue_stats(std::string_view name) const { return sluice::queue_stats(*state_, name); }

Result<std::vector<QueueEntry>> Bus::browse_queue(std::string_view name, uint32_t priority, uint64_t from_offset,
                                                  size_t max) const {
  auto q = open_queue(*state_, name);
  if (!q) return std::unexpected(q.error());
  if (priority >= (*q)->levels())
    return make_error(Errc::kInvalidArgument, "queue " + std::string(name) + " has no priority " + std::to_string(priority));
  QueueLevel& L = (*q)->level(priority);
  const uint64_t floor = L.ack_floor.load(std::memory_order_acquire);
  const uint64_t next = L.deliver_next.load(std::memory_order_acquire);
  std::vector<QueueEntry> out;
  PartitionCursor c(*(*q)->log->partitions[priority], true);
  if (auto ok = c.seek(std::max(from_offset, floor)); !ok) return std::unexpected(ok.error());
  RecordView v;
  while (out.size() < max) {
    const PartitionCursor::Step st = c.next(&v);
    if (st == PartitionCursor::Step::kCorrupt) return std::unexpected(c.error());
    if (st != PartitionCursor::Step::kRecord) break;
    QueueEntry e;
    e.priority = priority;
    e.offset = v.offset;
    e.timestamp_ns = v.timestamp_ns;
    if (v.offset < next && v.offset >= floor) {
      // relaxed: a snapshot; the slot may change right after.
      const uint64_t w = (*q)->slot(priority, v.offset).load(std::memory_order_relaxed);
      switch (slot_state(w)) {
        case kSlotDone: continue;
        case kSlotFree: break;  // settled and freed at the floor, or not yet taken
        case kSlotLeased: e.state = QueueEntryState::kInFlight; break;
        case kSlotReady: e.state = QueueEntryState::kReady; break;
        case kSlotDelayed: e.state = QueueEntryState::kDelayed; break;
        case kSlotBlocked: e.state = QueueEntryState::kBlocked; break;
      }
      if (slot_state(w) == kSlotFree && slot_offset(w) != v.offset) continue;  // freed: settled
      if (slot_state(w) != kSlotFree) e.attempts = slot_attempts(w);
    }
    e.value = std::string(v.value);
    for (Header h : v.headers) e.headers.emplace_back(std::string(h.name), std::string(h.value));
    out.push_back(std::move(e));
  }
  return out;
}

Status Bus::delete_queue(std::string_view name) {
  if (auto ok = validate_name(name, "queue"); !ok) return ok;
  const std::string dir = queue_dir(*state_, name);
  if (!ipc::path_exists(dir + "/state")) return make_error(Errc::kNotFound, "unknown queue " + std::string(name));
  // The state file first: from then on the queue does not exist; then its
  // topic and the floors.
  if (::unlink((dir + "/state").c_str()) != 0 && errno != ENOENT)
    return errno_error(errno, "cannot delete queue " + std::string(name));
  (void)ipc::remove_tree(dir);
  auto ok = delete_topic_files(*state_, queue_topic_name(name), true);
  if (!ok && ok.error().code != Errc::kNotFound) return ok;
  return {};
}

}  // namespace sluice
