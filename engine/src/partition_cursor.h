// A reader's position in one partition and the frame-walking read loop.
// Lock-free and, in steady state, free of system calls: it loads a claim word
// with acquire, and on COMMITTED decodes records in place.
#pragma once

#include <sluice/options.h>
#include <sluice/record.h>
#include <sluice/status.h>

#include <memory>
#include <vector>

#include "partition.h"
#include "segment.h"

namespace sluice {

class PartitionCursor {
 public:
  PartitionCursor(Partition& partition, bool verify_checksums, Isolation isolation = Isolation::kReadCommitted)
      : partition_(&partition), verify_(verify_checksums), uncommitted_(isolation == Isolation::kReadUncommitted) {}

  enum class Step : uint8_t {
    kRecord,     // *out holds the next record
    kEmpty,      // nothing committed past the position yet
    kPending,    // the next frame is claimed and not yet committed, or (read
                 // committed) its transaction is not decided yet
    kCorrupt,    // the next frame failed validation; see error()
    kOutOfRange, // the position is below the log start (retention)
  };
  Step next(RecordView* out) noexcept;

  // Positions the cursor at `offset` (clamped to the end). kOffsetOutOfRange
  // below the log start.
  Status seek(uint64_t offset);
  Status seek_to_end();
  // The first record with timestamp >= unix_ns, or the end.
  Status seek_to_time(int64_t unix_ns);

  // Skips the frame that failed validation; returns how many offsets were
  // skipped (0 if it could not resynchronise).
  uint64_t skip_corrupt();

  uint64_t next_offset() const noexcept { return next_offset_; }
  // Views handed out may point into segments this cursor has since left; it
  // keeps those alive (and use-locked, so not recycled) until told the views
  // are dead: at the start of the consumer's next poll.
  void release_left_segments() noexcept { left_.clear(); }
  // Whether retention removed the position (the cursor may still hold the
  // deleted segment's mapping; reading on would pin its memory).
  bool behind_start() const noexcept { return next_offset_ < partition_->start_offset(); }
  uint64_t position() const noexcept;  // logical byte position of the next frame
  bool positioned() const noexcept { return segment_ != nullptr; }
  // The segment the last record returned by next() lies in.
  const std::shared_ptr<Segment>& current_segment() const noexcept { return segment_; }
  const Error& error() const noexcept { return error_; }
  // Claims this cursor aborted (dead or stalled writers), and the offsets
  // [first, end) of the last one.
  uint64_t repairs() const noexcept { return repairs_; }
  uint64_t last_repaired_first() const noexcept { return last_repaired_first_; }
  uint64_t last_repaired_end() const noexcept { return last_repaired_end_; }
  Partition& partition() const noexcept { return *partition_; }
  // Whether claims were made at or past the position where next() returned
  // kEmpty: the segment's EXACT tail is past it (a writer between its tail
  // claim and its claim word), or sealed there without an END_OF_SEGMENT
  // word yet. seq_cst: an idempotent takeover's walk, which must not stop
  // short of a claim the fencing handshake let through (docs/exactly-once.md,
  // section 3).
  bool claims_ahead() const noexcept;

 private:
  Partition* partition_;
  bool verify_;
  bool uncommitted_;  // Isolation::kReadUncommitted: PREPARED frames are read
  std::shared_ptr<Segment> segment_;
  std::vector<std::shared_ptr<Segment>> left_;  // see release_left_segments()
  uint32_t frame_pos_ = 0;   // start of the current frame in segment_
  // Waiting at a sealed segment whose successor does not exist yet.
  int64_t eos_since_ns_ = 0;
  uint64_t eos_base_ = 0;
  uint32_t eos_polls_ = 0;
  // Whether a reader at the end of a sealed segment has waited long enough
  // for its writer to make segment `next_base` (the first call starts the wait).
  bool eos_wait_over(uint64_t next_base);
  // Makes `later` (a segment after the current one) current and lets go of
  // the current one (see the definition).
  void move_forward_to(std::shared_ptr<Segment> later);
  // seek() inside `seg`, for an offset at or past its base: true if the
  // cursor now stands where seek() would leave it, false if the offset lies
  // in a later segment.
  Result<bool> seek_within_segment(std::shared_ptr<Segment> seg, uint64_t offset);
  static constexpr int64_t kCreateNextAfterNs = 100'000'000;  // a new 64 MiB file takes ~25 ms here
  static constexpr uint32_t kCreateNextAfterPolls = 1u << 24;
  static constexpr uint32_t kGapPollsBeforeCheck = 4096;
  static constexpr int64_t kGapCheckIntervalNs = 10'000'000;
  uint32_t frame_len_ = 0;
  uint32_t frame_count_ = 0; // 0: not inside a frame
  uint32_t rec_pos_ = 0;
  uint32_t rec_index_ = 0;
  uint64_t seed_ = 0;
  uint64_t next_offset_ = 0;
  StallTracker stall_;
  // Waiting at a 0 word: how often to look at the tail for claims whose
  // writers died before their claim word (Partition::repair_gap).
  const Segment* gap_segment_ = nullptr;
  uint32_t gap_pos_ = 0;
  uint32_t gap_polls_ = 0;
  int64_t gap_checked_ns_ = 0;
  bool gap_check_due() noexcept;
  uint64_t repairs_ = 0;
  uint64_t last_repaired_first_ = 0;
  uint64_t last_repaired_end_ = 0;
  Error error_{Errc::kCorruption, ""};

  Step enter_segment_after_eos();
  Step corrupt(std::string what);
  // Walks to `offset` from a frame at (position, first offset) in `seg`.
  Status walk_to(std::shared_ptr<Segment> seg, uint32_t position, uint64_t frame_offset, uint64_t offset);
  void leave_frame() noexcept;
};

}  // namespace sluice
