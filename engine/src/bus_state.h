// The in-process state behind a Bus handle and the topics it has open.
#pragma once

#include <sluice/bus.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ipc/file_lock.h"
#include "ipc/mapped_file.h"
#include "ipc/process_registry.h"
#include "producer_table.h"
#include "topic_format.h"

namespace sluice {

class Partition;
struct BusState;


class GroupOffsets;

// A process's open offsets files of a topic's groups, for
// min_committed_offset(): listed again when the topic's groups_generation
// moves, or after a second (a file removed by hand).
struct GroupOffsetsCache {
  std::mutex mu;
  uint64_t generation = 0;
  int64_t listed_ns = 0;
  bool listed = false;
  std::vector<std::shared_ptr<GroupOffsets>> groups;
};

struct TopicState {
  BusState* bus = nullptr;
  std::string name;
  std::string dir;
  TopicOptions options;
  ipc::MappedFile file;
  std::vector<std::unique_ptr<Partition>> partitions;
  GroupOffsetsCache group_offsets;

  format::TopicControl& control() const {
    return *reinterpret_cast<format::TopicControl*>(file.data() + format::kTopicControlOffset);
  }
  ipc::MapOptions segment_map_options() const {
    return {true, options.prefault_segments, options.huge_pages};
  }
  bool deleted() const {
    // relaxed: a hint checked on cold paths; deletion is not synchronised
    // with in-flight appends (documented in delete_topic).
    return control().deleted.load(std::memory_order_relaxed) != 0;
  }
};

struct BusState {
  std::string dir;
  BusOptions options;
  const Clock* clock = nullptr;
  ipc::FileLock bus_lock;  // shared while attached
  ipc::ProcessRegistry registry;
  RecoveryReport recovery;

  std::mutex mu;
  std::map<std::string, std::shared_ptr<TopicState>, std::less<>> topics;
  std::unique_ptr<ProducerTable> producer_table;  // opened on first use, under mu

  // The bus's producer table (producer_table.h), opened on first use.
  Result<ProducerTable*> producers();

  std::string topic_dir(std::string_view topic) const { return dir + "/topics/" + std::string(topic); }
  std::string group_dir(std::string_view group) const { return dir + "/groups/" + std::string(group); }
  // Opens a topic (cached per Bus handle). kNotFound for unknown topics.
  // `internal`: may also open a queue's internal topic (topic_ops.h).
  Result<std::shared_ptr<TopicState>> topic(std::string_view name, bool internal = false);
};

}  // namespace sluice
