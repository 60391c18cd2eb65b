// Consumers the engine makes itself: the plain ones of Bus::create_consumer,
// and those bound to a transactional producer (transaction.cc), whose offsets
// move only with its transactions; and what engine helpers (the retrying
// consumer) may see of one beyond the public API.
#pragma once

#include <sluice/consumer.h>
#include <sluice/options.h>
#include <sluice/status.h>

#include <memory>
#include <string_view>

namespace sluice {

struct BusState;
class GroupOffsets;

struct ConsumerAccess {
  static Result<Consumer> make(const std::shared_ptr<BusState>& bus, std::string_view topic, std::string_view group,
                               const ConsumerOptions& options, bool bound = false);
  // The group's offsets file the consumer commits to (the in-place retries
  // keep their attempt counts there); null without a group. Lives as long
  // as the Consumer's state (moving the Consumer keeps it).
  static const GroupOffsets* offsets(const Consumer& consumer) noexcept;
};

}  // namespace sluice
