// The baseline: a bare single-producer/single-consumer ring in shared memory
// between two processes. It is what the machine can do with no log, no
// offsets, no checksums and no recovery, so sluice is measured against it.
// Kept minimal on purpose, in the shape of rigtorp's SPSCQueue: fixed slots,
// head and tail on their own cache lines, and each side caching the other's
// index so that it touches the other's line only when it must.
//
// Layout of the region (64-byte aligned, MAP_SHARED):
//
//   [0, 64)      tail: slots published by the producer (u64, producer writes)
//   [64, 128)    head: slots released by the consumer (u64, consumer writes)
//   [128, 192)   wakeup word for the blocking wait (ipc/wait_strategy.h)
//   [192, 256)   geometry: slot_bytes (u32), slot_count (u32, a power of 2)
//   [256, ...)   slot_count slots of slot_bytes:
//                  length (u32) | reserved (u32) | payload ... padded to 8
//
// `publish_every` 1 is the ring sluice's targets refer to: the producer
// stores its tail after every message. Larger values batch the tail (and the
// consumer's head), as Aeron-style designs do, for reference only.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "ipc/wait_strategy.h"

namespace sluice::bench {

static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "cross-process atomics must not fall back to a lock");

struct alignas(64) RingIndex {
  std::atomic<uint64_t> value;
  char padding[56];
};
static_assert(sizeof(RingIndex) == 64);  // head and tail never share a line

struct alignas(64) RingGeometry {
  uint32_t slot_bytes;
  uint32_t slot_count;
  char padding[56];
};
static_assert(sizeof(RingGeometry) == 64);

struct SpscRingHeader {
  RingIndex tail;
  RingIndex head;
  ipc::WakeupWord wakeup;
  RingGeometry geometry;
};
static_assert(sizeof(SpscRingHeader) == 256);
inline constexpr uint32_t kRingSlotHeaderBytes = 8;

// Slot size for payloads of up to `max_payload` bytes.
constexpr uint32_t ring_slot_bytes(uint32_t max_payload) {
  return (kRingSlotHeaderBytes + max_payload + 7) & ~7u;
}
// The largest power of two of slots that fits in about `ring_bytes`.
constexpr uint32_t ring_slot_count(uint32_t max_payload, uint64_t ring_bytes) {
  uint64_t n = 1;
  while (n * 2 * ring_slot_bytes(max_payload) <= ring_bytes && n < (1u << 30)) n *= 2;
  return static_cast<uint32_t>(n);
}
constexpr uint64_t ring_region_bytes(uint32_t max_payload, uint32_t slot_count) {
  return sizeof(SpscRingHeader) + uint64_t{slot_count} * ring_slot_bytes(max_payload);
}

// Initialises a ring in zeroed shared memory, before the processes fork.
inline SpscRingHeader* init_spsc_ring(std::byte* mem, uint32_t max_payload, uint32_t slot_count) {
  auto* h = reinterpret_cast<SpscRingHeader*>(mem);
  h->geometry.slot_bytes = ring_slot_bytes(max_payload);
  h->geometry.slot_count = slot_count;
  // relaxed: written before fork(); the child inherits the memory as it is.
  h->tail.value.store(0, std::memory_order_relaxed);
  h->head.value.store(0, std::memory_order_relaxed);
  h->wakeup.seq.store(0, std::memory_order_relaxed);
  h->wakeup.parked.store(0, std::memory_order_relaxed);
  return h;
}

class SpscProducer {
 public:
  // `wakeup` non-null: wake a parked consumer after each publish (the
  // blocking wait); null for the spinning waits.
  SpscProducer(SpscRingHeader* ring, uint32_t publish_every, ipc::WakeupWord* wakeup)
      : ring_(ring),
        slots_(reinterpret_cast<std::byte*>(ring) + sizeof(SpscRingHeader)),
        slot_bytes_(ring->geometry.slot_bytes),
        mask_(ring->geometry.slot_count - 1),
        publish_every_(publish_every),
        wakeup_(wakeup) {}

