// Workers of a queue: receiving (new messages and redeliveries), settling
// (ack, nack, reject, extend), the ack floor, and sweeps. The slot protocol
// is drawn in queue_format.h and explained in docs/queues.md.
#include <sluice/bus.h>
#include <sluice/queue.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <random>
#include <utility>
#include <thread>
#include <unistd.h>

#include "ipc/wait_strategy.h"
#include "partition.h"
#include "partition_cursor.h"
#include "queue_exactly_once.h"
#include "queue_parking.h"
#include "queue_state.h"
#include "queue_worker_table.h"
#include "queue_writer.h"
#include "record_codec.h"

namespace sluice {

using namespace format;

namespace {

int64_t parse_i64(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() ? v : 0;
}

}  // namespace

struct WorkerState {
  std::shared_ptr<BusState> bus;
  std::unique_ptr<QueueState> q;
  WorkerOptions options;
  RetryPolicy retry;
  int64_t lease_ns = 0;
  uint16_t owner = 0;        // this process (sweep locks)
  uint16_t lease_owner = 0;  // recorded in our leases: `owner`, or 0 for detached leases
  std::vector<PartitionCursor> cursors;  // one per level
  // The last try_receive stopped at a claimed or undecided (PREPARED) frame
  // on some level: its writer or transaction holder may be dead, and only a
  // reader coming back resolves it (docs/exactly-once.md, section 4,
  // "Queues"), so a parked worker must not sleep its whole timeout.
  bool held_at_pending = false;
  // The last try_receive found a level's window full: what it waits for is
  // another worker's ack, not a publisher (see wait_to_receive()).
  bool window_full = false;
  WorkerStats stats;
  std::mt19937_64 rng{std::random_device{}()};
  uint32_t seq = 0;
  std::optional<QueueWriter> dlq;  // opened on the first dead letter
  std::optional<QueueWriter> lot;  // the parking lot, opened on the first park
  std::vector<std::pair<uint16_t, bool>> liveness;  // per sweep: owner -> alive
  Error last_error{Errc::kInvalidArgument, ""};
  std::atomic<uint64_t> own_breaker{0};  // CLOSED; used unless the breaker is queue-wide
  std::unique_ptr<ExactlyOnceHandling> once;  // Guarantee::kExactlyOnce only
  std::array<char, kProcessedIdBufferBytes> id_buf{};       // run(): the current message's id
  std::array<char, kProcessedIdBufferBytes> user_id_buf{};  // Worker::processed_id
  // This process's slot in the queue's worker table, which any process reads
  // (queue_format.h); null for a version-1 state file, and for the internal
  // worker of a purge. Shared with this process's other Workers of the queue.
  QueueWorkerSlot* shared = nullptr;
  // The exactly-once counts already added to `shared` (ExactlyOnceHandling
  // counts into `stats`; run() adds the difference).
  uint64_t shared_already_done = 0, shared_in_doubt = 0;

  WorkerState() = default;
  WorkerState(const WorkerState&) = delete;
  WorkerState& operator=(const WorkerState&) = delete;
  ~WorkerState() { detach_worker_slot(shared, stats.breaker != BreakerStatus::kClosed); }

