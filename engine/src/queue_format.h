// The work queue's delivery state file: the one authoritative description of
// its bytes (docs/queues.md explains the design). A queue <q> is
//
//   <dir>/queues/<q>/state          QueueParams + QueueLevel per priority + slots
//                                   + the worker table (version 2)
//   <dir>/topics/@queue.<q>/        its messages: an internal topic, one
//                                   partition per priority level
//   <dir>/groups/@queue/@queue.<q>.offsets   the ack floor per level, as a
//                                   group's committed offset, so that the
//                                   topic's back-pressure retention frees
//                                   exactly the settled segments
//
// State file, all integers little-endian:
//
//   [0, 48)          FileHeader, kind kQueueState
//   [48, 48 + 336)   QueueParams (immutable)
//   [1024 + 256 l)   QueueLevel of priority level l (l < priorities <= 10)
//   [3584, 3592)     the queue's circuit breaker word (QueueBreaker)
//   [4096 + 8 W l)   W slot words of level l (W = window, a power of two)
//   [4096 + 8 W (P + l))  W group words of level l (P = priorities): the
//                    FIFO group of the message in the matching slot, as
//                    XXH3-64(group id) | 1, or 0 for none. Written (release)
//                    by the receiver that takes the slot out of FREE, before
//                    its CAS; every receiver of that offset writes the same
//                    value, so the race is benign.
//   version 2 only:
//   [T, T + 128 n)   the worker table (QueueWorkerSlot, below): slot r is the
//                    workers of the Bus handle holding process-registry slot
//                    r. T = params.workers_offset = queue_file_bytes_v1(P, W)
//                    (page-aligned, right after the group words), n =
//                    params.worker_slots = kQueueWorkerSlots (1024, one per
//                    registry slot): 128 KiB. The file ends at T + 128 n.
//
// Versions (ipc::format_versions(kQueueState)): 1 had no worker table and
// zeros where params.workers_offset/worker_slots/worker_slot_bytes are now;
// a version-1 file is read as it is (its queue works, its stats list no
// workers). A file is never converted; a queue made again is version 2.
//
// QueueLevel, one cache line per writer population:
//   +0    deliver_next   every offset below it has been taken from the log once
//   +64   ack_floor      every offset below it is settled
//   +128  sweep_owner    OwnerId + 1 of the process sweeping, 0 when free
//         last_sweep_ms  queue time of the last sweep's start
//         ready_hint     READY slots may exist at or after this offset
//   +192  counters (relaxed statistics)
//
// Slot word of offset o, at index o & (W - 1), one atomic u64:
//
//   FREE      bits 0..2 = 0, bits 3..63 = o: waits for exactly this offset
//   otherwise bits 0..2   state (kSlotLeased .. kSlotDone)
//             bits 3..10  attempts: receives so far (1..255)
//             bits 11..26 owner: ipc::OwnerId of the lease holder (LEASED)
//             bits 27..31 seq: changes with every lease and extension
//             bits 32..63 LEASED: due, the lease deadline, and DELAYED:
//                         due, the next delivery, both in queue ms (ms since
//                         params.epoch_unix_ms, wrapping); READY, BLOCKED
//                         and DONE: lap, the offset's low 32 bits
//
// Every transition is one CAS on the word, so no process ever sees half of
// one, and a CAS against a stale word (another lap, another lease) fails.
// The lap matters: an actor that read offset o's word, then slept while o
// was settled and its slot reused for o + W, must not find the same word
// there. FREE words carry the offset; READY, BLOCKED and DONE words its low
// 32 bits (W <= 2^24). LEASED and DELAYED words carry a due time instead:
// the same word for o + W would need its lease taken, by the same owner
// with the same attempts and sequence, within the same millisecond as o's,
// W messages later. (Without the lap in DONE words a settler that slept
// between reading the floor and the slot turned the next lap's DONE into
// FREE, stranding the floor and delivering that message twice; the queue
// benchmark found it.)
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace sluice::format {

inline constexpr uint32_t kMaxPriorities = 10;
inline constexpr uint64_t kQueueLevelsOffset = 1024;
inline constexpr uint64_t kQueueSlotsOffset = 4096;
inline constexpr uint32_t kQueueNameBytes = 208;  // NUL-padded; names are at most 200
inline constexpr uint32_t kMaxAttempts = 255;
// Leases and delays are at most this long, so that a wrapping 32-bit ms
// difference can tell the past from the future (docs/queues.md, section 2).
inline constexpr int64_t kMaxQueueDelayMs = 14LL * 24 * 3600 * 1000;

struct QueueParams {
  uint32_t priorities;
  uint32_t window;              // slots per level, a power of two
  int64_t lease_ns;             // default visibility timeout
  int64_t epoch_unix_ms;        // queue time 0
  uint32_t max_receives;        // receives before dead-lettering, 1..255
  uint32_t flags;               // kQueueFlag*
  int64_t base_delay_ns;
  int64_t max_delay_ns;
  int64_t jitter_ns;
  double multiplier;
  int64_t dedup_window_ns;
  uint32_t dedup_capacity;
  uint32_t reserved;
  int64_t max_depth_bytes;      // per level: the log's back-pressure window
  char dead_letter_queue[kQueueNameBytes];  // empty: dead letters are dropped (counted)
  // Version 2 (zero in version 1): where the worker table is. Covered by the
  // header checksum, and still checked against the file's size before use.
  uint64_t workers_offset;
  uint32_t worker_slots;
  uint32_t worker_slot_bytes;   // sizeof(QueueWorkerSlot)
  uint8_t reserved2[24];
};
static_assert(sizeof(QueueParams) == 336);
static_assert(offsetof(QueueParams, workers_offset) == 296);
inline constexpr uint32_t kQueueFlagIsDeadLetterQueue = 1u << 0;

struct QueueLevel {
  alignas(64) std::atomic<uint64_t> deliver_next;
  alignas(64) std::atomic<uint64_t> ack_floor;
  alignas(64) std::atomic<uint64_t> sweep_owner;
  std::atomic<int64_t> last_sweep_ms;
  std::atomic<uint64_t> ready_hint;
  alignas(64) std::atomic<uint64_t> received;
  std::atomic<uint64_t> acked;
  std::atomic<uint64_t> nacked;
  std::atomic<uint64_t> dead_lettered;
  std::atomic<uint64_t> redelivered;   // READY again: lease expired or owner died
  std::atomic<uint64_t> owner_deaths;  // of those, found through liveness
  std::atomic<uint64_t> lease_lost;    // settle calls that found their lease gone
  std::atomic<uint64_t> reserved;
};
static_assert(sizeof(QueueLevel) == 256);
static_assert(offsetof(QueueLevel, ack_floor) == 64);
static_assert(offsetof(QueueLevel, sweep_owner) == 128);
static_assert(offsetof(QueueLevel, received) == 192);
static_assert(kQueueLevelsOffset + kMaxPriorities * sizeof(QueueLevel) <= kQueueSlotsOffset);

// Circuit breaker, one atomic u64 (docs/queues.md, section 7), used for the
// queue-wide breaker at kQueueBreakerOffset and for a worker's own:
//   bits 0..1   state: 0 CLOSED, 1 OPEN, 2 HALF_OPEN
//   bits 2..15  CLOSED: transient failures in the current window
//   bits 16..63 Unix ms: CLOSED, when the window began; OPEN, when it opened;
//               HALF_OPEN, when the trial message was let through
inline constexpr uint64_t kQueueBreakerOffset = 3584;
enum BreakerState : uint64_t { kBreakerClosed = 0, kBreakerOpen = 1, kBreakerHalfOpen = 2 };
constexpr uint64_t make_breaker(BreakerState s, uint32_t failures, int64_t unix_ms) {
  return static_cast<uint64_t>(s) | (static_cast<uint64_t>(failures & 0x3FFF) << 2) |
         (static_cast<uint64_t>(unix_ms) << 16);
}
constexpr BreakerState breaker_state(uint64_t w) { return static_cast<BreakerState>(w & 3); }
constexpr uint32_t breaker_failures(uint64_t w) { return static_cast<uint32_t>(w >> 2) & 0x3FFF; }
constexpr int64_t breaker_ms(uint64_t w) { return static_cast<int64_t>(w >> 16); }
static_assert(kQueueLevelsOffset + kMaxPriorities * 256 <= kQueueBreakerOffset);

enum SlotState : uint64_t {
  kSlotFree = 0,
  kSlotLeased = 1,
  kSlotReady = 2,
  kSlotDelayed = 3,
  kSlotBlocked = 4,  // a FIFO group message waiting for an earlier one of its group
  kSlotDone = 5,
};

constexpr uint64_t free_slot(uint64_t offset) { return offset << 3; }
constexpr uint64_t make_slot(SlotState s, uint32_t attempts, uint16_t owner, uint32_t seq, uint32_t due) {
  return static_cast<uint64_t>(s) | (static_cast<uint64_t>(attempts & 0xFF) << 3) |
         (static_cast<uint64_t>(owner) << 11) | (static_cast<uint64_t>(seq & 0x1F) << 27) |
         (static_cast<uint64_t>(due) << 32);
}
constexpr SlotState slot_state(uint64_t w) { return static_cast<SlotState>(w & 7u); }
constexpr uint64_t slot_offset(uint64_t w) { return w >> 3; }  // FREE only
constexpr uint32_t slot_attempts(uint64_t w) { return static_cast<uint32_t>(w >> 3) & 0xFF; }
constexpr uint16_t slot_owner(uint64_t w) { return static_cast<uint16_t>(w >> 11); }
constexpr uint32_t slot_seq(uint64_t w) { return static_cast<uint32_t>(w >> 27) & 0x1F; }
constexpr uint32_t slot_due(uint64_t w) { return static_cast<uint32_t>(w >> 32); }
constexpr uint32_t lap_of(uint64_t offset) { return static_cast<uint32_t>(offset); }
constexpr uint64_t ready_slot(uint32_t attempts, uint32_t seq, uint64_t offset) {
  return make_slot(kSlotReady, attempts, 0, seq, lap_of(offset));
}
constexpr uint64_t blocked_slot(uint64_t offset) { return make_slot(kSlotBlocked, 0, 0, 0, lap_of(offset)); }
constexpr uint64_t done_slot(uint32_t attempts, uint64_t offset) {
  return make_slot(kSlotDone, attempts, 0, 0, lap_of(offset));
}

// Whether queue time `due` has come at `now` (both wrapping queue ms). A
// difference beyond the longest legal delay can only be a due time that
// wrapped while the queue sat idle for weeks: overdue.
constexpr bool queue_time_reached(uint32_t due, uint32_t now) {
  const int64_t ahead = static_cast<int32_t>(due - now);
  return ahead <= 0 || ahead > kMaxQueueDelayMs;
}

// ---- queues/<q>/dedup: de-duplication ids ------------------------------
//
//   [0, 48)          FileHeader, kind kQueueDedup
//   [48, 64)         DedupParams
//   [4096 + 256 b)   bucket b of `buckets`: a lock word on its own line, then
//                    kDedupWays entries of 24 bytes
//
// An id lives in bucket XXH3-64(id) % buckets, in any of its ways (in files
// without kDedupFullHashBuckets, bucket (XXH3-64(id) | 1) % buckets: with a
// power-of-two bucket count only the odd buckets, half the table; such files
// keep that mapping, so the ids they hold are still found). Lookups
// and claims of a bucket happen under its lock (OwnerId + 1; a dead
// holder's lock is taken over), so two publishers of one id never both find
// it absent; the append itself happens outside the lock, the entry PENDING
// meanwhile. Entry words:
//   key           XXH3-64(id) | 1; 0 = never used
//   state         0 free; PENDING: 1 | owner << 8; DONE: 2 | level << 4 | offset << 8;
//                 HELD (a transaction's PENDING entry after its append, since
//                 2026-11-28): 1 | 1 << 3 | level << 4 | owner << 8 | offset << 24
//                 (queue_exactly_once.h; older code reads it as PENDING)
//   published_ms  Unix ms of the append; the entry counts for `window_ns`
struct DedupParams {
  uint32_t buckets;
  uint32_t flags;  // kDedupFullHashBuckets in files made since 2026-11-27; 0 before
  int64_t window_ns;
};
inline constexpr uint32_t kDedupFullHashBuckets = 1;
static_assert(sizeof(DedupParams) == 16);
inline constexpr uint32_t kDedupWays = 8;
inline constexpr uint64_t kDedupBucketsOffset = 4096;
struct DedupEntry {
  std::atomic<uint64_t> key;
  std::atomic<uint64_t> state;
  std::atomic<int64_t> published_ms;
};
static_assert(sizeof(DedupEntry) == 24);
struct alignas(64) DedupBucket {
  std::atomic<uint64_t> lock;
  char padding[56];
  DedupEntry ways[kDedupWays];
};
static_assert(sizeof(DedupBucket) == 256);
constexpr uint64_t dedup_pending(uint16_t owner) { return 1 | (uint64_t{owner} << 8); }
constexpr uint64_t dedup_done(uint32_t level, uint64_t offset) { return 2 | (uint64_t{level} << 4) | (offset << 8); }
constexpr bool dedup_is_pending(uint64_t s) { return (s & 3) == 1; }
constexpr bool dedup_is_done(uint64_t s) { return (s & 3) == 2; }
constexpr uint16_t dedup_owner(uint64_t s) { return static_cast<uint16_t>(s >> 8); }
constexpr uint32_t dedup_level(uint64_t s) { return static_cast<uint32_t>(s >> 4) & 0xF; }
constexpr uint64_t dedup_offset(uint64_t s) { return s >> 8; }
constexpr uint64_t dedup_file_bytes(uint32_t buckets) {
  return (kDedupBucketsOffset + uint64_t{buckets} * sizeof(DedupBucket) + 4095) / 4096 * 4096;
}

// ---- the worker table (version 2) -----------------------------------------
//
// One QueueWorkerSlot per process-registry slot (ipc::ProcessRegistry: one
// per Bus handle, 1,024 of them), so that a process's counters are two cache
// lines nobody else writes: its Workers count with relaxed fetch_adds on
// lines it owns, without false sharing with other processes. The Workers of
// one Bus handle (threads) share its slot: their counts add up; `workers`
// says how many there are. Per-Worker slots would need an allocator in the
// file (a dead Worker's slot can only be found through its process anyway)
// and would bound the Workers per queue; per-process is what liveness can
// tell apart, and what an operator looks at (which pid is stuck?).
//
//   +0    owner               0: never used. Else ipc::OwnerId (bits 0..15)
//                             of the Bus handle whose counts these are; with
//                             kWorkerSlotClaiming (bit 16) while that handle
//                             resets the slot.
//   +8    pid                 the owner's process id (informational)
//   +16   attached_unix_ms    when the owner's first Worker of this queue was made
//   +24   last_active_unix_ms its latest receive or settle (bus clock)
//   +32   workers             its Workers of this queue alive now (a gauge)
//   +40   breakers_open       of those, held back by a breaker now (a gauge)
//   +48   received, acked     (relaxed counters, as WorkerStats counts them)
//   +64   nacked, dead_lettered, lease_lost, handler_errors, already_done,
//         in_doubt, breaker_opened
//   +120  reserved
//
// Only the process holding registry slot r writes slot r (it holds the
// registry slot's flock; ProcessRegistry::attach), so a slot has one writing
// process at a time. Taking it over (ours is a newer OwnerId than the one
// recorded, whose holder is therefore gone):
//   1. CAS owner: old -> kWorkerSlotClaiming | me   (acq_rel; a thread of
//      ours that loses waits until step 3: it is a few stores away)
//   2. relaxed stores: counters and gauges 0, pid, times
//   3. owner.store(me, release)   SYNC POINT WRITE
// Readers (Bus::queue_stats, any process): owner.load(acquire)  SYNC POINT
// READ; a reader seeing `me` sees the reset of step 2 (and any count after
// it). The counters are then read relaxed, an acquire fence, the owner read
// again: a different owner means the slot changed hands under the reader,
// which reads again. A slot whose owner is not alive (registry: generation
// moved on, or flock free) is a dead process's last counts, kept until the
// next holder of the registry slot makes a Worker of this queue.
inline constexpr uint32_t kQueueWorkerSlots = 1024;  // == ipc::kMaxProcessSlots (checked in queue_worker_table.cc)
inline constexpr uint64_t kWorkerSlotClaiming = 1ull << 16;
inline constexpr uint64_t kWorkerSlotOwnerMask = 0xFFFF;

struct alignas(64) QueueWorkerSlot {
  std::atomic<uint64_t> owner;
  std::atomic<uint64_t> pid;
  std::atomic<int64_t> attached_unix_ms;
  std::atomic<int64_t> last_active_unix_ms;
  std::atomic<uint64_t> workers;
  std::atomic<uint64_t> breakers_open;
  // relaxed counters: statistics, each a value of its own; no other memory
  // is published through them.
  std::atomic<uint64_t> received;
  std::atomic<uint64_t> acked;
  std::atomic<uint64_t> nacked;
  std::atomic<uint64_t> dead_lettered;
  std::atomic<uint64_t> lease_lost;
  std::atomic<uint64_t> handler_errors;
  std::atomic<uint64_t> already_done;
  std::atomic<uint64_t> in_doubt;
  std::atomic<uint64_t> breaker_opened;
  std::atomic<uint64_t> reserved;
};
static_assert(sizeof(QueueWorkerSlot) == 128, "two cache lines per process: no false sharing between processes");
static_assert(offsetof(QueueWorkerSlot, received) == 48);
static_assert(offsetof(QueueWorkerSlot, nacked) == 64);
static_assert(offsetof(QueueWorkerSlot, breaker_opened) == 112);
static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<int64_t>::is_always_lock_free,
              "cross-process atomics must not fall back to a lock");

// Version 1's size: the slots and group words, rounded up to a page.
constexpr uint64_t queue_file_bytes_v1(uint32_t priorities, uint32_t window) {
  return (kQueueSlotsOffset + 2 * uint64_t{priorities} * window * sizeof(uint64_t) + 4095) / 4096 * 4096;
}
constexpr uint64_t queue_workers_offset(uint32_t priorities, uint32_t window) {
  return queue_file_bytes_v1(priorities, window);
}
// The current version's size: version 1's plus the worker table.
constexpr uint64_t queue_file_bytes(uint32_t priorities, uint32_t window) {
  return queue_workers_offset(priorities, window) + uint64_t{kQueueWorkerSlots} * sizeof(QueueWorkerSlot);
}

}  // namespace sluice::format