  // Room for one message of `length` bytes (<= the ring's max payload), or
  // nullptr while the ring is full. Follow with commit().
  std::byte* try_claim(uint32_t length) noexcept {
    if (tail_ - head_cache_ > mask_) {
      // acquire: pairs with the consumer's release store of head in
      // release(); its reads of the slots before head are done, so we may
      // overwrite them.
      head_cache_ = ring_->head.value.load(std::memory_order_acquire);
      if (tail_ - head_cache_ > mask_) {
        if (unpublished_ != 0) publish();  // the consumer may be waiting for these
        return nullptr;
      }
    }
    std::byte* slot = slots_ + (tail_ & mask_) * slot_bytes_;
    std::memcpy(slot, &length, sizeof length);
    return slot + kRingSlotHeaderBytes;
  }

  void commit() noexcept {
    ++tail_;
    if (++unpublished_ >= publish_every_) publish();
  }

  // Makes every committed message visible now.
  void publish() noexcept {
    unpublished_ = 0;
    if (wakeup_ == nullptr) {
      // release: pairs with the consumer's acquire load of tail in
      // try_front(); the slot bytes written before are visible with it.
      ring_->tail.value.store(tail_, std::memory_order_release);
    } else {
      // seq_cst: as above, and ordered before notify()'s load of `parked`
      // (the store-buffering handshake in ipc/wait_strategy.h).
      ring_->tail.value.store(tail_, std::memory_order_seq_cst);
      ipc::notify(*wakeup_);
    }
  }

 private:
  SpscRingHeader* ring_;
  std::byte* slots_;
  uint64_t slot_bytes_;
  uint64_t mask_;
  uint32_t publish_every_;
  uint32_t unpublished_ = 0;
  ipc::WakeupWord* wakeup_;
  uint64_t tail_ = 0;        // next slot to write, published or not
  uint64_t head_cache_ = 0;  // the consumer's head as last read
};

class SpscConsumer {
 public:
  SpscConsumer(SpscRingHeader* ring, uint32_t release_every)
      : ring_(ring),
        slots_(reinterpret_cast<std::byte*>(ring) + sizeof(SpscRingHeader)),
        slot_bytes_(ring->geometry.slot_bytes),
        mask_(ring->geometry.slot_count - 1),
        release_every_(release_every) {}

  // The oldest unread message and its length, or nullptr if none is
  // published. Stays valid until release().
  const std::byte* try_front(uint32_t* length) noexcept {
    if (head_ == tail_cache_) {
      // acquire: pairs with the producer's store of tail in publish().
      tail_cache_ = ring_->tail.value.load(std::memory_order_acquire);
      if (head_ == tail_cache_) {
        if (unreleased_ != 0) publish_head();  // the producer may be waiting for room
        return nullptr;
      }
    }
    const std::byte* slot = slots_ + (head_ & mask_) * slot_bytes_;
    std::memcpy(length, slot, sizeof *length);
    return slot + kRingSlotHeaderBytes;
  }

  // Frees the slot try_front() returned.
  void release() noexcept {
    ++head_;
    if (++unreleased_ >= release_every_) publish_head();
  }

  // Whether a message is published; for the wait strategies' ready().
  bool ready() noexcept {
    uint32_t len;
    return try_front(&len) != nullptr;
  }

 private:
  void publish_head() noexcept {
    unreleased_ = 0;
    // release: pairs with the producer's acquire load of head in
    // try_claim(); our reads of the released slots happen before it reuses them.
    ring_->head.value.store(head_, std::memory_order_release);
  }

  SpscRingHeader* ring_;
  const std::byte* slots_;
  uint64_t slot_bytes_;
  uint64_t mask_;
  uint32_t release_every_;
  uint32_t unreleased_ = 0;
  uint64_t head_ = 0;
  uint64_t tail_cache_ = 0;
};

}  // namespace sluice::bench
