// Creating and opening topics (the files under topics/<name>/).
#pragma once

#include <sluice/options.h>

#include <memory>

#include "bus_state.h"

namespace sluice {

inline constexpr uint32_t kMaxPartitions = 4096;
// Directories under topics/ that are not topics carry a character no topic
// name may contain: a topic being created, and one being deleted.
inline constexpr const char* kStagingPrefix = "@creating-";
inline constexpr const char* kGravePrefix = "@deleted-";

Status validate_topic_options(const TopicOptions& options);
// Creates topics/<name>/ atomically (built under a temporary name, renamed).
Status create_topic_files(BusState& bus, std::string_view name, const TopicOptions& options);
Result<std::shared_ptr<TopicState>> open_topic(BusState& bus, std::string_view name);

}  // namespace sluice
