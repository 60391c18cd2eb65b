// A Worker's exactly-once step (Guarantee::kExactlyOnce): the id of a
// message, and its handler run inside ProcessedStore::process_once with the
// ack after. Design: docs/exactly-once.md section 6, docs/queues.md section 4.
#pragma once

#include <sluice/processed.h>
#include <sluice/queue.h>

#include <cstddef>
#include <functional>
#include <span>
#include <string_view>

namespace sluice {

// Room for any id processed_id_of() writes: "queue:" + a 200-character
// name + ":<level>:<offset>@<epoch ms>" is at most 250 bytes.
inline constexpr size_t kProcessedIdBufferBytes = 256;

// The id under which a message is processed: the value of its
// kHeaderProcessedId header when that is not empty, else its place,
// "queue:<queue>:<level>:<offset>@<epoch_unix_ms>", written into `buf`. A
// redelivery has the same place, hence the same id; the queue's epoch (its
// creation time) keeps a queue deleted and made again under the same name
// from meeting its predecessor's done ids. No allocation.
std::string_view processed_id_of(const Delivery& d, std::string_view queue, int64_t epoch_unix_ms,
                                 std::span<char, kProcessedIdBufferBytes> buf) noexcept;

class ExactlyOnceHandling {
 public:
  // `store` shares the state of the handle WorkerOptions::processed named.
  ExactlyOnceHandling(ProcessedStore store, std::function<bool(std::string_view)> resolve)
      : store_(std::move(store)), resolve_(std::move(resolve)) {}

  // Handles the leased message `d` with id `id` and settles it (the table at
  // sluice::Handler). An exception from the handler or the resolver
  // propagates, the id left not done (or in doubt), for Worker::run to nack
  // or dead-letter as for any worker. Allocates nothing unless the message
  // is dead-lettered or a store error is reported.
  void handle(Delivery& d, std::string_view id, const Handler& handler, WorkerStats& stats);

 private:
  ProcessedStore store_;
  std::function<bool(std::string_view)> resolve_;
};

}  // namespace sluice
