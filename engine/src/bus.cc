#include <sluice/bus.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "admin.h"
#include "bus_state.h"
#include "ipc/file_header.h"
#include "ipc/filesystem.h"
#include "partition.h"
#include "recovery.h"
#include "topic_ops.h"

namespace sluice {

namespace {

constexpr uint64_t kBusMetaBytes = 4096;
constexpr auto kLockWait = std::chrono::seconds(120);

struct BusParams {
  uint32_t reserved[2];
};


// bus.meta: the file header, then at kBootIdOffset the boot id of the machine
// that last attached (NUL-padded text of /proc/sys/kernel/random/boot_id).
constexpr uint64_t kBootIdOffset = 1024;
constexpr size_t kBootIdBytes = 64;

Result<ipc::MappedFile> open_bus_meta(const std::string& dir) {
  const std::string path = dir + "/bus.meta";
  if (!ipc::path_exists(path)) {
    auto f = ipc::MappedFile::create_temp(path, kBusMetaBytes, {});
    if (!f) return std::unexpected(f.error());
    BusParams params{};
    ipc::write_file_header(f->data(), ipc::FileKind::kBus, static_cast<uint32_t>(kBootIdOffset), kBusMetaBytes,
                           &params, sizeof params);
    if (auto pub = f->publish(); !pub) return std::unexpected(pub.error());
  }
  auto f = ipc::MappedFile::open(path, {});
  if (!f) return std::unexpected(f.error());
  if (auto ok = ipc::validate_file_header(f->data(), f->size(), ipc::FileKind::kBus, sizeof(BusParams), path); !ok)
    return std::unexpected(ok.error());
  return f;
}

std::string current_boot_id() {
  std::string id = ipc::read_file("/proc/sys/kernel/random/boot_id").value_or("");
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id.substr(0, kBootIdBytes - 1);
}

// Takes `path` in `mode`, retrying for up to kLockWait.
Result<ipc::FileLock> lock_with_wait(const std::string& path, ipc::FileLock::Mode mode,
                                     std::string_view waiting_for) {
  const auto deadline = std::chrono::steady_clock::now() + kLockWait;
  for (;;) {
    auto lock = ipc::FileLock::try_lock(path, mode);
    if (lock || lock.error().code != Errc::kBusy) return lock;
    if (std::chrono::steady_clock::now() >= deadline)
      return make_error(Errc::kTimeout, "timed out waiting for " + std::string(waiting_for) + " (" + path + ")");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// REQUIRES: no other process attached (bus.lock held exclusively).
Status recover_bus(BusState& bus, ipc::MappedFile& meta) {
  bus.recovery.ran = true;
  // A committed frame whose checksum fails can only be a torn write if the
  // machine went down (a killed process never publishes a frame before its
  // bytes). Only then is a bad tail cut; otherwise it is reported and kept.
  char* stored = reinterpret_cast<char*>(meta.data() + kBootIdOffset);
  const std::string boot = current_boot_id();
  const bool machine_restarted = std::string(stored, strnlen(stored, kBootIdBytes)) != boot;
  if (machine_restarted) {
    std::memset(stored, 0, kBootIdBytes);
    std::memcpy(stored, boot.data(), boot.size());
    (void)meta.sync(kBootIdOffset, kBootIdBytes, true);
  }
  auto names = ipc::list_dir(bus.dir + "/topics");
  if (!names) return std::unexpected(names.error());
  for (const auto& name : *names) {
    if (name.rfind(kStagingPrefix, 0) == 0 || name.rfind(kGravePrefix, 0) == 0) {
      // A topic creation or deletion that died half-way.
      (void)ipc::remove_tree(bus.dir + "/topics/" + name);
      bus.recovery.notes.push_back("removed unfinished topic creation or deletion " + name);
      continue;
    }
    auto topic = bus.topic(name, is_queue_topic(name));
    if (!topic) {
      bus.recovery.notes.push_back("topic " + name + " not recovered: " + topic.error().to_string());
      continue;
    }
    for (auto& p : (*topic)->partitions) {
      if (auto ok = recover_partition(*p, machine_restarted, bus.recovery); !ok)
        bus.recovery.notes.push_back("topic " + name + " partition " + std::to_string(p->index()) +
                                     " not recovered: " + ok.error().to_string());
    }
  }
  return {};
}

}  // namespace


Bus::Bus(std::shared_ptr<BusState> state) : state_(std::move(state)) {}
Bus::Bus(Bus&&) noexcept = default;
Bus& Bus::operator=(Bus&&) noexcept = default;
Bus::~Bus() = default;

const std::string& Bus::dir() const noexcept { return state_->dir; }
const Clock& Bus::clock() const noexcept { return *state_->clock; }
const RecoveryReport& Bus::recovery() const noexcept { return state_->recovery; }

Result<Bus> Bus::open(const std::string& dir, const BusOptions& options) {
  if (dir.empty()) return make_error(Errc::kInvalidArgument, "no bus directory given (--dir or SLUICE_DIR)");
  auto state = std::make_shared<BusState>();
  state->dir = dir;
  while (state->dir.size() > 1 && state->dir.back() == '/') state->dir.pop_back();
  state->options = options;
  state->clock = options.clock ? options.clock : &Clock::system();
  if (!ipc::path_exists(state->dir + "/bus.meta")) {
    if (!options.create_if_missing) return make_error(Errc::kNotFound, "no bus at " + dir + " (run `sluice init`)");
    for (const char* sub : {"", "/topics", "/groups", "/procs"})
      if (auto ok = ipc::make_dirs(state->dir + sub); !ok) return std::unexpected(ok.error());
  }
  auto meta = open_bus_meta(state->dir);
  if (!meta) return std::unexpected(meta.error());
  for (const char* sub : {"/topics", "/groups"})
    if (auto ok = ipc::make_dirs(state->dir + sub); !ok) return std::unexpected(ok.error());

  // Attach. recover.lock serialises openers; bus.lock is held shared by every
  // attached process, so an opener that can take it exclusively is alone and
  // recovers. flock conversions are not atomic, which is why the exclusive
  // attempt and the conversion happen under recover.lock.
  auto gate = lock_with_wait(state->dir + "/recover.lock", ipc::FileLock::Mode::kExclusive,
                             "another process opening the bus");
  if (!gate) return std::unexpected(gate.error());
  auto registry = ipc::ProcessRegistry::attach(state->dir + "/procs");
  if (!registry) return std::unexpected(registry.error());
  state->registry = std::move(*registry);
  const std::string bus_lock = state->dir + "/bus.lock";
  auto alone = ipc::FileLock::try_lock(bus_lock, ipc::FileLock::Mode::kExclusive);
  if (alone) {
    if (auto ok = recover_bus(*state, *meta); !ok) return std::unexpected(ok.error());
    if (auto ok = alone->try_convert(ipc::FileLock::Mode::kShared); !ok) return std::unexpected(ok.error());
    state->bus_lock = std::move(*alone);
  } else {
    if (alone.error().code != Errc::kBusy) return std::unexpected(alone.error());
    auto shared = ipc::FileLock::try_lock(bus_lock, ipc::FileLock::Mode::kShared);
    if (!shared) return std::unexpected(shared.error());
    state->bus_lock = std::move(*shared);
  }
  return Bus(std::move(state));
}

Status Bus::create_topic(std::string_view name, const TopicOptions& options) {
  return create_topic_files(*state_, name, options);
}

Result<std::vector<std::string>> Bus::list_topics() const {
  auto names = ipc::list_dir(state_->dir + "/topics");
  if (!names) return names;
  std::vector<std::string> out;
  for (auto& n : *names)
    if (validate_name(n, "topic") && ipc::path_exists(state_->dir + "/topics/" + n + "/topic")) out.push_back(n);
  return out;
}

Status Bus::delete_topic(std::string_view name) { return delete_topic_files(*state_, name, false); }

Status delete_topic_files(BusState& bus, std::string_view name, bool internal) {
  BusState* state_ = &bus;
  auto topic = state_->topic(name, internal);
  if (!topic) return std::unexpected(topic.error());
  // relaxed: processes notice on their next cold-path check.
  (*topic)->control().deleted.store(1, std::memory_order_relaxed);
  ipc::notify((*topic)->control().wakeup);
  const std::string dir = state_->topic_dir(name);
  const std::string grave = state_->dir + "/topics/" + kGravePrefix + std::string(name) + "-" +
                            std::to_string(state_->clock->now_ns());
  if (::rename(dir.c_str(), grave.c_str()) != 0) return errno_error(errno, "cannot delete topic " + std::string(name));
  {
    std::lock_guard lock(state_->mu);
    state_->topics.erase(std::string(name));
  }
  // Group offsets of the topic go too (the engine's own included): a topic
  // of the same name created later starts from scratch.
  if (auto groups = ipc::list_dir(state_->dir + "/groups")) {
    for (auto& g : *groups) ::unlink((state_->group_dir(g) + "/" + std::string(name) + ".offsets").c_str());
  }
  return ipc::remove_tree(grave);
}

Result<std::vector<std::string>> Bus::list_groups() const {
  auto names = ipc::list_dir(state_->dir + "/groups");
  if (!names) return names;
  std::vector<std::string> out;
  for (auto& n : *names)
    if (validate_name(n, "group")) out.push_back(n);
  return out;
}

Result<TopicDescription> Bus::describe_topic(std::string_view name) const {
  return admin::describe_topic(*state_, name);
}
Result<GroupDescription> Bus::describe_group(std::string_view group) const {
  return admin::describe_group(*state_, group);
}
Status Bus::seek_group(std::string_view group, std::string_view topic, SeekTarget target,
                       std::optional<uint32_t> partition) {
  return admin::seek_group(*state_, group, topic, target, partition);
}

Result<VerifyReport> Bus::verify(std::string_view topic) const {
  VerifyReport report;
  std::vector<std::string> names;
  if (!topic.empty()) {
    names.emplace_back(topic);
  } else {
    auto all = list_topics();
    if (!all) return std::unexpected(all.error());
    names = std::move(*all);
  }
  for (const auto& n : names) {
    auto t = state_->topic(n);
    if (!t) return std::unexpected(t.error());
    for (auto& p : (*t)->partitions)
      if (auto ok = verify_partition(*p, report); !ok) return std::unexpected(ok.error());
  }
  return report;
}

Status Bus::housekeep() {
  auto names = list_topics();
  if (!names) return std::unexpected(names.error());
  for (const auto& n : *names) {
    auto t = state_->topic(n);
    if (!t) continue;
    for (auto& p : (*t)->partitions)
      if (auto r = p->enforce_retention(state_->clock->now_ns()); !r) return std::unexpected(r.error());
  }
  // Start the idle time of producer names whose holder died, so that a full
  // table can reclaim them 7 days on (docs/exactly-once.md, section 1).
  if (ipc::path_exists(state_->dir + "/producers/table")) {
    auto table = state_->producers();
    if (!table) return std::unexpected(table.error());
    (*table)->stamp_idle(state_->registry);
  }
  return {};
}

}  // namespace sluice
