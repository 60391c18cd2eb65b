// The per-partition state of a RetryingConsumer in RetryMode::kInPlace
// (docs/queues.md, section 7): which partitions wait behind a record being
// retried, at which offset, after how many attempts, and when the next
// attempt is due. Only book-keeping: the caller moves the consumer (seeks a
// newly held partition back to its record and pauses it there, resumes it
// when the retry is due) and keeps the attempt count and the due time in
// the group's file.
//
// A partition's lane goes
//   kFlowing --pause()--> kWaiting --start_due()--> kDue --pause()--> kWaiting
//                                                      \--resume()--> kFlowing
// and any paused lane back to kFlowing by resume() (success, dead letter, or
// the record no longer where it was).
#pragma once

#include <sluice/queue.h>
#include <sluice/retrying_consumer.h>

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <vector>

namespace sluice {

class InPlaceRetries {
 public:
  enum class Lane : uint8_t {
    kFlowing,  // records are handled as they come
    kWaiting,  // paused in the consumer at the record; its retry is not due
    kDue,      // resumed: the record is the next one the consumer reads
  };

  // `*stats` (the helper's) shows the paused lanes and must outlive this.
  InPlaceRetries(std::span<const uint32_t> assignment, RetryingConsumerStats* stats) : stats_(*stats) {
    uint32_t size = 0;
    for (uint32_t p : assignment) size = std::max(size, p + 1);
    lanes_.resize(size);
  }

  // REQUIRES: `partition` is assigned (as are those below).
  Lane lane(uint32_t partition) const noexcept {
    assert(partition < lanes_.size());
    return lanes_[partition].lane;
  }
  // The record a paused partition retries, and the attempts made on it.
  uint64_t offset(uint32_t partition) const noexcept { return lanes_[partition].offset; }
  uint32_t failed_attempts(uint32_t partition) const noexcept { return lanes_[partition].failed_attempts; }
  // A failure whose dead letter was refused: the next attempt writes it
  // instead of running the handler. Null if none.
  const Failure* pending_letter(uint32_t partition) const noexcept {
    const auto& l = lanes_[partition].letter;
    return l ? &*l : nullptr;
  }

  // Pauses `partition` (or keeps it paused) at `offset`, whose attempt
  // `failed_attempts` just failed; the next is due at retry_at_ns. With
  // `letter`, the next attempt only dead-letters it. The lane is held: see
  // hold_new().
  void pause(uint32_t partition, uint64_t offset, uint32_t failed_attempts, int64_t retry_at_ns, int64_t now_ns,
             std::optional<Failure> letter) {
    State& s = lanes_[partition];
    if (s.lane != Lane::kFlowing && s.offset != offset) end_pause(partition, now_ns);
    if (s.lane == Lane::kFlowing) {
      ++stats_.pauses;
      stats_.paused.push_back({partition, offset, 0, 0, now_ns});
    }
    s.lane = Lane::kWaiting;
    s.offset = offset;
    s.failed_attempts = failed_attempts;
    s.letter = std::move(letter);
    s.hold = true;
    PausedPartition& p = find(partition);
    p.offset = offset;
    p.failed_attempts = failed_attempts;
    p.retry_at_ns = retry_at_ns;
  }

  // A waiting lane's record was read after all (someone resumed the
  // partition behind the helper's back): hold it again.
  void hold(uint32_t partition) noexcept {
    assert(lanes_[partition].lane == Lane::kWaiting);
    lanes_[partition].hold = true;
  }

  // Lets `partition` flow again (any partition number). False if it was
  // flowing already.
  bool resume(uint32_t partition, int64_t now_ns) {
    if (partition >= lanes_.size() || lanes_[partition].lane == Lane::kFlowing) return false;
    end_pause(partition, now_ns);
    return true;
  }

  // Moves every waiting lane whose retry is due by now_ns to kDue, calling
  // resume(partition) for it: the caller lets the consumer read it again.
  template <class Resume>
  void start_due(int64_t now_ns, Resume&& resume) {
    for (const PausedPartition& p : stats_.paused) {
      State& s = lanes_[p.partition];
      if (s.lane != Lane::kWaiting || p.retry_at_ns > now_ns) continue;
      s.lane = Lane::kDue;
      resume(p.partition);
    }
  }

  // The earliest retry_at_ns of a waiting lane; INT64_MAX if none. (A due
  // lane's record is ready to read: the consumer's wait ends for it.)
  int64_t next_retry_at_ns() const noexcept {
    int64_t t = std::numeric_limits<int64_t>::max();
    for (const PausedPartition& p : stats_.paused)
      if (lanes_[p.partition].lane == Lane::kWaiting) t = std::min(t, p.retry_at_ns);
    return t;
  }

  // Calls hold(partition, offset) for each waiting lane held since the last
  // call: the caller seeks the consumer back to the record (it has read past
  // it) and pauses the partition there, so that nothing behind the record
  // is read until its retry.
  template <class Hold>
  void hold_new(Hold&& hold) {
    for (uint32_t p = 0; p < lanes_.size(); ++p)
      if (lanes_[p].hold) {
        lanes_[p].hold = false;
        if (lanes_[p].lane == Lane::kWaiting) hold(p, lanes_[p].offset);
      }
  }

 private:
  struct State {
    Lane lane = Lane::kFlowing;
    bool hold = false;  // to be sought back and paused by hold_new()
    uint32_t failed_attempts = 0;
    uint64_t offset = 0;
    std::optional<Failure> letter;
  };

  PausedPartition& find(uint32_t partition) {
    auto it = std::find_if(stats_.paused.begin(), stats_.paused.end(),
                           [&](const PausedPartition& p) { return p.partition == partition; });
    assert(it != stats_.paused.end());  // every paused lane has its entry
    return *it;
  }

  void end_pause(uint32_t partition, int64_t now_ns) {
    PausedPartition& p = find(partition);
    stats_.paused_ns += now_ns - p.paused_since_ns;
    stats_.paused.erase(stats_.paused.begin() + (&p - stats_.paused.data()));
    State& s = lanes_[partition];
    s.lane = Lane::kFlowing;
    s.hold = false;
    s.failed_attempts = 0;
    s.letter.reset();
  }

  std::vector<State> lanes_;  // by partition number
  RetryingConsumerStats& stats_;
};

}  // namespace sluice
