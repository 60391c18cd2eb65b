#include <unistd.h>

#include <cstdio>
#include <random>

#include "bus_state.h"
#include "ipc/file_header.h"
#include "ipc/filesystem.h"
#include "partition.h"
#include "topic_format.h"
#include "topic_ops.h"

namespace sluice {

using namespace format;

namespace {

TopicParams to_params(const TopicOptions& o) {
  TopicParams p{};
  p.partitions = o.partitions;
  p.segment_bytes = o.segment_bytes;
  p.index_interval_bytes = o.index_interval_bytes;
  p.retention_mode = static_cast<uint8_t>(o.retention_mode);
  p.auto_offset_reset = static_cast<uint8_t>(o.auto_offset_reset);
  p.prefault_segments = o.prefault_segments;
  p.huge_pages = o.huge_pages;
  p.retention_bytes = o.retention_bytes;
  p.retention_ms = o.retention_ms;
  p.claim_timeout_ns = o.claim_timeout_ns;
  p.retire_consumed = o.retire_consumed;
  return p;
}

TopicOptions from_params(const TopicParams& p) {
  TopicOptions o;
  o.partitions = p.partitions;
  o.segment_bytes = p.segment_bytes;
  o.index_interval_bytes = p.index_interval_bytes;
  o.retention_mode = static_cast<RetentionMode>(p.retention_mode);
  o.auto_offset_reset = static_cast<OffsetReset>(p.auto_offset_reset);
  o.prefault_segments = p.prefault_segments;
  o.huge_pages = p.huge_pages;
  o.retention_bytes = p.retention_bytes;
  o.retention_ms = p.retention_ms;
  o.claim_timeout_ns = p.claim_timeout_ns;
  o.retire_consumed = p.retire_consumed != 0;
  return o;
}

}  // namespace

Status validate_topic_options(const TopicOptions& o) {
  auto bad = [](std::string m) { return make_error(Errc::kInvalidArgument, std::move(m)); };
  if (o.partitions < 1 || o.partitions > kMaxPartitions)
    return bad("partitions must be 1.." + std::to_string(kMaxPartitions));
  if (o.segment_bytes < (64u << 10) || o.segment_bytes > (1u << 30) || o.segment_bytes % 4096 != 0)
    return bad("segment bytes must be a multiple of 4096 between 64 KiB and 1 GiB");
  if (o.index_interval_bytes < 256 || o.index_interval_bytes > o.segment_bytes ||
      o.index_interval_bytes % kFrameAlign != 0)
    return bad("index interval must be a multiple of 8, at least 256 and at most the segment size");
  if (o.retention_mode == RetentionMode::kBackPressure && o.retention_bytes <= 0)
    return bad("back-pressure retention needs retention bytes > 0 (the window)");
  if (o.retention_bytes >= 0 && o.retention_bytes < o.segment_bytes && o.retention_mode == RetentionMode::kBackPressure)
    return bad("the back-pressure window must hold at least one segment");
  if (o.claim_timeout_ns <= 0) return bad("claim timeout must be positive");
  if (static_cast<uint8_t>(o.retention_mode) > 1 || static_cast<uint8_t>(o.auto_offset_reset) > 2)
    return bad("unknown retention mode or offset reset policy");
  return {};
}

Status validate_topic_name(std::string_view name, bool internal) {
  if (internal && is_queue_topic(name)) return validate_name(name.substr(kQueueTopicPrefix.size()), "queue");
  return validate_name(name, "topic");
}

Status create_topic_files(BusState& bus, std::string_view name, const TopicOptions& options, bool internal) {
  if (auto ok = validate_topic_name(name, internal); !ok) return ok;
  if (auto ok = validate_topic_options(options); !ok) return ok;
  const std::string final_dir = bus.topic_dir(name);
  if (ipc::path_exists(final_dir))
    return make_error(Errc::kAlreadyExists, "topic " + std::string(name) + " already exists");
  // Build the whole topic under a temporary name, then rename it into place:
  // other processes see either no topic or a complete one.
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const std::string tmp = bus.dir + "/topics/" + kStagingPrefix + std::string(name) + "-" +
                          std::to_string(::getpid()) + "-" + std::to_string(rng() % 1000000);
  if (auto ok = ipc::make_dirs(tmp); !ok) return ok;
  auto cleanup = [&](Status s) {
    (void)ipc::remove_tree(tmp);
    return s;
  };
  {
    auto f = ipc::MappedFile::create_temp(tmp + "/topic", kControlFileBytes, {});
    if (!f) return cleanup(std::unexpected(f.error()));
    TopicParams params = to_params(options);
    ipc::write_file_header(f->data(), ipc::FileKind::kTopic, static_cast<uint32_t>(kTopicControlOffset),
                           kControlFileBytes, &params, sizeof params);
    if (auto pub = f->publish(); !pub) return cleanup(std::unexpected(pub.error()));
  }
  TopicState staging;
  staging.bus = &bus;
  staging.name = std::string(name);
  staging.dir = tmp;
  staging.options = options;
  for (uint32_t p = 0; p < options.partitions; ++p) {
    auto part = Partition::open(staging, p, true);
    if (!part) return cleanup(std::unexpected(part.error()));
  }
  if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
    int err = errno;
    if (err == EEXIST || err == ENOTEMPTY)
      return cleanup(make_error(Errc::kAlreadyExists, "topic " + std::string(name) + " already exists"));
    return cleanup(errno_error(err, "cannot create topic directory " + final_dir));
  }
  return ipc::sync_dir(bus.dir + "/topics");
}

Result<std::shared_ptr<TopicState>> open_topic(BusState& bus, std::string_view name, bool internal) {
  if (auto ok = validate_topic_name(name, internal); !ok) return std::unexpected(ok.error());
  const std::string dir = bus.topic_dir(name);
  const std::string path = dir + "/topic";
  if (!ipc::path_exists(path)) return make_error(Errc::kNotFound, "unknown topic " + std::string(name));
  auto f = ipc::MappedFile::open(path, {});
  if (!f) return std::unexpected(f.error());
  if (auto ok = ipc::validate_file_header(f->data(), f->size(), ipc::FileKind::kTopic,
                                          sizeof(TopicParams), path);
      !ok)
    return std::unexpected(ok.error());
  auto t = std::make_shared<TopicState>();
  t->bus = &bus;
  t->name = std::string(name);
  t->dir = dir;
  t->options = from_params(ipc::file_params<TopicParams>(f->data()));
  if (auto ok = validate_topic_options(t->options); !ok)
    return make_error(Errc::kCorruption, "topic file " + path + " holds invalid options: " + ok.error().message);
  t->file = std::move(*f);
  if (t->deleted()) return make_error(Errc::kNotFound, "topic " + std::string(name) + " is being deleted");
  for (uint32_t p = 0; p < t->options.partitions; ++p) {
    auto part = Partition::open(*t, p, false);
    if (!part) return std::unexpected(part.error());
    t->partitions.push_back(std::move(*part));
  }
  return t;
}

Result<std::shared_ptr<TopicState>> BusState::topic(std::string_view name, bool internal) {
  if (!internal)
    if (auto ok = validate_name(name, "topic"); !ok) return std::unexpected(ok.error());
  {
    std::lock_guard lock(mu);
    auto it = topics.find(name);
    if (it != topics.end() && !it->second->deleted()) return it->second;
  }
  auto t = open_topic(*this, name, internal);
  if (!t) return t;
  std::lock_guard lock(mu);
  auto [it, inserted] = topics.insert_or_assign(std::string(name), *t);
  return it->second;
}

}  // namespace sluice
