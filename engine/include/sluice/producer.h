// Appending records to a topic.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include <sluice/record.h>
#include <sluice/status.h>

namespace sluice {

class TopicHandle;
struct ProducerState;

// Expected outcomes of a send; none allocates. Details of kError are in
// Producer::last_error().
enum class SendStatus : uint8_t {
  kOk,
  kBackPressured,  // kBackPressure topic and the slowest group is a window behind
  kTooLarge,       // the record (or batch) cannot fit in one segment
  kAborted,        // our claim was aborted as stalled before we committed, or (transactional)
                   // a helper aborted our transaction past its timeout
  kBusy,           // an exclusive producer owns the partition
  kError,          // I/O or corruption; see last_error()
  kFenced,         // idempotent: a newer instance of this identity was opened;
                   // this one appends nothing more
  kOutOfOrderSequence,  // send_sequenced() skipped sequence numbers
};

struct SendResult {
  SendStatus status = SendStatus::kError;
  uint32_t partition = 0;
  uint64_t offset = 0;  // of the (first) record; kNoOffset for a duplicate too old to tell
  // Idempotent producers: the (first) record's sequence in its partition, and
  // whether the send was a duplicate of one already appended (nothing was
  // appended; `offset` is the original's).
  uint32_t sequence = 0;
  bool duplicate = false;
  bool ok() const noexcept { return status == SendStatus::kOk; }
};

// A zero-copy reservation: the value is written in place in the mapping,
// then commit() computes the checksum and publishes the record. Until then
// readers of the partition wait at this record (other producers go on), so
// keep the window short. Destroying an uncommitted Claim aborts it.
class Claim {
 public:
  Claim() = default;
  Claim(Claim&&) noexcept;
  Claim& operator=(Claim&&) noexcept;
  ~Claim();

  std::span<std::byte> value() const noexcept { return value_; }
  uint32_t partition() const noexcept { return partition_; }
  uint64_t offset() const noexcept { return offset_; }
  bool active() const noexcept { return frame_ != nullptr; }

  SendStatus commit() noexcept;
  void abort() noexcept;

 private:
  friend class Producer;
  std::shared_ptr<void> keep_alive_;  // the segment mapping
  std::byte* frame_ = nullptr;
  std::span<std::byte> value_;
  uint32_t partition_ = 0;
  uint64_t offset_ = 0;
  ProducerState* producer_ = nullptr;
};

struct ClaimSpec {
  std::string_view key;
  uint32_t value_bytes = 0;
  std::span<const Header> headers{};
  int64_t timestamp_ns = 0;
  std::optional<uint32_t> partition;  // default: by key hash / keyless policy
};

// Appends to one topic. Not thread-safe: use one Producer per thread (they
// are cheap; all of a process's producers share the topic's mappings).
class Producer {
 public:
  Producer(Producer&&) noexcept;
  Producer& operator=(Producer&&) noexcept;
  ~Producer();

  // Copies one record into the log; it is visible to consumers on return.
  // The partition: `partition` if set, else XXH3-64(key) % partitions for a
  // non-empty key, else the keyless policy.
  SendResult send(const Message& message, std::optional<uint32_t> partition = {}) noexcept;
  // Several records in one claim (one frame, one atomic publish), all to one
  // partition: `partition`, or the one the first message's key selects.
  SendResult send_batch(std::span<const Message> batch,
                        std::optional<uint32_t> partition = {}) noexcept;
  // Reserves room for one record whose value the caller writes in place.
  // The value's bytes are unspecified until written (an exclusive producer's
  // segment may hold an earlier record's bytes there): fill all of them.
  // Idempotent producers: one open Claim at a time.
  SendStatus try_claim(const ClaimSpec& spec, Claim& out) noexcept;

  // Idempotent producers (ProducerOptions::idempotent). Every record gets
  // the next sequence number of its partition; after a crash, a restarted
  // instance of the same identity resends from next_sequence() with
  // send_sequenced(), and what the log already holds is not appended twice.
  //
  // Appends `message` as sequence `sequence` of its partition: equal to
  // next_sequence(), it is appended; below, it is a duplicate: nothing is
  // appended, `duplicate` is set and `offset` is the original's (kNoOffset if
  // it is older than the producer's last 32 frames in the partition); above,
  // kOutOfOrderSequence.
  SendResult send_sequenced(const Message& message, uint32_t sequence,
                            std::optional<uint32_t> partition = {}) noexcept;
  // The sequence the next record sent to `partition` gets.
  Result<uint32_t> next_sequence(uint32_t partition) noexcept;
  // The identity: pid (0 for a plain producer) and this instance's epoch.
  uint64_t producer_id() const noexcept;
  uint16_t producer_epoch() const noexcept;

  uint32_t partition_for_key(std::string_view key) const noexcept;
  uint32_t partition_count() const noexcept;
  // The error behind the last SendStatus::kError or kTooLarge.
  const Error& last_error() const noexcept;

 private:
  friend class Bus;
  friend struct ProducerAccess;
  explicit Producer(std::unique_ptr<ProducerState> state);
  std::unique_ptr<ProducerState> state_;
};

}  // namespace sluice
