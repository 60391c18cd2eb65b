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

}  // namespace sluice
