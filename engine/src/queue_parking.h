// Parking lots (docs/queues.md, section 7, "Parking lot"): the parked copy's
// headers, written in one place for Worker::park; Bus::unpark is in
// queue_parking.cc beside it.
#pragma once

#include <sluice/queue.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "queue_state.h"
#include "queue_writer.h"

namespace sluice {

// Where and why a message is parked.
struct ParkedFrom {
  std::string_view queue;      // its source queue
  uint32_t priority = 0;
  uint64_t offset = 0;
  int64_t queue_epoch_unix_ms = 0;  // the source's; part of the de-duplication id
  uint32_t attempts = 0;       // receives so far
  int64_t until_unix_ns = 0;
  std::string_view reason;
};

// Opens the parking lot `name`, creating it (max receives 255: unpark's
// filter and operators receive from it) if needed, with the source's
// segment size and depth.
Result<std::unique_ptr<QueueState>> open_parking_lot(BusState& bus, std::string_view name, uint32_t segment_bytes,
                                                     int64_t max_depth_bytes);

// Publishes the parked copy of a message (`value`, `headers`) to `lot`,
// delivered not before from.until_unix_ns (the past: now), with the
// sluice.parked.* headers and the de-duplication id
// park:<queue>:<priority>:<offset>@<epoch ms>. A FIFO group is kept as data
// (kHeaderParkedGroup), so it holds nothing back in the lot; the count of
// parkings (kHeaderParkedCount) goes up by one.
PublishResult publish_parked(QueueWriter& lot, std::string_view value, std::span<const Header> headers,
                             const ParkedFrom& from) noexcept;

}  // namespace sluice
