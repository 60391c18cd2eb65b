// Work queues: competing consumers with leases, acks, retries scheduled with
// backoff, and dead-lettering. Design: docs/queues.md.
#pragma once

#include <sluice/options.h>
#include <sluice/producer.h>
#include <sluice/record.h>
#include <sluice/status.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

struct QueueState;
struct WorkerState;
class ProcessedStore;

// The id under which an exactly-once Worker processes a message
// (WorkerOptions::processed): a publisher that names the effect (an order
// id, an event UUID; 1 to 256 bytes) sets this header. Without it the id is
// the message's place, "queue:<queue>:<priority>:<offset>@<queue epoch ms>",
// which a redelivery keeps. Dead letters of such a worker carry the header,
// so that a replayed letter keeps its id.
inline constexpr std::string_view kHeaderProcessedId = "sluice.processed_id";

// When a failed message is offered again: min(max_delay, base_delay *
// multiplier^(attempt - 1)) + uniform(0, jitter), attempt counting from 1.
// The seed's `BASE_DELAY * 2**attempt + uniform(0, 0.5)` is base 1 s,
// multiplier 2, jitter 500 ms.
struct RetryPolicy {
  uint32_t max_receives = 5;              // receives before dead-lettering (SQS maxReceiveCount), 1..255
  int64_t base_delay_ns = 1'000'000'000;
  double multiplier = 2.0;
  int64_t max_delay_ns = 300'000'000'000;
  int64_t jitter_ns = 500'000'000;
  // The delay after failed attempt `attempt`; `random` is uniform in [0, 2^64).
  int64_t delay_ns(uint32_t attempt, uint64_t random) const noexcept;
};

struct QueueOptions {
  uint32_t priorities = 1;                // levels 0..priorities-1, the highest served first (1..10)
  uint32_t window = 65536;                // messages in flight or waiting per level (power of two)
  int64_t lease_ns = 30'000'000'000;      // visibility timeout (at most 14 days)
  RetryPolicy retry;
  // Where dead letters go: empty means "<name>.dlq", created on first use;
  // "-" drops them (counted in the stats).
  std::string dead_letter_queue;
  int64_t dedup_window_ns = 300'000'000'000;  // how long a de-duplication id counts (5 minutes)
  uint32_t dedup_capacity = 16384;        // ids the window can hold (a multiple of 8; 512 KiB at 16384)
  uint32_t segment_bytes = 64u << 20;
  // Per level: publishers wait (up to 1 s) while a level is this deep, then
  // get kBackPressured. Settled segments are retired (recycled) at once.
  int64_t max_depth_bytes = 1LL << 30;
  bool prefault_segments = false;         // fault segment pages in when mapped
};

struct QueueMessage {
  std::string_view value;
  std::span<const Header> headers;
  uint32_t priority = 0;
  int64_t deliver_at_unix_ns = 0;         // a delayed message: not delivered before this
  // FIFO message group (SQS MessageGroupId): messages of one group are
  // delivered in publish order and never two at once; groups spread over
  // workers. Empty: no group. Per priority level.
  std::string_view group;
  // De-duplication id (SQS MessageDeduplicationId): a second publish of the
  // same id within the queue's dedup window appends nothing and returns the
  // first one's offset. Empty: none.
  std::string_view dedup_id;
};

struct PublishResult {
  SendStatus status = SendStatus::kError;
  uint64_t offset = 0;                    // in its priority level's log
  uint32_t priority = 0;
  // Nothing appended, `offset` is the original's: the dedup_id was seen
  // within the window, or (idempotent publishers) publish_sequenced() was
  // given a sequence the level already holds.
  bool duplicate = false;
  // Idempotent publishers: the message's sequence in its priority level.
  uint32_t sequence = 0;
  bool ok() const noexcept { return status == SendStatus::kOk; }
};

