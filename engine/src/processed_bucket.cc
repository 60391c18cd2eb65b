// The processed-id store's bucket protocol (processed_format.h): the bucket
// lock, what an entry's word means now, process_once, settling by hand and
// the listings. Design: docs/exactly-once.md, section 6.
#include <sluice/processed.h>

#include <array>
#include <chrono>
#include <cstring>
#include <thread>
#include <utility>

#include "ipc/wait_strategy.h"
#include "processed_state.h"

namespace sluice {

using namespace format;

namespace {

constexpr auto kLockWait = std::chrono::seconds(5);
constexpr int64_t kNsPerMs = 1'000'000;

std::string hex64(uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 0; i < 16; ++i) out[15 - i] = kDigits[(v >> (4 * i)) & 15];
  return out;
}

// How an id is quoted in messages: at most 64 bytes of it.
std::string quoted(std::string_view id) {
  return "'" + std::string(id.substr(0, 64)) + (id.size() > 64 ? "...'" : "'");
}

// The bucket lock word: 0 free, else OwnerId + 1 of the holder. Held only
// while looking up and changing entries, never while fn or a resolver
// runs, so waits for it are short; bounded all the same (a holder stopped
// by SIGSTOP keeps it until resumed), and taken over from a holder that died.
class BucketLock {
 public:
  enum Result : uint8_t { kHeld, kTimedOut, kCorrupt };

  BucketLock(ProcessedBucket& b, const ipc::ProcessRegistry& registry) : b_(b), result_(take(registry)) {}
  ~BucketLock() {
    // release: our entry and label writes happen before the next holder's
    // reads; pairs with the acquire CASes in take().
    if (result_ == kHeld) b_.lock.store(0, std::memory_order_release);
  }
  BucketLock(const BucketLock&) = delete;
  BucketLock& operator=(const BucketLock&) = delete;

  Result result() const noexcept { return result_; }
  uint64_t word() const noexcept { return seen_; }  // the lock word that was refused

 private:
  Result take(const ipc::ProcessRegistry& registry) {
    const uint64_t me = uint64_t{registry.self()} + 1;
    std::chrono::steady_clock::time_point deadline{};
    for (uint32_t spins = 0;; ++spins) {
      // relaxed: a hint for the CAS, which orders.
      uint64_t cur = b_.lock.load(std::memory_order_relaxed);
      if (cur == 0) {
        // acquire: pairs with the release store in ~BucketLock.
        if (b_.lock.compare_exchange_weak(cur, me, std::memory_order_acquire, std::memory_order_relaxed))
          return kHeld;
        continue;
      }
      seen_ = cur;
      if (cur > uint64_t{UINT16_MAX} + 1) return kCorrupt;  // not OwnerId + 1
      if (spins < 128) {
        ipc::cpu_relax();
        continue;
      }
      if (spins % 64 == 0) {
        // Only now and then: is_alive costs three system calls for another
        // process. A holder that died inside: take the lock over. It
        // released nothing, but it is dead: every store it made happened
        // before the kernel dropped its flock, which is_alive observed, and
        // each was one aligned store (a field is old or new, processed_format.h
        // orders the claim so that any prefix of it is safe).
        // acquire: as in the CAS above, should the holder have unlocked meanwhile.
        if (cur != me && !registry.is_alive(static_cast<ipc::OwnerId>(cur - 1)) &&
            b_.lock.compare_exchange_strong(cur, me, std::memory_order_acquire, std::memory_order_relaxed))
          return kHeld;
        const auto now = std::chrono::steady_clock::now();
        if (deadline == std::chrono::steady_clock::time_point{}) {
          deadline = now + kLockWait;
        } else if (now >= deadline) {
          return kTimedOut;
        }
      }
      std::this_thread::yield();
    }
  }