  // relaxed (all): statistics on lines only this process writes. The stamp
  // does not move back (unless two of this process's threads race: then by
  // what one thread's clock read lags the other's): settles stamp from the
  // coarse clock, which may lag the precise one of a receive (or of the
  // attach) by a few milliseconds.
  void count(std::atomic<uint64_t> QueueWorkerSlot::*counter, int64_t now, uint64_t k = 1) noexcept {
    if (shared == nullptr) return;
    (shared->*counter).fetch_add(k, std::memory_order_relaxed);
    const int64_t ms = now / 1'000'000;
    if (ms > shared->last_active_unix_ms.load(std::memory_order_relaxed))
      shared->last_active_unix_ms.store(ms, std::memory_order_relaxed);
  }
  // Receives are counted once per level and call, not per message: the
  // level's counter is a line every worker of the queue adds to.
  void count_received(uint32_t l, uint64_t k, int64_t now) noexcept {
    if (k == 0) return;
    // relaxed: a statistic.
    q->level(l).received.fetch_add(k, std::memory_order_relaxed);
    count(&QueueWorkerSlot::received, now, k);
  }
  void count_once_outcomes() noexcept {
    if (shared == nullptr) return;
    shared->already_done.fetch_add(stats.already_done - std::exchange(shared_already_done, stats.already_done),
                                   std::memory_order_relaxed);
    shared->in_doubt.fetch_add(stats.in_doubt - std::exchange(shared_in_doubt, stats.in_doubt),
                               std::memory_order_relaxed);
  }
  // The breaker state this worker sees; breakers_open counts the workers
  // that are not closed.
  void set_breaker(BreakerStatus b) noexcept {
    const bool was = stats.breaker != BreakerStatus::kClosed, is = b != BreakerStatus::kClosed;
    stats.breaker = b;
    if (shared != nullptr && was != is) {
      if (is)
        shared->breakers_open.fetch_add(1, std::memory_order_relaxed);
      else
        shared->breakers_open.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  std::string_view processed_id(const Delivery& d, std::span<char, kProcessedIdBufferBytes> buf) const noexcept {
    return processed_id_of(d, q->name, q->params.epoch_unix_ms, buf);
  }

  int64_t now_ns() const { return bus->clock->now_ns(); }
  // For the millisecond stamps of settling (last_active, a closing breaker,
  // the floor's commit time): the TSC read of now_ns() was a tenth of a
  // worker's time when taken per ack.
  int64_t coarse_now_ns() const { return bus->clock->coarse_now_ns(); }
  // The circuit breaker: how many messages may be taken now (0, 1 for the
  // half-open trial, or any), and what failures and successes do to it.
  std::atomic<uint64_t>& breaker() { return options.breaker.queue_wide ? q->breaker() : own_breaker; }
  size_t breaker_allowance(int64_t now);
  void breaker_failure(int64_t now);
  void breaker_success(int64_t now);
  uint32_t next_seq() { return ++seq & 0x1F; }
  uint32_t due_after(int64_t now, int64_t delay_ns) const {
    return q->queue_ms(now + std::clamp<int64_t>(delay_ns, 0, kMaxQueueDelayMs * 1'000'000));
  }

  // Worker::receive: waits up to timeout_ns for at least one delivery.
  Result<size_t> receive(std::span<Delivery> out, int64_t timeout_ns);
  Result<size_t> wait_to_receive(std::span<Delivery> out, int64_t timeout_ns);
  Result<size_t> try_receive(std::span<Delivery> out);
  // How long a receiver with nothing to take may sleep before something can
  // come due without a publisher's wake-up: the earliest DELAYED time; a
  // short interval while leases are out (their holders may die); forever
  // (the caller's timeout) when the window is empty.
  int64_t idle_wait_ns(int64_t now);
  bool take_ready(uint32_t l, Delivery& d, int64_t now);
  Result<bool> take_new(uint32_t l, Delivery& d, int64_t now);
  // Positions level l's cursor at `offset` and reads it. kRecord with
  // v->offset > offset means [offset, v->offset) were aborted publishes.
  PartitionCursor::Step read_at(uint32_t l, uint64_t offset, RecordView* v);
  void fill(Delivery& d, uint32_t l, const RecordView& v, uint64_t word, int64_t now);
  void sweep(uint32_t l, int64_t now);
  bool alive(uint16_t o);
  void lower_ready_hint(uint32_t l, uint64_t offset);
  void advance_floor(uint32_t l);
  // FIFO groups: whether an offset in [floor, before) of group `g` is not
  // settled yet; and, after a group's message settled, releasing the next.
  bool group_busy(uint32_t l, uint64_t g, uint64_t before);
  // Whether a LEASED or DELAYED word read for offset `o` is o's (not o + W's).
  bool slot_still_for(const QueueLevel& L, uint64_t o) const;
  void unblock_next(uint32_t l, uint64_t g, uint64_t after);
  void settled(uint32_t l, uint64_t offset);
  Status settle(Delivery& d, uint64_t desired);
  Status dead_letter(Delivery& d, const Failure& why);
  Status park(Delivery& d, int64_t until_unix_ns, std::string_view reason);
  Status lease_lost(Delivery& d);
  // A dead-letter queue never drops a letter for too many receives (it has
  // nowhere to send it): receives only count.
  bool keeps_forever() const { return (q->params.flags & kQueueFlagIsDeadLetterQueue) != 0; }
  // A Delivery for a lease named by a receipt (Bus::settle_receipt).
  Result<Delivery> adopt(uint32_t l, uint64_t offset, uint64_t word);
  Result<uint64_t> purge();
};

// ---- receiving -------------------------------------------------------------

PartitionCursor::Step WorkerState::read_at(uint32_t l, uint64_t offset, RecordView* v) {
  PartitionCursor& c = cursors[l];
  if (!c.positioned() || c.next_offset() != offset) {
    if (auto ok = c.seek(offset); !ok) {
      last_error = ok.error();
      return PartitionCursor::Step::kCorrupt;
    }
  }
  PartitionCursor::Step s = c.next(v);
  if (s == PartitionCursor::Step::kCorrupt) last_error = c.error();
  return s;
}

void WorkerState::fill(Delivery& d, uint32_t l, const RecordView& v, uint64_t word, int64_t now) {
  d.worker_ = this;
  // Most deliveries of a batch point into the segment the previous one held:
  // no reference count traffic then (receive() keeps the old reference).
  const std::shared_ptr<Segment>& seg = cursors[l].current_segment();
  if (d.keep_alive_.get() != seg.get()) d.keep_alive_ = seg;
  d.view_ = v;
  d.level_ = l;
  d.word_ = word;
  d.deadline_ns_ = q->unix_ns_of(slot_due(word), now);
  ++stats.received;
}

// Case: a READY slot in [ack_floor, deliver_next). Its offset's record is
// still in the log: the floor has not passed it, so retention has not either.
bool WorkerState::take_ready(uint32_t l, Delivery& d, int64_t now) {
  QueueLevel& L = q->level(l);
  // acquire: pairs with the release CASes that move these counters; slots
  // below deliver_next were taken out of FREE before it moved.
  const uint64_t floor = L.ack_floor.load(std::memory_order_acquire);
  const uint64_t next = L.deliver_next.load(std::memory_order_acquire);
  const uint64_t hint = L.ready_hint.load(std::memory_order_acquire);
  const uint64_t from = std::max(floor, hint);
  for (uint64_t o = from; o < next; ++o) {
    auto& s = q->slot(l, o);
    uint64_t w = s.load(std::memory_order_acquire);
    // A READY word names its offset: a scan preempted long enough for the
    // floor to pass o may find o + W's READY in this slot.
    if (slot_state(w) != kSlotReady || slot_due(w) != lap_of(o)) continue;
    const uint32_t attempts = slot_attempts(w);
    const uint64_t leased = make_slot(kSlotLeased, std::min<uint32_t>(attempts + 1, kMaxAttempts), lease_owner, next_seq(),
                                      due_after(now, lease_ns));
    // acq_rel: the lease is ours from here (acquire: after whoever made it
    // READY); others' CASes on this word fail.
    if (!s.compare_exchange_strong(w, leased, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    RecordView v;
    const PartitionCursor::Step st = read_at(l, o, &v);
    if (st != PartitionCursor::Step::kRecord || v.offset != o) {
      // The log lost it (corruption): settle the slot, so the floor can move.
      s.store(done_slot(attempts, o), std::memory_order_release);
      continue;
    }
    fill(d, l, v, leased, now);
    if (attempts >= retry.max_receives && !keeps_forever()) {  // a lease expired on its last receive
      (void)dead_letter(d, Failure{"MaxReceivesExceeded",
                                   "received " + std::to_string(attempts) + " times without being settled", ""});
      d = Delivery();
      continue;
    }
    return true;
  }
  // Nothing READY in [from, next): raise the hint unless a sweep lowered it.
  uint64_t h = hint;
  if (h < next) L.ready_hint.compare_exchange_strong(h, next, std::memory_order_acq_rel);
  return false;
}

// Case: the next offset never delivered. See docs/queues.md, section 3.
Result<bool> WorkerState::take_new(uint32_t l, Delivery& d, int64_t now) {
  QueueLevel& L = q->level(l);
  const uint64_t W = q->window();
  for (int tries = 0; tries < 256; ++tries) {
    // acquire (both): pair with the release CASes of receivers and of
    // advance_floor(); a slot freed for this lap is freed before the floor
    // that lets us use it moves.
    uint64_t o = L.deliver_next.load(std::memory_order_acquire);
    const uint64_t floor = L.ack_floor.load(std::memory_order_acquire);
    if (o - floor >= W) {  // window full until the oldest message is settled
      window_full = true;
      return false;
    }
    auto& s = q->slot(l, o);
    uint64_t w = s.load(std::memory_order_acquire);
    if (w != free_slot(o)) {
      // Taken by a receiver that has not moved deliver_next yet (or died
      // before it could): help. A FREE word of another lap means our reads
      // were stale: read again.
      if (slot_state(w) != kSlotFree)
        L.deliver_next.compare_exchange_strong(o, o + 1, std::memory_order_acq_rel);
      continue;
    }
    RecordView v;
    const PartitionCursor::Step st = read_at(l, o, &v);
    // Read committed: deliver_next never passes a claimed or undecided
    // frame; the level waits here while the others go on.
    if (st == PartitionCursor::Step::kPending) held_at_pending = true;
    if (st == PartitionCursor::Step::kEmpty || st == PartitionCursor::Step::kPending) return false;
    if (st != PartitionCursor::Step::kRecord) {
      // While we looked, another receiver may have taken o, and it may have
      // been settled and its segment retired: our o is stale, look again.
      // (The queue benchmark with 4 workers on 2 vCPUs hit exactly this.)
      if (L.deliver_next.load(std::memory_order_acquire) != o ||
          q->slot(l, o).load(std::memory_order_acquire) != free_slot(o))
        continue;
      if (st == PartitionCursor::Step::kOutOfRange)
        last_error = Error{Errc::kOffsetOutOfRange, "queue " + q->name + ": offset " + std::to_string(o) +
                                                        " is not in the log although not delivered"};
      return std::unexpected(last_error);
    }
    if (v.offset != o) {
      // Offsets [o, v.offset) belong to publishes aborted after their
      // writer died: nothing to deliver, settle them.
      for (uint64_t a = o; a < v.offset && a - floor < W; ++a) {
        uint64_t fw = free_slot(a);
        q->slot(l, a).compare_exchange_strong(fw, done_slot(0, a), std::memory_order_acq_rel);
        uint64_t n = a;
        L.deliver_next.compare_exchange_strong(n, a + 1, std::memory_order_acq_rel);
      }
      advance_floor(l);
      continue;
    }
    // A delayed message waits in its slot, so does a group's message while
    // an earlier one of its group is unsettled; others are leased to us now.
    const std::string_view group_id = v.headers.find(kHeaderGroup);
    const uint64_t g = group_id.empty() ? 0 : (key_hash(group_id) | 1);
    // The slot may have gone round while we read the record (o taken,
    // settled and passed by the floor, the slot taken for o + W): then its
    // group entry is o + W's, not ours to write. This narrows that window to
    // the next two instructions (docs/queues.md, section 2).
    if (s.load(std::memory_order_acquire) != free_slot(o)) continue;
    // release: before the CAS that takes the slot out of FREE; whoever sees
    // the slot taken (acquire) sees its group.
    q->group(l, o).store(g, std::memory_order_release);
    const int64_t not_before_ms = parse_i64(v.headers.find(kHeaderNotBefore));
    const bool delayed = not_before_ms != 0 && not_before_ms * 1'000'000 > now;
    const bool blocked = !delayed && g != 0 && group_busy(l, g, o);
    const uint64_t desired = delayed   ? make_slot(kSlotDelayed, 0, 0, 0, q->queue_ms(not_before_ms * 1'000'000))
                             : blocked ? blocked_slot(o)
                                       : make_slot(kSlotLeased, 1, lease_owner, next_seq(), due_after(now, lease_ns));
    // acq_rel: as in take_ready(); exactly one receiver takes offset o.
    const bool won = s.compare_exchange_strong(w, desired, std::memory_order_acq_rel, std::memory_order_acquire);
    L.deliver_next.compare_exchange_strong(o, o + 1, std::memory_order_acq_rel);
    if (!won || delayed || blocked) continue;
    fill(d, l, v, desired, now);
    return true;
  }
  return false;
}

Result<size_t> WorkerState::try_receive(std::span<Delivery> out) {
  const int64_t now = now_ns();
  out = out.first(std::min(out.size(), breaker_allowance(now)));
  held_at_pending = false;
  window_full = false;
  size_t n = 0;
  for (uint32_t i = q->levels(); i-- > 0 && n < out.size();) {
    // Views handed out earlier keep their own segments alive; the cursor may
    // drop the ones it has left.
    cursors[i].release_left_segments();
    sweep(i, now);
    const uint64_t received_before = stats.received;
    while (n < out.size() && take_ready(i, out[n], now)) ++n;
    while (n < out.size()) {
      auto got = take_new(i, out[n], now);
      if (!got) {
        count_received(i, stats.received - received_before, now);
        return std::unexpected(got.error());
      }
      if (!*got) break;
      ++n;
    }
    count_received(i, stats.received - received_before, now);
  }
  if (options.guarantee == Guarantee::kAtMostOnce)
    for (size_t k = 0; k < n; ++k) (void)out[k].ack();  // settled before the handler runs
  return n;
}

// ---- circuit breaker -------------------------------------------------------
//
// Cases of the breaker word (queue_format.h), every change one CAS:
//   CLOSED     any number; failures in the window open it at the threshold
//   OPEN       none until the cool-down has passed, then one caller moves it
//              to HALF_OPEN and may take one message (the trial)
//   HALF_OPEN  none while the trial is out (for a cool-down at most: a trial
//              whose worker died is replaced); a success closes, a failure
//              opens it again

size_t WorkerState::breaker_allowance(int64_t now) {
  if (options.breaker.failures == 0) return SIZE_MAX;
  auto& w = breaker();
  const int64_t now_ms = now / 1'000'000;
  const int64_t cooldown_ms = options.breaker.cooldown_ns / 1'000'000;
  for (;;) {
    // acquire: pairs with the release CASes below (of any worker).
    uint64_t cur = w.load(std::memory_order_acquire);
    const BreakerState st = breaker_state(cur);
    if (st == kBreakerClosed) {
      set_breaker(BreakerStatus::kClosed);
      return SIZE_MAX;
    }
    set_breaker(st == kBreakerOpen ? BreakerStatus::kOpen : BreakerStatus::kHalfOpen);
    if (now_ms - breaker_ms(cur) < cooldown_ms) return 0;
    if (w.compare_exchange_strong(cur, make_breaker(kBreakerHalfOpen, 0, now_ms), std::memory_order_acq_rel)) {
      set_breaker(BreakerStatus::kHalfOpen);
      return 1;
    }
  }
}

void WorkerState::breaker_failure(int64_t now) {
  if (options.breaker.failures == 0) return;
  auto& w = breaker();
  const int64_t now_ms = now / 1'000'000;
  uint64_t cur = w.load(std::memory_order_acquire);
  for (;;) {
    uint64_t next;
    if (breaker_state(cur) == kBreakerOpen) return;
    if (breaker_state(cur) == kBreakerHalfOpen) {
      next = make_breaker(kBreakerOpen, 0, now_ms);  // the trial failed
    } else {
      const bool fresh = now_ms - breaker_ms(cur) >= options.breaker.window_ns / 1'000'000;
      const uint32_t failures = (fresh ? 0 : breaker_failures(cur)) + 1;
      next = failures >= options.breaker.failures
                 ? make_breaker(kBreakerOpen, 0, now_ms)
                 : make_breaker(kBreakerClosed, failures, fresh ? now_ms : breaker_ms(cur));
    }
    // acq_rel: transitions of all workers form one order.
    if (w.compare_exchange_weak(cur, next, std::memory_order_acq_rel, std::memory_order_acquire)) {
      if (breaker_state(next) == kBreakerOpen) {
        ++stats.breaker_opened;
        count(&QueueWorkerSlot::breaker_opened, now);
        set_breaker(BreakerStatus::kOpen);
      }
      return;
    }
  }
}

void WorkerState::breaker_success(int64_t now) {
  if (options.breaker.failures == 0) return;
  auto& w = breaker();
  uint64_t cur = w.load(std::memory_order_acquire);
  if (breaker_state(cur) != kBreakerHalfOpen) return;
  if (w.compare_exchange_strong(cur, make_breaker(kBreakerClosed, 0, now / 1'000'000), std::memory_order_acq_rel))
    set_breaker(BreakerStatus::kClosed);
}

// ---- sweeps ----------------------------------------------------------------

bool WorkerState::alive(uint16_t o) {
  for (auto& [id, a] : liveness)
    if (id == o) return a;
  const bool a = bus->registry.is_alive(o);
  liveness.emplace_back(o, a);
  return a;
}

void WorkerState::lower_ready_hint(uint32_t l, uint64_t offset) {
  auto& h = q->level(l).ready_hint;
  uint64_t cur = h.load(std::memory_order_relaxed);
  // release: a receiver that acquires the lowered hint sees the READY word.
  while (cur > offset && !h.compare_exchange_weak(cur, offset, std::memory_order_release, std::memory_order_relaxed)) {
  }
}

void WorkerState::sweep(uint32_t l, int64_t now) {
  QueueLevel& L = q->level(l);
  const int64_t now_ms = now / 1'000'000;
  const int64_t interval_ms = std::max<int64_t>(1, options.sweep_interval_ns / 1'000'000);
  // relaxed: only decides whether to try; the lock below orders the sweep.
  if (now_ms - L.last_sweep_ms.load(std::memory_order_relaxed) < interval_ms) return;
  // The sweep lock: one sweeper per level at a time; a dead holder's lock is
  // taken over.
  uint64_t holder = L.sweep_owner.load(std::memory_order_acquire);
  if (holder != 0 && alive(static_cast<uint16_t>(holder - 1))) {
    liveness.clear();
    return;
  }
  // acq_rel: the previous sweeper's slot CASes happen before ours.
  if (!L.sweep_owner.compare_exchange_strong(holder, uint64_t{owner} + 1, std::memory_order_acq_rel)) {
    liveness.clear();
    return;
  }
  L.last_sweep_ms.store(now_ms, std::memory_order_relaxed);
  const uint32_t now_q = q->queue_ms(now);
  const uint64_t floor = L.ack_floor.load(std::memory_order_acquire);
  const uint64_t next = L.deliver_next.load(std::memory_order_acquire);
  uint64_t lowest_ready = UINT64_MAX;
  for (uint64_t o = floor; o < next && o - floor < q->window(); ++o) {
    auto& s = q->slot(l, o);
    uint64_t w = s.load(std::memory_order_acquire);
    const SlotState st = slot_state(w);
    if (st == kSlotLeased) {
      // Owner 0: a detached lease, which only its deadline ends.
      const bool dead = slot_owner(w) != 0 && !alive(slot_owner(w));
      if (!dead && !queue_time_reached(slot_due(w), now_q)) continue;
      if (!slot_still_for(L, o)) continue;
      // acq_rel: exactly one of this CAS and the holder's settle wins.
      if (!s.compare_exchange_strong(w, ready_slot(slot_attempts(w), slot_seq(w), o),
                                     std::memory_order_acq_rel))
        continue;
      // relaxed: statistics.
      L.redelivered.fetch_add(1, std::memory_order_relaxed);
      if (dead) L.owner_deaths.fetch_add(1, std::memory_order_relaxed);
      lowest_ready = std::min(lowest_ready, o);
    } else if (st == kSlotDelayed && queue_time_reached(slot_due(w), now_q)) {
      if (slot_still_for(L, o) && s.compare_exchange_strong(w, ready_slot(slot_attempts(w), slot_seq(w), o),
                                    std::memory_order_acq_rel))
        lowest_ready = std::min(lowest_ready, o);
    } else if (st == kSlotBlocked && w == blocked_slot(o)) {
      // Its predecessor settled, but the settler died before releasing it.
      const uint64_t g = q->group(l, o).load(std::memory_order_acquire);
      if (!group_busy(l, g, o) &&
          s.compare_exchange_strong(w, ready_slot(0, 0, o), std::memory_order_acq_rel))
        lowest_ready = std::min(lowest_ready, o);
    } else if (st == kSlotReady) {
      // Already READY, yet perhaps above the hint: a receiver that scanned
      // past this slot just before it turned READY may have raised the hint
      // over it. Re-hinting here bounds that wait by the sweep interval.
      lowest_ready = std::min(lowest_ready, o);
    }
  }
  if (lowest_ready != UINT64_MAX) lower_ready_hint(l, lowest_ready);
  // release: our CASes happen before the next sweeper's acquire of the lock.
  L.sweep_owner.store(0, std::memory_order_release);
  liveness.clear();
}

// ---- settling ----------------------------------------------------------------

// LEASED and DELAYED words hold a due time, not their offset. A slot read
// for offset o holds o's word if the floor had not passed o when it was read:
// only then can the slot have been freed for o + W and taken again. The word
// was loaded (acquire) before this load of the floor, and the floor only
// moves forward, so a floor still <= o now was <= o then. A CAS after this
// check cannot land on o + W's word either: that word would name another
// lease sequence or due time.
bool WorkerState::slot_still_for(const QueueLevel& L, uint64_t o) const {
  return L.ack_floor.load(std::memory_order_acquire) <= o;
}

bool WorkerState::group_busy(uint32_t l, uint64_t g, uint64_t before) {
  const uint64_t floor = q->level(l).ack_floor.load(std::memory_order_acquire);
  for (uint64_t p = floor; p < before; ++p) {
    const SlotState st = slot_state(q->slot(l, p).load(std::memory_order_acquire));
    if (st == kSlotFree || st == kSlotDone) continue;
    if (q->group(l, p).load(std::memory_order_acquire) == g) return true;
  }
  return false;
}

void WorkerState::unblock_next(uint32_t l, uint64_t g, uint64_t after) {
  const uint64_t next = q->level(l).deliver_next.load(std::memory_order_acquire);
  for (uint64_t p = after + 1; p < next; ++p) {
    auto& s = q->slot(l, p);
    uint64_t w = s.load(std::memory_order_acquire);
    if (q->group(l, p).load(std::memory_order_acquire) != g) continue;
    const SlotState st = slot_state(w);
    if (st == kSlotFree || st == kSlotDone) continue;
    if (st != kSlotBlocked) return;  // the group's head is already on its way
    if (w != blocked_slot(p)) return;   // p + W's (the floor passed p meanwhile)
    // acq_rel: against the sweep's CAS of the same word; one releases it.
    if (s.compare_exchange_strong(w, ready_slot(0, 0, p), std::memory_order_acq_rel))
      lower_ready_hint(l, p);
    return;
  }
}

// After a message became DONE: the next of its group may go, the floor may move.
void WorkerState::settled(uint32_t l, uint64_t offset) {
  const uint64_t g = q->group(l, offset).load(std::memory_order_acquire);
  if (g != 0) unblock_next(l, g, offset);
  advance_floor(l);
}

void WorkerState::advance_floor(uint32_t l) {
  QueueLevel& L = q->level(l);
  const uint64_t W = q->window();
  uint64_t from = UINT64_MAX, to = 0;  // the floor moved by us: [from, to)
  for (;;) {
    uint64_t f = L.ack_floor.load(std::memory_order_acquire);
    const uint64_t next = L.deliver_next.load(std::memory_order_acquire);
    // Two steps, each helpable: free the slots of the settled run at the
    // floor for the next lap, then move the floor past them in one CAS. A
    // settler killed between them leaves FREE(o + W) at the floor, which
    // the next one recognises. While the floor is still f, no receiver may
    // reuse a slot of [f, end) (take_new() needs the floor past it), so a
    // successful CAS moves the floor over slots all FREE for the next lap.
    uint64_t end = f;
    for (; end < next; ++end) {
      auto& s = q->slot(l, end);
      uint64_t w = s.load(std::memory_order_acquire);
      // Only the DONE of offset `end` itself: a stale floor must not free
      // the next lap's settled slot (queue_format.h says why).
      if (slot_state(w) == kSlotDone && slot_due(w) == lap_of(end))
        s.compare_exchange_strong(w, free_slot(end + W), std::memory_order_acq_rel);
      else if (w != free_slot(end + W))
        break;  // not settled yet, or our floor is stale
    }
    if (end == f) break;
    // release: pairs with the acquire loads of the floor in take_new(); the
    // slots freed above are visible to a receiver that sees the new floor.
    if (L.ack_floor.compare_exchange_strong(f, end, std::memory_order_acq_rel)) {
      from = std::min(from, f);
      to = end;
    }
  }
  // The @queue group's offset follows the floor, so retention frees the
  // settled segments. Asynchronous, and once per 64 offsets or when the
  // floor reaches the delivered end: a stale value only keeps more, and the
  // commit's stores are to a line every worker of the queue writes.
  if (to != 0 && ((from >> 6) != (to >> 6) || to == L.deliver_next.load(std::memory_order_acquire)))
    (void)q->floors->commit(l, L.ack_floor.load(std::memory_order_acquire), coarse_now_ns(), false);
}

Status WorkerState::lease_lost(Delivery& d) {
  ++stats.lease_lost;
  q->level(d.level_).lease_lost.fetch_add(1, std::memory_order_relaxed);
  count(&QueueWorkerSlot::lease_lost, now_ns());
  return make_error(Errc::kLeaseLost, "queue " + q->name + " offset " + std::to_string(d.offset()) +
                                          ": the lease expired and the message was offered again");
}

Status WorkerState::settle(Delivery& d, uint64_t desired) {
  uint64_t expected = d.word_;
  // acq_rel: against the sweeper's CAS of the same word; exactly one wins.
  if (!q->slot(d.level_, d.offset()).compare_exchange_strong(expected, desired, std::memory_order_acq_rel))
    return lease_lost(d);
  d.word_ = desired;
  return {};
}

Status WorkerState::dead_letter(Delivery& d, const Failure& why) {
  const std::string target = q->dead_letter_queue();
  if (!target.empty()) {
    if (!dlq) {
      auto dq = open_dead_letter_queue(*bus, target, q->log->options.segment_bytes, q->params.max_depth_bytes);
      if (!dq) return std::unexpected(dq.error());
      dlq.emplace(bus, std::move(*dq));
    }
    DeadLetter letter;
    letter.failure = why;
    letter.source = "queue:" + q->name;
    letter.partition = d.level_;
    letter.offset = d.offset();
    letter.attempts = d.attempt();
    std::vector<Header> headers;
    // An exactly-once worker's letter names its id, so that a replay (a new
    // offset) is processed under the same id.
    std::array<char, kProcessedIdBufferBytes> id_buf;
    for (Header h : d.headers())
      if (!once || h.name != kHeaderProcessedId) headers.push_back(h);
    if (once) headers.push_back(Header{kHeaderProcessedId, processed_id(d, id_buf)});
    if (!publish_dead_letter(*dlq, d.value(), headers, letter).ok()) return std::unexpected(dlq->last_error);
  }
  if (auto ok = settle(d, done_slot(slot_attempts(d.word_), d.offset())); !ok) return ok;
  d.dead_lettered_ = true;
  ++stats.dead_lettered;
  q->level(d.level_).dead_lettered.fetch_add(1, std::memory_order_relaxed);
  count(&QueueWorkerSlot::dead_lettered, now_ns());
  settled(d.level_, d.offset());
  return {};
}

// Publish, then settle: at least once. A worker killed in between leaves the
// message leased to a dead owner; a sweep makes it READY and its next
// parking publishes under the same de-duplication id, which the lot drops.
Status WorkerState::park(Delivery& d, int64_t until_unix_ns, std::string_view reason) {
  auto bad = [&](std::string why) { return make_error(Errc::kInvalidArgument, "queue " + q->name + ": park: " + why); };
  if (d.worker_ != this) return bad("the delivery is not leased by this worker");
  if (slot_state(d.word_) != kSlotLeased) return bad("the delivery is already settled");
  if (!d.headers().find(kHeaderParkedFrom).empty())
    return bad("offset " + std::to_string(d.offset()) + " is a parked message (it came from " +
               std::string(d.headers().find(kHeaderParkedFrom)) +
               "); a parking lot's messages are not parked again: unpark them");
  if (options.parking_lot.empty() && q->name.ends_with(".parking"))
    return bad("this queue is a parking lot by its name; a parking lot has no parking lot of its own "
               "(name one with WorkerOptions::parking_lot)");
  const std::string lot_name = options.parking_lot.empty() ? q->name + ".parking" : options.parking_lot;
  if (lot_name == q->name) return bad("a queue cannot be its own parking lot");
  const int64_t now = now_ns();
  if (until_unix_ns > now && until_unix_ns - now > kMaxQueueDelayMs * 1'000'000)
    return bad("a message may be parked for at most 14 days");
  // acquire: pairs with the acq_rel CASes on the word (sweeps, settles). A
  // lease already lost is not parked: its next holder decides.
  if (q->slot(d.level_, d.offset()).load(std::memory_order_acquire) != d.word_) return lease_lost(d);
  if (!lot) {
    auto lq = open_parking_lot(*bus, lot_name, q->log->options.segment_bytes, q->params.max_depth_bytes);
    if (!lq) return std::unexpected(lq.error());
    lot.emplace(bus, std::move(*lq));
  }
  std::vector<Header> headers;
  // An exactly-once worker's parked copy names its id, as its dead letters
  // do (the copy comes back at a new offset).
  std::array<char, kProcessedIdBufferBytes> id_buf;
  for (Header h : d.headers())
    if (!once || h.name != kHeaderProcessedId) headers.push_back(h);
  if (once) headers.push_back(Header{kHeaderProcessedId, processed_id(d, id_buf)});
  ParkedFrom from;
  from.queue = q->name;
  from.priority = d.level_;
  from.offset = d.offset();
  from.queue_epoch_unix_ms = q->params.epoch_unix_ms;
  from.attempts = d.attempt();
  from.until_unix_ns = until_unix_ns;
  from.reason = reason;
  if (!publish_parked(*lot, d.value(), headers, from).ok()) return std::unexpected(lot->last_error);
  if (auto ok = settle(d, done_slot(slot_attempts(d.word_), d.offset())); !ok) return ok;
  ++stats.parked;
  settled(d.level_, d.offset());
  return {};
}

Result<Delivery> WorkerState::adopt(uint32_t l, uint64_t offset, uint64_t word) {
  const std::string what = "receipt for queue " + q->name + " offset " + std::to_string(offset);
  if (l >= q->levels()) return make_error(Errc::kInvalidArgument, what + ": no such priority");
  // Only offsets in [floor, deliver_next) own their slot; a slot word alone
  // does not name its offset (another lap's offset shares the slot).
  const QueueLevel& L = q->level(l);
  if (offset < L.ack_floor.load(std::memory_order_acquire) || offset >= L.deliver_next.load(std::memory_order_acquire))
    return make_error(Errc::kLeaseLost, what + ": no message of the queue is leased there");
  // acquire: as in take_ready(); the word tells whether the lease still holds.
  if (q->slot(l, offset).load(std::memory_order_acquire) != word || slot_state(word) != kSlotLeased)
    return make_error(Errc::kLeaseLost, what + ": the lease is over (expired, settled, or never was)");
  RecordView v;
  if (read_at(l, offset, &v) != PartitionCursor::Step::kRecord || v.offset != offset) return std::unexpected(last_error);
  Delivery d;
  d.worker_ = this;
  d.keep_alive_ = cursors[l].current_segment();
  d.view_ = v;
  d.level_ = l;
  d.word_ = word;
  d.deadline_ns_ = q->unix_ns_of(slot_due(word), now_ns());
  return d;
}

// Every offset below the log's end when the purge began is settled:
// waiting, delayed, blocked and leased ones alike.
Result<uint64_t> WorkerState::purge() {
  uint64_t removed = 0;
  const int64_t now = now_ns();
  for (uint32_t l = 0; l < q->levels(); ++l) {
    QueueLevel& L = q->level(l);
    const uint64_t end = q->log->partitions[l]->end_offset();
    const uint64_t W = q->window();
    for (;;) {
      const uint64_t floor = L.ack_floor.load(std::memory_order_acquire);
      const uint64_t next = L.deliver_next.load(std::memory_order_acquire);
      if (floor >= end) break;
      // Taken messages: whatever their state, DONE (one CAS each; a holder's
      // later ack fails as lease lost).
      for (uint64_t o = floor; o < next; ++o) {
        auto& s = q->slot(l, o);
        uint64_t w = s.load(std::memory_order_acquire);
        bool settled_by_us = false;
        while (!settled_by_us && slot_state(w) != kSlotDone && slot_state(w) != kSlotFree && slot_still_for(L, o))
          settled_by_us = s.compare_exchange_weak(w, done_slot(slot_attempts(w), o), std::memory_order_acq_rel);
        if (settled_by_us) ++removed;
      }
      // Untaken ones, as far as the window reaches: FREE(o) -> DONE, then
      // deliver_next on (the same two steps as a receiver's).
      for (uint64_t o = next; o < end && o - floor < W; ++o) {
        uint64_t fw = free_slot(o);
        if (q->slot(l, o).compare_exchange_strong(fw, done_slot(0, o), std::memory_order_acq_rel))
          ++removed;
        uint64_t n = o;
        L.deliver_next.compare_exchange_strong(n, o + 1, std::memory_order_acq_rel);
        if (L.deliver_next.load(std::memory_order_acquire) <= o) break;  // a receiver holds o: next pass
      }
      advance_floor(l);
      if (L.ack_floor.load(std::memory_order_acquire) == floor && L.deliver_next.load() == next) {
        // No progress: a receiver is between its two CASes; let it finish.
        if (now_ns() - now > 5'000'000'000) return make_error(Errc::kTimeout, "purge of queue " + q->name + " made no progress");
        std::this_thread::yield();
      }
    }
  }
  return removed;
}

// ---- Delivery ----------------------------------------------------------------

Delivery::Delivery() noexcept = default;
Delivery::Delivery(std::shared_ptr<void> keep_alive) noexcept : keep_alive_(std::move(keep_alive)) {}
// A moved-from Delivery is empty: only one handle may settle a lease.
Delivery::Delivery(Delivery&& o) noexcept
    : worker_(std::exchange(o.worker_, nullptr)),
      keep_alive_(std::move(o.keep_alive_)),
      view_(o.view_),
      level_(o.level_),
      word_(std::exchange(o.word_, 0)),
      deadline_ns_(o.deadline_ns_),
      dead_lettered_(o.dead_lettered_) {}
Delivery& Delivery::operator=(Delivery&& o) noexcept {
  if (this != &o) {
    worker_ = std::exchange(o.worker_, nullptr);
    keep_alive_ = std::move(o.keep_alive_);
    view_ = o.view_;
    level_ = o.level_;
    word_ = std::exchange(o.word_, 0);
    deadline_ns_ = o.deadline_ns_;
    dead_lettered_ = o.dead_lettered_;
  }
  return *this;
}
Delivery::~Delivery() = default;

uint32_t Delivery::attempt() const noexcept { return slot_attempts(word_); }

std::string Delivery::receipt() const {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%u:%llu:%llx", level_, static_cast<unsigned long long>(view_.offset),
                static_cast<unsigned long long>(word_));
  return buf;
}

Status Delivery::ack() {
  if (!worker_) return make_error(Errc::kInvalidArgument, "empty delivery");
  if (slot_state(word_) != kSlotLeased) return make_error(Errc::kInvalidArgument, "delivery already settled");
  WorkerState& w = *worker_;
  if (auto ok = w.settle(*this, done_slot(slot_attempts(word_), offset())); !ok) return ok;
  const int64_t now = w.coarse_now_ns();  // only millisecond stamps below
  ++w.stats.acked;
  w.q->level(level_).acked.fetch_add(1, std::memory_order_relaxed);
  w.count(&QueueWorkerSlot::acked, now);
  w.breaker_success(now);
  w.settled(level_, offset());
  return {};
}

Status Delivery::nack(std::optional<int64_t> delay_ns) { return nack(Failure{}, delay_ns); }

Status Delivery::nack(const Failure& why, std::optional<int64_t> delay_ns) {
  if (!worker_) return make_error(Errc::kInvalidArgument, "empty delivery");
  if (slot_state(word_) != kSlotLeased) return make_error(Errc::kInvalidArgument, "delivery already settled");
  WorkerState& w = *worker_;
  const int64_t now = w.now_ns();
  const uint32_t attempts = slot_attempts(word_);
  if (attempts >= w.retry.max_receives && !w.keeps_forever()) {
    // The dead letter says what the last failure was, when the caller said.
    Failure last{"MaxReceivesExceeded", "failed on each of " + std::to_string(attempts) + " receives", why.stack_trace};
    if (!why.type.empty() || !why.message.empty()) last.message += "; the last: " + why.type + ": " + why.message;
    auto ok = w.dead_letter(*this, last);
    if (ok) w.breaker_failure(now);
    return ok;
  }
  const int64_t delay = delay_ns ? *delay_ns : w.retry.delay_ns(attempts, w.rng());
  const bool ready = delay <= 0;
  const uint64_t desired = ready ? ready_slot(attempts, slot_seq(word_), offset())
                                 : make_slot(kSlotDelayed, attempts, 0, slot_seq(word_), w.due_after(now, delay));
  if (auto ok = w.settle(*this, desired); !ok) return ok;  // a lost lease is no failure of ours
  w.breaker_failure(now);
  if (ready) w.lower_ready_hint(level_, offset());
  ++w.stats.nacked;
  w.q->level(level_).nacked.fetch_add(1, std::memory_order_relaxed);
  w.count(&QueueWorkerSlot::nacked, now);
  return {};
}

Status Delivery::reject(const Failure& why) {
  if (!worker_) return make_error(Errc::kInvalidArgument, "empty delivery");
  if (slot_state(word_) != kSlotLeased) return make_error(Errc::kInvalidArgument, "delivery already settled");
  return worker_->dead_letter(*this, why);
}

Status Delivery::extend(int64_t lease_ns) {
  if (!worker_) return make_error(Errc::kInvalidArgument, "empty delivery");
  if (slot_state(word_) != kSlotLeased) return make_error(Errc::kInvalidArgument, "delivery already settled");
  if (lease_ns <= 0 || lease_ns > kMaxQueueDelayMs * 1'000'000)
    return make_error(Errc::kInvalidArgument, "a lease is between 1 ns and 14 days");
  WorkerState& w = *worker_;
  const int64_t now = w.now_ns();
  const uint64_t desired =
      make_slot(kSlotLeased, slot_attempts(word_), w.lease_owner, w.next_seq(), w.due_after(now, lease_ns));
  if (auto ok = w.settle(*this, desired); !ok) return ok;
  deadline_ns_ = w.q->unix_ns_of(slot_due(desired), now);
  return {};
}

// ---- Worker ------------------------------------------------------------------

Worker::Worker(std::unique_ptr<WorkerState> state) : state_(std::move(state)) {}
Worker::Worker(Worker&&) noexcept = default;
Worker& Worker::operator=(Worker&&) noexcept = default;
Worker::~Worker() = default;

const WorkerStats& Worker::stats() const noexcept { return state_->stats; }
Status Worker::park(Delivery& d, int64_t until_unix_ns, std::string_view reason) {
  return state_->park(d, until_unix_ns, reason);
}
Guarantee Worker::guarantee() const noexcept { return state_->options.guarantee; }
std::string_view Worker::processed_id(const Delivery& d) const noexcept {
  // Not id_buf: a handler asks while run() still uses that one.
  return state_->processed_id(d, state_->user_id_buf);
}

int64_t WorkerState::idle_wait_ns(int64_t now) {
  constexpr int64_t kWhileLeasesAreOut = 10'000'000;  // how soon a dead holder's messages are noticed
  int64_t wait = INT64_MAX;
  // An open breaker lets a trial through after its cool-down.
  if (options.breaker.failures != 0 && breaker_state(breaker().load(std::memory_order_relaxed)) != kBreakerClosed)
    wait = kWhileLeasesAreOut;
  // A decision or a commit wakes us; a dead publisher or transaction holder
  // does not, and the next look resolves it (the cursor's 1 ms stall rule).
  if (held_at_pending) wait = std::min(wait, kWhileLeasesAreOut);
  const uint32_t now_q = q->queue_ms(now);
  for (uint32_t l = 0; l < q->levels(); ++l) {
    QueueLevel& L = q->level(l);
    const uint64_t floor = L.ack_floor.load(std::memory_order_acquire);
    const uint64_t next = L.deliver_next.load(std::memory_order_acquire);
    for (uint64_t o = floor; o < next && o - floor < q->window(); ++o) {
      const uint64_t w = q->slot(l, o).load(std::memory_order_relaxed);
      const SlotState st = slot_state(w);
      if (st == kSlotLeased) {
        wait = std::min(wait, kWhileLeasesAreOut);
      } else if (st == kSlotDelayed) {
        const int64_t ahead_ms = queue_time_reached(slot_due(w), now_q) ? 0 : static_cast<int32_t>(slot_due(w) - now_q);
        wait = std::min(wait, std::max<int64_t>(ahead_ms * 1'000'000, options.sweep_interval_ns));
      } else if (st == kSlotReady || st == kSlotBlocked) {
        wait = std::min(wait, options.sweep_interval_ns);
      }
    }
  }
  return std::max<int64_t>(wait, 1'000'000);
}

Result<size_t> WorkerState::receive(std::span<Delivery> out, int64_t timeout_ns) {
  // Emptied, each keeping its segment reference for fill() to reuse: most
  // are refilled from the segment they held. Those not refilled let go of
  // it below, so that an empty Delivery pins no segment.
  for (auto& d : out)
    if (d.valid()) d = Delivery(std::move(d.keep_alive_));
  const Result<size_t> r = wait_to_receive(out, timeout_ns);
  // Not by the count: a call that fails after taking some leaves them valid.
  for (auto& d : out)
    if (!d.valid()) d.keep_alive_.reset();
  return r;
}

Result<size_t> WorkerState::wait_to_receive(std::span<Delivery> out, int64_t timeout_ns) {
  Result<size_t> r = size_t{0};
  ipc::WaitOptions wait;
  wait.strategy = static_cast<ipc::WaitStrategy>(options.wait);
  auto attempt = [&] {
    r = try_receive(out);
    if (!r || *r > 0) return true;
    // A full window waits for the worker holding the oldest lease, which may
    // be waiting for this CPU: a spinning worker gives it up. (With 2
    // spinning workers on one vCPU, one spun out its time slice at a full
    // window while the other, descheduled, held the floor.)
    if (window_full) std::this_thread::yield();
    return false;
  };
  if (attempt() || timeout_ns <= 0) return r;
  // Publishers wake us through the topic's word; retries, expiries and dead
  // holders come due without one, so a wait is cut where they may.
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::nanoseconds(timeout_ns);
  for (;;) {
    const int64_t left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - clock::now()).count();
    if (left <= 0) return r;
    const int64_t step = std::min(left, idle_wait_ns(now_ns()));
    if (ipc::wait_until(attempt, step, wait, &q->log->control().wakeup)) return r;
  }
}

Result<size_t> Worker::receive(std::span<Delivery> out, int64_t timeout_ns) {
  return state_->receive(out, timeout_ns);
}

Result<uint64_t> Worker::run(const Handler& handler, const std::function<bool()>& stop, uint64_t max_messages,
                             int64_t idle_ns) {
  WorkerState& s = *state_;
  uint64_t handled = 0;
  Delivery d[1];
  while ((max_messages == 0 || handled < max_messages) && !(stop && stop())) {
    auto n = receive(d, idle_ns);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) continue;
    Delivery& m = d[0];
    // At most once: acked on receipt. Exactly once: settled by `once`, and
    // like at least once when the handler (or the resolver) throws.
    const bool settles = s.options.guarantee != Guarantee::kAtMostOnce;
    try {
      if (s.once) {
        s.once->handle(m, s.processed_id(m, s.id_buf), handler, s.stats);
      } else {
        handler(m);
        if (settles) (void)m.ack();
      }
    } catch (const ParkError& e) {
      // Not a handler error: the handler chose to put the message aside. A
      // park that fails (the lot refuses it) is a transient failure.
      if (settles)
        if (auto ok = s.park(m, e.until_unix_ns(), e.what()); !ok && ok.error().code != Errc::kLeaseLost)
          (void)m.nack(Failure{"ParkFailed", ok.error().message, ""});
    } catch (const PermanentError& e) {
      ++s.stats.handler_errors;
      s.count(&QueueWorkerSlot::handler_errors, s.now_ns());
      if (settles) (void)m.reject(Failure{"PermanentError", e.what(), e.stack_trace()});
    } catch (const TransientError& e) {
      ++s.stats.handler_errors;
      s.count(&QueueWorkerSlot::handler_errors, s.now_ns());
      if (settles) (void)m.nack(Failure{"TransientError", e.what(), e.stack_trace()});
    } catch (const std::exception& e) {
      ++s.stats.handler_errors;
      s.count(&QueueWorkerSlot::handler_errors, s.now_ns());
      if (settles) (void)m.nack(Failure{"Exception", e.what(), ""});
    }
    s.count_once_outcomes();
    ++handled;
    m = Delivery();
  }
  return handled;
}

namespace {

// A worker's state, options checked, without its exactly-once handling (the
// caller's: it takes the store's state) and not counted in the queue's
// worker table yet.
Result<std::unique_ptr<WorkerState>> make_worker_state(const std::shared_ptr<BusState>& bus, std::string_view queue,
                                                       const WorkerOptions& options) {
  BusState* const state_ = bus.get();
  auto q = open_queue(*state_, queue);
  if (!q) return std::unexpected(q.error());
  if (options.lease_ns && (*options.lease_ns < 1'000'000 || *options.lease_ns > kMaxQueueDelayMs * 1'000'000))
    return make_error(Errc::kInvalidArgument, "a lease is between 1 ms and 14 days");
  if (options.breaker.failures > 0x3FFF || options.breaker.window_ns < 0 || options.breaker.cooldown_ns < 0)
    return make_error(Errc::kInvalidArgument, "circuit breaker: at most 16383 failures, no negative times");
  const bool exactly_once = options.guarantee == Guarantee::kExactlyOnce;
  if (exactly_once && options.processed == nullptr)
    return make_error(Errc::kInvalidArgument,
                      "a worker with Guarantee::kExactlyOnce needs WorkerOptions::processed, the processed-id store "
                      "that remembers which messages' effects happened (Bus::open_processed_store)");
  if (!exactly_once && (options.processed != nullptr || options.resolve))
    return make_error(Errc::kInvalidArgument,
                      "WorkerOptions::processed and resolve serve Guarantee::kExactlyOnce only; this worker is " +
                          std::string(options.guarantee == Guarantee::kAtMostOnce ? "at most" : "at least") + " once");
  auto s = std::make_unique<WorkerState>();
  s->bus = bus;
  s->options = options;
  s->options.processed = nullptr;  // the caller's handle may go; `once` shares its store
  const QueueParams& p = (*q)->params;
  s->retry = options.retry.value_or(
      RetryPolicy{p.max_receives, p.base_delay_ns, p.multiplier, p.max_delay_ns, p.jitter_ns});
  s->retry.max_receives = std::clamp<uint32_t>(s->retry.max_receives, 1, kMaxAttempts);
  s->lease_ns = options.lease_ns.value_or(p.lease_ns);
  s->owner = state_->registry.self();
  s->lease_owner = options.detached_leases ? 0 : s->owner;
  for (uint32_t l = 0; l < (*q)->levels(); ++l) s->cursors.emplace_back(*(*q)->log->partitions[l], true);
  s->q = std::move(*q);
  return s;
}

}  // namespace

Result<Worker> Bus::create_worker(std::string_view queue, const WorkerOptions& options) {
  auto s = make_worker_state(state_, queue, options);
  if (!s) return std::unexpected(s.error());
  if (options.guarantee == Guarantee::kExactlyOnce)
    (*s)->once = std::make_unique<ExactlyOnceHandling>(ProcessedStore(options.processed->state_),
                                                       std::exchange((*s)->options.resolve, {}));
  (*s)->shared = attach_worker_slot(*(*s)->q, (*s)->now_ns() / 1'000'000);
  return Worker(std::move(*s));
}

Status Bus::settle_receipt(std::string_view queue, std::string_view receipt, Settle how, const Failure& why) {
  uint32_t level = 0;
  uint64_t offset = 0, word = 0;
  {
    const char* p = receipt.data();
    const char* end = p + receipt.size();
    auto field = [&](auto* out, int base, bool last) {
      auto [q, ec] = std::from_chars(p, end, *out, base);
      if (ec != std::errc() || q == p) return false;
      p = q;
      if (last) return p == end;
      if (p == end || *p != ':') return false;
      ++p;
      return true;
    };
    if (!field(&level, 10, false) || !field(&offset, 10, false) || !field(&word, 16, true))
      return make_error(Errc::kInvalidArgument,
                        "'" + std::string(receipt.substr(0, 80)) + "' is not a receipt (priority:offset:lease)");
  }
  WorkerOptions o;
  o.detached_leases = true;  // settling needs no lease of our own
  auto w = create_worker(queue, o);
  if (!w) return std::unexpected(w.error());
  auto d = w->state_->adopt(level, offset, word);
  if (!d) return std::unexpected(d.error());
  switch (how) {
    case Settle::kAck: return d->ack();
    case Settle::kNack: return d->nack();
    case Settle::kReject: return d->reject(why);
  }
  return {};
}

Result<uint64_t> Bus::purge_queue(std::string_view queue) {
  // Not counted in the worker table: a purge receives nothing.
  auto s = make_worker_state(state_, queue, {});
  if (!s) return std::unexpected(s.error());
  return (*s)->purge();
}

}  // namespace sluice
