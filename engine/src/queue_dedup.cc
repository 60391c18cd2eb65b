// De-duplication ids of a queue: the bucketed table of queue_format.h, and
// the HELD entries of transactions (queue_exactly_once.h).
#include <chrono>
#include <thread>

#include "ipc/owner_lock.h"
#include "partition.h"
#include "partition_cursor.h"
#include "queue_exactly_once.h"
#include "queue_state.h"
#include "record_codec.h"
#include "segment.h"

namespace sluice {

using namespace format;

namespace {

constexpr auto kWaitForPending = std::chrono::seconds(5);

enum class HeldOutcome : uint8_t { kUndecided, kCommitted, kAborted };

// What became of the publish a HELD entry names, asked of its frame (the
// log is the truth; docs/exactly-once.md, section 11). A PREPARED frame is
// resolved as a read-committed reader waiting at it would: a transaction
// aborted or fenced (its frame a straggler) is aborted, one past its
// deadline or of a dead holder is aborted, a decided one carried out. A
// decided frame never changes again, so the answer stays true. kUndecided:
// the transaction is open, or the log cannot tell (retention removed the
// frame, or the word is damaged): then the holder's liveness decides, as
// for a plain PENDING entry.
HeldOutcome held_outcome(QueueState& q, uint64_t held) {
  const uint32_t level = dedup_level(held);
  const uint64_t offset = dedup_held_offset(held);
  if (level >= q.levels() || level >= q.log->partitions.size()) return HeldOutcome::kUndecided;
  Partition& part = *q.log->partitions[level];
  PartitionCursor c(part, false, Isolation::kReadUncommitted);
  if (!c.seek(offset)) return HeldOutcome::kUndecided;
  RecordView v;
  const PartitionCursor::Step step = c.next(&v);
  if (step == PartitionCursor::Step::kRecord && v.offset == offset) {
    Segment& seg = *c.current_segment();
    const auto position = static_cast<uint32_t>(v.position - seg.base_position());
    // acquire (both): the decision's flip, and whatever it published.
    uint64_t w = seg.word(position).load(std::memory_order_acquire);
    if (claim_state(w) == kPrepared) {
      if (!part.resolve_prepared(seg, position, w)) return HeldOutcome::kUndecided;
      w = seg.word(position).load(std::memory_order_acquire);
    }
    if (claim_state(w) == kCommitted) return HeldOutcome::kCommitted;
    return claim_state(w) == kAborted ? HeldOutcome::kAborted : HeldOutcome::kUndecided;
  }
  // A read-uncommitted cursor steps over a frame only when it is ABORTED (a
  // claim it finds open it waits at, or repairs into ABORTED).
  const bool passed = step == PartitionCursor::Step::kRecord ? v.offset > offset : c.next_offset() > offset;
  return passed ? HeldOutcome::kAborted : HeldOutcome::kUndecided;
}

}  // namespace

// Races with a holder that is alive but stopped (SIGSTOP), argued in full in
// docs/exactly-once.md, section 11. In short: a waiter changes a HELD entry
// only under the bucket lock and only by a CAS from the very HELD word it
// judged, after finding in the log that the publish it names is over
// (committed: completed as DONE with the holder's level and offset; aborted:
// taken over as if the holder had died). The holder changes its entry only by
// CASes from its own words too (dedup_hold, dedup_settle_held), so when it
// wakes up after a takeover its CAS fails and it leaves the entry alone: one
// of the two wins, never both. A decided frame stays decided, so the judgement
// cannot go stale between the look-up and the CAS; and the HELD word names
// one frame, so no other publish can have put the same word back meanwhile.
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
  uint64_t judged = 0;  // a HELD word of this id, looked up in the log (0: none)
  HeldOutcome outcome = HeldOutcome::kUndecided;
  for (;;) {
    uint64_t to_judge = 0;  // a HELD word to look up, outside the lock
    {
      ipc::OwnerLock lock(b.lock, registry, deadline);  // never held across an append or a look-up
      if (!lock.held())
        return make_error(Errc::kBusy, "queue " + q.name + ": a de-duplication bucket stayed locked for 5 s");
      DedupEntry* reusable = nullptr;
      DedupEntry* mine = nullptr;
      uint64_t was = 0;  // the state of the entry to claim
      bool wait = false;
      for (DedupEntry& e : b.ways) {
        // relaxed (key, time): the bucket lock orders the claims; a DONE
        // state carries its level and offset itself, and the time is only
        // compared with the window. acquire (state): pairs with a holder's
        // release in dedup_hold, so that the frame a HELD word names is in
        // the log for held_outcome().
        const uint64_t key = e.key.load(std::memory_order_relaxed);
        const uint64_t st = e.state.load(std::memory_order_acquire);
        const bool live_done = dedup_is_done(st) && now_ms - e.published_ms.load(std::memory_order_relaxed) < window_ms;
        const bool live_pending = dedup_is_pending(st) && registry.is_alive(dedup_owner(st));
        if (key == h) {
          if (live_done) return DedupHit{dedup_level(st), dedup_offset(st)};
          if (dedup_is_held(st) && st != judged) {
            to_judge = st;  // its transaction may be over although its process lives
            wait = true;
          } else if (dedup_is_held(st) && outcome == HeldOutcome::kCommitted) {
            // The holder's transaction committed: the id answers for that
            // publish. Time first, so that a DONE seen under the lock has it.
            const DedupHit hit{dedup_level(st), dedup_held_offset(st)};
            e.published_ms.store(now_ms, std::memory_order_relaxed);
            uint64_t expected = st;
            // release: as dedup_complete().
            if (e.state.compare_exchange_strong(expected, dedup_done(hit.level, hit.offset),
                                                std::memory_order_release, std::memory_order_relaxed))
              return hit;
            wait = true;  // the holder settled it first: look again
          } else if (live_pending && !(dedup_is_held(st) && outcome == HeldOutcome::kAborted)) {
            wait = true;  // another publisher of this id is appending it, or its transaction is open
          } else {
            mine = &e;  // ours again: expired, aborted, or its publisher died before deciding
            was = st;
          }
          break;
        }
        if (reusable == nullptr && !live_done && !live_pending) {
          reusable = &e;
          was = st;
        }
      }
      if (!wait) {
        DedupEntry* e = mine ? mine : reusable;
        if (e == nullptr)
          return make_error(Errc::kBusy, "queue " + q.name + ": the de-duplication table has " +
                                             std::to_string(kDedupWays) + " live ids where this one belongs; raise "
                                             "dedup_capacity");
        // A CAS, not a store: a stopped holder that woke up may be settling
        // its HELD entry at this moment (its CASes expect its own word).
        // relaxed: the bucket lock orders the claims.
        if (e->state.compare_exchange_strong(was, dedup_pending(me), std::memory_order_relaxed,
                                             std::memory_order_relaxed)) {
          e->key.store(h, std::memory_order_relaxed);
          e->published_ms.store(now_ms, std::memory_order_relaxed);
          *claimed = e;
          return std::nullopt;
        }
        judged = 0;  // its holder settled it first: look again
        continue;
      }
    }
    if (to_judge != 0) {
      outcome = held_outcome(q, to_judge);
      judged = to_judge;
      if (outcome != HeldOutcome::kUndecided) continue;  // act on it under the lock
    }
    if (std::chrono::steady_clock::now() >= deadline)
      return make_error(Errc::kBusy, "queue " + q.name + ": another publisher of de-duplication id '" +
                                         std::string(id.substr(0, 64)) + "' did not finish within 5 s");
    if (to_judge == 0) judged = 0;  // an open transaction may be decided by now: ask the log again
    std::this_thread::yield();
  }
}

