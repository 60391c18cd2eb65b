// A producer that any number of threads share: send() copies the record into
// a queue and returns at once; one background thread appends the queue in
// batches (one frame, one atomic publish per partition per batch). Use it
// when many threads produce and throughput matters more than the latency of
// a single send; use Producer (one per thread) for the lowest latency.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include <sluice/options.h>
#include <sluice/producer.h>
#include <sluice/record.h>
#include <sluice/status.h>

namespace sluice {

struct AsyncProducerState;
class Bus;

struct AsyncProducerOptions {
  ProducerOptions producer;
  uint32_t max_queued_records = 1u << 16;  // send() returns kBackPressured beyond this
  uint32_t max_batch_records = 256;        // records per frame at most
  int64_t linger_ns = 0;                   // wait this long for a batch to fill (0: append at once)
};

struct AsyncProducerStats {
  uint64_t queued = 0;     // accepted by send()
  uint64_t appended = 0;   // in the log
  uint64_t failed = 0;     // completed with a status other than kOk
  uint64_t batches = 0;    // frames written
};

class AsyncProducer {
 public:
  // Called on the background thread once the record's fate is known.
  using Completion = std::function<void(const SendResult&)>;

  static Result<AsyncProducer> create(Bus& bus, std::string_view topic, const AsyncProducerOptions& options = {});
  AsyncProducer(AsyncProducer&&) noexcept;
  AsyncProducer& operator=(AsyncProducer&&) noexcept;
  ~AsyncProducer();  // flushes (bounded by 10 s), then stops the thread

  // Thread-safe. Copies the message; kBackPressured when the queue is full.
  // The partition is fixed here: `partition`, else the key's hash, else
  // round-robin over partitions (one batch at a time).
  SendStatus send(const Message& message, std::optional<uint32_t> partition = {},
                  Completion on_complete = {});
  // Waits until every record accepted before this call is appended or failed.
  Status flush(int64_t timeout_ns);
  AsyncProducerStats stats() const noexcept;

 private:
  explicit AsyncProducer(std::unique_ptr<AsyncProducerState> state);
  std::unique_ptr<AsyncProducerState> state_;
};

}  // namespace sluice
