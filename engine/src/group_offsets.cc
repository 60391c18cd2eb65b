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
    if (*pub) invalidate_back_pressure_limits(topic);  // a new group starts behind everyone
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
// in one store, and nothing else is published with it (a reader checks it
// against the record it is about to handle, not against the committed
// offset). So relaxed stores and loads are enough: a member reads the word
// its predecessor in the group left, and atomicity is all it needs.
std::optional<GroupOffsets::RetryAttempts> GroupOffsets::retry_attempts(uint32_t partition) const noexcept {
  // relaxed: see above.
  const uint64_t w = slot(partition).retry_attempts.load(std::memory_order_relaxed);
  // A count of 0 is never written; reading one means the word was damaged:
  // no count then (the record starts again at attempt 1, as before counts).
  if (w == 0 || retry_attempts_count(w) == 0) return std::nullopt;
  return RetryAttempts{retry_attempts_offset(w), retry_attempts_count(w)};
}

bool GroupOffsets::store_retry_attempts(uint32_t partition, uint64_t offset, uint32_t attempts) const noexcept {
  assert(attempts >= 1 && attempts <= kMaxRetryAttempts);
  if (offset > kMaxRetryAttemptsOffset) {
    clear_retry_attempts(partition);
    return false;
  }
  // relaxed: see above.
  slot(partition).retry_attempts.store(retry_attempts_word(offset, attempts), std::memory_order_relaxed);
  return true;
}

void GroupOffsets::clear_retry_attempts(uint32_t partition) const noexcept {
  // relaxed: see above.
  slot(partition).retry_attempts.store(0, std::memory_order_relaxed);
}

void invalidate_back_pressure_limits(const TopicState& topic) {
  // relaxed: producers re-read the group files after seeing 0; the files,
  // not this word, carry the data.
  for (const auto& p : topic.partitions) p->control().back_pressure_limit.store(0, std::memory_order_relaxed);
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

Result<uint64_t> min_committed_offset(const TopicState& topic, uint32_t partition) {
  auto groups = groups_of_topic(*topic.bus, topic.name);
  if (!groups) return std::unexpected(groups.error());
  uint64_t min = kNoCommit;
  for (const auto& g : *groups) {
    auto offsets = GroupOffsets::open(*topic.bus, g, topic, false, true);
    if (!offsets) continue;
    uint64_t c = (*offsets)->committed(partition);
    if (c == kNoCommit) c = 0;
    min = std::min(min, c);
  }
  return min;
}

}  // namespace sluice
