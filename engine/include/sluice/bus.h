// A bus: a directory of memory-mapped files that any number of processes open
// at once. There is no broker: housekeeping (retention, repairing what dead
// writers left, recovery after a crash) is done by the processes attached.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sluice/consumer.h>
#include <sluice/options.h>
#include <sluice/processed.h>
#include <sluice/producer.h>
#include <sluice/queue.h>
#include <sluice/status.h>
#include <sluice/transaction.h>

namespace sluice {

struct BusState;

inline constexpr uint64_t kNoOffset = UINT64_MAX;

struct SegmentInfo {
  uint64_t base_offset = 0;
  uint64_t end_offset = 0;    // one past the last record claimed in it
  uint64_t bytes_used = 0;    // frame bytes claimed
  uint32_t capacity = 0;
  bool sealed = false;
  std::string path;
};

// What holds a partition's last stable offset below its end: the first
// record not decided yet belongs to a transaction (or to a claim in flight).
// Read from the bus without resolving anything: a dead holder shows as dead
// until a read-committed reader waiting there, housekeeping or `sluice txn
// abort` aborts its transaction.
struct StableOffsetHolder {
  // The transaction's state: "ongoing", "committing" or "aborting" (the
  // latter two: decided, being carried out); "straggler": a frame whose
  // transaction is over (written after a helper's abort; the next reader
  // aborts it); "claimed": a writer's claim in flight, no transaction (pid 0).
  std::string state;
  uint64_t pid = 0;
  std::string name;              // the transactional id; empty: unnamed
  uint16_t epoch = 0;            // the frame's
  bool alive = false;            // the holding process is attached
  int64_t held_ns = 0;           // bus clock minus the held record's timestamp; 0 for a claim
  int64_t deadline_unix_ms = 0;  // ongoing: when any process may abort it
};

struct PartitionInfo {
  uint32_t partition = 0;
  uint64_t start_offset = 0;  // first offset still in the log
  uint64_t end_offset = 0;    // next offset to be assigned
  // The last stable offset: the first record not decided yet (an open
  // transaction's, or a claim in flight), or end_offset. Read-committed
  // readers stop there.
  uint64_t stable_offset = 0;
  std::optional<StableOffsetHolder> held_by;  // set when stable_offset < end_offset
  uint64_t bytes = 0;         // frame bytes held by its segments
  uint64_t repaired_claims = 0;
  std::vector<SegmentInfo> segments;
};

struct TopicDescription {
  std::string name;
  TopicOptions options;
  std::vector<PartitionInfo> partitions;
};

struct PartitionLag {
  std::string topic;
  uint32_t partition = 0;
  uint64_t committed = kNoOffset;  // next offset the group will read; kNoOffset: none yet
  uint64_t end_offset = 0;
  // The last stable offset: the first record not decided yet (a
  // transaction's, or a claim in flight), or end_offset. Read-committed
  // readers stop there. The partition's, whatever the group's position (a
  // read-uncommitted group may be past it).
  uint64_t stable_offset = 0;
  std::optional<StableOffsetHolder> held_by;  // set when stable_offset < end_offset
  uint64_t lag_records = 0;
  // Records between the group's position and the LSO: what a read-committed
  // member can still read now (lag_records when nothing is held).
  uint64_t lag_stable_records = 0;
  uint64_t lag_bytes = 0;
  int64_t oldest_unconsumed_age_ns = 0;  // 0 when caught up
  int64_t last_commit_unix_ns = 0;
};

// An idempotent or transactional producer identity (`sluice txn list`).
struct ProducerIdentityInfo {
  uint64_t pid = 0;
  std::string name;        // empty: unnamed
  uint16_t epoch = 0;      // of the instance that opened it last
  bool alive = false;      // that instance's process is attached
  std::string state;       // free, ready, ongoing, committing, aborting
  int64_t deadline_unix_ms = 0;  // ongoing: when any process may abort it
  uint32_t partitions = 0;       // ongoing: partitions it wrote to
  uint64_t opens = 0, fenced_sends = 0, duplicates = 0, takeovers = 0, committed = 0, aborted = 0,
           aborted_by_others = 0;
};

struct GroupDescription {
  std::string group;
  std::vector<PartitionLag> partitions;  // every topic the group has offsets for
};

struct SeekTarget {
  enum class Kind : uint8_t { kBeginning, kEnd, kOffset, kTime };
  Kind kind = Kind::kBeginning;
  int64_t value = 0;  // the offset, or Unix ms for kTime
  static SeekTarget beginning() { return {Kind::kBeginning, 0}; }
  static SeekTarget end() { return {Kind::kEnd, 0}; }
  static SeekTarget offset(uint64_t o) { return {Kind::kOffset, static_cast<int64_t>(o)}; }
  static SeekTarget time_ms(int64_t unix_ms) { return {Kind::kTime, unix_ms}; }
};

struct VerifyIssue {
  std::string topic;
  uint32_t partition = 0;
  std::string segment;   // file path
  uint64_t position = 0; // byte position in the segment's frame region
  uint64_t offset = 0;
  std::string what;
};

struct VerifyReport {
  uint64_t segments = 0, frames = 0, records = 0, aborted_frames = 0, bytes = 0;
  // Frames of transactions not decided yet (their records are checked, not
  // counted in `records`).
  uint64_t prepared_frames = 0;
  // Claims not published yet: CLAIMED frames, and claimed ranges whose claim
  // word is not written yet (a writer between its claim and its word, or a
  // dead one's, which the next reader or writer there repairs). Not issues.
  uint64_t open_claims = 0;
  // Segments whose walk stopped at a range a live writer is still filling:
  // the frames after it were not checked (run verify again).
  uint64_t segments_partly_checked = 0;
  std::vector<VerifyIssue> issues;
  bool ok() const { return issues.empty(); }
};

// What opening the bus repaired. Recovery runs when a process opens a bus no
// other live process has open (after a crash of all of them, or a reboot).
struct RecoveryReport {
  bool ran = false;
  uint64_t partitions = 0;
  uint64_t frames_checked = 0;
  uint64_t claims_aborted = 0;       // claims of dead writers turned into aborted frames
  uint64_t torn_frames = 0;          // frames failing validation at a tail, cut off
  uint64_t torn_bytes_zeroed = 0;
  uint64_t index_slots_rebuilt = 0;
  std::vector<std::string> notes;    // one line per action, naming the file
};

class Bus {
 public:
  // Opens (creating if allowed) the bus in `dir`. Recovers if this is the
  // only process attached. Errors: kNotFound, kVersionMismatch, kCorruption.
  static Result<Bus> open(const std::string& dir, const BusOptions& options = {});
  Bus(Bus&&) noexcept;
  Bus& operator=(Bus&&) noexcept;
  ~Bus();

