// A partition's producer file: where each idempotent pid's last committed
// frames are remembered (producer_format.h).
#include <sluice/bus.h>

#include "partition.h"
#include "producer_table.h"

namespace sluice {

using namespace format;

Result<ProducerEntry*> Partition::producer_entry(uint64_t pid, const std::function<bool(uint64_t)>& exists,
                                                 bool* made) {
  *made = false;
  std::byte* base;
  uint32_t entries;
  {
    std::lock_guard lock(mu_);
    if (!producers_.data()) {
      const std::string path = dir_ + "/producers";
      const PartitionProducersParams params{kProducerEntriesDefault, 0};
      const uint64_t bytes = kProducerEntriesOffset + uint64_t{kProducerEntriesDefault} * sizeof(ProducerEntry);
      auto f = open_or_create_control_file(path, ipc::FileKind::kPartitionProducers,
                                           static_cast<uint32_t>(kProducerEntriesOffset), bytes, &params, sizeof params);
      if (!f) return std::unexpected(f.error());
      const auto& p = ipc::file_params<PartitionProducersParams>(f->data());
      if (p.entries == 0 || (p.entries & (p.entries - 1)) != 0 || p.entries > (1u << 16) ||
          f->size() != kProducerEntriesOffset + uint64_t{p.entries} * sizeof(ProducerEntry))
        return make_error(Errc::kCorruption, "partition producer table " + path + " has a damaged entry count");
      producers_ = std::move(*f);
    }
    base = producers_.data();
    entries = ipc::file_params<PartitionProducersParams>(base).entries;
  }
  auto* e = reinterpret_cast<ProducerEntry*>(base + kProducerEntriesOffset);
  const uint32_t mask = entries - 1;
  const uint32_t start = static_cast<uint32_t>((pid ^ (pid >> 32)) * 0x9E3779B97F4A7C15ull >> 40) & mask;
  // Two passes: our own entry or an empty one first, then a stale one (an
  // identity that no longer exists) to take over.
  for (int pass = 0; pass < 2; ++pass) {
    for (uint32_t i = 0; i <= mask; ++i) {
      ProducerEntry& x = e[(start + i) & mask];
      // acquire: an entry claimed by another instance of the pid (a zombie)
      // is read after its origin was stored.
      uint64_t cur = x.pid.load(std::memory_order_acquire);
      if (cur == pid) return &x;
      const bool take = pass == 0 ? cur == 0 : !exists(cur);
      if (!take) continue;
      // The origin first (relaxed, published by the CAS below, release): a
      // pid has no frame in this partition below the end at this moment.
      const uint64_t origin = end_offset();
      if (!x.pid.compare_exchange_strong(cur, pid, std::memory_order_acq_rel, std::memory_order_acquire)) {
        if (cur == pid) return &x;  // another instance of the pid won
        continue;
      }
      // Between the CAS and these stores a takeover of this pid would see a
      // stale origin, but no instance of a pid that has no entry has appended
      // here, and only one instance appends at a time (fencing).
      x.head.store(0, std::memory_order_relaxed);
      x.origin.store(origin, std::memory_order_release);
      *made = true;
      return &x;
    }
  }
  return make_error(Errc::kBusy, "partition " + std::to_string(index_) + " of topic " + topic_->name + " has " +
                                     std::to_string(entries) + " idempotent producers already");
}

}  // namespace sluice
