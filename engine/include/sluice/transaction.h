// Transactions (docs/exactly-once.md, section 4): records sent to several
// partitions and topics, queue messages, and consumer-group offsets, become
// visible to read-committed readers and queue workers all at once, or never.
#pragma once

#include <sluice/consumer.h>
#include <sluice/options.h>
#include <sluice/producer.h>
#include <sluice/queue.h>
#include <sluice/status.h>

#include <cstdint>
#include <memory>
#include <string_view>

namespace sluice {

struct TransactionOptions {
  // A transaction open longer than this is aborted by any attached process
  // that meets it (a read-committed reader waiting at it, or a new instance
  // of the name), and this instance is fenced. 1 ms to 15 min.
  int64_t timeout_ns = 10'000'000'000;
  // Options of the producers producer() makes (idempotent and producer_name
  // are set by the transactional producer).
  ProducerOptions producer;
};

struct TransactionState;

// One transactional identity (a name, like Kafka's transactional.id) and its
// producers for any number of topics. Opening the name fences every earlier
// instance and settles the transaction one of them left open: aborted, or
// completed if its commit had been decided. Not thread-safe.
class TransactionalProducer {
 public:
  TransactionalProducer(TransactionalProducer&&) noexcept;
  TransactionalProducer& operator=(TransactionalProducer&&) noexcept;
  ~TransactionalProducer();  // aborts an open transaction

  // The producer of `topic` bound to this identity, made on first use and
  // kept as long as this object. Its sends (send, send_batch, send_sequenced;
  // not try_claim) must be inside begin()..commit()/abort().
  Result<Producer*> producer(std::string_view topic);
  // The publisher of queue `name` bound to this identity, made on first use
  // and kept as long as this object (kNotFound for an unknown queue). Its
  // publishes (publish, publish_sequenced, publish_dead_letter) must be
  // inside begin()..commit()/abort(), and become deliverable with the
  // transaction's records and offsets, or never: workers read queue levels
  // read-committed. Each priority level it touches counts as one of the
  // transaction's 64 partitions. A de-duplication id published in a
  // transaction answers for it only once it commits: until then a second
  // publisher of the id waits (up to 5 s, then kBusy), and an abort frees it.
  Result<QueuePublisher*> queue(std::string_view name);

  Status begin();
  // Makes the transaction's records and offsets visible together. kAborted:
  // it ran past its timeout and another process aborted it (this instance is
  // then fenced); kFenced: a newer instance of the name was opened.
  Status commit();
  Status abort();
  bool in_transaction() const noexcept;

  // Commits `next_offset` as `group`'s offset of (`topic`, `partition`)
  // with the transaction (consume-transform-produce). The group's offsets
  // file must exist (a consumer of the group made it).
  Status add_offset(std::string_view group, std::string_view topic, uint32_t partition, uint64_t next_offset);

  // The consumer of `topic` in `group` bound to this identity: exactly once
  // inside the bus (consume-transform-produce with no add_offset by hand).
  // It reads committed records only and never commits by itself (its commit
  // calls are refused): commit() adds the position of every partition it
  // moved on, so the group's offsets move with the transaction's records;
  // abort(), or a commit that failed, rewinds it to the group's committed
  // offsets, so the records of the lost transaction are polled again.
  // `options` as for Bus::create_consumer (isolation, auto_commit and
  // guarantee are set here). Made on first use; lives as long as this object.
  Result<Consumer*> consumer(std::string_view topic, std::string_view group, const ConsumerOptions& options = {});

  uint64_t producer_id() const noexcept;
  uint16_t producer_epoch() const noexcept;

 private:
  friend class Bus;
  explicit TransactionalProducer(std::unique_ptr<TransactionState> state);
  std::unique_ptr<TransactionState> state_;
};

}  // namespace sluice