  const std::string& dir() const noexcept;
  const Clock& clock() const noexcept;
  const RecoveryReport& recovery() const noexcept;

  Status create_topic(std::string_view name, const TopicOptions& options);
  Result<std::vector<std::string>> list_topics() const;
  Result<TopicDescription> describe_topic(std::string_view name) const;
  // Removes the topic's files. Processes that have it open keep their
  // mappings until they close; new opens fail with kNotFound.
  Status delete_topic(std::string_view name);

  Result<Producer> create_producer(std::string_view topic, const ProducerOptions& options = {});
  // A transactional identity `name` with producers for any topics
  // (sluice/transaction.h). Fences every earlier instance of the name and
  // settles the transaction one of them left open.
  Result<TransactionalProducer> create_transactional_producer(std::string_view name,
                                                              const TransactionOptions& options = {});
  // Every producer identity of the bus (none: an empty list).
  Result<std::vector<ProducerIdentityInfo>> list_producers();
  // Aborts the open transaction of identity `name` now, deadline or not (its
  // holder is fenced), or finishes one already decided: the tool for a
  // transaction that holds read-committed readers. kNotFound when the name
  // is unknown or has no transaction open.
  Status abort_transaction(std::string_view name);
  // `group` empty: a standalone reader that commits nothing and starts at the
  // beginning of each partition.
  Result<Consumer> create_consumer(std::string_view topic, std::string_view group,
                                   const ConsumerOptions& options = {});