  ProcessedBucket& b_;
  uint64_t seen_ = 0;
  Result result_;
};

using Liveness = ipc::LivenessCache;

// What an entry's valid word means at `now_ms` (processed_format.h).
// REQUIRES: the bucket lock (time_ms is read).
ProcessedState state_of(const ProcessedStoreState& s, const ProcessedEntryWords& e, uint64_t word, int64_t now_ms,
                        Liveness& live) {
  // relaxed: time_ms changes only under the lock, which we hold.
  auto within = [&](int64_t t) { return now_ms - t < s.window_ms(); };
  switch (processed_kind(word)) {
    case kProcessedDone: return within(processed_done_ms(word)) ? ProcessedState::kDone : ProcessedState::kAbsent;
    case kProcessedInDoubt:
      return within(e.time_ms.load(std::memory_order_relaxed)) ? ProcessedState::kInDoubt : ProcessedState::kAbsent;
    case kProcessedPending:
      if (live.alive(processed_owner(word))) return ProcessedState::kPending;
      return within(e.time_ms.load(std::memory_order_relaxed)) ? ProcessedState::kInDoubt : ProcessedState::kAbsent;
    default: return ProcessedState::kAbsent;
  }
}

// Whether an entry occupies its way: state_of() != kAbsent, without asking
// liveness for a PENDING entry whose window still runs (it counts, dead or
// alive).
bool counts(const ProcessedStoreState& s, const ProcessedEntryWords& e, uint64_t word, int64_t now_ms, Liveness& live) {
  if (processed_kind(word) == kProcessedPending &&
      now_ms - e.time_ms.load(std::memory_order_relaxed) < s.window_ms())  // relaxed: under the lock
    return true;
  return state_of(s, e, word, now_ms, live) != ProcessedState::kAbsent;
}

std::unexpected<Error> corrupt_word(const ProcessedStoreState& s, uint32_t bucket, uint32_t way, uint64_t word) {
  return make_error(Errc::kCorruption, "processed-id store file " + s.path + ": bucket " + std::to_string(bucket) +
                                           " way " + std::to_string(way) + " holds an invalid state word 0x" +
                                           hex64(word));
}

std::unexpected<Error> lock_error(const ProcessedStoreState& s, uint32_t bucket, const BucketLock& lock) {
  if (lock.result() == BucketLock::kCorrupt)
    return make_error(Errc::kCorruption, "processed-id store file " + s.path + ": bucket " + std::to_string(bucket) +
                                             " holds an invalid lock word 0x" + hex64(lock.word()));
  // relaxed: a statistic.
  s.counters().busy.fetch_add(1, std::memory_order_relaxed);
  return make_error(Errc::kBusy, "processed store " + s.name + ": bucket " + std::to_string(bucket) +
                                     " stayed locked for 5 s by a live process (stopped?)");
}

std::unexpected<Error> bucket_full(const ProcessedStoreState& s, uint32_t bucket) {
  s.counters().busy.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
  return make_error(Errc::kBusy, "processed store " + s.name + ": the " + std::to_string(kProcessedWays) +
                                     " ids of bucket " + std::to_string(bucket) +
                                     " all count (done, pending or in doubt within the window); raise the "
                                     "capacity (" +
                                     std::to_string(s.params.buckets * kProcessedWays) +
                                     ") or settle in-doubt ids (sluice processed show " + s.name + ")");
}

// Where `key` lives in its bucket, and a way that could take it.
struct Scan {
  int found = -1;            // the way holding the key (its word is not FREE)
  uint64_t found_word = 0;
  int reusable = -1;         // the first way whose entry does not count
  uint64_t reusable_word = 0;
};

// REQUIRES: the bucket lock.
Result<Scan> scan_bucket(const ProcessedStoreState& s, uint32_t bi, const ProcessedKey& key, int64_t now_ms,
                         Liveness& live) {
  ProcessedBucket& b = s.bucket(bi);
  Scan out;
  for (uint32_t w = 0; w < kProcessedWays; ++w) {
    const ProcessedEntryWords& e = b.ways[w];
    // acquire: pairs with the runner's release CAS in finish(), which
    // happens outside the lock: whoever sees DONE also sees what fn did in
    // the runner's process before it returned (threads sharing a store).
    const uint64_t word = e.state.load(std::memory_order_acquire);
    if (!processed_word_valid(word)) return corrupt_word(s, bi, w, word);
    if (word == 0) {
      if (out.reusable < 0) out.reusable = static_cast<int>(w);
      continue;
    }
    // relaxed: keys change only under the lock, which we hold. At most one
    // non-FREE entry per key: a claim reuses the key's own entry if it has one.
    if (e.key_lo.load(std::memory_order_relaxed) == key.lo && e.key_hi.load(std::memory_order_relaxed) == key.hi) {
      out.found = static_cast<int>(w);
      out.found_word = word;
      return out;
    }
    if (out.reusable < 0 && !counts(s, e, word, now_ms, live)) {
      out.reusable = static_cast<int>(w);
      out.reusable_word = word;
    }
  }
  return out;
}

void write_label(ProcessedLabel& l, std::string_view id) {
  l.id_bytes = static_cast<uint16_t>(id.size());
  const size_t n = std::min<size_t>(id.size(), sizeof l.text);
  if (n > 0) std::memcpy(l.text, id.data(), n);  // an empty view's data() may be null
  std::memset(l.text + n, 0, sizeof l.text - n);
}

// Makes way `w` (whose word was `word` and does not count) the entry of
// `key`, ending in `final_word`. `id` empty: unknown (settled by key).
// False if a runner changed the word meanwhile (look again).
// REQUIRES: the bucket lock.
bool claim(ProcessedBucket& b, int w, uint64_t word, const ProcessedKey& key, std::string_view id, int64_t now_ms,
           uint64_t final_word) {
  ProcessedEntryWords& e = b.ways[w];
  // The orders in this function are against our own death, not another
  // thread (the lock orders us against the next holder): a SIGKILL lands
  // between two instructions, and these keep the compiler and the CPU from
  // moving a key store before the FREE or after the final word, so every
  // prefix of the claim leaves FREE or a complete entry (processed_format.h).
  // A CAS, not a store: a runner we believed dead or expired could still
  // complete (OwnerId ABA); then it wins and we look again.
  // acquire: the stores below stay after it.
  if (word != 0 && !e.state.compare_exchange_strong(word, 0, std::memory_order_acquire, std::memory_order_relaxed))
    return false;
  // relaxed (keys, time): under the lock; ordered by the release below.
  e.key_lo.store(key.lo, std::memory_order_relaxed);
  e.key_hi.store(key.hi, std::memory_order_relaxed);
  write_label(b.labels[w], id);
  e.time_ms.store(now_ms, std::memory_order_relaxed);
  // release: the key, label and time stores above stay before it.
  e.state.store(final_word, std::memory_order_release);
  return true;
}

// The runner's completion: PENDING(me) -> `desired` (DONE, FREE or
// IN_DOUBT), outside the lock: nobody else changes a PENDING word whose
// owner lives (processed_format.h).
// release: fn's effects in this process happen before a kAlreadyDone read
// from this word; pairs with the acquire load in scan_bucket().
void finish(const ProcessedStoreState& s, ProcessedEntryWords& e, ipc::OwnerId me, uint64_t desired) {
  uint64_t expected = processed_pending(me);
  if (!e.state.compare_exchange_strong(expected, desired, std::memory_order_release, std::memory_order_relaxed))
    s.counters().completions_lost.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
}

int64_t now_ms(const ProcessedStoreState& s) {
  // A DONE word needs a non-zero time; clocks before 1970 get 1 ms.
  return std::max<int64_t>(s.bus->clock->now_ns() / kNsPerMs, 1);
}

void backoff(uint32_t round) {
  if (round < 16) {
    std::this_thread::yield();
    return;
  }
  // 50 us doubling to 1 ms: a runner's fn may take long; its completion is
  // seen within a millisecond.
  const uint32_t us = std::min<uint32_t>(1000, 50u << std::min<uint32_t>(round - 16, 5));
  std::this_thread::sleep_for(std::chrono::microseconds(us));
}

Status check_id(const ProcessedStoreState& s, std::string_view id) {
  if (id.empty()) return make_error(Errc::kInvalidArgument, "processed store " + s.name + ": an id must not be empty");
  if (id.size() > kProcessedMaxIdBytes)
    return make_error(Errc::kInvalidArgument, "processed store " + s.name + ": id " + quoted(id) + " is " +
                                                  std::to_string(id.size()) + " bytes long, more than " +
                                                  std::to_string(kProcessedMaxIdBytes));
  return {};
}

enum class Action : uint8_t { kMarkDone, kForget, kNone };

// mark_done, forget and state: one locked look at the key's entry. `id`
// empty: settled by key (an entry it makes has no label).
Result<ProcessedState> settle(const ProcessedStoreState& s, const ProcessedKey& key, std::string_view id, Action how) {
  const uint32_t bi = s.bucket_index(key.lo);
  ProcessedBucket& b = s.bucket(bi);
  for (;;) {
    const int64_t now = now_ms(s);
    BucketLock lock(b, s.bus->registry);
    if (lock.result() != BucketLock::kHeld) return lock_error(s, bi, lock);
    Liveness live(s.bus->registry);
    auto scan = scan_bucket(s, bi, key, now, live);
    if (!scan) return std::unexpected(scan.error());
    const ProcessedState st =
        scan->found < 0 ? ProcessedState::kAbsent : state_of(s, b.ways[scan->found], scan->found_word, now, live);
    if (how == Action::kNone) return st;
    if (st == ProcessedState::kPending)
      return make_error(Errc::kBusy, "processed store " + s.name + ": " +
                                         (id.empty() ? "key " + key.hex() : "id " + quoted(id)) +
                                         " is pending in a live process; it cannot be settled while fn runs");
    const uint64_t target = how == Action::kMarkDone ? processed_done(now) : 0;
    if (scan->found >= 0) {
      uint64_t word = scan->found_word;
      // relaxed: under the lock; a CAS because a runner we judged dead
      // could still complete (then we look again).
      if (!b.ways[scan->found].state.compare_exchange_strong(word, target, std::memory_order_relaxed)) continue;
      return st;
    }
    if (how == Action::kForget) return st;
    if (scan->reusable < 0) return bucket_full(s, bi);
    if (!claim(b, scan->reusable, scan->reusable_word, key, id, now, target)) continue;
    return st;
  }
}

// Calls visit(key, state, label, since_unix_ns) for every entry that
// counts, bucket by bucket, each under its lock; stops when visit returns false.
template <class Visit>
Status walk(const ProcessedStoreState& s, Visit&& visit) {
  Liveness live(s.bus->registry);
  const int64_t now = now_ms(s);
  for (uint32_t bi = 0; bi < s.params.buckets; ++bi) {
    ProcessedBucket& b = s.bucket(bi);
    BucketLock lock(b, s.bus->registry);
    if (lock.result() != BucketLock::kHeld) return lock_error(s, bi, lock);
    for (uint32_t w = 0; w < kProcessedWays; ++w) {
      const ProcessedEntryWords& e = b.ways[w];
      const uint64_t word = e.state.load(std::memory_order_acquire);  // acquire: as in scan_bucket()
      if (!processed_word_valid(word)) return corrupt_word(s, bi, w, word);
      const ProcessedState st = state_of(s, e, word, now, live);
      if (st == ProcessedState::kAbsent) continue;
      const ProcessedLabel& l = b.labels[w];
      if (l.id_bytes > kProcessedMaxIdBytes)
        return make_error(Errc::kCorruption, "processed-id store file " + s.path + ": bucket " + std::to_string(bi) +
                                                 " way " + std::to_string(w) + " has a label of " +
                                                 std::to_string(l.id_bytes) + " bytes");
      // relaxed (keys, time): under the lock.
      const int64_t since_ms = processed_kind(word) == kProcessedDone ? processed_done_ms(word)
                                                                       : e.time_ms.load(std::memory_order_relaxed);
      const ProcessedKey key{e.key_lo.load(std::memory_order_relaxed), e.key_hi.load(std::memory_order_relaxed)};
      if (!visit(key, st, l, since_ms * kNsPerMs)) return {};
    }
  }
  return {};
}

}  // namespace

