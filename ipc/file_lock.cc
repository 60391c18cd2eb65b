#include "ipc/file_lock.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <mutex>

namespace sluice::ipc {
namespace {

// Descriptors holding locks, so that the atfork child handler can close them.
// Fixed and lock-free because the handler runs in a child that may have been
// forked while another thread was registering: a mutex could be held forever.
constexpr size_t kMaxLocks = 4096;
// Entries hold fd + 1, so that the zero-initialised table means "empty".
std::array<std::atomic<int>, kMaxLocks> g_lock_fds{};

void close_locks_in_child() {
  for (auto& slot : g_lock_fds) {
    // relaxed: the child is single-threaded here.
    int fd_plus_1 = slot.exchange(0, std::memory_order_relaxed);
    if (fd_plus_1 > 0) ::close(fd_plus_1 - 1);
  }
}

void track(int fd) {
  static std::once_flag once;
  std::call_once(once, [] { ::pthread_atfork(nullptr, nullptr, close_locks_in_child); });
  for (auto& slot : g_lock_fds) {
    int expected = 0;
    // relaxed: the table is only read by the fork child handler, which runs
    // after fork() has made this thread's stores visible to the child.
    if (slot.compare_exchange_strong(expected, fd + 1, std::memory_order_relaxed)) return;
  }
  // Table full: the lock still works; only a fork child would keep it alive.
}

void untrack(int fd) {
  for (auto& slot : g_lock_fds) {
    int expected = fd + 1;
    if (slot.compare_exchange_strong(expected, 0, std::memory_order_relaxed)) return;
  }
}

int flock_op(FileLock::Mode mode) { return mode == FileLock::Mode::kShared ? LOCK_SH : LOCK_EX; }

int flock_nointr(int fd, int op) {
  int rc;
  do rc = ::flock(fd, op);
  while (rc != 0 && errno == EINTR);
  return rc;
}

}  // namespace

FileLock::FileLock(FileLock&& other) noexcept : fd_(other.fd_), owner_pid_(other.owner_pid_) {
  other.fd_ = -1;
}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = other.fd_;
    owner_pid_ = other.owner_pid_;
    other.fd_ = -1;
  }
  return *this;
}

FileLock::~FileLock() { release(); }

void FileLock::release() noexcept {
  if (fd_ < 0) return;
  // In a fork child the descriptor was closed by the atfork handler and its
  // number may now belong to something else.
  if (owner_pid_ == ::getpid()) {
    untrack(fd_);
    ::close(fd_);
  }
  fd_ = -1;
}

Result<FileLock> FileLock::lock_fd(int fd, const std::string& path, Mode mode) {
  if (flock_nointr(fd, flock_op(mode) | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) return make_error(Errc::kBusy, "lock held: " + path);
    return errno_error(err, "cannot lock " + path);
  }
  FileLock lock;
  lock.fd_ = fd;
  lock.owner_pid_ = ::getpid();
  track(fd);
  return lock;
}

Result<FileLock> FileLock::try_lock(const std::string& path, Mode mode) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error(errno, "cannot open lock file " + path);
  return lock_fd(fd, path, mode);
}

Result<FileLock> FileLock::try_lock_existing(const std::string& path, Mode mode) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, "cannot open " + path);
  return lock_fd(fd, path, mode);
}

std::pair<uint64_t, uint64_t> FileLock::identity() const noexcept {
  struct stat st;
  if (fd_ < 0 || ::fstat(fd_, &st) != 0) return {0, 0};
  return {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

uint64_t FileLock::size() const noexcept {
  struct stat st;
  if (fd_ < 0 || ::fstat(fd_, &st) != 0) return UINT64_MAX;
  return static_cast<uint64_t>(st.st_size);
}

Status FileLock::try_convert(Mode mode) {
  if (fd_ < 0) return make_error(Errc::kClosed, "lock not held");
  if (flock_nointr(fd_, flock_op(mode) | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return make_error(Errc::kBusy, "lock conversion refused");
    return errno_error(errno, "cannot convert lock");
  }
  return {};
}

bool FileLock::is_locked(const std::string& path) noexcept {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool locked = flock_nointr(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // drops the lock we may have taken
  return locked;
}

}  // namespace sluice::ipc
