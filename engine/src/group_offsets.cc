#include "group_offsets.h"

#include <cassert>

#include "ipc/file_header.h"
#include "ipc/filesystem.h"
#include "partition.h"
#include "topic_ops.h"

namespace sluice {

using namespace format;

Result<std::unique_ptr<GroupOffsets>> GroupOffsets::open(const BusState& bus, std::string_view group,
                                                         const TopicState& topic, bool create, bool internal) {
  if (!(internal && group == kQueueGroup))
    if (auto ok = validate_name(group, "group"); !ok) return std::unexpected(ok.error());
  const std::string dir = bus.group_dir(group);
  const std::string path = dir + "/" + topic.name + ".offsets";
  const uint32_t partitions = topic.options.partitions;
  if (!ipc::path_exists(path)) {
    if (!create) return make_error(Errc::kNotFound, "group " + std::string(group) + " has no offsets for topic " + topic.name);
    if (auto ok = ipc::make_dirs(dir); !ok) return std::unexpected(ok.error());
    const uint64_t bytes = group_file_bytes(partitions);
    auto f = ipc::MappedFile::create_temp(path, bytes, {});
    if (!f) return std::unexpected(f.error());
    GroupParams params{partitions, 0};
    ipc::write_file_header(f->data(), ipc::FileKind::kGroupOffsets,
                           static_cast<uint32_t>(kGroupSlotsOffset), bytes, &params, sizeof params);
    auto* slots = reinterpret_cast<GroupSlot*>(f->data() + kGroupSlotsOffset);
    for (uint32_t p = 0; p < partitions; ++p)
      slots[p].committed_offset.store(kNoCommit, std::memory_order_relaxed);
    auto pub = f->publish();
    if (!pub) return std::unexpected(pub.error());
    if (*pub) {
      // release: a process that sees the new generation lists the groups
      // again and finds this file.
      topic.control().groups_generation.fetch_add(1, std::memory_order_release);
      invalidate_back_pressure_limits(topic);  // a new group starts behind everyone
    }
  }
  auto f = ipc::MappedFile::open(path, {});
  if (!f) return std::unexpected(f.error());
  if (auto ok = ipc::validate_file_header(f->data(), f->size(), ipc::FileKind::kGroupOffsets,
                                          sizeof(GroupParams), path);
      !ok)
    return std::unexpected(ok.error());
  const auto& params = ipc::file_params<GroupParams>(f->data());
  if (params.partitions != partitions || f->size() < group_file_bytes(partitions))
    return make_error(Errc::kCorruption, "group offsets " + path + " were made for " +
                                             std::to_string(params.partitions) + " partitions, topic has " +
                                             std::to_string(partitions));
  auto g = std::make_unique<GroupOffsets>();
  g->file_ = std::move(*f);
  g->partitions_ = partitions;
  return g;
}

Status GroupOffsets::commit(uint32_t partition, uint64_t next_offset, int64_t now_ns, bool sync) const {
  GroupSlot& s = slot(partition);
  // relaxed: informational fields; the offset below is the commit.
  s.commit_unix_ns.store(now_ns, std::memory_order_relaxed);
  s.commit_count.fetch_add(1, std::memory_order_relaxed);
  // release: pairs with the acquire load in committed().
  s.committed_offset.store(next_offset, std::memory_order_release);
  if (!sync) return {};
  const uint64_t off = kGroupSlotsOffset + uint64_t{partition} * sizeof(GroupSlot);
  return file_.sync(off, sizeof(GroupSlot), true);
}

bool GroupOffsets::commit_if(uint32_t partition, uint64_t expected, uint64_t next_offset, int64_t now_ns) const {
  GroupSlot& s = slot(partition);
  // acq_rel: release as commit()'s store; acquire orders us after the commit
  // we compare against.
  if (!s.committed_offset.compare_exchange_strong(expected, next_offset, std::memory_order_acq_rel,
                                                  std::memory_order_relaxed))
    return expected == next_offset;  // already applied (by the holder or another helper)
  // relaxed: informational fields.
  s.commit_unix_ns.store(now_ns, std::memory_order_relaxed);
  s.commit_count.fetch_add(1, std::memory_order_relaxed);
  return true;
}

// The retry_attempts word is a message of its own: offset and count arrive
// in one store (a reader checks them against the record it is about to
// handle, not against the committed offset). The retry_at_ns word is that
// message's due time, and travels under it:
//   SYNC POINT WRITE: a writer that changes the count word zeroes the
//   deadline first and stores the count with release; it sets the
//   deadline (release) only after the count it belongs to.
//   SYNC POINT READ: a reader loads the count (acquire), the deadline
//   (acquire), and the count again.
// A reader that acquires count w sees the deadline zeroed before w was
// stored, or a later store. A later store is w's own deadline, or comes
// after a newer count w2 (a writer that moved on): then the deadline's
// acquire orders the second load after w2, which differs from w, and the
// deadline is dropped. So a deadline is never paired with the wrong count
// (short of the count going w -> w2 -> w between two loads). A crash stops
// the writer between two of its stores, leaving the old count with no
// deadline, or the new count with none or its own.
std::optional<GroupOffsets::RetryAttempts> GroupOffsets::retry_attempts(uint32_t partition) const noexcept {
  GroupSlot& s = slot(partition);
  // acquire (both): see SYNC POINT READ above.
  const uint64_t w = s.retry_attempts.load(std::memory_order_acquire);
  // A count of 0 is never written; reading one means the word was damaged:
  // no count then (the record starts again at attempt 1, as before counts).
  if (w == 0 || retry_attempts_count(w) == 0) return std::nullopt;
  int64_t retry_at_ns = s.retry_at_ns.load(std::memory_order_acquire);
  // relaxed: ordered after the deadline's acquire load above.
  if (s.retry_attempts.load(std::memory_order_relaxed) != w) retry_at_ns = 0;
  return RetryAttempts{retry_attempts_offset(w), retry_attempts_count(w), retry_at_ns};
}

bool GroupOffsets::store_retry_attempts(uint32_t partition, uint64_t offset, uint32_t attempts,
                                        int64_t retry_at_ns) const noexcept {
  assert(attempts >= 1 && attempts <= kMaxRetryAttempts);
  if (offset > kMaxRetryAttemptsOffset) {
    clear_retry_attempts(partition);
    return false;
  }
  GroupSlot& s = slot(partition);
  const uint64_t w = retry_attempts_word(offset, attempts);
  // relaxed: the caller is the word's only writer but for an admin seek's
  // clear. Reading a cleared word only makes it store the count again; a
  // clear just after this load leaves the deadline below beside a zero
  // count, which no reader takes.
  if (s.retry_attempts.load(std::memory_order_relaxed) != w) {
    // relaxed: published by the release store of the count below.
    s.retry_at_ns.store(0, std::memory_order_relaxed);
    // release: SYNC POINT WRITE, above.
    s.retry_attempts.store(w, std::memory_order_release);
  }
  // release: SYNC POINT WRITE, above (pairs with the deadline's acquire load).
  s.retry_at_ns.store(retry_at_ns, std::memory_order_release);
  return true;
}

void GroupOffsets::clear_retry_attempts(uint32_t partition) const noexcept {
  GroupSlot& s = slot(partition);
  // relaxed, then release: SYNC POINT WRITE, above.
  s.retry_at_ns.store(0, std::memory_order_relaxed);
  s.retry_attempts.store(0, std::memory_order_release);
}

void invalidate_back_pressure_limits(const TopicState& topic) {
  // release: a producer that sees 0 (and then fences, check_back_pressure)
  // sees what came before, the new group's groups_generation among it; the
  // files, not this word, carry the offsets.
  for (const auto& p : topic.partitions) p->control().back_pressure_limit.store(0, std::memory_order_release);
}

Result<std::vector<std::string>> groups_of_topic(const BusState& bus, std::string_view topic) {
  std::vector<std::string> out;
  const std::string root = bus.dir + "/groups";
  if (!ipc::path_exists(root)) return out;
  auto groups = ipc::list_dir(root);
  if (!groups) return std::unexpected(groups.error());
  for (const auto& g : *groups)
    if (ipc::path_exists(root + "/" + g + "/" + std::string(topic) + ".offsets")) out.push_back(g);
  return out;
}

Result<uint64_t> min_committed_offset(TopicState& topic, uint32_t partition) {
  // Every roll of a back-pressured or retained topic asks this. Listing the
  // groups and mapping each one's file every time cost a dozen system calls
  // and a TLB shootdown (the unmap) per roll: the files stay open here, and
  // are listed again only when a group was added since (or after a second).
  GroupOffsetsCache& cache = topic.group_offsets;
  std::lock_guard lock(cache.mu);
  // acquire: pairs with the increment after a new file was published.
  const uint64_t generation = topic.control().groups_generation.load(std::memory_order_acquire);
  const int64_t now = topic.bus->clock->coarse_now_ns();
  if (!cache.listed || generation != cache.generation || now - cache.listed_ns >= 1'000'000'000 ||
      now < cache.listed_ns) {  // a second has passed, or the clock stepped back
    auto groups = groups_of_topic(*topic.bus, topic.name);
    if (!groups) return std::unexpected(groups.error());
    cache.groups.clear();
    cache.listed = false;
    for (const auto& g : *groups) {
      auto offsets = GroupOffsets::open(*topic.bus, g, topic, false, true);
      if (offsets) {
        cache.groups.push_back(std::move(*offsets));
      } else if (offsets.error().code != Errc::kNotFound) {  // removed since the listing: gone
        return std::unexpected(offsets.error());  // not kept: a group left out would not hold anyone
      }
    }
    cache.generation = generation;  // read before the listing: a later group moves it again
    cache.listed_ns = now;
    cache.listed = true;
  }
  uint64_t min = kNoCommit;
  for (const auto& g : cache.groups) {
    uint64_t c = g->committed(partition);
    if (c == kNoCommit) c = 0;
    min = std::min(min, c);
  }
  return min;
}

}  // namespace sluice