Result<ProcessOutcome> ProcessedStore::process_once(std::string_view id, FunctionRef<void()> fn,
                                                    FunctionRef<bool(std::string_view)> resolve) {
  const ProcessedStoreState& s = *state_;
  if (auto ok = check_id(s, id); !ok) return std::unexpected(ok.error());
  const ProcessedKey k = key(id);
  const uint32_t bi = s.bucket_index(k.lo);
  ProcessedBucket& b = s.bucket(bi);
  const ipc::ProcessRegistry& registry = s.bus->registry;
  const ipc::OwnerId me = registry.self();
  ProcessedCounters& c = s.counters();  // relaxed below: statistics
  ProcessedEntryWords* mine = nullptr;  // our PENDING entry, once claimed or taken over
  bool resolving = false;
  ipc::OwnerId died = 0;  // resolving: the runner that died inside fn
  std::chrono::steady_clock::time_point wait_deadline{};
  // Each round, under the bucket lock, one of (docs/exactly-once.md, section 6):
  //   1. DONE within the window: kAlreadyDone.
  //   2. PENDING of a live process: unlock, wait, next round.
  //   3. PENDING of a dead process, or IN_DOUBT: with a resolver, take it
  //      over (PENDING(me)); without, store IN_DOUBT and return kInDoubt.
  //   4. Absent or expired: claim PENDING(me) (kBusy if no way is free).
  // A CAS that fails (a runner believed dead completed after all) starts
  // the round again.
  for (uint32_t round = 0; mine == nullptr; ++round) {
    const int64_t now = now_ms(s);
    {
      BucketLock lock(b, registry);
      if (lock.result() != BucketLock::kHeld) return lock_error(s, bi, lock);
      Liveness live(registry);
      auto scan = scan_bucket(s, bi, k, now, live);
      if (!scan) return std::unexpected(scan.error());
      ProcessedEntryWords* e = scan->found >= 0 ? &b.ways[scan->found] : nullptr;
      const ProcessedState st = e ? state_of(s, *e, scan->found_word, now, live) : ProcessedState::kAbsent;
      uint64_t word = scan->found_word;
      switch (st) {
        case ProcessedState::kDone:  // 1
          c.already_done.fetch_add(1, std::memory_order_relaxed);
          return ProcessOutcome::kAlreadyDone;
        case ProcessedState::kPending:  // 2
          break;
        case ProcessedState::kInDoubt:  // 3
          // relaxed (both CASes): under the lock; the runner is dead, so
          // no release of its can be pending on this word.
          if (!resolve) {
            if (processed_kind(word) == kProcessedPending &&
                !e->state.compare_exchange_strong(word, processed_in_doubt(processed_owner(word)),
                                                  std::memory_order_relaxed))
              continue;
            c.in_doubt.fetch_add(1, std::memory_order_relaxed);
            return ProcessOutcome::kInDoubt;
          }
          if (!e->state.compare_exchange_strong(word, processed_pending(me), std::memory_order_relaxed)) continue;
          e->time_ms.store(now, std::memory_order_relaxed);  // relaxed: under the lock
          died = processed_owner(word);
          resolving = true;
          mine = e;
          break;
        case ProcessedState::kAbsent: {  // 4
          const int way = e ? scan->found : scan->reusable;
          if (way < 0) return bucket_full(s, bi);
          if (!claim(b, way, e ? scan->found_word : scan->reusable_word, k, id, now, processed_pending(me))) continue;
          mine = &b.ways[way];
          break;
        }
      }
    }
    if (mine != nullptr) break;
    const auto t = std::chrono::steady_clock::now();
    if (wait_deadline == std::chrono::steady_clock::time_point{}) {
      wait_deadline = t + std::chrono::nanoseconds(s.pending_wait_ns);
    }
    if (t >= wait_deadline) {
      c.busy.fetch_add(1, std::memory_order_relaxed);
      return make_error(Errc::kBusy, "processed store " + s.name + ": id " + quoted(id) +
                                         " is pending in another live process or thread for more than " +
                                         std::to_string(s.pending_wait_ns / kNsPerMs) + " ms");
    }
    backoff(round);
  }

  if (resolving) {
    bool done = false;
    try {
      done = resolve(id);
    } catch (...) {
      finish(s, *mine, me, processed_in_doubt(died));
      c.fn_threw.fetch_add(1, std::memory_order_relaxed);
      throw;
    }
    if (done) {
      finish(s, *mine, me, processed_done(now_ms(s)));
      c.resolved_done.fetch_add(1, std::memory_order_relaxed);
      return ProcessOutcome::kAlreadyDone;
    }
    c.resolved_ran.fetch_add(1, std::memory_order_relaxed);
  }
  try {
    fn();
  } catch (...) {
    finish(s, *mine, me, 0);
    c.fn_threw.fetch_add(1, std::memory_order_relaxed);
    throw;
  }
  finish(s, *mine, me, processed_done(now_ms(s)));
  c.ran.fetch_add(1, std::memory_order_relaxed);
  return ProcessOutcome::kRan;
}

