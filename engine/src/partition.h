// One partition of a topic: its segments, the append path, and the repair of
// claims whose writers died or stalled.
#pragma once

#include <sluice/producer.h>
#include <sluice/status.h>
#include <sys/types.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bus_state.h"
#include "producer_format.h"
#include "segment.h"
#include "topic_format.h"

namespace sluice {

// Tracks how long a reader has been waiting at one CLAIMED frame. A frame is
// (segment, position); the word is compared too, because consecutive claims
// of one producer with records of one size have identical words.
struct StallTracker {
  const Segment* segment = nullptr;
  uint32_t position = 0;
  uint64_t word = 0;
  int64_t since_ns = 0;
  int64_t last_check_ns = 0;
  uint32_t polls = 0;  // since the last check: a trigger that needs no clock
};

// A shared writer's entry in its partition's claim-intent table
// (topic_format.h, ClaimIntent), freed when destroyed.
class IntentHold {
 public:
  IntentHold() = default;
  explicit IntentHold(format::ClaimIntent* e) noexcept : e_(e) {}
  IntentHold(IntentHold&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  IntentHold& operator=(IntentHold&& o) noexcept {
    if (this != &o) {
      release();
      e_ = std::exchange(o.e_, nullptr);
    }
    return *this;
  }
  ~IntentHold() { release(); }
  std::atomic<uint64_t>* position() const noexcept { return e_ != nullptr ? &e_->position : nullptr; }

 private:
  void release() noexcept {
    if (e_ == nullptr) return;
    // release: our last claim word is stored before the entry reads free.
    e_->position.store(0, std::memory_order_release);
    e_->holder.store(0, std::memory_order_release);
    e_ = nullptr;
  }
  format::ClaimIntent* e_ = nullptr;
};

class Partition {
 public:
  static Result<std::unique_ptr<Partition>> open(TopicState& topic, uint32_t index, bool create);
  ~Partition();  // gives back a prepared spare (prepare_spare())

  uint32_t index() const noexcept { return index_; }
  TopicState& topic() const noexcept { return *topic_; }
  const std::string& dir() const noexcept { return dir_; }
  format::PartitionControl& control() const noexcept {
    return *reinterpret_cast<format::PartitionControl*>(state_.data() +
                                                        format::kPartitionControlOffset);
  }
  const ipc::MappedFile& state_file() const noexcept { return state_; }
  format::ClaimIntent& intent(uint32_t i) const noexcept {
    return reinterpret_cast<format::ClaimIntent*>(state_.data() + format::kClaimIntentsOffset)[i];
  }
  // A free claim-intent entry (or one whose holder died) for a shared writer
  // of this partition, held by `owner`. kBusy when all kClaimIntents are
  // held by live processes.
  Result<IntentHold> acquire_intent(uint16_t owner);

