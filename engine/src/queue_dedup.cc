// De-duplication ids of a queue: the bucketed table of queue_format.h.
#include <chrono>
#include <thread>

#include "ipc/owner_lock.h"
#include "queue_state.h"
#include "record_codec.h"

namespace sluice {

using namespace format;

namespace {

constexpr auto kWaitForPending = std::chrono::seconds(5);

}  // namespace

Result<std::optional<DedupHit>> dedup_claim(QueueState& q, std::string_view id, int64_t now_ns,
                                           DedupEntry** claimed) {
  const uint64_t hash = key_hash(id);
  const uint64_t h = hash | 1;  // the entry's key: never 0 (an unused entry)
  const int64_t now_ms = now_ns / 1'000'000;
  const int64_t window_ms = q.dedup_params.window_ns / 1'000'000;
  const ipc::ProcessRegistry& registry = q.bus->registry;
  const uint16_t me = registry.self();
  DedupBucket& b = q.dedup_bucket(hash);
  const auto deadline = std::chrono::steady_clock::now() + kWaitForPending;
  for (;;) {
    {
      ipc::OwnerLock lock(b.lock, registry, deadline);  // never held across an append
      if (!lock.held())
        return make_error(Errc::kBusy, "queue " + q.name + ": a de-duplication bucket stayed locked for 5 s");
      DedupEntry* reusable = nullptr;
      DedupEntry* mine = nullptr;
      bool wait = false;
      for (DedupEntry& e : b.ways) {
        // relaxed (all three): the bucket lock orders the claims; a DONE
        // state carries its level and offset itself, and the time is only
        // compared with the window.
        const uint64_t key = e.key.load(std::memory_order_relaxed);
        const uint64_t st = e.state.load(std::memory_order_relaxed);
        const bool live_done = dedup_is_done(st) && now_ms - e.published_ms.load(std::memory_order_relaxed) < window_ms;
        const bool live_pending = dedup_is_pending(st) && registry.is_alive(dedup_owner(st));
        if (key == h) {
          if (live_done) return DedupHit{dedup_level(st), dedup_offset(st)};
          if (live_pending) {
            wait = true;  // another publisher of this id is appending it
            break;
          }
          mine = &e;  // ours again: expired, or its publisher died before appending
          break;
        }
        if (reusable == nullptr && !live_done && !live_pending) reusable = &e;
      }
      if (!wait) {
        DedupEntry* e = mine ? mine : reusable;
        if (e == nullptr)
          return make_error(Errc::kBusy, "queue " + q.name + ": the de-duplication table has " +
                                             std::to_string(kDedupWays) + " live ids where this one belongs; raise "
                                             "dedup_capacity");
        e->state.store(dedup_pending(me), std::memory_order_relaxed);
        e->key.store(h, std::memory_order_relaxed);
        e->published_ms.store(now_ms, std::memory_order_relaxed);
        *claimed = e;
        return std::nullopt;
      }
    }
    if (std::chrono::steady_clock::now() >= deadline)
      return make_error(Errc::kBusy, "queue " + q.name + ": another publisher of de-duplication id '" +
                                         std::string(id.substr(0, 64)) + "' did not finish within 5 s");
    std::this_thread::yield();
  }
}

void dedup_complete(DedupEntry* e, uint32_t level, uint64_t offset, int64_t now_ns) {
  // Outside the bucket lock, but only the claimer writes a PENDING entry;
  // readers under the lock see PENDING or DONE, each a single store.
  // release: a reader that sees DONE sees its time.
  e->published_ms.store(now_ns / 1'000'000, std::memory_order_relaxed);
  e->state.store(dedup_done(level, offset), std::memory_order_release);
}

void dedup_release(DedupEntry* e) { e->state.store(0, std::memory_order_release); }

}  // namespace sluice