// How Bus::create_queue_publisher makes a publisher (docs/exactly-once.md,
// section 2: a queue level is a partition of the queue's internal topic).
struct QueuePublisherOptions {
  // Every message gets the next sequence number of its priority level under
  // a producer identity; a publish whose outcome is unknown (the result was
  // lost, or the process restarted) is repeated with publish_sequenced() and
  // appended once. Opening the identity fences every earlier instance.
  bool idempotent = false;
  // The identity (requires `idempotent`): the same name after a restart is
  // the same producer, and its sequences continue. Producer names are one
  // namespace with ProducerOptions::producer_name and transactional ids.
  // Empty: an identity of this publisher's life only.
  std::string producer_name;
  // The only publisher of each priority level it publishes to, while it
  // lives (ProducerOptions::exclusive on the queue's log): it appends
  // without the claim and tail-hint CASes, which wait for lines caught-up
  // workers have just read (one publishing store remains), and other
  // publishers of that level (including dead-letter redrives and unparking
  // into this queue) get SendStatus::kBusy until it closes or its process
  // dies. For a queue with one publisher process.
  bool exclusive = false;
};

// What a handler says about a failure, and what a dead letter records.
struct Failure {
  std::string type;                       // e.g. the exception's type name
  std::string message;
  std::string stack_trace;                // where it came from (TransientError/PermanentError capture it)
};

// Throw from a handler: the message is retried with backoff (transient) or
// dead-lettered at once (permanent). Both capture the stack where they are
// constructed.
class TransientError : public std::runtime_error {
 public:
  explicit TransientError(const std::string& what);
  const std::string& stack_trace() const noexcept { return stack_; }
 private:
  std::string stack_;
};
class PermanentError : public std::runtime_error {
 public:
  explicit PermanentError(const std::string& what);
  const std::string& stack_trace() const noexcept { return stack_; }
 private:
  std::string stack_;
};
// Throw from a run() handler: the message is parked (Worker::park) until
// `until_unix_ns` with `reason` (e.what()). For failures retries will not fix
// soon: a downstream outage, a bad deploy.
class ParkError : public std::runtime_error {
 public:
  ParkError(int64_t until_unix_ns, const std::string& reason)
      : std::runtime_error(reason), until_unix_ns_(until_unix_ns) {}
  int64_t until_unix_ns() const noexcept { return until_unix_ns_; }
 private:
  int64_t until_unix_ns_;
};

// Parking lots (docs/queues.md, section 7, "Parking lot"): the headers a
// parked copy carries. `from` is the queue it came from (and goes back to);
// a message carrying it sits in a lot, and parking it again is refused.
inline constexpr std::string_view kHeaderParkedFrom = "sluice.parked.from";
inline constexpr std::string_view kHeaderParkedReason = "sluice.parked.reason";
inline constexpr std::string_view kHeaderParkedAt = "sluice.parked.at";              // RFC 3339 UTC
inline constexpr std::string_view kHeaderParkedAttempts = "sluice.parked.attempts";  // receives before parking
inline constexpr std::string_view kHeaderParkedUntil = "sluice.parked.until";        // RFC 3339 UTC: not before
inline constexpr std::string_view kHeaderParkedPriority = "sluice.parked.priority";  // its level in `from`
inline constexpr std::string_view kHeaderParkedGroup = "sluice.parked.group";        // its FIFO group, as data
inline constexpr std::string_view kHeaderParkedOffset = "sluice.parked.offset";      // its offset in `from`
// Kept when unparked: how many times the message has been parked so far.
inline constexpr std::string_view kHeaderParkedCount = "sluice.parked.count";

// One received message, leased to this worker until settled or expired. The
// value and headers are views into the queue's log, valid while this object
// lives. A Delivery must not outlive its Worker.
class Delivery {
 public:
  Delivery() noexcept;
  Delivery(Delivery&&) noexcept;
  Delivery& operator=(Delivery&&) noexcept;
  ~Delivery();  // an unsettled delivery stays leased until its lease expires

