#include <sluice/bus.h>
#include <sluice/consumer.h>

#include <algorithm>

#include "admin.h"
#include "bus_state.h"
#include "consumer_access.h"
#include "group_offsets.h"
#include "ipc/wait_strategy.h"
#include "partition_cursor.h"

namespace sluice {

struct ConsumerState {
  std::shared_ptr<BusState> bus;
  std::shared_ptr<TopicState> topic;
  std::string group;
  ConsumerOptions options;
  std::unique_ptr<GroupOffsets> offsets;  // null without a group
  struct Assigned {
    PartitionCursor cursor;
    uint64_t handed_out = 0;  // next offset after the records handed out
    uint64_t committed = kNoOffset;
    uint64_t seek_epoch = 0;
    uint64_t repairs_seen = 0;
    bool paused = false;  // Consumer::pause(): hands out nothing, keeps its position
  };
  std::vector<Assigned> parts;
  std::vector<uint32_t> assignment;
  // A transactional producer's consumer: its offsets move only with the
  // producer's transactions, so its own commits are refused.
  bool bound = false;
  size_t next_part = 0;
  int64_t last_auto_commit_ns = 0;
  ConsumerStats stats;
  ipc::WaitOptions wait;

  OffsetReset reset_policy() const { return options.offset_reset.value_or(topic->options.auto_offset_reset); }
  void emit(ConsumerEvent::Kind kind, uint32_t partition, uint64_t from, uint64_t to, std::string message) {
    if (options.on_event) options.on_event(ConsumerEvent{kind, partition, from, to, std::move(message)});
  }
  // Positions a partition per the reset policy. False for kFail.
  bool reset(Assigned& a, std::string why);
  // reset() for a position retention removed; kOffsetOutOfRange for kFail.
  Status reset_removed(Assigned& a);
  Status position_initially(Assigned& a);
  Status commit_all(bool sync);
  void check_group_seek(Assigned& a);
  Assigned* find(uint32_t partition) noexcept;
  // Consumer::pause/resume: all or nothing.
  Status set_paused(std::span<const uint32_t> partitions, bool paused);
};

ConsumerState::Assigned* ConsumerState::find(uint32_t partition) noexcept {
  for (Assigned& a : parts)
    if (a.cursor.partition().index() == partition) return &a;
  return nullptr;
}

Status ConsumerState::set_paused(std::span<const uint32_t> partitions, bool paused) {
  // Every partition is checked before any changes, so that an error leaves
  // the pause state as it was.
  for (uint32_t p : partitions) {
    if (find(p) != nullptr) continue;
    const std::string what = std::string(paused ? "cannot pause: partition " : "cannot resume: partition ") +
                             std::to_string(p);
    if (p >= topic->options.partitions)
      return make_error(Errc::kInvalidArgument, what + " is out of range for topic " + topic->name + " (" +
                                                    std::to_string(topic->options.partitions) + " partitions)");
    std::string assigned;
    for (uint32_t q : assignment) assigned += (assigned.empty() ? "" : ", ") + std::to_string(q);
    return make_error(Errc::kInvalidArgument, what + " of topic " + topic->name +
                                                  " is not assigned to this consumer (assigned: " + assigned + ")");
  }
  for (uint32_t p : partitions) find(p)->paused = paused;
  return {};
}

bool ConsumerState::reset(Assigned& a, std::string why) {
  const uint64_t from = a.cursor.next_offset();
  const OffsetReset policy = reset_policy();
  if (policy == OffsetReset::kFail) return false;
  Partition& p = a.cursor.partition();
  Status ok = policy == OffsetReset::kEarliest ? a.cursor.seek(p.start_offset()) : a.cursor.seek_to_end();
  if (!ok) ok = a.cursor.seek(p.start_offset());  // retention raced us: try once more
  if (!ok) return false;  // cannot be positioned at all; the caller reports why
  a.handed_out = a.cursor.next_offset();
  ++stats.offset_resets;
  emit(ConsumerEvent::Kind::kOffsetReset, p.index(), from, a.cursor.next_offset(), std::move(why));
  return true;
}

Status ConsumerState::reset_removed(Assigned& a) {
  const std::string why = "position " + std::to_string(a.cursor.next_offset()) + " of partition " +
                          std::to_string(a.cursor.partition().index()) + " was removed by retention";
  if (reset(a, why)) return {};
  if (reset_policy() != OffsetReset::kFail) {
    // The reset itself failed: say why instead of trying again forever.
    Partition& p = a.cursor.partition();
    if (auto ok = a.cursor.seek(p.start_offset()); !ok) return ok;
  }
  return make_error(Errc::kOffsetOutOfRange, why + " and the reset policy is fail");
}

Status ConsumerState::position_initially(Assigned& a) {
  Partition& p = a.cursor.partition();
  uint64_t start = p.start_offset();
  if (offsets) {
    auto& slot = offsets->slot(p.index());
    a.seek_epoch = slot.seek_epoch.load(std::memory_order_acquire);
    const uint64_t c = offsets->committed(p.index());
    if (c != format::kNoCommit) {
      a.committed = c;
      start = c;
    } else if (reset_policy() == OffsetReset::kLatest) {
      start = p.end_offset();
    }
  }
  auto ok = a.cursor.seek(start);
  if (!ok && ok.error().code == Errc::kOffsetOutOfRange) {
    if (auto r = reset_removed(a); !r) return r;
  } else if (!ok) {
    return ok;
  }
  a.handed_out = a.cursor.next_offset();
  return {};
}

Status ConsumerState::commit_all(bool sync) {
  if (!offsets) return {};
  // The coarse clock: the commit time is informational and the auto-commit
  // interval is milliseconds; a TSC read per commit_async() is not.
  const int64_t now = bus->clock->coarse_now_ns();
  for (Assigned& a : parts) {
    if (a.handed_out == a.committed) continue;
    if (auto ok = offsets->commit(a.cursor.partition().index(), a.handed_out, now, sync); !ok) return ok;
    a.committed = a.handed_out;
    ++stats.commits;
  }
  last_auto_commit_ns = now;
  return {};
}

void ConsumerState::check_group_seek(Assigned& a) {
  auto& slot = offsets->slot(a.cursor.partition().index());
  // acquire: pairs with the release fetch_add in admin::seek_group(); the
  // offset it committed before is visible.
  const uint64_t epoch = slot.seek_epoch.load(std::memory_order_acquire);
  if (epoch == a.seek_epoch) return;
  a.seek_epoch = epoch;
  const uint64_t to = offsets->committed(a.cursor.partition().index());
  const uint64_t from = a.cursor.next_offset();
  if (auto ok = a.cursor.seek(to); !ok) {
    if (!reset(a, ok.error().message)) return;
  }
  a.handed_out = a.committed = a.cursor.next_offset();
  emit(ConsumerEvent::Kind::kGroupSeek, a.cursor.partition().index(), from, a.cursor.next_offset(),
       "group offset moved by an admin seek");
}

Consumer::Consumer(std::unique_ptr<ConsumerState> state) : state_(std::move(state)) {}
Consumer::Consumer(Consumer&&) noexcept = default;
Consumer& Consumer::operator=(Consumer&&) noexcept = default;
Consumer::~Consumer() {
  if (state_ && state_->options.auto_commit) (void)state_->commit_all(true);
}

Guarantee Consumer::guarantee() const noexcept {
  return state_->bound ? Guarantee::kExactlyOnce : state_->options.guarantee;
}
Isolation Consumer::isolation() const noexcept { return state_->options.isolation; }

Result<Consumer> Bus::create_consumer(std::string_view topic, std::string_view group,
                                      const ConsumerOptions& options) {
  if (options.guarantee == Guarantee::kExactlyOnce)
    return make_error(Errc::kInvalidArgument,
                      "Guarantee::kExactlyOnce needs machinery a plain Consumer does not have: a Worker with a "
                      "processed-id store (WorkerOptions::processed), or ProcessedStore::process_once around "
                      "this consumer's handling with kAtLeastOnce (docs/exactly-once.md, section 6)");
  return ConsumerAccess::make(state_, topic, group, options);
}

Result<Consumer> ConsumerAccess::make(const std::shared_ptr<BusState>& bus, std::string_view topic,
                                      std::string_view group, const ConsumerOptions& options, bool bound) {
  auto t = bus->topic(topic);
  if (!t) return std::unexpected(t.error());
  auto s = std::make_unique<ConsumerState>();
  s->bus = bus;
  s->bound = bound;
  s->topic = *t;
  s->group = std::string(group);
  s->options = options;
  s->wait.strategy = static_cast<ipc::WaitStrategy>(options.wait);
  if (!group.empty()) {
    auto offsets = GroupOffsets::open(*bus, group, **t, true);
    if (!offsets) return std::unexpected(offsets.error());
    s->offsets = std::move(*offsets);
  } else {
    s->options.auto_commit = false;
  }
  std::vector<uint32_t> parts = options.partitions;
  if (parts.empty())
    for (uint32_t p = 0; p < (*t)->options.partitions; ++p) parts.push_back(p);
  for (uint32_t p : parts) {
    if (p >= (*t)->options.partitions)
      return make_error(Errc::kInvalidArgument, "partition " + std::to_string(p) + " out of range for topic " +
                                                    std::string(topic));
    s->parts.push_back(ConsumerState::Assigned{PartitionCursor(*(*t)->partitions[p], options.verify_checksums, options.isolation)});
    if (auto ok = s->position_initially(s->parts.back()); !ok) return std::unexpected(ok.error());
  }
  s->assignment = std::move(parts);
  s->last_auto_commit_ns = bus->clock->coarse_now_ns();
  return Consumer(std::move(s));
}

Result<size_t> Consumer::try_poll(std::span<RecordView> out) noexcept {
  ConsumerState& s = *state_;
  if (s.parts.empty() || out.empty()) return size_t{0};
  if (s.options.auto_commit && s.options.guarantee == Guarantee::kAtLeastOnce &&
      s.bus->clock->coarse_now_ns() - s.last_auto_commit_ns >= s.options.auto_commit_interval_ns) {
    // Records handed out by earlier polls count as processed once poll is
    // called again (Kafka's auto-commit contract).
    if (auto ok = s.commit_all(false); !ok) return std::unexpected(ok.error());
  }
  size_t n = 0;
  const size_t count = s.parts.size();
  for (size_t i = 0; i < count && n < out.size(); ++i) {
    ConsumerState::Assigned& a = s.parts[(s.next_part + i) % count];
    a.cursor.release_left_segments();  // the previous poll's views are dead now
    // A paused partition is still looked at for an admin seek, which moves
    // it (and whose event handler may resume it); it is not read: its
    // position stays, and a retention reset waits for its resume.
    if (s.offsets) s.check_group_seek(a);
    if (a.paused) continue;
    if (a.cursor.behind_start())
      if (auto ok = s.reset_removed(a); !ok) return std::unexpected(ok.error());
    while (n < out.size()) {
      PartitionCursor::Step step = a.cursor.next(&out[n]);
      if (step == PartitionCursor::Step::kRecord) {
        ++n;
        continue;
      }
      if (step == PartitionCursor::Step::kOutOfRange) {
        if (auto ok = s.reset_removed(a); !ok) return std::unexpected(ok.error());
        continue;
      }
      if (step == PartitionCursor::Step::kCorrupt) {
        ++s.stats.corrupt_frames;
        const Error err = a.cursor.error();
        if (!s.options.skip_corrupt) {
          if (n > 0) break;  // hand out what came before; the error repeats next poll
          return std::unexpected(err);
        }
        const uint64_t from = a.cursor.next_offset();
        const uint64_t skipped = a.cursor.skip_corrupt();
        s.emit(ConsumerEvent::Kind::kCorruption, a.cursor.partition().index(), from, a.cursor.next_offset(),
               err.message + (skipped ? "; skipped" : "; cannot resynchronise"));
        if (skipped == 0) break;
        continue;
      }
      break;  // kEmpty or kPending: next partition
    }
    a.handed_out = a.cursor.next_offset();
    if (a.cursor.repairs() != a.repairs_seen) {
      s.stats.claims_repaired += a.cursor.repairs() - a.repairs_seen;
      a.repairs_seen = a.cursor.repairs();
      s.emit(ConsumerEvent::Kind::kClaimRepaired, a.cursor.partition().index(), a.cursor.last_repaired_first(),
             a.cursor.last_repaired_end(),
             "aborted a claim whose writer died or stalled; its offsets are skipped");
    }
  }
  s.next_part = (s.next_part + 1) % count;
  s.stats.records += n;
  if (n > 0 && s.offsets && s.options.guarantee == Guarantee::kAtMostOnce) {
    // Commit before the caller processes: a crash from here on loses, never
    // repeats, these records.
    if (auto ok = s.commit_all(false); !ok) return std::unexpected(ok.error());
  }
  return n;
}

Result<size_t> Consumer::poll(std::span<RecordView> out, int64_t timeout_ns) noexcept {
  Result<size_t> r = size_t{0};
  ipc::wait_until(
      [&] {
        r = try_poll(out);
        return !r || *r > 0;
      },
      timeout_ns, state_->wait, &state_->topic->control().wakeup);
  return r;
}

namespace {
Status refuse_bound_commit() {
  return make_error(Errc::kInvalidArgument, "the offsets of a transactional producer's consumer move only with "
                                            "its transactions (TransactionalProducer::commit)");
}
}  // namespace

Status Consumer::commit_sync() {
  if (state_->bound) return refuse_bound_commit();
  return state_->commit_all(true);
}
void Consumer::commit_async() noexcept {
  if (!state_->bound) (void)state_->commit_all(false);
}

Status Consumer::commit(uint32_t partition, uint64_t next_offset, bool sync) {
  ConsumerState& s = *state_;
  if (s.bound) return refuse_bound_commit();
  if (!s.offsets) return make_error(Errc::kInvalidArgument, "a consumer without a group cannot commit");
  for (auto& a : s.parts) {
    if (a.cursor.partition().index() != partition) continue;
    if (auto ok = s.offsets->commit(partition, next_offset, s.bus->clock->coarse_now_ns(), sync); !ok) return ok;
    a.committed = next_offset;
    ++s.stats.commits;
    return {};
  }
  return make_error(Errc::kInvalidArgument, "partition " + std::to_string(partition) + " is not assigned");
}

void Consumer::seek(uint32_t partition, uint64_t offset) {
  for (auto& a : state_->parts) {
    if (a.cursor.partition().index() != partition) continue;
    if (auto ok = a.cursor.seek(offset); !ok) state_->reset(a, ok.error().message);
    a.handed_out = a.cursor.next_offset();
  }
}

void Consumer::seek_to_beginning(std::optional<uint32_t> partition) {
  for (auto& a : state_->parts)
    if (!partition || a.cursor.partition().index() == *partition) seek(a.cursor.partition().index(), a.cursor.partition().start_offset());
}

void Consumer::seek_to_end(std::optional<uint32_t> partition) {
  for (auto& a : state_->parts)
    if (!partition || a.cursor.partition().index() == *partition) seek(a.cursor.partition().index(), a.cursor.partition().end_offset());
}

Status Consumer::seek_to_time(int64_t unix_ns, std::optional<uint32_t> partition) {
  for (auto& a : state_->parts) {
    if (partition && a.cursor.partition().index() != *partition) continue;
    if (auto ok = a.cursor.seek_to_time(unix_ns); !ok) return ok;
    a.handed_out = a.cursor.next_offset();
  }
  return {};
}

Status Consumer::pause(std::span<const uint32_t> partitions) { return state_->set_paused(partitions, true); }
Status Consumer::resume(std::span<const uint32_t> partitions) { return state_->set_paused(partitions, false); }

std::vector<uint32_t> Consumer::paused() const {
  std::vector<uint32_t> out;
  for (const auto& a : state_->parts)
    if (a.paused) out.push_back(a.cursor.partition().index());
  std::sort(out.begin(), out.end());
  return out;
}

bool Consumer::is_paused(uint32_t partition) const noexcept {
  const ConsumerState::Assigned* a = state_->find(partition);
  return a != nullptr && a->paused;
}

const GroupOffsets* ConsumerAccess::offsets(const Consumer& consumer) noexcept {
  return consumer.state_->offsets.get();
}

uint64_t Consumer::position(uint32_t partition) const {
  for (auto& a : state_->parts)
    if (a.cursor.partition().index() == partition) return a.handed_out;
  return kNoOffset;
}

const std::vector<uint32_t>& Consumer::assignment() const noexcept { return state_->assignment; }
const ConsumerStats& Consumer::stats() const noexcept { return state_->stats; }

Result<std::vector<PartitionLag>> Consumer::lag() const {
  std::vector<PartitionLag> out;
  const int64_t now = state_->bus->clock->now_ns();
  for (auto& a : state_->parts) {
    const uint64_t c = state_->offsets ? state_->offsets->committed(a.cursor.partition().index()) : a.handed_out;
    out.push_back(admin::partition_lag(a.cursor.partition(), c == format::kNoCommit ? kNoOffset : c, now));
  }
  return out;
}

}  // namespace sluice
