// Queue publishes inside transactions (docs/exactly-once.md, section 4,
// "Queues"). A queue level is a partition of the queue's internal topic, so
// a bound publisher's message is a PREPARED frame of the transaction like a
// topic record, decided by the same CAS and flipped by the same code; its
// workers read levels read-committed. What is queue-specific is the
// de-duplication id, which must not answer for a publish that aborts.
#include <sluice/transaction.h>

#include "producer_state.h"
#include "queue_state.h"
#include "queue_writer.h"
#include "transaction_state.h"

namespace sluice {

Result<QueuePublisher*> TransactionalProducer::queue(std::string_view name) {
  TransactionState& t = *state_;
  if (auto it = t.queues.find(name); it != t.queues.end()) return it->second.get();
  if (t.fenced) return std::unexpected(t.fence_error);
  auto q = open_queue(*t.bus, name);
  if (!q) return std::unexpected(q.error());
  ProducerOptions o = queue_producer_options();
  o.idempotent = true;
  o.producer_name = t.name;
  QueuePublisher p = QueuePublisherAccess::make(t.bus, std::move(*q), o);
  QueueWriter& w = QueuePublisherAccess::writer(p);
  ProducerAccess::join_transaction(w.producer, t);
  w.txn = &t;
  auto owned = std::make_unique<QueuePublisher>(std::move(p));
  QueuePublisher* raw = owned.get();
  t.queues.emplace(std::string(name), std::move(owned));
  return raw;
}

void TransactionState::hold_dedup(const QueueState* queue, format::DedupEntry* entry, uint32_t level,
                                  uint64_t offset) {
  // relaxed: this process wrote the key when it claimed the entry.
  dedups.push_back(HeldDedup{queue, entry, entry->key.load(std::memory_order_relaxed), level, offset});
}

void TransactionState::settle_dedups(bool committed) noexcept {
  // Only the claimer changes a PENDING entry of a live process (queue_dedup.cc),
  // so these stores need no lock; dedup_complete's release store pairs with
  // the acquire of a publisher that then finds the id DONE.
  for (const HeldDedup& d : dedups) {
    if (committed)
      dedup_complete(d.entry, d.level, d.offset, bus->clock->now_ns());
    else
      dedup_release(d.entry);
  }
  dedups.clear();
}

}  // namespace sluice