  bool valid() const noexcept { return worker_ != nullptr; }
  std::string_view value() const noexcept { return view_.value; }
  const HeadersView& headers() const noexcept { return view_.headers; }
  int64_t timestamp_ns() const noexcept { return view_.timestamp_ns; }
  uint32_t priority() const noexcept { return level_; }
  uint64_t offset() const noexcept { return view_.offset; }
  // 1 on first delivery, 2 on the first retry, ...
  uint32_t attempt() const noexcept;
  int64_t lease_deadline_unix_ns() const noexcept { return deadline_ns_; }

  // kLeaseLost when the lease expired and the message went to another worker
  // (an at-least-once duplicate); the call then changes nothing.
  Status ack();
  // Transient failure: offered again after the retry policy's delay (or
  // `delay_ns`), or dead-lettered when it has been received max_receives times.
  Status nack(std::optional<int64_t> delay_ns = std::nullopt);
  // The same, saying what failed: a nack that dead-letters (the last
  // receive) records it in the dead letter.
  Status nack(const Failure& why, std::optional<int64_t> delay_ns = std::nullopt);
  // Permanent failure: dead-lettered now.
  Status reject(const Failure& why);
  // Pushes the lease deadline to now + lease_ns.
  Status extend(int64_t lease_ns);
  // Whether the last nack or reject dead-lettered the message (a nack does
  // on its last receive).
  bool dead_lettered() const noexcept { return dead_lettered_; }
  // Names this lease: "<priority>:<offset>:<lease word, hex>". Any process
  // can settle it with Bus::settle_receipt while the lease holds.
  std::string receipt() const;

 private:
  friend struct WorkerState;
  explicit Delivery(std::shared_ptr<void> keep_alive) noexcept;  // empty, holding a segment
  WorkerState* worker_ = nullptr;
  std::shared_ptr<void> keep_alive_;  // the log segment the views point into
  RecordView view_{};
  uint32_t level_ = 0;
  uint64_t word_ = 0;                 // the slot word of our lease
  int64_t deadline_ns_ = 0;
  bool dead_lettered_ = false;
};

// After `failures` transient failures (nacks) within `window_ns`, stop taking
// messages for `cooldown_ns`; then let one through (half-open): its ack
// closes the breaker, its failure opens it again. The seed's "circuit
// breaker: pause all retries during an outage".
struct CircuitBreaker {
  uint32_t failures = 0;                 // 0: no breaker
  int64_t window_ns = 10'000'000'000;
  int64_t cooldown_ns = 30'000'000'000;
  bool queue_wide = false;               // shared by every worker of the queue (in the state file)
};
enum class BreakerStatus : uint8_t { kClosed, kOpen, kHalfOpen };

struct WorkerOptions {
  // Spin, yield, then park until a publisher's wake-up or the next time
  // something can come due (kBlock); kBusySpin for the lowest latency.
  WaitStrategy wait = WaitStrategy::kBlock;
  Guarantee guarantee = Guarantee::kAtLeastOnce;
  std::optional<int64_t> lease_ns;        // overrides the queue's
  std::optional<RetryPolicy> retry;       // overrides the queue's backoff (max_receives included)
  // How often some worker walks the in-flight messages to return expired
  // leases, leases of dead workers and due retries.
  int64_t sweep_interval_ns = 1'000'000;
  CircuitBreaker breaker;
  // Leases that outlive this process (SQS's visibility timeout alone): they
  // come back when they expire, not when the process dies, and are settled
  // later by receipt (Delivery::receipt, Bus::settle_receipt), e.g. from
  // another command-line invocation.
  bool detached_leases = false;
  // Guarantee::kExactlyOnce (required there, refused elsewhere): run()
  // calls the handler inside processed->process_once(id, ...) and acks
  // after (docs/exactly-once.md, section 6; the id: kHeaderProcessedId).
  // Read by Bus::create_worker only: the worker shares the store it names
  // (its mapping and its pending_wait_ns), so the handle need not outlive
  // the call.
  const ProcessedStore* processed = nullptr;
  // kExactlyOnce, optional: asked, with the id, about an id whose runner
  // died inside the handler: true if the effect committed (the message is
  // acked), false if not (the handler runs). Without one, such a message is
  // dead-lettered as "InDoubt" for an operator to settle. Called on the
  // thread of run(); what it refers to must outlive the worker.
  std::function<bool(std::string_view id)> resolve;
  // Where Worker::park (and a handler's ParkError) sends messages: empty
  // means "<queue>.parking", created on first use (max receives 255). Not
  // the queue itself.
  std::string parking_lot;
};

