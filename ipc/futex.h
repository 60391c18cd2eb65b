// Futex on a 32-bit word in shared memory (not FUTEX_PRIVATE: the waiter and
// the waker are usually different processes mapping the same file).
#pragma once

#include <atomic>
#include <cstdint>

namespace sluice::ipc {

static_assert(sizeof(std::atomic<uint32_t>) == 4 && std::atomic<uint32_t>::is_always_lock_free);

// Sleeps while *word == expected, at most timeout_ns (< 0: no limit). Returns
// on a wake, a timeout, a signal or a value change; callers re-check.
void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, int64_t timeout_ns) noexcept;
// Wakes every waiter on the word.
void futex_wake_all(std::atomic<uint32_t>* word) noexcept;

}  // namespace sluice::ipc