void dedup_complete(DedupEntry* e, uint32_t level, uint64_t offset, int64_t now_ns) {
  // Outside the bucket lock, but only the claimer writes a plain PENDING
  // entry of a live process; readers under the lock see PENDING or DONE,
  // each a single store.
  // release: a reader that sees DONE sees its time.
  e->published_ms.store(now_ns / 1'000'000, std::memory_order_relaxed);
  e->state.store(dedup_done(level, offset), std::memory_order_release);
}

void dedup_release(DedupEntry* e) { e->state.store(0, std::memory_order_release); }

bool dedup_hold(DedupEntry* e, uint16_t owner, uint32_t level, uint64_t offset) noexcept {
  uint64_t expected = dedup_pending(owner);
  // release: a waiter that acquires the HELD word finds its frame in the log.
  return e->state.compare_exchange_strong(expected, dedup_held(owner, level, offset), std::memory_order_release,
                                          std::memory_order_relaxed);
}

bool dedup_settle_held(DedupEntry* e, uint16_t owner, uint32_t level, uint64_t offset, bool committed,
                       int64_t now_ns) noexcept {
  uint64_t expected = dedup_held(owner, level, offset);
  if (!committed)
    return e->state.compare_exchange_strong(expected, 0, std::memory_order_release, std::memory_order_relaxed);
  // The time before the CAS, so that a DONE has its time (as
  // dedup_complete()). If the CAS then fails (a waiter took the entry over
  // or completed it while we were stopped), this late store only moved that
  // entry's time forward to now: a DONE id counts a little longer, a
  // PENDING or free entry does not read it. Never shorter.
  e->published_ms.store(now_ns / 1'000'000, std::memory_order_relaxed);
  // release: a reader that sees DONE sees its time.
  return e->state.compare_exchange_strong(expected, dedup_done(level, offset), std::memory_order_release,
                                          std::memory_order_relaxed);
}

}  // namespace sluice