Result<ProcessedState> ProcessedStore::mark_done(std::string_view id) {
  if (auto ok = check_id(*state_, id); !ok) return std::unexpected(ok.error());
  return settle(*state_, key(id), id, Action::kMarkDone);
}
Result<ProcessedState> ProcessedStore::mark_done(const ProcessedKey& k) { return settle(*state_, k, {}, Action::kMarkDone); }
Result<ProcessedState> ProcessedStore::forget(std::string_view id) {
  if (auto ok = check_id(*state_, id); !ok) return std::unexpected(ok.error());
  return settle(*state_, key(id), id, Action::kForget);
}
Result<ProcessedState> ProcessedStore::forget(const ProcessedKey& k) { return settle(*state_, k, {}, Action::kForget); }
Result<ProcessedState> ProcessedStore::state(std::string_view id) const {
  if (auto ok = check_id(*state_, id); !ok) return std::unexpected(ok.error());
  return settle(*state_, key(id), id, Action::kNone);
}
Result<ProcessedState> ProcessedStore::state(const ProcessedKey& k) const {
  return settle(*state_, k, {}, Action::kNone);
}

Result<std::vector<ProcessedEntry>> ProcessedStore::list(ProcessedFilter filter, size_t max) const {
  std::vector<ProcessedEntry> out;
  auto ok = walk(*state_, [&](const ProcessedKey& k, ProcessedState st, const ProcessedLabel& l, int64_t since_ns) {
    const bool wanted = filter == ProcessedFilter::kAll ||
                        (filter == ProcessedFilter::kUnsettled && st != ProcessedState::kDone) ||
                        st == ProcessedState::kInDoubt;
    if (!wanted) return true;
    if (out.size() >= max) return false;
    ProcessedEntry e;
    e.key = k;
    e.state = st;
    e.id_bytes = l.id_bytes;
    e.id.assign(l.text, std::min<size_t>(l.id_bytes, sizeof l.text));
    e.since_unix_ns = since_ns;
    out.push_back(std::move(e));
    return true;
  });
  if (!ok) return std::unexpected(ok.error());
  return out;
}

