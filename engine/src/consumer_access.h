// Consumers the engine makes itself: the plain ones of Bus::create_consumer,
// and those bound to a transactional producer (transaction.cc), whose offsets
// move only with its transactions.
#pragma once

#include <sluice/consumer.h>
#include <sluice/options.h>
#include <sluice/status.h>

#include <memory>
#include <string_view>

namespace sluice {

struct BusState;

struct ConsumerAccess {
  static Result<Consumer> make(const std::shared_ptr<BusState>& bus, std::string_view topic, std::string_view group,
                               const ConsumerOptions& options, bool bound = false);
};

}  // namespace sluice