  // Work queues (docs/queues.md). A queue's name follows the topic rules;
  // queues and topics are separate namespaces.
  Status create_queue(std::string_view name, const QueueOptions& options = {});
  Result<std::vector<std::string>> list_queues() const;
  Result<QueueStats> queue_stats(std::string_view name) const;
  // Up to `max` unsettled messages of one priority level from `from_offset`
  // on (the ack floor at the least), in offset order, without leasing or
  // changing anything: for inspection (sluice dlq list/show).
  Result<std::vector<QueueEntry>> browse_queue(std::string_view name, uint32_t priority, uint64_t from_offset = 0,
                                               size_t max = 1000) const;
  // Removes the queue's files; processes that have it open keep their
  // mappings until they close.
  Status delete_queue(std::string_view name);
  Result<QueuePublisher> create_queue_publisher(std::string_view queue, const QueuePublisherOptions& options = {});
  Result<Worker> create_worker(std::string_view queue, const WorkerOptions& options = {});
  // Settles the message a Delivery::receipt() names, from any process:
  // kLeaseLost if that lease is over (expired and offered again, or settled).
  // kNack retries it per the queue's policy; kReject dead-letters it.
  Status settle_receipt(std::string_view queue, std::string_view receipt, Settle how,
                        const Failure& why = {});
  // Settles every message of the queue published before the call, leased
  // ones included (their holders' acks then fail with kLeaseLost). Returns
  // how many were removed. Like SQS PurgeQueue.
  Result<uint64_t> purge_queue(std::string_view queue);
  // Moves the due messages of parking lot `lot` (Worker::park) back to their
  // source queue (or options.to), headers restored, each acked in the lot
  // only after its re-publish (de-duplication id unpark:<lot>:<priority>:
  // <offset>@<epoch ms>, so a crash in between makes one copy). On the bus
  // clock; see UnparkOptions. kNotFound for an unknown lot.
  Result<UnparkResult> unpark(std::string_view lot, const UnparkOptions& options = {});

  // Processed-id stores (sluice/processed.h, docs/exactly-once.md section
  // 6): `processed/<name>`, names as for topics. Opens the store, creating
  // it with `options` when absent; an existing store keeps the window and
  // capacity it was created with (ProcessedStore::window_ns, capacity).
  Result<ProcessedStore> open_processed_store(std::string_view name, const ProcessedStoreOptions& options = {});
  Result<std::vector<std::string>> list_processed_stores() const;
  // Removes the store's file; processes that have it open keep their
  // mapping until they close it. Its ids are forgotten.
  Status delete_processed_store(std::string_view name);

  Result<std::vector<std::string>> list_groups() const;
  Result<GroupDescription> describe_group(std::string_view group) const;
  // Moves a group's committed offsets. Running members of the group notice on
  // their next poll and continue from there.
  Status seek_group(std::string_view group, std::string_view topic, SeekTarget target,
                    std::optional<uint32_t> partition = {});

  // Reads every record of `topic` (all topics if empty), checking checksums,
  // frame chaining and index slots.
  Result<VerifyReport> verify(std::string_view topic = {}) const;
  // Applies retention and repairs stalled claims now (also done as a side
  // effect of producing and consuming).
  Status housekeep();

 private:
  explicit Bus(std::shared_ptr<BusState> state);
  std::shared_ptr<BusState> state_;
};

// Whether `name` is a valid topic or group name: 1..200 of [A-Za-z0-9._-],
// and not "." or "..".
Status validate_name(std::string_view name, std::string_view what);

}  // namespace sluice
