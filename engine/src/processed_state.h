// An opened processed-id store: its mapping and parameters (layout in
// processed_format.h, design in docs/exactly-once.md section 6).
#pragma once

#include <sluice/processed.h>

#include <memory>
#include <string>

#include "bus_state.h"
#include "ipc/mapped_file.h"
#include "processed_format.h"

namespace sluice {

struct ProcessedStoreState {
  std::shared_ptr<BusState> bus;  // keeps our OwnerId alive while PENDING ids name it
  std::string name;
  std::string path;
  ipc::MappedFile file;
  format::ProcessedParams params{};
  int64_t pending_wait_ns = 0;

  int64_t window_ms() const noexcept { return params.window_ns / 1'000'000; }
  uint32_t bucket_index(uint64_t key_lo) const noexcept { return static_cast<uint32_t>(key_lo % params.buckets); }
  format::ProcessedBucket& bucket(uint32_t index) const noexcept {
    return reinterpret_cast<format::ProcessedBucket*>(file.data() + format::kProcessedBucketsOffset)[index];
  }
  format::ProcessedCounters& counters() const noexcept {
    return *reinterpret_cast<format::ProcessedCounters*>(file.data() + format::kProcessedCountersOffset);
  }
};

std::string processed_dir(const BusState& bus);
Status validate_processed_options(const ProcessedStoreOptions& options);
// Opens processed/<name>, creating it when absent and options.create_if_missing.
// Errors name the file: kCorruption, kVersionMismatch; kNotFound; kInvalidName.
Result<std::shared_ptr<ProcessedStoreState>> open_processed_store(std::shared_ptr<BusState> bus,
                                                                  std::string_view name,
                                                                  const ProcessedStoreOptions& options);

}  // namespace sluice