  // The segment starting at `base_offset`, mapped once per process.
  // kNotFound if it does not exist (yet, or any more).
  Result<std::shared_ptr<Segment>> segment(uint64_t base_offset);
  // The newest segment, creating the first one of an empty partition.
  Result<std::shared_ptr<Segment>> newest_segment();
  // The segment after `sealed`, which holds `eos_count` records; created if
  // nobody has yet (any writer or reader may). Its logical byte position is
  // the sealed one's plus its capacity, whoever computes it.
  Result<std::shared_ptr<Segment>> next_segment(const Segment& sealed, uint32_t eos_count,
                                                uint32_t zero_data_bytes = UINT32_MAX, bool owned = false);
  // Whether the topic has a retention limit for roll() to enforce.
  bool has_retention() const noexcept;
  // Takes a spare for this process's next roll ahead of it: renamed to a
  // name only this process knows and locked, so that the roll only rewrites
  // its header and publishes it (the exclusive writer calls it half-way
  // through a segment, docs/architecture.md "What a roll costs"). Does
  // nothing if one is prepared already or there is none. A prepared spare
  // goes back under its spare name at give_back_prepared() or when this
  // object is destroyed; one left by a dead process is reclaimed by any
  // roll (nobody holds its lock) or removed by recovery.
  void prepare_spare();
  // Gives back the spare prepare_spare() took, if any (the exclusive writer
  // letting go of the partition).
  void give_back_prepared();
  // A writer's roll: the next segment after `sealed`, then retention (the
  // cooperative housekeeping writers do when a segment fills). The
  // exclusive writer calls next_segment() and runs the retention at its next
  // send (ProducerState::Writer::retention_due).
  // `zero_data_bytes` (also next_segment()'s) < the segment size: the
  // exclusive writer's roll. A spare it recycles is zeroed only that far
  // (Segment::zeroed_prefix());
  // the writer zeroes the rest ahead of its tail. The new segment is
  // announced dirty in whole (PartitionControl::exclusive_dirty_end) before
  // it is published, so whoever takes the partition after the writer's death
  // zeroes what it left past its tail.
  // `owned`: a shared writer's roll from a segment whose tail it owned; a
  // spare it recycles is published with its tail OWNED and dirty in whole
  // instead (Segment::publish_spare), and no exclusive announcement is made.
  Result<std::shared_ptr<Segment>> roll(const Segment& sealed, uint32_t eos_count,
                                        uint32_t zero_data_bytes = UINT32_MAX, bool owned = false);
  // Base offsets of the segment files present, ascending (lists the directory).
  Result<std::vector<uint64_t>> segment_bases() const;
  // Drops cached mappings of segments below `base_offset` (after retention).
  void forget_segments_below(uint64_t base_offset);
  // Drops one segment from this process's cache (a cursor left it). Holders
  // of its shared_ptr keep it; once they let go it is unlocked and pooled,
  // so a recycler can take it.
  void forget_segment(uint64_t base_offset);

  struct Reservation {
    // Kept alive by the caller's cached newest segment (`*cached` below):
    // a raw pointer, because a shared_ptr copy per append costs two locked
    // instructions.
    Segment* segment = nullptr;
    uint32_t position = 0;
    uint64_t offset = 0;
    uint32_t partition = 0;  // set by ProducerState::reserve()
    // The state the claim word holds until published: kClaimedCopy for a
    // copying send's claim in a segment that takes it, else kClaimed (and
    // for an exclusive writer, whose word is 0 until published).
    format::ClaimState claimed = format::kClaimed;
    // An owned-tail append (Segment::owned_begin): the word reads 0 until
    // published, and the tail is stored after it (Segment::owned_end).
    bool owned = false;
  };
  // Claims a frame in the newest segment, rolling to a new segment when full.
  // `*cached` is the caller's cached newest segment (updated on roll).
  // `copying`: the claim of a copying send, CLAIMED_COPY where the segment
  // takes it (segment_format.h). `intent`: the writer's claim intent;
  // `own`: its side of the owned tail (may be null). A tail another writer
  // owns is revoked first (revoke_tail()).
  SendStatus claim(uint32_t frame_length, uint32_t count, uint16_t owner, bool copying,
                   std::atomic<uint64_t>* intent, TailOwnership* own, std::shared_ptr<Segment>* cached,
                   Reservation* out, Error* error);
  // Takes back the tail of `segment`, which another writer owns (the owned
  // tail, docs/architecture.md): takes the segment's revoker slot, runs the
  // global membarrier, waits until no other live writer's claim is in flight
  // (`mine`: the caller's own intent, which it has cleared), and has
  // Segment::take_owned_tail() end the ownership. kBusy: a live writer
  // stayed in a claim, or another revoker held the slot, past the topic's
  // claim timeout (stopped); kError: the membarrier failed, or a corrupt
  // word past the tail.
  SendStatus revoke_tail(Segment& segment, const std::atomic<uint64_t>* mine, Error* error);
  // Frees the revoker slot of `segment` if a dead process holds it: a
  // revoker that died after ending the ownership but before letting the
  // slot go would keep every writer from owning this tail again (a taker
  // backs off while the slot is held). If the tail is still OWNED, the next
  // writer revokes it in full, as revoke_tail() does after taking the slot
  // from a dead holder.
  void release_dead_revoker(Segment& segment);

