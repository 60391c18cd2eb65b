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
// A work queue's messages live in the internal topic "@queue.<queue>"
// (queue_format.h); users cannot name it, the engine opens it by this name.
inline constexpr std::string_view kQueueTopicPrefix = "@queue.";
inline bool is_queue_topic(std::string_view name) { return name.starts_with(kQueueTopicPrefix); }
// The internal group whose committed offsets are the queues' ack floors.
inline constexpr std::string_view kQueueGroup = "@queue";
// Validates a topic name; internal queue topics only when `internal`.
Status validate_topic_name(std::string_view name, bool internal);

Status validate_topic_options(const TopicOptions& options);
// Creates topics/<name>/ atomically (built under a temporary name, renamed).
Status create_topic_files(BusState& bus, std::string_view name, const TopicOptions& options,
                          bool internal = false);
Result<std::shared_ptr<TopicState>> open_topic(BusState& bus, std::string_view name, bool internal = false);
// Marks the topic deleted, moves it to a grave, removes it and its groups'
// offsets.
Status delete_topic_files(BusState& bus, std::string_view name, bool internal);

}  // namespace sluice
