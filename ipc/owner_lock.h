// A lock word in shared memory whose holder may die: it holds OwnerId + 1 of
// the holding process (0 when free), and a waiter takes it over once the
// registry shows the holder dead. Only for short critical sections made of
// single atomic stores, so that a holder killed inside leaves every field it
// wrote consistent on its own; waits are bounded by a deadline (a holder
// stopped by SIGSTOP keeps the lock until resumed).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "ipc/process_registry.h"

namespace sluice::ipc {

class OwnerLock {
 public:
  OwnerLock(std::atomic<uint64_t>& word, const ProcessRegistry& registry,
            std::chrono::steady_clock::time_point deadline)
      : word_(word) {
    const uint64_t me = uint64_t{registry.self()} + 1;
    for (uint32_t spins = 0;; ++spins) {
      uint64_t cur = word_.load(std::memory_order_acquire);
      // acquire (success): the previous holder's writes happen before ours.
      if (cur == 0 && word_.compare_exchange_weak(cur, me, std::memory_order_acquire)) break;
      // A holder that died inside: take the lock over. Liveness costs system
      // calls, so it is asked only every 64 spins (the first one included).
      if (cur != 0 && cur != me && spins % 64 == 0 && !registry.is_alive(static_cast<OwnerId>(cur - 1)) &&
          word_.compare_exchange_strong(cur, me, std::memory_order_acquire))
        break;
      if (spins > 64) {
        if (std::chrono::steady_clock::now() >= deadline) return;
        std::this_thread::yield();
      }
    }
    held_ = true;
  }
  // release: our writes happen before the next holder's reads.
  ~OwnerLock() {
    if (held_) word_.store(0, std::memory_order_release);
  }
  OwnerLock(const OwnerLock&) = delete;
  OwnerLock& operator=(const OwnerLock&) = delete;
  bool held() const noexcept { return held_; }

 private:
  std::atomic<uint64_t>& word_;
  bool held_ = false;
};

}  // namespace sluice::ipc
