// A sluice bus for the micro-benchmarks: a fresh directory under /dev/shm,
// one topic of one partition with big prefaulted segments, removed when the
// next benchmark asks for its own (one bus at a time, so memory stays
// bounded) or at exit.
//
// Appending benchmarks never time a segment roll: they call room_for() each
// iteration and, when the segment is about to fill, switch to a fresh topic
// with the timer paused (next_topic()). A roll's cost is a separate matter
// from the append path's.
#pragma once

#include <benchmark/benchmark.h>
#include <sluice/sluice.h>

#include <cstdint>
#include <memory>
#include <string>

namespace sluice::micro {

inline constexpr uint32_t kSegmentBytes = 1u << 30;

// Bytes one record of `value_bytes` (no key, no headers) takes in a frame of
// `records` records: 32-byte frame header, then a 32-byte record header and
// the value padded to 8 per record (segment_format.h).
constexpr uint64_t frame_bytes(uint32_t value_bytes, uint32_t records = 1) {
  return 32 + uint64_t{records} * (32 + ((value_bytes + 7) & ~7u));
}

class MicroBus {
 public:
  // The bus for benchmark `key`, created on first use; the previous
  // benchmark's bus is removed.
  static MicroBus& get(const std::string& key);
  // Removes the current bus (at exit).
  static void release();

  ~MicroBus();
  Bus& bus() { return *bus_; }
  const std::string& topic() const { return topic_; }
  // Creates a fresh topic and deletes the previous one; producers and
  // consumers of the old topic must be gone.
  void next_topic();

  // Counts `bytes` against the current segment; false when they do not fit
  // and the caller should move to a fresh topic first.
  uint64_t used() const { return used_; }
  // Records a benchmark put in the current topic before timing (for readers).
  uint64_t prefilled_records = 0;
  bool room_for(uint64_t bytes) {
    if (used_ + bytes > kSegmentBytes - 4096) return false;
    used_ += bytes;
    return true;
  }

 private:
  MicroBus(std::string key, std::string dir, Bus bus);
  std::string key_;
  std::string dir_;
  std::unique_ptr<Bus> bus_;
  std::string topic_;
  uint32_t generation_ = 0;
  uint64_t used_ = 0;
};

// Ends the benchmark with an error message (SkipWithError) and returns false.
bool skip(benchmark::State& state, const std::string& what);

}  // namespace sluice::micro
