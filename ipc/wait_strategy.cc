// The membarrier(2) side of the wake-up handshake (wait_strategy.h,
// "Release publishers"); the wait loop itself is inlined from the header.
#include "ipc/wait_strategy.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace sluice::ipc {

namespace {
int membarrier(int cmd) noexcept { return static_cast<int>(::syscall(__NR_membarrier, cmd, 0, 0)); }

// Whether the kernel offers the expedited global commands (4.16 on).
bool global_expedited_supported() noexcept {
  static const bool supported = [] {
    const int cmds = membarrier(MEMBARRIER_CMD_QUERY);
    return cmds >= 0 && (cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0 &&
           (cmds & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0;
  }();
  return supported;
}
}  // namespace

bool register_release_publisher() noexcept {
  // Per process: a forked child has a new memory map, which is not
  // registered, so the registration remembers the pid that made it.
  static std::atomic<pid_t> registered{0};
  const pid_t self = ::getpid();
  if (registered.load(std::memory_order_acquire) == self) return true;
  if (!global_expedited_supported() || membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0) return false;
  // release/acquire: nothing rides on it but the pid itself.
  registered.store(self, std::memory_order_release);
  return true;
}

bool global_barrier() noexcept {
  return global_expedited_supported() && membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0;
}

bool park_barrier() noexcept {
  if (global_barrier()) return true;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return false;
}

}  // namespace sluice::ipc
