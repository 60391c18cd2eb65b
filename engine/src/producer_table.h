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


class ProducerTable {
 public:
  // Opens the bus's table, creating it if needed.
  static Result<std::unique_ptr<ProducerTable>> open(const std::string& bus_dir);

  // Opens an identity: `name`'s slot (found, or assigned on first use), or a
  // fresh unnamed one when `name` is empty. Bumps the epoch, which fences
  // every earlier instance: their next publish fails with kFenced. A
  // transaction an earlier instance left undecided or half carried out is
  // first handed to `settle` (under the assign lock), which must leave the
  // slot READY.
  using Settle = std::function<Status(format::ProducerSlot& slot, uint64_t pid)>;
  Result<ProducerIdentity> open_identity(std::string_view name, const ipc::ProcessRegistry& registry,
                                         const Settle& settle = {});
  // An unnamed identity's slot is free again once its instance closes.
  void close_identity(const ProducerIdentity& id) noexcept;

  // Whether `id` is still the instance holding its identity: the epoch is
  // unchanged. (The generation need not be checked: a slot gets a new
  // identity only once free, and an instance's slot is not free while the
  // instance lives.) seq_cst: the writer's side of the fencing handshake
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
};

// Opens (creating if needed) a small control file of `kind` whose layout is
// `Params` then zeros up to `bytes`; validates it and its parameters' size.
Result<ipc::MappedFile> open_or_create_control_file(const std::string& path, ipc::FileKind kind, uint32_t data_offset,
                                                    uint64_t bytes, const void* params, uint32_t params_bytes);

}  // namespace sluice
