// Advisory locks on files with flock(2): held per open file description,
// released by the kernel when the holder dies, whatever its PID became and in
// whichever PID namespace it ran. sluice's liveness rests on this: "the
// owner of X is dead" means "X's lock file can be locked".
//
// fork(): a child inherits the parent's open file descriptions and so would
// keep the parent's locks alive after the parent died. A pthread_atfork child
// handler closes, in the child, every descriptor a FileLock holds; the
// child's copies of FileLock objects become inert. A child that needs the bus
// opens it anew.
#pragma once

#include <sluice/status.h>

#include <string>
#include <sys/types.h>
#include <utility>

namespace sluice::ipc {

class FileLock {
 public:
  enum class Mode { kShared, kExclusive };

  FileLock() = default;
  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  ~FileLock();

  // Opens (creating if needed) `path` and locks it without blocking.
  // Errors: kBusy when a conflicting lock is held.
  static Result<FileLock> try_lock(const std::string& path, Mode mode);
  // As try_lock, for a file that must exist already (kNotFound if not).
  static Result<FileLock> try_lock_existing(const std::string& path, Mode mode);
  // Changes the mode of a held lock without blocking. kBusy on conflict; the
  // lock is then still held in its old mode only if converting to kShared.
  Status try_convert(Mode mode);
  // Whether any process holds a lock on `path` (shared or exclusive).
  // A missing file counts as unlocked. Costs open + flock + close.
  static bool is_locked(const std::string& path) noexcept;

  bool held() const noexcept { return fd_ >= 0; }
  // The locked file itself, whatever its name is now: "/proc/self/fd/N".
  std::string fd_path() const { return "/proc/self/fd/" + std::to_string(fd_); }
  // (device, inode) of the locked file; {0, 0} if not held.
  std::pair<uint64_t, uint64_t> identity() const noexcept;
  // Size in bytes of the locked file (fstat: no path lookup); UINT64_MAX if
  // not held or fstat fails.
  uint64_t size() const noexcept;
  void release() noexcept;

 private:
  static Result<FileLock> lock_fd(int fd, const std::string& path, Mode mode);
  int fd_ = -1;
  pid_t owner_pid_ = 0;  // the process that took the lock; forked copies do nothing
};

}  // namespace sluice::ipc
