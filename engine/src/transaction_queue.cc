// Queue publishes inside transactions (docs/exactly-once.md, section 4,
// "Queues"). A queue level is a partition of the queue's internal topic, so
// a bound publisher's message is a PREPARED frame of the transaction like a
// topic record, decided by the same CAS and flipped by the same code; its
// workers read levels read-committed. What is queue-specific is the
// de-duplication id, which must not answer for a publish that aborts, and
// must not make another publisher of it wait for a transaction that is
// over while its holder's process lives on (HELD entries, queue_dedup.cc).
#include <sluice/transaction.h>

#include "producer_state.h"
#include "queue_exactly_once.h"
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
  // relaxed: this process wrote the key when it claimed the entry (and the
  // entry is HELD by it: a waiter changes only the state of a HELD entry).
  dedups.push_back(HeldDedup{queue, entry, entry->key.load(std::memory_order_relaxed), level, offset});
}

void TransactionState::settle_dedups(bool committed) noexcept {
  // No lock: each entry is HELD by this process (dedup_hold), and changes
  // only by a CAS from that HELD word, which fails if a waiter found the
  // transaction over in the log and took the entry over or completed it
  // while we were stopped (docs/exactly-once.md, section 11): then the entry
  // is the waiter's, and right (a taken-over id was aborted: ours never
  // commits; a completed one is DONE with our offset already). The release
  // CAS pairs with the acquire of a publisher that then finds the id DONE.
  const uint16_t me = bus->registry.self();
  for (const HeldDedup& d : dedups)
    (void)dedup_settle_held(d.entry, me, d.level, d.offset, committed, bus->clock->now_ns());
  dedups.clear();
}

}  // namespace sluice