struct WorkerStats {
  uint64_t received = 0, acked = 0, nacked = 0, dead_lettered = 0, lease_lost = 0, handler_errors = 0;
  uint64_t breaker_opened = 0;        // times this worker's failures opened its breaker
  // kExactlyOnce: messages acked without running the handler, their id being
  // done (or a resolver saying so); messages dead-lettered as in doubt.
  uint64_t already_done = 0, in_doubt = 0;
  uint64_t parked = 0;                // moved to the parking lot (Worker::park, ParkError)
  BreakerStatus breaker = BreakerStatus::kClosed;
};

// What a handler returns is an ack; a TransientError (or any other exception)
// a nack; a PermanentError a dead letter; a ParkError parks the message
// (Worker::park; a park that fails is a nack).
//
// Guarantee::kExactlyOnce: run() calls the handler inside
// ProcessedStore::process_once with the message's id (kHeaderProcessedId):
//   the handler returned; the id is done                      -> ack
//   the id was done, or the resolver says the effect committed -> ack, not run
//   its last runner died inside the handler, and no resolver  -> dead letter "InDoubt"
//   the handler or the resolver throws; the id is not done    -> as above
//   another live runner holds the id, or its bucket is full   -> nack (the retry delay)
//   an id over 256 bytes; a damaged bucket of the store       -> dead letter
using Handler = std::function<void(const Delivery&)>;

class Worker {
 public:
  Worker(Worker&&) noexcept;
  Worker& operator=(Worker&&) noexcept;
  ~Worker();

  // Leases up to out.size() messages, waiting up to timeout_ns for the first.
  // Returns how many (0 on timeout). At-most-once workers have them acked
  // already.
  Result<size_t> receive(std::span<Delivery> out, int64_t timeout_ns = 0);
  // Receives and handles messages one at a time until `stop` returns true
  // (checked between messages and at least every `idle_ns` while idle) or
  // `max_messages` have been handled (0: no limit). Returns how many.
  Result<uint64_t> run(const Handler& handler, const std::function<bool()>& stop, uint64_t max_messages = 0,
                       int64_t idle_ns = 10'000'000);
  // Parks `d`, leased by this worker: publishes a copy (payload and headers,
  // plus the sluice.parked.* headers above) to the parking lot, delivered
  // not before `until_unix_ns` (at most 14 days ahead; the past means at
  // once), then settles `d` as done. At least once: a crash between the two
  // leaves `d` to be redelivered, and its second parking is the same parked
  // copy (de-duplication id park:<queue>:<priority>:<offset>@<epoch ms>,
  // within the lot's de-duplication window). kInvalidArgument: `d` is not
  // leased by this worker, is a parked copy itself (it sits in a lot), or
  // `until` is too far; kLeaseLost: the lease ended (nothing was parked).
  Status park(Delivery& d, int64_t until_unix_ns, std::string_view reason);
  const WorkerStats& stats() const noexcept;
  Guarantee guarantee() const noexcept;
  // The id under which run() processes `d` with kExactlyOnce (see
  // kHeaderProcessedId), whatever this worker's guarantee: for a handler
  // that commits its effect with the id (what a resolver looks for), a loop
  // of one's own around receive() and ProcessedStore::process_once, and
  // settling by hand. No allocation. Valid while `d` lives and until the
  // next call of processed_id on this worker.
  std::string_view processed_id(const Delivery& d) const noexcept;