  enum class Gap : uint8_t {
    kNone,      // nothing is claimed at the position (the log ends there)
    kLive,      // a live writer may be between its tail CAS and its word
    kRepaired,  // this call aborted the claimed range (or sealed the segment)
    kResolved,  // the word is no longer 0
    kCorrupt,   // the range cannot be measured: a damaged word or base offset
  };
  // The word at `position` (whose first record is the segment's
  // `count_before`-th) reads 0 while the EXACT tail is past it: claims whose
  // writers died between their tail CAS and their claim word. Unless a live
  // writer's intent lies in the range (`check_intents`; false: the caller
  // knows no writer is live), makes it one ABORTED frame up to the next
  // non-zero word or the tail, of the records claimed there, or END_OF_SEGMENT
  // at a sealed tail (docs/architecture.md, "The tail claim").
  Gap repair_gap(Segment& segment, uint32_t position, uint32_t count_before, bool check_intents);
  // The claimed range at `position` whose word reads 0, below the EXACT tail
  // `tail` (loaded with acquire) and not at it: where the frame after it
  // starts (*next_position) and that frame's base offset, found as
  // repair_gap() finds them. Reads only. false: it cannot be measured.
  // REQUIRES: no live writer in the range (live_writer_in()), whose bytes
  // are read.
  bool measure_gap(const Segment& segment, uint32_t position, uint32_t count_before, uint64_t tail,
                   uint32_t* next_position, uint64_t* next_offset) const;
  // Whether a live writer's claim intent lies in [from, to) of `segment`.
  bool live_writer_in(const Segment& segment, uint32_t from, uint32_t to) const;
  // What a walker that only reads (verify, describe) finds at a word it
  // loaded as 0 at `position`, without repairing anything.
  struct ZeroWord {
    enum Kind : uint8_t {
      kEnd,        // the end of the claims (the tail is there, or not EXACT)
      kSealed,     // the tail is sealed there: a sealer's END_OF_SEGMENT is on its way
      kLive,       // a claimed range a live writer is filling
      kPublished,  // its word was stored since the caller's load: read it again
      kGap,        // a claimed range whose writer died or is about to store its word
    } kind;
    uint64_t tail;  // the tail as loaded (acquire), for measure_gap()
  };
  ZeroWord look_at_zero_word(const Segment& segment, uint32_t position) const;
  // repair_gap() at every 0 word below the EXACT tail of `segment`, for a
  // caller that knows no shared writer is live (an exclusive writer taking
  // the partition; recovery). *repaired: the ranges repaired. false: a
  // range could not be measured, or a word is damaged.
  bool repair_gaps(Segment& segment, uint64_t* repaired);
  // The walk both of them make over `segment`'s frames from its start,
  // passing every 0 word below the tail to repair_gap() (counting the
  // ranges repaired in *repaired) and every frame to visit(position, word),
  // which returns false to stop there.
  enum class Walked : uint8_t {
    kEnd,        // the end of the claims (or of the segment) was reached
    kStopped,    // visit() returned false
    kGap,        // a 0 word that a live writer may fill, or whose range
                 // cannot be measured (kLive, kCorrupt)
    kCorrupt,    // a damaged word
  };
  template <class Visit>
  Walked walk_repairing(Segment& segment, bool check_intents, uint64_t* repaired, Visit&& visit);

  enum class Stall : uint8_t {
    kPending,   // still CLAIMED by a live writer within its timeout
    kRepaired,  // this call aborted the claim (dead owner or timed out)
    kResolved,  // the owner (or another repairer) changed the word first
  };
  // Called by a reader that found a CLAIMED frame at `position`. Aborts the
  // claim if its owner is dead, or it has been claimed longer than the
  // topic's claim timeout (not a CLAIMED_COPY one: only its death).
  Stall resolve_stall(Segment& segment, uint32_t position, uint64_t word, StallTracker& tracker);
  // Aborts the CLAIMED frame at `position` (CAS, so at most one repairer and
  // never a frame its writer committed first). True if this call did it.
  bool abort_claim(Segment& segment, uint32_t position, uint64_t word);
  // A read-committed reader waits at the PREPARED frame at `position`: if its
  // transaction's holder died or ran past its deadline, aborts the
  // transaction; if it was decided, carries the decision out; if the frame is
  // a straggler of a finished transaction, aborts the frame. True when the
  // frame's word has moved on (transaction.cc).
  bool resolve_prepared(Segment& segment, uint32_t position, uint64_t word);
  // Whether `segment` holds a frame of a live, undecided transaction (others
  // are resolved on the way): retention stops before it, so that a commit
  // never lands in a deleted file (the last stable offset holds the log).
  bool holds_prepared(Segment& segment);

