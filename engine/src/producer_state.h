// The state behind a Producer handle.
#pragma once

#include <sluice/options.h>
#include <sluice/producer.h>

#include <memory>
#include <vector>

#include "bus_state.h"
#include "ipc/file_lock.h"
#include "partition.h"
#include "segment.h"

namespace sluice {

struct ProducerState {
  std::shared_ptr<BusState> bus;
  std::shared_ptr<TopicState> topic;
  ProducerOptions options;
  uint16_t owner = 0;

  struct Writer {
    bool ready = false;
    ipc::FileLock lock;               // writer.lock, shared or exclusive
    std::shared_ptr<Segment> segment; // cached newest segment
    // Exclusive mode only: our own tail in `segment`, and how far we have
    // announced we may write (PartitionControl::exclusive_dirty_end).
    uint32_t tail_position = 0;
    uint32_t tail_count = 0;
    uint64_t dirty_end = 0;
  };
  std::vector<Writer> writers;
  uint32_t keyless_partition = 0;
  uint32_t keyless_left = 0;
  Error last_error{Errc::kInvalidArgument, ""};

  ~ProducerState();
  // Locks the partition for writing on first use.
  SendStatus writer(uint32_t partition, Writer** out) {
    Writer& w = writers[partition];
    if (!w.ready) [[unlikely]]
      return open_writer(partition, out);
    *out = &w;
    return SendStatus::kOk;
  }
  SendStatus open_writer(uint32_t partition, Writer** out);
  uint32_t choose_partition(std::string_view key, std::optional<uint32_t> explicit_partition) {
    if (explicit_partition) return *explicit_partition;
    if (key.empty() && keyless_left != 0) {  // the sticky partition
      --keyless_left;
      return keyless_partition;
    }
    return choose_partition_slow(key);
  }
  uint32_t choose_partition_slow(std::string_view key);
  SendStatus fail(SendStatus status, Error error) {
    last_error = std::move(error);
    return status;
  }
  // Reserves a frame (shared: CAS claim; exclusive: local tail). On kOk the
  // frame header is written and the claim word is CLAIMED (shared) or still
  // 0 (exclusive).
  SendStatus reserve(uint32_t partition, uint32_t frame_length, uint32_t count,
                     Partition::Reservation* out);
  // Checksums, indexes and publishes a frame written in place.
  SendStatus publish(const Partition::Reservation& r, uint32_t frame_length,
                     uint32_t count, int64_t first_timestamp_ns);
  SendStatus check_back_pressure(uint32_t partition, uint32_t frame_length, const Writer& w);
};

// Producers for topics the engine opens itself (a queue's internal topic).
struct ProducerAccess {
  static Producer make(std::shared_ptr<BusState> bus, std::shared_ptr<TopicState> topic,
                       const ProducerOptions& options);
};

}  // namespace sluice
