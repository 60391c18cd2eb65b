// Which processes are attached to a bus, and whether a given one is alive.
//
// Each attached process (each Bus handle, in fact) takes a slot: it holds an
// exclusive flock on `procs/slot-<n>.lock` for its lifetime and bumps the
// slot's generation in `procs/table`. A claim, lease or membership records
// its owner as an OwnerId (slot + low bits of the generation). The owner is
// dead when the slot's generation moved on (the slot was reused) or when the
// slot's lock file can be locked (the kernel released the dead holder's
// lock). No PIDs are compared, so PID reuse and PID namespaces do not matter.
//
// procs/table, after the 64-byte file header (params: u32 slot_count):
//
//   slot n at 64 + 64 * n:
//  +-------------------------------+-------------------------------+
//  |  generation (atomic u32)      |  pid (u32, informational)     |
//  +-------------------------------+-------------------------------+
//  |  attached_unix_ns (u64)                                       |
//  +---------------------------------------------------------------+
//  |  name (char[48], NUL-terminated process name, informational)  |
//  +---------------------------------------------------------------+
#pragma once

#include <sluice/status.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ipc/file_lock.h"
#include "ipc/mapped_file.h"

namespace sluice::ipc {

// 10 bits of slot, 6 bits of generation. 0 is never a valid owner: slot
// generations start at 1 and (gen & 63) == 0 is skipped.
using OwnerId = uint16_t;
inline constexpr uint32_t kMaxProcessSlots = 1024;
inline constexpr OwnerId kNoOwner = 0;

struct alignas(64) ProcessSlot {
  std::atomic<uint32_t> generation;
  uint32_t pid;
  uint64_t attached_unix_ns;
  char name[48];
};
static_assert(sizeof(ProcessSlot) == 64);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

struct ProcessInfo {
  uint32_t slot;
  uint32_t generation;
  uint32_t pid;
  uint64_t attached_unix_ns;
  std::string name;
  bool alive;
};

class ProcessRegistry {
 public:
  // Opens (creating if needed) the registry in `dir` and takes a slot.
  static Result<ProcessRegistry> attach(const std::string& dir);

  OwnerId self() const noexcept { return self_; }
  uint32_t self_slot() const noexcept { return self_ & (kMaxProcessSlots - 1); }
  // Whether the owner is still attached. Its own id is alive without a system
  // call; any other costs open + flock + close.
  bool is_alive(OwnerId owner) const noexcept;
  std::vector<ProcessInfo> list() const;

 private:
  std::string dir_;
  MappedFile table_;
  FileLock lock_;
  OwnerId self_ = kNoOwner;

  ProcessSlot* slots() const noexcept;
  std::string lock_path(uint32_t slot) const;
};

// Liveness of the owners met in one call or one walk, asked once each (any
// other process's costs three system calls). The last 16 owners are kept;
// no allocation.
class LivenessCache {
 public:
  explicit LivenessCache(const ProcessRegistry& registry) : registry_(registry) {}
  bool alive(OwnerId owner) {
    if (owner == registry_.self()) return true;
    for (uint32_t i = 0; i < std::min<uint32_t>(n_, kSize); ++i)
      if (seen_[i].first == owner) return seen_[i].second;
    const bool a = registry_.is_alive(owner);
    seen_[n_++ % kSize] = {owner, a};
    return a;
  }

 private:
  static constexpr uint32_t kSize = 16;
  const ProcessRegistry& registry_;
  std::array<std::pair<OwnerId, bool>, kSize> seen_{};
  uint32_t n_ = 0;
};

}  // namespace sluice::ipc
