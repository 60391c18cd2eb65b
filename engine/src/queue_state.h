// An opened work queue: its state file (queue_format.h), its internal topic
// and the group that records its ack floors. Design: docs/queues.md.
#pragma once

#include <sluice/queue.h>

#include <memory>
#include <string>

#include "bus_state.h"
#include "group_offsets.h"
#include "ipc/mapped_file.h"
#include "queue_format.h"

namespace sluice {

// Reserved header names the engine writes into queue messages.
inline constexpr std::string_view kHeaderNotBefore = "sluice.not_before";  // Unix ms, decimal
inline constexpr std::string_view kHeaderGroup = "sluice.group";            // FIFO message group id

struct QueueState {
  BusState* bus = nullptr;
  std::string name;
  ipc::MappedFile file;
  format::QueueParams params{};
  std::shared_ptr<TopicState> log;
  std::unique_ptr<GroupOffsets> floors;
  ipc::MappedFile dedup;  // queues/<q>/dedup
  format::DedupParams dedup_params{};
  uint32_t worker_slots = 0;  // slots of the worker table; 0 in a version-1 file (none)

  uint32_t levels() const noexcept { return params.priorities; }
  uint64_t window() const noexcept { return params.window; }
  format::QueueLevel& level(uint32_t l) const noexcept {
    return reinterpret_cast<format::QueueLevel*>(file.data() + format::kQueueLevelsOffset)[l];
  }
  std::atomic<uint64_t>& slot(uint32_t l, uint64_t offset) const noexcept {
    auto* base = reinterpret_cast<std::atomic<uint64_t>*>(file.data() + format::kQueueSlotsOffset);
    return base[uint64_t{l} * params.window + (offset & (params.window - 1))];
  }
  std::atomic<uint64_t>& group(uint32_t l, uint64_t offset) const noexcept {
    auto* base = reinterpret_cast<std::atomic<uint64_t>*>(file.data() + format::kQueueSlotsOffset);
    return base[(uint64_t{params.priorities} + l) * params.window + (offset & (params.window - 1))];
  }
  // Queue time (ms since params.epoch_unix_ms, wrapping) of a Unix time.
  uint32_t queue_ms(int64_t unix_ns) const noexcept {
    return static_cast<uint32_t>(static_cast<uint64_t>(unix_ns / 1'000'000 - params.epoch_unix_ms));
  }
  // The Unix time of queue time `t`, taking the one nearest to `now_unix_ns`.
  int64_t unix_ns_of(uint32_t t, int64_t now_unix_ns) const noexcept {
    return now_unix_ns + int64_t{static_cast<int32_t>(t - queue_ms(now_unix_ns))} * 1'000'000;
  }
  // REQUIRES: r < worker_slots (the table was checked against the file's size).
  format::QueueWorkerSlot* worker_slot(uint32_t r) const noexcept {
    return reinterpret_cast<format::QueueWorkerSlot*>(file.data() + params.workers_offset) + r;
  }
  std::atomic<uint64_t>& breaker() const noexcept {
    return *reinterpret_cast<std::atomic<uint64_t>*>(file.data() + format::kQueueBreakerOffset);
  }
  // The bucket of an id whose XXH3-64 is `id_hash` (queue_format.h).
  format::DedupBucket& dedup_bucket(uint64_t id_hash) const noexcept {
    const uint64_t h = dedup_params.flags & format::kDedupFullHashBuckets ? id_hash : id_hash | 1;
    return reinterpret_cast<format::DedupBucket*>(dedup.data() + format::kDedupBucketsOffset)[h % dedup_params.buckets];
  }
  std::string dead_letter_queue() const {
    return std::string(params.dead_letter_queue, strnlen(params.dead_letter_queue, sizeof params.dead_letter_queue));
  }
};

std::string queue_topic_name(std::string_view queue);
Status validate_queue_options(const QueueOptions& options);
// Creates queues/<name>/state and the internal topic. kAlreadyExists if the
// queue exists. `is_dead_letter_queue` marks queues made for dead letters.
Status create_queue_files(BusState& bus, std::string_view name, const QueueOptions& options,
                          bool is_dead_letter_queue = false);
// kNotFound for an unknown queue; kCorruption/kVersionMismatch for a bad file.
Result<std::unique_ptr<QueueState>> open_queue(BusState& bus, std::string_view name);
Result<QueueStats> queue_stats(BusState& bus, std::string_view name);

// De-duplication (queue_format.h, docs/queues.md section 6).
struct DedupHit {
  uint32_t level = 0;
  uint64_t offset = 0;
};
// Looks `id` up. A live entry (published within the window): returns it.
// Otherwise claims an entry for this publisher (PENDING) in *claimed and
// returns nullopt; follow with dedup_complete() or dedup_release(). Waits
// (bounded) while another publisher of the same id is between its claim and
// its append, or its transaction is open and its process alive (a HELD
// entry whose transaction the log shows over is completed or taken over at
// once: docs/exactly-once.md, section 11). kBusy: the id's bucket is full of live ids, or the wait ran out.
Result<std::optional<DedupHit>> dedup_claim(QueueState& q, std::string_view id, int64_t now_ns,
                                           format::DedupEntry** claimed);
void dedup_complete(format::DedupEntry* e, uint32_t level, uint64_t offset, int64_t now_ns);
void dedup_release(format::DedupEntry* e);

}  // namespace sluice
