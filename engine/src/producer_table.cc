#include "producer_table.h"

#include <sluice/bus.h>

#include <chrono>
#include <cstring>

#include "ipc/file_header.h"
#include "ipc/filesystem.h"
#include "ipc/owner_lock.h"
#include "record_codec.h"

namespace sluice {

using namespace format;

namespace {
constexpr auto kAssignLockWait = std::chrono::seconds(5);

uint64_t name_hash_of(std::string_view name) { return key_hash(name) | 1; }

bool same_name(const ProducerSlot& s, std::string_view name) {
  return std::string_view(s.name, strnlen(s.name, kProducerNameBytes)) == name;
}

}  // namespace

Result<ipc::MappedFile> open_or_create_control_file(const std::string& path, ipc::FileKind kind, uint32_t data_offset,
                                                    uint64_t bytes, const void* params, uint32_t params_bytes) {
  if (!ipc::path_exists(path)) {
    auto f = ipc::MappedFile::create_temp(path, bytes, {});
    if (!f) return std::unexpected(f.error());
    ipc::write_file_header(f->data(), kind, data_offset, bytes, params, params_bytes);
    if (auto pub = f->publish(); !pub) return std::unexpected(pub.error());  // lost a race: the winner's is as good
  }
  auto f = ipc::MappedFile::open(path, {});
  if (!f) return std::unexpected(f.error());
  if (auto ok = ipc::validate_file_header(f->data(), f->size(), kind, params_bytes, path); !ok)
    return std::unexpected(ok.error());
  return std::move(*f);
}

Result<std::unique_ptr<ProducerTable>> ProducerTable::open(const std::string& bus_dir, const Clock& clock,
                                                           uint32_t slots) {
  const std::string dir = bus_dir + "/producers";
  if (auto ok = ipc::make_dirs(dir); !ok) return std::unexpected(ok.error());
  const std::string path = dir + "/table";
  const ProducerTableParams params{slots, 0};
  const uint64_t bytes = kProducerSlotsOffset + uint64_t{slots} * sizeof(ProducerSlot);
  auto f = open_or_create_control_file(path, ipc::FileKind::kProducerTable, static_cast<uint32_t>(kProducerSlotsOffset),
                                       bytes, &params, sizeof params);
  if (!f) return std::unexpected(f.error());
  const auto& p = ipc::file_params<ProducerTableParams>(f->data());
  if (p.slot_count == 0 || p.slot_count > (1u << 20) ||
      f->size() != kProducerSlotsOffset + uint64_t{p.slot_count} * sizeof(ProducerSlot))
    return make_error(Errc::kCorruption, "producer table " + path + " has a damaged slot count");
  auto t = std::make_unique<ProducerTable>();
  t->slots_ = p.slot_count;
  t->file_ = std::move(*f);
  t->path_ = path;
  t->clock_ = &clock;
  return t;
}

Result<ProducerIdentity> ProducerTable::open_identity(std::string_view name, const ipc::ProcessRegistry& registry,
                                                     const Settle& settle) {
  const bool named = !name.empty();
  if (named) {
    if (auto ok = validate_name(name, "producer"); !ok) return std::unexpected(ok.error());
  }
  ipc::OwnerLock lock(assign_lock(), registry, std::chrono::steady_clock::now() + kAssignLockWait);
  if (!lock.held()) return make_error(Errc::kBusy, "producer table " + path_ + ": the assign lock stayed held for 5 s");

  // Under the lock, every identity field below is written by us alone; the
  // fields are read without it only through the control word and the
  // generation (atomics), so plain and relaxed accesses suffice here.
  const uint64_t h = named ? name_hash_of(name) : 0;
  const uint32_t start = named ? static_cast<uint32_t>(h % slots_) : registry.self_slot() % slots_;
  int64_t found = -1, reusable = -1;
  for (uint32_t i = 0; i < slots_; ++i) {
    const uint32_t s = (start + i) % slots_;
    ProducerSlot& slot = this->slot(s);
    const uint32_t gen = slot.generation.load(std::memory_order_relaxed);
    const bool never_used = gen == 0;
    if (named && !never_used && slot.name_hash == h && same_name(slot, name)) {
      found = s;
      break;
    }
    // An unnamed identity's slot is reusable once freed or once its
    // process is gone. Named identities are kept.
    const uint64_t c = slot.control.load(std::memory_order_acquire);
    const bool unnamed_gone = !never_used && slot.kind == kProducerUnnamed &&
                              (producer_state(c) == kProducerFree || !registry.is_alive(producer_owner(c)));
    if (reusable < 0 && (never_used || unnamed_gone)) reusable = s;
    if (never_used || (!named && reusable >= 0)) break;  // the end of a name's probe chain
  }
  // Nothing found and nothing reusable: the loop saw every slot (it stops
  // early only at a never-used one, which is reusable), so the table is full
  // and this name is not in it.
  if (found < 0 && reusable < 0) reusable = sweep_idle(registry, start);
  if (found < 0) {
    if (reusable < 0)
      return make_error(Errc::kBusy, "producer table " + path_ + " is full (" + std::to_string(slots_) +
                                         " identities, none idle long enough to reclaim)");
    assign(static_cast<uint32_t>(reusable), name, h);
    found = reusable;
  }
  ProducerSlot& slot = this->slot(static_cast<uint32_t>(found));
  ProducerIdentity id;
  id.slot = static_cast<uint32_t>(found);
  id.generation = slot.generation.load(std::memory_order_relaxed);
  id.pid = make_pid(id.generation, id.slot);
  id.named = named;
  const ProducerSlotState st = producer_state(slot.control.load(std::memory_order_acquire));
  if (st != kProducerFree && st != kProducerReady) {
    if (!settle)
      return make_error(Errc::kBusy, "producer " + std::string(name) + " has a transaction to settle first");
    if (auto ok = settle(slot, id.pid); !ok) return std::unexpected(ok.error());
  }
  // Held again: its idle time, if it had started, is over (relaxed: read and
  // written under the assign lock only).
  slot.idle_since_ms.store(0, std::memory_order_relaxed);
  // The epoch bump: fences every earlier instance. seq_cst: the opener's side
  // of the fencing handshake (docs/exactly-once.md, section 3): it precedes
  // our takeover walks, which must find any claim a zombie made before it
  // read this word, in the single order of seq_cst operations.
  uint64_t cur = slot.control.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    id.epoch = static_cast<uint16_t>(producer_epoch(cur) + 1);
    next = make_producer_control(kProducerReady, id.epoch, registry.self(), producer_txn(cur));
  } while (!slot.control.compare_exchange_weak(cur, next, std::memory_order_seq_cst, std::memory_order_relaxed));
  // relaxed: read back only by this identity's instances (and by `sluice`).
  id.opens = slot.opens.fetch_add(1, std::memory_order_relaxed) + 1;
  return id;
}

