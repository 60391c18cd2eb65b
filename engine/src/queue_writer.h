// Appends queue messages to a queue's internal topic: what QueuePublisher
// and dead-lettering share.
#pragma once

#include <sluice/producer.h>
#include <sluice/queue.h>

#include <memory>
#include <span>
#include <vector>

#include "queue_state.h"

namespace sluice {

struct QueueWriter {
  std::unique_ptr<QueueState> q;
  Producer producer;
  std::vector<Header> headers;  // reused: no allocation per message once grown
  char not_before[24];
  Error last_error{Errc::kInvalidArgument, ""};

  QueueWriter(std::shared_ptr<BusState> bus, std::unique_ptr<QueueState> queue);
  // Publishes `m` with `extra` headers after its own.
  PublishResult publish(const QueueMessage& m, std::span<const Header> extra) noexcept;
};

// Where a dead letter came from and why (docs/queues.md, section 7).
struct DeadLetter {
  Failure failure;
  std::string source;      // "queue:<name>" or "topic:<name>"
  uint32_t partition = 0;  // the queue's priority level, or the topic's partition
  uint64_t offset = 0;
  uint32_t attempts = 0;
  std::string group;       // a stream consumer's group, if any
};
// Opens the dead-letter queue `name`, creating it (marked as a DLQ) if needed.
Result<std::unique_ptr<QueueState>> open_dead_letter_queue(BusState& bus, std::string_view name,
                                                           uint32_t segment_bytes, int64_t max_depth_bytes);
// Publishes `value` with `headers` (minus the engine's scheduling ones; a
// FIFO group kept as data) and the sluice.dlq.* metadata to `dlq`, with the
// de-duplication id dlq:<source>:<partition>:<offset>, so that one message
// becomes one dead letter even when its dead-lettering is repeated.
Status publish_dead_letter(QueueWriter& dlq, std::string_view value, const HeadersView& headers,
                           const DeadLetter& letter);

}  // namespace sluice
