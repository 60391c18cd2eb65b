// Producer identities (docs/exactly-once.md, section 1): the bus-wide table
// that gives each idempotent or transactional producer its pid and epoch,
// and the per-partition entries that remember what each pid appended.
// Layouts: producer_format.h.
#pragma once

#include <sluice/bus.h>
#include <sluice/status.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/file_header.h"
#include "ipc/mapped_file.h"
#include "ipc/process_registry.h"
#include "producer_format.h"

namespace sluice {

struct BusState;

// One opened instance of an identity.
struct ProducerIdentity {
  uint64_t pid = 0;
  uint32_t slot = 0;
  uint32_t generation = 0;
  uint16_t epoch = 0;
  bool named = false;
  uint64_t opens = 0;  // the slot's open count after ours: tells a newer instance from a helper's abort
};


// How long a named identity must have been idle, READY and without a live
// holder before a new identity may take its slot when the table is full
// (docs/exactly-once.md, section 1). A constant, not an option: every
// process of the bus must agree on it.
inline constexpr int64_t kProducerIdleExpirationMs = 7LL * 24 * 3600 * 1000;

class ProducerTable {
 public:
  // Opens the bus's table, creating it if needed with `slots` slots (tests
  // make small ones; an existing file keeps its own count). `clock` is the
  // bus clock: it stamps idle identities.
  static Result<std::unique_ptr<ProducerTable>> open(const std::string& bus_dir,
                                                     const Clock& clock = Clock::system(),
                                                     uint32_t slots = format::kProducerSlots);

  // Opens an identity: `name`'s slot (found, or assigned on first use), or a
  // fresh unnamed one when `name` is empty. Bumps the epoch, which fences
  // every earlier instance: their next publish fails with kFenced. A
  // transaction an earlier instance left undecided or half carried out is
  // first handed to `settle` (under the assign lock), which must leave the
  // slot READY. A new identity finding the table full reclaims the named one
  // idle longest, if one is reclaimable (sweep_idle); else kBusy.
  using Settle = std::function<Status(format::ProducerSlot& slot, uint64_t pid)>;
  Result<ProducerIdentity> open_identity(std::string_view name, const ipc::ProcessRegistry& registry,
                                         const Settle& settle = {});
  // An unnamed identity's slot is free again once its instance closes.
  void close_identity(const ProducerIdentity& id) noexcept;
  // Stamps, under the assign lock, every named identity seen READY without a
  // live holder for the first time, which starts its idle time (for
  // housekeeping: a full table then finds idle names already stamped).
  // Skipped if the lock is busy.
  void stamp_idle(const ipc::ProcessRegistry& registry);

  // Whether `id` is still the instance holding its identity: the epoch is
  // unchanged. (The generation need not be checked: a slot gets a new
  // identity only once free or, for a named one, reclaimed, and neither
  // happens while its latest instance lives; every earlier instance was
  // fenced by a later open, and a reclaimed slot's epoch keeps counting from
  // where it was.) seq_cst: the writer's side of the fencing handshake
  // (docs/exactly-once.md, section 3), loaded after its claim CAS.
  bool holds(const ProducerIdentity& id) const noexcept {
    return format::producer_epoch(slot(id.slot).control.load(std::memory_order_seq_cst)) == id.epoch;
  }
  // Whether `pid` names an identity that still exists (its slot was not
  // given to another one).
  bool exists(uint64_t pid) const noexcept;
  format::ProducerSlot& slot(uint32_t s) const noexcept {
    return *reinterpret_cast<format::ProducerSlot*>(file_.data() + format::kProducerSlotsOffset +
                                                    uint64_t{s} * sizeof(format::ProducerSlot));
  }
  std::vector<ProducerIdentityInfo> list(const ipc::ProcessRegistry& registry) const;
  // The slot of identity `name`, if it exists (no assignment).
  std::optional<uint32_t> find(std::string_view name) const;

 private:
  ipc::MappedFile file_;
  std::string path_;
  uint32_t slots_ = 0;
  const Clock* clock_ = nullptr;

  std::atomic<uint64_t>& assign_lock() const noexcept {
    return *reinterpret_cast<std::atomic<uint64_t>*>(file_.data() + format::kProducerAssignLockOffset);
  }

  // Under the assign lock, from slot `start` round the table: stamps the
  // named identities newly seen idle (READY, holder dead) and returns the
  // reclaimable one stamped earliest (idle kProducerIdleExpirationMs), or -1.
  int64_t sweep_idle(const ipc::ProcessRegistry& registry, uint32_t start);
  // Under the assign lock: gives slot `s` to a new identity (new generation).
  void assign(uint32_t s, std::string_view name, uint64_t name_hash);
};

// Opens (creating if needed) a small control file of `kind` whose layout is
// `Params` then zeros up to `bytes`; validates it and its parameters' size.
Result<ipc::MappedFile> open_or_create_control_file(const std::string& path, ipc::FileKind kind, uint32_t data_offset,
                                                    uint64_t bytes, const void* params, uint32_t params_bytes);

}  // namespace sluice