void ProducerTable::assign(uint32_t s, std::string_view name, uint64_t name_hash) {
  ProducerSlot& slot = this->slot(s);
  // The old pid dies first: a process killed in the middle leaves a new
  // generation with some name, never the old generation with a new name (the
  // old pid would then name two identities, and the new one would take the
  // old one's sequences for its own). A torn name matches no lookup; the
  // slot, READY without a holder, is reclaimed again in its time.
  // release: pairs with the acquire loads of find(), list() and exists(),
  // which read without the lock (they may see the name mid-change; only
  // informational reads and lookups that then check the state do).
  const uint32_t gen = slot.generation.load(std::memory_order_relaxed) + 1;
  slot.generation.store(gen == 0 ? 1 : gen, std::memory_order_release);  // 0 is "never used"
  slot.kind = name.empty() ? kProducerUnnamed : kProducerNamed;
  slot.name_hash = name_hash;
  slot.idle_since_ms.store(0, std::memory_order_relaxed);
  std::memset(slot.name, 0, kProducerNameBytes);
  std::memcpy(slot.name, name.data(), name.size());
  for (auto* c : {&slot.opens, &slot.fenced_sends, &slot.duplicates, &slot.takeovers, &slot.records_walked,
                  &slot.txn_committed, &slot.txn_aborted, &slot.txn_aborted_by_helper})
    c->store(0, std::memory_order_relaxed);
}

int64_t ProducerTable::sweep_idle(const ipc::ProcessRegistry& registry, uint32_t start) {
  // A named identity's last use cannot be stamped without a store per send
  // (a producer may send for weeks after its open), but it is bounded by its
  // holder's death: it was last used before the first time it is seen READY
  // with its holder dead. That sighting starts its idle time. Its state and
  // owner cannot change under us: a READY slot moves only by an open (under
  // this lock) or by its holder's begin (dead), and a dead owner never comes
  // back (the registry's generations move on).
  const int64_t now = clock_->now_ns() / 1'000'000;
  ipc::LivenessCache liveness(registry);  // the holders of a full table's slots are few processes
  int64_t best = -1, best_since = 0;
  for (uint32_t i = 0; i < slots_; ++i) {
    const uint32_t s = (start + i) % slots_;
    ProducerSlot& slot = this->slot(s);
    if (slot.generation.load(std::memory_order_relaxed) == 0 || slot.kind != kProducerNamed) continue;
    const uint64_t c = slot.control.load(std::memory_order_acquire);
    if (producer_state(c) != kProducerReady) continue;
    // relaxed (both): written under this lock only.
    const int64_t since = slot.idle_since_ms.load(std::memory_order_relaxed);
    // 0: not seen idle yet (or a file older than the field). A stamp in the
    // future (the clock went back, or damage) is taken as none: the idle
    // time restarts, which only delays a reclaim.
    const bool stamped = since > 0 && since <= now;
    if (stamped && now - since < kProducerIdleExpirationMs) continue;  // not yet: no need to ask liveness
    if (liveness.alive(producer_owner(c))) continue;
    if (!stamped) {
      slot.idle_since_ms.store(now, std::memory_order_relaxed);
    } else if (best < 0 || since < best_since) {
      best = s;
      best_since = since;
    }
  }
  return best;
}

