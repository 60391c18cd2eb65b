// Reading a topic, alone or as a member of a consumer group.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include <sluice/options.h>
#include <sluice/record.h>
#include <sluice/status.h>

namespace sluice {

struct ConsumerState;
struct PartitionLag;

struct ConsumerStats {
  uint64_t records = 0;           // handed out by poll
  uint64_t commits = 0;
  uint64_t offset_resets = 0;
  uint64_t corrupt_frames = 0;
  uint64_t claims_repaired = 0;   // dead or stalled writers' claims this consumer aborted
};

// Reads the partitions it is assigned (all, unless options.partitions says
// otherwise), each in strict offset order, round-robin between partitions.
// With a group, positions start at the group's committed offsets and commits
// move them; without one (empty group name), nothing is committed. The
// assignment is fixed for the Consumer's life (sluice has no rebalancing).
// Not thread-safe: one Consumer per thread.
struct ConsumerAccess;

class Consumer {
 public:
  Consumer(Consumer&&) noexcept;
  Consumer& operator=(Consumer&&) noexcept;
  ~Consumer();  // commits synchronously if auto_commit is on

  // Fills `out` with up to out.size() records that are ready now. Never
  // blocks and, in steady state, makes no system call. Views stay valid until
  // the next poll, seek or destruction of this Consumer. Errors: kCorruption
  // (skip_corrupt off), kOffsetOutOfRange (reset policy kFail).
  Result<size_t> try_poll(std::span<RecordView> out) noexcept;
  // As try_poll, waiting up to timeout_ns for the first record with the
  // configured wait strategy.
  Result<size_t> poll(std::span<RecordView> out, int64_t timeout_ns) noexcept;

  // Commits the position after every record handed out so far.
  // sync: the offsets are durable (msync) on return; async: visible to every
  // process at once, written back by the OS later. Each partition's offset
  // is one atomic 8-byte store: never torn.
  Status commit_sync();
  void commit_async() noexcept;
  // Commits `next_offset` (the next record to consume) for one partition.
  Status commit(uint32_t partition, uint64_t next_offset, bool sync);

  void seek(uint32_t partition, uint64_t offset);
  void seek_to_beginning(std::optional<uint32_t> partition = {});
  void seek_to_end(std::optional<uint32_t> partition = {});
  // The first record whose timestamp is >= unix_ns (end if none).
  Status seek_to_time(int64_t unix_ns, std::optional<uint32_t> partition = {});
  // Next offset this consumer will read in `partition`.
  uint64_t position(uint32_t partition) const;

  // The delivery guarantee this consumer gives (docs/exactly-once.md, the
  // table at the top): its ConsumerOptions::guarantee, except for a consumer
  // bound to a TransactionalProducer, whose positions are committed only by
  // the transaction that also commits what it produced: kExactlyOnce within
  // the bus (consume-transform-produce).
  Guarantee guarantee() const noexcept;
  Isolation isolation() const noexcept;

  // Pausing, as Kafka's consumer does it: a paused partition hands out no
  // records and its position stays where it is, while the other partitions
  // flow; resume() continues from that position, so nothing is skipped and
  // nothing read twice. (docs/architecture.md, "Pausing partitions".)
  // - Commits are unchanged: they commit what was handed out, paused or not.
  // - seek()s of a paused partition move its position and leave it paused;
  //   so does an admin seek of the group (Bus::seek_group), noticed and
  //   reported (kGroupSeek) while paused. A position removed by retention
  //   is reset (kOffsetReset) when the partition is read again, after its
  //   resume.
  // - Pausing is this Consumer's own state: not shared with the group's
  //   other members, not persisted; a new Consumer starts with every
  //   partition flowing. Should assignments ever change (rebalancing), a
  //   partition no longer assigned loses its pause, as in Kafka.
  // - Pausing a paused partition, or resuming a flowing one, does nothing.
  // - May be called from options.on_event (it takes effect in that poll for
  //   the partition reported, and at the latest in the next poll for others).
  // Errors, in which case nothing changed: kInvalidArgument for a partition
  // outside the topic or not assigned to this Consumer.
  Status pause(std::span<const uint32_t> partitions);
  Status pause(std::initializer_list<uint32_t> partitions) { return pause(std::span(partitions)); }
  Status pause(uint32_t partition) { return pause(std::span(&partition, 1)); }
  Status resume(std::span<const uint32_t> partitions);
  Status resume(std::initializer_list<uint32_t> partitions) { return resume(std::span(partitions)); }
  Status resume(uint32_t partition) { return resume(std::span(&partition, 1)); }
  // The paused partitions, ascending.
  std::vector<uint32_t> paused() const;
  // False for a partition not assigned.
  bool is_paused(uint32_t partition) const noexcept;

  const std::vector<uint32_t>& assignment() const noexcept;
  const ConsumerStats& stats() const noexcept;
  // Per assigned partition: committed offset, end offset, lag.
  Result<std::vector<PartitionLag>> lag() const;

 private:
  friend class Bus;
  friend struct ConsumerAccess;
  explicit Consumer(std::unique_ptr<ConsumerState> state);
  std::unique_ptr<ConsumerState> state_;
};

}  // namespace sluice