  uint64_t start_offset() const noexcept {
    // acquire: pairs with the release store in retention; a reader that sees
    // the new start sees that the older segments are gone.
    return control().start_offset.load(std::memory_order_acquire);
  }
  // One past the last claimed record (committed or not), by walking the tail.
  uint64_t end_offset();
  // Logical byte position of the tail.
  uint64_t end_position();

  // Spare (retired, recyclable) segment files kept per partition: 2, or up
  // to 4 of small segments, within 32 MiB. A spare some process still has
  // open cannot be recycled, and the roll then allocates a fresh file; the
  // smaller the segments, the more often a roll comes while a reader
  // (a queue worker waiting for its CPU) has not let go of the last ones.
  static size_t max_spares(const TopicOptions& o);
  // Retires segments beyond the topic's retention: up to max_spares() become
  // spare files that later rolls recycle, the rest are deleted. Returns
  // records removed from the log.
  Result<uint64_t> enforce_retention(int64_t now_ns);

  // Zeroes what a dead exclusive writer left past the tail and clears its
  // dirty bound. REQUIRES: no other writer appends (writer lock held
  // exclusively, or recovery).
  Status clean_exclusive_leftovers();

  // Takes the partition's writer lock (shared, or exclusive for an exclusive
  // producer), cleaning up after a dead exclusive writer first.
  Result<ipc::FileLock> lock_writer(bool exclusive);

  // The entry of `pid` in this partition's producer file (producer_format.h),
  // made on first use; the file too. `exists` tells whether a pid still names
  // an identity (stale entries are reused). *made: the entry is new.
  Result<format::ProducerEntry*> producer_entry(uint64_t pid, const std::function<bool(uint64_t)>& exists,
                                                bool* made);

 private:
  TopicState* topic_ = nullptr;
  uint32_t index_ = 0;
  std::string dir_;
  ipc::MappedFile state_;
  mutable std::mutex mu_;
  std::map<uint64_t, std::shared_ptr<Segment>> segments_;
  // Names of the spare files this process's retention made, oldest first:
  // recycle_spare() tries them before listing the directory. Another
  // process may have taken one since; trying it then fails cheaply.
  std::deque<std::string> own_spares_;
  // A spare taken ahead of a roll (prepare_spare()), under mu_.
  struct TakenSpare {
    std::string spare;  // its spare name, to give it back under
    std::string mine;   // the name only we know, where it is now
    ipc::FileLock lock; // exclusive
    pid_t pid = 0;      // the process that took it (not a forked child)
  };
  std::optional<TakenSpare> prepared_;
  std::optional<TakenSpare> take_spare(const format::SegmentParams& params);
  std::optional<TakenSpare> take_prepared();  // prepared_, moved out under mu_
  static void give_back(TakenSpare& t) noexcept;
  format::SegmentParams segment_params(uint64_t base_offset, uint64_t base_position) const;
  std::shared_ptr<MappingPool> pool_;
  ipc::MappedFile producers_;  // opened on first use, under mu_

  // Mappings of segments this process no longer uses, kept for reuse: enough
  // for the files a bounded log rotates through (the retention window, the
  // spares, one the reader just left), so that a recycled file is always
  // found mapped. Files of a log without a byte bound do not come back.
  static size_t pooled_mappings(const TopicOptions& o);

  Result<std::shared_ptr<Segment>> create_segment(uint64_t base_offset, uint64_t base_position,
                                                  uint32_t zero_data_bytes = UINT32_MAX, bool owned = false);
  // Whether this process has segment `base_offset` open.
  bool is_cached(uint64_t base_offset) const;
  // A new segment made from a spare file, or nullptr if no spare is usable.
  std::shared_ptr<Segment> recycle_spare(const format::SegmentParams& params, const std::string& path,
                                         uint32_t zero_data_bytes, bool owned);
};

}  // namespace sluice