void ProducerTable::stamp_idle(const ipc::ProcessRegistry& registry) {
  // One try (spins, no wait): housekeeping comes back later.
  ipc::OwnerLock lock(assign_lock(), registry, std::chrono::steady_clock::now());
  if (lock.held()) (void)sweep_idle(registry, 0);
}

void ProducerTable::close_identity(const ProducerIdentity& id) noexcept {
  if (id.named) return;
  ProducerSlot& s = slot(id.slot);
  uint64_t cur = s.control.load(std::memory_order_relaxed);
  // release: our uses of the slot happen before its next assignment. Only if
  // still ours (same epoch).
  while (producer_epoch(cur) == id.epoch && producer_state(cur) != kProducerFree &&
         !s.control.compare_exchange_weak(cur, make_producer_control(kProducerFree, id.epoch, 0, producer_txn(cur)),
                                          std::memory_order_release, std::memory_order_relaxed)) {
  }
}

std::optional<uint32_t> ProducerTable::find(std::string_view name) const {
  const uint64_t h = name_hash_of(name);
  for (uint32_t i = 0; i < slots_; ++i) {
    const uint32_t s = static_cast<uint32_t>((h + i) % slots_);
    const ProducerSlot& slot = this->slot(s);
    // acquire: pairs with assign(). A slot being reassigned may show its
    // new name late; callers check the state before acting on the slot.
    if (slot.generation.load(std::memory_order_acquire) == 0) return std::nullopt;  // the chain's end
    if (slot.name_hash == h && same_name(slot, name)) return s;
  }
  return std::nullopt;
}

bool ProducerTable::exists(uint64_t pid) const noexcept {
  const uint32_t s = pid_slot(pid);
  return s < slots_ && slot(s).generation.load(std::memory_order_acquire) == pid_generation(pid);
}

std::vector<ProducerIdentityInfo> ProducerTable::list(const ipc::ProcessRegistry& registry) const {
  static constexpr const char* kStates[8] = {"free", "?", "ready", "ongoing", "committing", "aborting", "?", "?"};
  std::vector<ProducerIdentityInfo> out;
  for (uint32_t i = 0; i < slots_; ++i) {
    const ProducerSlot& s = slot(i);
    const uint32_t gen = s.generation.load(std::memory_order_acquire);
    if (gen == 0) continue;
    // acquire: the deadline and counts were published with the control word.
    const uint64_t c = s.control.load(std::memory_order_acquire);
    if (s.kind == kProducerUnnamed && producer_state(c) == kProducerFree) continue;
    ProducerIdentityInfo info;
    info.pid = make_pid(gen, i);
    info.name = std::string(s.name, strnlen(s.name, kProducerNameBytes));
    info.epoch = producer_epoch(c);
    info.state = kStates[producer_state(c) & 7];
    info.alive = producer_state(c) != kProducerFree && registry.is_alive(producer_owner(c));
    if (producer_state(c) == kProducerOngoing) {
      // relaxed (all below): informational.
      info.deadline_unix_ms = s.deadline_ms.load(std::memory_order_relaxed);
      info.partitions = s.txn_parts.load(std::memory_order_relaxed);
    }
    info.opens = s.opens.load(std::memory_order_relaxed);
    info.fenced_sends = s.fenced_sends.load(std::memory_order_relaxed);
    info.duplicates = s.duplicates.load(std::memory_order_relaxed);
    info.takeovers = s.takeovers.load(std::memory_order_relaxed);
    info.committed = s.txn_committed.load(std::memory_order_relaxed);
    info.aborted = s.txn_aborted.load(std::memory_order_relaxed);
    info.aborted_by_others = s.txn_aborted_by_helper.load(std::memory_order_relaxed);
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace sluice