Result<ProcessedStoreStats> ProcessedStore::stats() const {
  const ProcessedStoreState& s = *state_;
  ProcessedStoreStats out;
  out.name = s.name;
  out.capacity = capacity();
  out.window_ns = s.params.window_ns;
  auto ok = walk(s, [&](const ProcessedKey&, ProcessedState st, const ProcessedLabel&, int64_t) {
    ++(st == ProcessedState::kDone ? out.done : st == ProcessedState::kPending ? out.pending : out.in_doubt);
    return true;
  });
  if (!ok) return std::unexpected(ok.error());
  // relaxed: statistics.
  const ProcessedCounters& c = s.counters();
  out.ran = c.ran.load(std::memory_order_relaxed);
  out.already_done = c.already_done.load(std::memory_order_relaxed);
  out.reported_in_doubt = c.in_doubt.load(std::memory_order_relaxed);
  out.resolved_done = c.resolved_done.load(std::memory_order_relaxed);
  out.resolved_ran = c.resolved_ran.load(std::memory_order_relaxed);
  out.busy = c.busy.load(std::memory_order_relaxed);
  out.fn_threw = c.fn_threw.load(std::memory_order_relaxed);
  out.completions_lost = c.completions_lost.load(std::memory_order_relaxed);
  return out;
}

}  // namespace sluice
