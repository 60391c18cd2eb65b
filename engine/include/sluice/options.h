// Settings of a bus, a topic, a producer and a consumer. Defaults are what a
// user should get without thinking; each field says its unit.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <sluice/clock.h>
#include <sluice/status.h>

namespace sluice {

// What a consumer does when its position is no longer in the log (retention
// removed it) or it has none yet (Kafka's auto.offset.reset).
enum class OffsetReset : uint8_t { kEarliest, kLatest, kFail };

// What a full retention window does to a topic.
enum class RetentionMode : uint8_t {
  kDelete,        // old segments are deleted; slow consumers are reset
  kBackPressure,  // producers wait or fail while the slowest group is a full
                  // retention_bytes window behind; nothing unconsumed is deleted
};

enum class WaitStrategy : uint8_t {
  kBusySpin,   // lowest latency; one core at 100% while waiting
  kSpinYield,  // spin, then sched_yield
  kBlock,      // spin, yield, then park on a futex: an idle consumer is free
};

struct BusOptions {
  const Clock* clock = nullptr;  // nullptr: Clock::system()
  bool create_if_missing = true;
};

struct TopicOptions {
  uint32_t partitions = 1;
  uint32_t segment_bytes = 64u << 20;       // frame capacity of one segment, 64 KiB..1 GiB
  uint32_t index_interval_bytes = 4096;     // one index slot per this many data bytes
  int64_t retention_bytes = -1;             // per partition; -1: unlimited
  int64_t retention_ms = -1;                // by record age; -1: unlimited
  RetentionMode retention_mode = RetentionMode::kDelete;
  OffsetReset auto_offset_reset = OffsetReset::kEarliest;
  // Last resort against a writer that claimed space and stalls while alive:
  // after this long the claim is aborted (its commit then fails). A dead
  // writer's claim is repaired as soon as liveness shows it dead.
  int64_t claim_timeout_ns = 10'000'000'000;
  bool prefault_segments = false;  // fault segment pages in when mapped
  bool huge_pages = false;         // MADV_HUGEPAGE on segment mappings
  // kBackPressure only: retire a segment as soon as every group has
  // committed past it, whatever retention_bytes says (a work queue's log:
  // settled messages are not kept for replay).
  bool retire_consumed = false;
};

// How a record without a key (and without an explicit partition) is placed.
enum class KeylessPartitioning : uint8_t {
  kSticky,      // stay on one partition for sticky_records, then move on
  kRoundRobin,  // one partition after another
};

struct ProducerOptions {
  // One writer per partition: the producer takes the partition's writer lock
  // exclusively and appends without atomic read-modify-writes. Other
  // producers of that partition get kBusy until it closes or dies.
  bool exclusive = false;
  KeylessPartitioning keyless = KeylessPartitioning::kSticky;
  uint32_t sticky_records = 256;
  // kBackPressure topics: how long send() waits for room before it returns
  // SendStatus::kBackPressured. 0: fail at once.
  int64_t back_pressure_timeout_ns = 0;
  // Idempotence (docs/exactly-once.md): the bus gives the producer an id
  // and an epoch, and every record a sequence number per partition.
  bool idempotent = false;
  // With `idempotent`: the identity's name. Opening a name again (after a
  // crash, or from another process) continues its sequences and fences the
  // previous instance (its sends fail with kFenced). Empty: a fresh identity
  // that de-duplicates within its own life only.
  std::string producer_name;
};

// The delivery guarantee of a consumer (when it commits relative to
// processing) or a queue worker (when it acks).
enum class Guarantee : uint8_t {
  kAtLeastOnce,  // commit/ack after processing: a crash redelivers (default)
  kAtMostOnce,   // commit/ack before records are handed out: a crash loses them
  // The handler's effect happens once per id: a Worker with a processed-id
  // store (WorkerOptions::processed, docs/exactly-once.md section 6). A
  // plain Consumer refuses it (kInvalidArgument): it has no such machinery.
  kExactlyOnce,
};

struct ConsumerEvent {
  enum class Kind : uint8_t {
    kOffsetReset,    // position was outside the log; moved per reset policy
    kCorruption,     // a frame failed validation; see `message`
    kClaimRepaired,  // this consumer aborted a dead or stalled writer's claim
    kGroupSeek,      // an admin moved the group's committed offset
  };
  Kind kind;
  uint32_t partition;
  // kOffsetReset/kGroupSeek: the position before and after. kCorruption and
  // kClaimRepaired: the offsets skipped, [from_offset, to_offset).
  uint64_t from_offset;
  uint64_t to_offset;
  std::string message;
};

// What a reader sees of records written in transactions (docs/exactly-once.md).
enum class Isolation : uint8_t {
  // Records of committed transactions only: the reader stops at the first
  // undecided one (the partition's last stable offset) and never sees an
  // aborted one. Costs nothing on topics without transactions (default).
  kReadCommitted,
  // Also records of transactions not decided yet, some of which may abort.
  kReadUncommitted,
};

struct ConsumerOptions {
  Guarantee guarantee = Guarantee::kAtLeastOnce;
  Isolation isolation = Isolation::kReadCommitted;
  // Commit the positions handed out so far every auto_commit_interval_ns,
  // checked on poll against the bus clock's coarse (millisecond) reading
  // (at-least-once: positions of records returned by earlier polls). false:
  // call commit_sync()/commit_async().
  bool auto_commit = true;
  int64_t auto_commit_interval_ns = 1'000'000'000;
  WaitStrategy wait = WaitStrategy::kBlock;
  std::optional<OffsetReset> offset_reset;  // overrides the topic's policy
  std::vector<uint32_t> partitions;         // empty: all partitions
  bool verify_checksums = true;
  // On a corrupt frame: false stops the partition with an Error from poll();
  // true skips to the next readable frame and reports a kCorruption event.
  bool skip_corrupt = false;
  std::function<void(const ConsumerEvent&)> on_event;  // called on the polling thread
};

}  // namespace sluice
