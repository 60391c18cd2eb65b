// A consumer-group member that gives stream records the work queues' retry
// and dead-letter policy (docs/queues.md, section 7, "stream consumers"): a
// record whose handler fails goes to a retry queue and the group moves on
// (RetryMode::kRetryQueue), or is retried where it is while its partition
// waits and the others flow (RetryMode::kInPlace, strict order per
// partition); either way a backoff is waited out as state, never as a
// sleep; a record that fails on every attempt, or fails permanently, goes to
// the dead-letter queue naming its source topic, partition and offset.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <sluice/consumer.h>
#include <sluice/options.h>
#include <sluice/queue.h>
#include <sluice/record.h>
#include <sluice/status.h>

namespace sluice {

class Bus;
struct RetryingConsumerState;

enum class RetryMode : uint8_t {
  // A failing record goes to the retry queue and its partition moves on:
  // throughput first; records of one key may be handled out of order.
  kRetryQueue,
  // A failing record is retried in place: its partition is paused
  // (Consumer::pause: nothing after it is read, handled or committed) until
  // it succeeds or is dead-lettered, while the member's other partitions
  // keep flowing. Strict order per partition. No retry queue is made or
  // worked. The attempts begun on the record are kept in the group's
  // offsets file: a member that replaces a dead one goes on counting (and
  // dead-letters it unrun if every attempt was used).
  kInPlace,
};

struct RetryingConsumerOptions {
  // max_receives counts every attempt, the first (from the topic) included;
  // the backoff follows attempt 1, 2, ... as for a queue.
  RetryPolicy retry;
  RetryMode mode = RetryMode::kRetryQueue;
  // kRetryQueue only (kInPlace neither makes nor works one).
  std::string retry_queue;        // empty: "<topic>.<group>.retry"
  std::string dead_letter_queue;  // empty: "<topic>.dlq"
  // The shape of the two queues when this helper creates them (window,
  // lease, sizes); their retry policy and dead-letter queue come from above.
  QueueOptions queue;
  // kInPlace: kAtMostOnce is refused (it commits before handling).
  ConsumerOptions consumer;
  // kRetryQueue only: for the retry queue's worker. Its retry policy is `retry` above and it
  // always acks after the handler (a retry must survive its failure).
  WorkerOptions worker;
};

// One record as the handler sees it, on its first attempt (from the topic)
// or a retry (from the retry queue, or the topic again in place): the same
// topic, partition, offset, key, timestamp and headers either way. Views
// valid during the handler call.
struct StreamRecord {
  std::string_view topic;
  uint32_t partition = 0;
  uint64_t offset = 0;
  int64_t timestamp_ns = 0;
  std::string_view key;
  std::string_view value;
  std::span<const Header> headers;  // the producer's
  uint32_t attempt = 1;             // 1 the first time, 2.. on retries

  // The value of the first header called `name`, or an empty view.
  std::string_view header(std::string_view name) const noexcept {
    for (const Header& h : headers)
      if (h.name == name) return h.value;
    return {};
  }
};

// Returning is success; a PermanentError dead-letters the record at once;
// a TransientError or any other exception retries it, until
// retry.max_receives attempts have failed.
using RecordHandler = std::function<void(const StreamRecord&)>;

// kInPlace: a partition waiting for its record's next attempt.
struct PausedPartition {
  uint32_t partition = 0;
  uint64_t offset = 0;           // the record retried; the group's committed offset stays here
  uint32_t failed_attempts = 0;  // attempts made on it (by earlier members too: the group's file counts them)
  int64_t retry_at_ns = 0;       // bus clock: the next attempt is due (kept in the group's file too)
  int64_t paused_since_ns = 0;   // bus clock: its first failure in this member
};

struct RetryingConsumerStats {
  uint64_t records = 0;                // taken from the topic (first attempts)
  uint64_t attempts = 0;               // handler calls, retries included
  uint64_t retried = 0;                // failures scheduled for another attempt (kInPlace: in place)
  uint64_t dead_lettered = 0;          // written to the dead-letter queue by this helper
  uint64_t succeeded_after_retry = 0;  // succeeded on an attempt > 1
  // kInPlace only.
  uint64_t pauses = 0;                 // partitions paused by a record's first failure in this member
                                       // (or at a backoff an earlier member left in the group's file)
  int64_t paused_ns = 0;               // bus-clock time in pauses that have ended
  std::vector<PausedPartition> paused;  // paused now, in the order they were paused

  bool is_paused(uint32_t partition) const noexcept {
    for (const PausedPartition& p : paused)
      if (p.partition == partition) return true;
    return false;
  }
};

// Not thread-safe: one per thread, like a Consumer. Members of one group in
// several threads or processes share the retry queue as competing workers.
class RetryingConsumer {
 public:
  // Joins `group` (required) on `topic` and opens the retry and dead-letter
  // queues, creating them if missing. kInvalidArgument if the retry queue
  // exists with another dead-letter queue.
  static Result<RetryingConsumer> create(Bus& bus, std::string_view topic, std::string_view group,
                                         const RetryingConsumerOptions& options = {});
  RetryingConsumer(RetryingConsumer&&) noexcept;
  RetryingConsumer& operator=(RetryingConsumer&&) noexcept;
  ~RetryingConsumer();

  // Handles what is ready now, without waiting: retries whose backoff has
  // passed, then new records of the topic; commits the group's offsets past
  // the records handed on. At most `max_records` (0: a batch). Returns how
  // many records it handled (attempts run or dead-lettered). An error (the
  // retry or dead-letter queue refused a record) leaves the group's offset
  // at the first record not handed on, so nothing is lost; in kInPlace the
  // refused letter is tried again by the next poll, without running the
  // handler again.
  Result<uint64_t> poll(const RecordHandler& handler, uint64_t max_records = 0);
  // Polls until `stop` returns true (checked between polls and at least
  // every `idle_ns` while idle) or `max_records` have been handled (0: no
  // limit); then commits synchronously. Returns how many.
  Result<uint64_t> run(const RecordHandler& handler, const std::function<bool()>& stop, uint64_t max_records = 0,
                       int64_t idle_ns = 10'000'000);

  const RetryingConsumerStats& stats() const noexcept;
  RetryMode mode() const noexcept;
  const std::string& retry_queue() const noexcept;  // empty in kInPlace
  const std::string& dead_letter_queue() const noexcept;
  // The group member reading the topic (lag, commits, seeks). kInPlace: a
  // partition waiting for a retry is paused in it at the record retried, so
  // its position and commits keep the record; the helper resumes it when
  // the retry is due. Pause or resume through it only partitions the helper
  // does not hold (stats().paused): it resumes those when their retries are
  // due, and pauses again one resumed early (what was read meanwhile is
  // read again after the retry).
  Consumer& consumer() noexcept;

 private:
  explicit RetryingConsumer(std::unique_ptr<RetryingConsumerState> state);
  std::unique_ptr<RetryingConsumerState> state_;
};

}  // namespace sluice
