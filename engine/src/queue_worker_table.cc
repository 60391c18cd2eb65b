#include "queue_worker_table.h"

#include <unistd.h>

#include <atomic>
#include <thread>

#include "bus_state.h"
#include "ipc/process_registry.h"
#include "queue_state.h"

namespace sluice {

using namespace format;

static_assert(kQueueWorkerSlots == ipc::kMaxProcessSlots, "one worker slot per registry slot");
static_assert(sizeof(ipc::OwnerId) == 2 && kWorkerSlotOwnerMask == 0xFFFF);

QueueWorkerSlot* attach_worker_slot(const QueueState& q, int64_t now_unix_ms) noexcept {
  const uint32_t r = q.bus->registry.self_slot();
  if (r >= q.worker_slots) return nullptr;
  QueueWorkerSlot& s = *q.worker_slot(r);
  const uint64_t me = q.bus->registry.self();
  // acquire: pairs with step 3's release store; seeing `me` we see its reset.
  uint64_t cur = s.owner.load(std::memory_order_acquire);
  for (;;) {
    if (cur == me) break;  // another Worker of ours took it already
    if (cur == (kWorkerSlotClaiming | me)) {
      // Another thread of ours is between steps 1 and 3: a few stores.
      std::this_thread::yield();
      cur = s.owner.load(std::memory_order_acquire);
      continue;
    }
    // Step 1. Any other value is an older owner of our registry slot (gone,
    // since we hold that slot), or a claim it died inside. acq_rel: one
    // thread of ours wins; the later stores stay after it.
    if (!s.owner.compare_exchange_weak(cur, kWorkerSlotClaiming | me, std::memory_order_acq_rel,
                                       std::memory_order_acquire))
      continue;
    // release fence: a reader whose relaxed load sees a store of step 2 and
    // then fences (acquire) sees the claiming owner in its second read, so it
    // never takes step 2's zeros for the old owner's counts.
    std::atomic_thread_fence(std::memory_order_release);
    // Step 2. relaxed: published by step 3.
    for (std::atomic<uint64_t>* c : {&s.workers, &s.breakers_open, &s.received, &s.acked, &s.nacked,
                                     &s.dead_lettered, &s.lease_lost, &s.handler_errors, &s.already_done,
                                     &s.in_doubt, &s.breaker_opened})
      c->store(0, std::memory_order_relaxed);
    s.pid.store(static_cast<uint64_t>(::getpid()), std::memory_order_relaxed);
    s.attached_unix_ms.store(now_unix_ms, std::memory_order_relaxed);
    s.last_active_unix_ms.store(now_unix_ms, std::memory_order_relaxed);
    // Step 3. SYNC POINT WRITE: release, pairs with the readers' acquire
    // loads of `owner` (read_worker_table, and the loads above).
    s.owner.store(me, std::memory_order_release);
    break;
  }
  // relaxed: a gauge; only this process writes the slot.
  s.workers.fetch_add(1, std::memory_order_relaxed);
  return &s;
}

void detach_worker_slot(QueueWorkerSlot* slot, bool held_back) noexcept {
  if (slot == nullptr) return;
  // relaxed: gauges.
  slot->workers.fetch_sub(1, std::memory_order_relaxed);
  if (held_back) slot->breakers_open.fetch_sub(1, std::memory_order_relaxed);
}

std::vector<QueueWorkerStats> read_worker_table(const QueueState& q) {
  std::vector<QueueWorkerStats> out;
  for (uint32_t r = 0; r < q.worker_slots; ++r) {
    const QueueWorkerSlot& s = *q.worker_slot(r);
    // A slot that changes hands while we read it is read again; a few times
    // at most (its new owner resets it once).
    for (int attempt = 0; attempt < 4; ++attempt) {
      // SYNC POINT READ: acquire, pairs with step 3's release store.
      const uint64_t owner = s.owner.load(std::memory_order_acquire);
      if (owner == 0 || (owner & kWorkerSlotClaiming) != 0) break;  // never used, or being reset now
      QueueWorkerStats w;
      w.registry_slot = r;
      // relaxed: statistics, each a value of its own (queue_format.h).
      constexpr auto rl = std::memory_order_relaxed;
      w.pid = static_cast<uint32_t>(s.pid.load(rl));
      w.attached_unix_ms = s.attached_unix_ms.load(rl);
      w.last_active_unix_ms = s.last_active_unix_ms.load(rl);
      w.workers = s.workers.load(rl);
      w.breakers_open = s.breakers_open.load(rl);
      w.received = s.received.load(rl);
      w.acked = s.acked.load(rl);
      w.nacked = s.nacked.load(rl);
      w.dead_lettered = s.dead_lettered.load(rl);
      w.lease_lost = s.lease_lost.load(rl);
      w.handler_errors = s.handler_errors.load(rl);
      w.already_done = s.already_done.load(rl);
      w.in_doubt = s.in_doubt.load(rl);
      w.breaker_opened = s.breaker_opened.load(rl);
      // acquire fence: pairs with the release fence after step 1; if any
      // load above saw a new owner's reset, the owner read next is not
      // `owner` any more.
      std::atomic_thread_fence(std::memory_order_acquire);
      if (s.owner.load(std::memory_order_relaxed) != owner) continue;
      w.alive = q.bus->registry.is_alive(static_cast<ipc::OwnerId>(owner & kWorkerSlotOwnerMask));
      out.push_back(w);
      break;
    }
  }
  return out;
}

}  // namespace sluice
