// Appends queue messages to a queue's internal topic: what QueuePublisher
// and dead-lettering share.
#pragma once

#include <sluice/producer.h>
#include <sluice/queue.h>

#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "queue_state.h"

namespace sluice {

struct TransactionState;

// What a queue's publishers give their Producer: a queue deeper than
// max_depth_bytes holds them up to 1 s before they get kBackPressured.
ProducerOptions queue_producer_options();

struct QueueWriter {
  std::unique_ptr<QueueState> q;
  Producer producer;
  std::vector<Header> headers;  // reused: no allocation per message once grown
  char not_before[24];
  Error last_error{Errc::kInvalidArgument, ""};
  // A publisher bound to a transactional identity (TransactionalProducer::
  // queue): its messages join the open transaction, and its de-duplication
  // ids stay PENDING until the transaction's decision (TransactionState).
  TransactionState* txn = nullptr;

  QueueWriter(std::shared_ptr<BusState> bus, std::unique_ptr<QueueState> queue,
              const ProducerOptions& options = queue_producer_options());
  // Publishes `m` with `extra` headers after its own; with `sequence`, as
  // that sequence of its level (Producer::send_sequenced; idempotent only).
  PublishResult publish(const QueueMessage& m, std::span<const Header> extra,
                        std::optional<uint32_t> sequence = std::nullopt) noexcept;
};

// How the engine reaches a QueuePublisher's writer (the transaction's bound
// publishers are made in transaction.cc).
struct QueuePublisherAccess {
  static QueuePublisher make(std::shared_ptr<BusState> bus, std::unique_ptr<QueueState> queue,
                             const ProducerOptions& options);
  static QueueWriter& writer(QueuePublisher& p);
};

// RFC 3339, UTC, milliseconds: 2026-03-30T12:00:00.123Z (dead letters' and
// parked messages' times).
std::string rfc3339_utc_ms(int64_t unix_ns);

// Opens queue `name`, creating it with `o` (as a DLQ if `dead_letter_queue`)
// if it does not exist yet; a concurrent creator's queue is as good.
Result<std::unique_ptr<QueueState>> open_or_create_queue(BusState& bus, std::string_view name, const QueueOptions& o,
                                                         bool dead_letter_queue);
// Opens the dead-letter queue `name`, creating it (marked as a DLQ) if needed.
Result<std::unique_ptr<QueueState>> open_dead_letter_queue(BusState& bus, std::string_view name,
                                                           uint32_t segment_bytes, int64_t max_depth_bytes);
// Publishes `value` with `headers` (minus the engine's scheduling ones; a
// FIFO group kept as data) and the sluice.dlq.* metadata to `dlq`, with the
// de-duplication id dlq:<source>:<partition>:<offset>, so that one message
// becomes one dead letter even when its dead-lettering is repeated. The one
// definition of a dead letter's headers (QueuePublisher::publish_dead_letter
// is this).
PublishResult publish_dead_letter(QueueWriter& dlq, std::string_view value, std::span<const Header> headers,
                                  const DeadLetter& letter) noexcept;

}  // namespace sluice
