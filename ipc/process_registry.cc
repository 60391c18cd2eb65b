#include "ipc/process_registry.h"

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>

#include "ipc/file_header.h"
#include "ipc/filesystem.h"

namespace sluice::ipc {
namespace {

struct TableParams {
  uint32_t slot_count;
  uint32_t reserved;
};
constexpr uint32_t kTableDataOffset = 64;
constexpr uint64_t kTableBytes = 69632;  // 64 + 1024 * 64, rounded up to a page
static_assert(kTableDataOffset + kMaxProcessSlots * sizeof(ProcessSlot) <= kTableBytes);

Result<MappedFile> open_or_create_table(const std::string& path) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (path_exists(path)) {
      auto f = MappedFile::open(path, {});
      if (!f) return f;
      auto ok = validate_file_header(f->data(), f->size(), FileKind::kProcessTable,
                                     sizeof(TableParams), path);
      if (!ok) return std::unexpected(ok.error());
      if (file_params<TableParams>(f->data()).slot_count != kMaxProcessSlots)
        return make_error(Errc::kCorruption, "process table " + path + " has a foreign slot count");
      return f;
    }
    auto f = MappedFile::create_temp(path, kTableBytes, {});
    if (!f) return f;
    TableParams params{kMaxProcessSlots, 0};
    write_file_header(f->data(), FileKind::kProcessTable, kTableDataOffset, kTableBytes, &params,
                      sizeof params);
    auto published = f->publish();
    if (!published) return std::unexpected(published.error());
    if (*published) return MappedFile::open(path, {});
    // Lost the race: loop and open the winner's file.
  }
  return make_error(Errc::kIoError, "cannot create process table " + path);
}

uint64_t unix_ns_now() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

OwnerId make_owner(uint32_t slot, uint32_t generation) {
  return static_cast<OwnerId>(slot | ((generation & 63u) << 10));
}

}  // namespace

ProcessSlot* ProcessRegistry::slots() const noexcept {
  return reinterpret_cast<ProcessSlot*>(table_.data() + kTableDataOffset);
}

std::string ProcessRegistry::lock_path(uint32_t slot) const {
  return dir_ + "/slot-" + std::to_string(slot) + ".lock";
}

Result<ProcessRegistry> ProcessRegistry::attach(const std::string& dir) {
  if (auto ok = make_dirs(dir); !ok) return std::unexpected(ok.error());
  auto table = open_or_create_table(dir + "/table");
  if (!table) return std::unexpected(table.error());
  ProcessRegistry reg;
  reg.dir_ = dir;
  reg.table_ = std::move(*table);
  // Start at a random slot so that processes attaching at once rarely collide.
  thread_local std::mt19937 rng{std::random_device{}()};
  const uint32_t start = rng() % kMaxProcessSlots;
  for (uint32_t i = 0; i < kMaxProcessSlots; ++i) {
    const uint32_t slot = (start + i) % kMaxProcessSlots;
    auto lock = FileLock::try_lock(reg.lock_path(slot), FileLock::Mode::kExclusive);
    if (!lock) {
      if (lock.error().code == Errc::kBusy) continue;
      return std::unexpected(lock.error());
    }
    ProcessSlot& s = reg.slots()[slot];
    // Holding the slot's lock makes us its only writer. The new generation
    // tells every claim of the previous holder apart from ours. Release pairs
    // with the acquire load in is_alive().
    uint32_t gen = s.generation.load(std::memory_order_relaxed) + 1;
    if ((gen & 63u) == 0) ++gen;  // keep OwnerId 0 free as "no owner"
    s.pid = static_cast<uint32_t>(::getpid());
    s.attached_unix_ns = unix_ns_now();
    std::memset(s.name, 0, sizeof s.name);
    std::string comm = read_file("/proc/self/comm").value_or("?");
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    std::strncpy(s.name, comm.c_str(), sizeof s.name - 1);
    s.generation.store(gen, std::memory_order_release);
    reg.lock_ = std::move(*lock);
    reg.self_ = make_owner(slot, gen);
    return reg;
  }
  return make_error(Errc::kBusy, "all " + std::to_string(kMaxProcessSlots) +
                                     " process slots of " + dir + " are in use");
}

bool ProcessRegistry::is_alive(OwnerId owner) const noexcept {
  if (owner == kNoOwner) return false;
  if (owner == self_) return true;
  const uint32_t slot = owner & (kMaxProcessSlots - 1);
  // acquire: pairs with the release store in attach(); a newer generation
  // means the slot was retaken, so the recorded owner has gone.
  const uint32_t gen = slots()[slot].generation.load(std::memory_order_acquire);
  if (make_owner(slot, gen) != owner) return false;
  return FileLock::is_locked(lock_path(slot));
}

std::vector<ProcessInfo> ProcessRegistry::list() const {
  std::vector<ProcessInfo> out;
  for (uint32_t slot = 0; slot < kMaxProcessSlots; ++slot) {
    const ProcessSlot& s = slots()[slot];
    uint32_t gen = s.generation.load(std::memory_order_acquire);
    if (gen == 0) continue;
    bool alive = make_owner(slot, gen) == self_ || FileLock::is_locked(lock_path(slot));
    if (!alive) continue;
    out.push_back({slot, gen, s.pid, s.attached_unix_ns,
                   std::string(s.name, strnlen(s.name, sizeof s.name)), alive});
  }
  return out;
}

}  // namespace sluice::ipc