 private:
  friend class Bus;
  explicit Worker(std::unique_ptr<WorkerState> state);
  std::unique_ptr<WorkerState> state_;
};

// A daily window in UTC, [start, end) in minutes of the day; an end before
// the start wraps past midnight ("22:00-02:00"); start == end is all day.
struct DailyWindow {
  uint32_t start_minute = 0, end_minute = 0;
  bool contains(int64_t unix_ns) const noexcept;
  // The first instant at or after `unix_ns` inside the window.
  int64_t next_open_unix_ns(int64_t unix_ns) const noexcept;
};
// "HH:MM-HH:MM" (UTC, 00:00-23:59), as `sluice queue unpark --window` takes it.
Result<DailyWindow> parse_daily_window(std::string_view text);

// What Bus::unpark moves, and how fast.
struct UnparkOptions {
  // Where due messages go: empty means back to their source queue
  // (kHeaderParkedFrom); a message without one, or whose queue is gone,
  // is left in the lot (UnparkResult::skipped).
  std::string to;
  uint64_t max_messages = 0;       // 0: every due message
  // At most this many messages per second of the bus clock (0: unpaced);
  // between messages the call waits with `wait_until`.
  double rate_per_sec = 0;
  // Release only while the bus clock is inside this window; outside it the
  // call moves nothing (UnparkResult::outside_window).
  std::optional<DailyWindow> window;
  // Which due messages to move; the others stay in the lot (each such look
  // counts as one receive there). Null: all.
  std::function<bool(const Delivery&)> filter;
  // How the pacing waits until a bus-clock time. Null: sleeps on the real
  // clock until the bus clock reaches it. Tests advance a ManualClock.
  std::function<void(int64_t unix_ns)> wait_until;
  // Tests: called after a message's re-publish, before its ack in the lot;
  // false stops the call there, leaving that message leased (a crash).
  std::function<bool(const Delivery&)> before_ack;
};
struct UnparkResult {
  uint64_t moved = 0;              // re-published and acked in the lot
  uint64_t duplicates = 0;         // of those, already re-published earlier (a crash before its ack)
  uint64_t skipped = 0;            // due, but left in the lot (filter; no source, or no such queue, and no `to`)
  bool outside_window = false;
  int64_t window_opens_unix_ns = 0;  // outside_window: when it opens next
};

// Where a dead letter came from and why: the seed's DLQ record.
struct DeadLetter {
  Failure failure;
  std::string source;          // "queue:<name>" or "topic:<name>"
  uint32_t partition = 0;      // the queue's priority level, or the topic's partition
  uint64_t offset = 0;
  uint32_t attempts = 0;
  std::string consumer_group;  // a stream consumer's group, if any
};

class QueuePublisher {
 public:
  QueuePublisher(QueuePublisher&&) noexcept;
  QueuePublisher& operator=(QueuePublisher&&) noexcept;
  ~QueuePublisher();
  PublishResult publish(const QueueMessage& message) noexcept;
  // Publishes a dead letter to this (dead-letter) queue: `value` and
  // `headers` as they were, plus sluice.dlq.* headers with `letter`, the
  // failure time (RFC 3339 UTC), process and worker, and the
  // de-duplication id dlq:<source>:<partition>:<offset>, so that one source
  // message becomes one dead letter however often it is dead-lettered.
  PublishResult publish_dead_letter(std::string_view value, std::span<const Header> headers,
                                    const DeadLetter& letter) noexcept;
  const Error& last_error() const noexcept;
  uint32_t priorities() const noexcept;  // valid QueueMessage::priority values are below this

  // Idempotent publishers (QueuePublisherOptions::idempotent; kError with
  // kInvalidArgument otherwise), as Producer::send_sequenced: `message` is
  // appended as sequence `sequence` of its priority level when that is
  // next_sequence(); below, nothing is appended and the result is a
  // duplicate carrying the original's offset (kNoOffset if older than the
  // identity's last 32 frames in the level); above, kOutOfOrderSequence.
  PublishResult publish_sequenced(const QueueMessage& message, uint32_t sequence) noexcept;
  // The sequence the next message published at `priority` gets.
  Result<uint32_t> next_sequence(uint32_t priority) noexcept;
  // The identity: pid (0 for a plain publisher) and this instance's epoch.
  uint64_t producer_id() const noexcept;
  uint16_t producer_epoch() const noexcept;

 private:
  friend class Bus;
  friend struct QueuePublisherAccess;  // transactions make bound publishers
  struct Impl;
  explicit QueuePublisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct QueueLevelStats {
  uint64_t published = 0;      // offsets assigned in the level's log
  uint64_t settled_below = 0;  // the ack floor
  uint64_t depth = 0;          // published - settled_below: waiting, in flight, delayed
  uint64_t unsettled = 0;      // depth minus those already settled above the floor
  uint64_t in_flight = 0, ready = 0, delayed = 0;
  uint64_t received = 0, acked = 0, nacked = 0, dead_lettered = 0, redelivered = 0, owner_deaths = 0,
           lease_lost = 0;
  int64_t oldest_unsettled_age_ns = 0;
};

// A message seen by Bus::browse_queue, copied out: browsing changes nothing.
enum class QueueEntryState : uint8_t {
  kWaiting,   // published, never taken
  kInFlight,  // leased
  kReady,     // to be delivered again
  kDelayed,   // waiting for its retry or delivery time
  kBlocked,   // a FIFO group message behind an earlier one
};
struct QueueEntry {
  uint32_t priority = 0;
  uint64_t offset = 0;
  int64_t timestamp_ns = 0;
  QueueEntryState state = QueueEntryState::kWaiting;
  uint32_t attempts = 0;  // receives so far
  std::string value;
  std::vector<std::pair<std::string, std::string>> headers;
};

// What Bus::settle_receipt does with a leased message.
enum class Settle : uint8_t { kAck, kNack, kReject };

// The Workers of one process (one Bus handle) on a queue, as the queue's
// state file counts them: any process can read them (Bus::queue_stats). The
// counters are WorkerStats' summed over that handle's Workers of this queue
// since its first one was made. A process that died or closed its Bus keeps
// its last counts, `alive` false, until another process takes its registry
// slot and makes a Worker of this queue.
struct QueueWorkerStats {
  uint32_t pid = 0;
  uint32_t registry_slot = 0;        // its slot in the bus's process registry
  bool alive = false;                // the handle is still attached to the bus
  int64_t attached_unix_ms = 0;      // its first Worker of this queue was made (bus clock)
  int64_t last_active_unix_ms = 0;   // its latest receive or settle (bus clock)
  uint64_t workers = 0;              // its Workers of this queue that exist now
  uint64_t breakers_open = 0;        // of those, held back by a breaker (theirs or the queue's) now
  uint64_t received = 0, acked = 0, nacked = 0, dead_lettered = 0, lease_lost = 0, handler_errors = 0;
  uint64_t already_done = 0, in_doubt = 0;  // kExactlyOnce, as in WorkerStats
  uint64_t breaker_opened = 0;
};

struct QueueStats {
  std::string name;
  std::string dead_letter_queue;
  BreakerStatus breaker = BreakerStatus::kClosed;  // the queue-wide breaker
  bool is_dead_letter_queue = false;                 // made to receive another queue's dead letters
  QueueOptions options;                              // as the queue was created (dead_letter_queue "-": none)
  std::vector<QueueLevelStats> levels;  // index = priority
  // One entry per process that made Workers of this queue, by registry slot.
  // Empty, with tracks_workers false, for a queue whose state file predates
  // the worker table (format version 1): it works, but counts no workers.
  std::vector<QueueWorkerStats> workers;
  bool tracks_workers = false;
  QueueLevelStats total() const;
};

}  // namespace sluice
