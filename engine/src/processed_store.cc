// Processed-id stores as files: creating, opening (with every field of the
// file checked), listing and deleting them; the ProcessedStore handle. The
// bucket protocol itself is in processed_bucket.cc.
#include <sluice/bus.h>
#include <sluice/processed.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>

#include <xxhash.h>

#include "ipc/file_header.h"
#include "ipc/filesystem.h"
#include "processed_state.h"

namespace sluice {

using namespace format;

namespace {

constexpr int64_t kMinWindowNs = 1'000'000;

// MappedFile::create_temp names its files "<final>.tmp.<pid>.<random>"; a
// creator killed before publishing leaves one behind. Such names are not
// stores (and are refused as store names, so a listing never confuses them).
bool is_temp_name(std::string_view name) {
  const size_t at = name.rfind(".tmp.");
  if (at == std::string_view::npos) return false;
  std::string_view rest = name.substr(at + 5);
  const size_t dot = rest.find('.');
  auto digits = [](std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  return dot != std::string_view::npos && digits(rest.substr(0, dot)) && digits(rest.substr(dot + 1));
}

Status validate_store_name(std::string_view name) {
  if (auto ok = validate_name(name, "processed store"); !ok) return ok;
  if (is_temp_name(name))
    return make_error(Errc::kInvalidName, "processed store name '" + std::string(name) +
                                              "' looks like a temporary file name (<name>.tmp.<digits>.<digits>)");
  return {};
}

std::string store_path(const BusState& bus, std::string_view name) { return processed_dir(bus) + "/" + std::string(name); }

uint64_t random_seed() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

Status create_store_file(const std::string& path, const ProcessedStoreOptions& o) {
  ProcessedParams p{};
  p.buckets = o.capacity / kProcessedWays;
  p.ways = kProcessedWays;
  p.window_ns = o.window_ns;
  p.hash_seed = random_seed();
  const uint64_t bytes = processed_file_bytes(p.buckets);
  auto f = ipc::MappedFile::create_temp(path, bytes, {});
  if (!f) return std::unexpected(f.error());
  // Every bucket and counter is zero: FREE entries, free locks.
  ipc::write_file_header(f->data(), ipc::FileKind::kProcessedIds, static_cast<uint32_t>(kProcessedCountersOffset),
                         bytes, &p, sizeof p);
  // Losing the race (false) is fine: the winner's store is opened instead.
  if (auto pub = f->publish(); !pub) return std::unexpected(pub.error());
  return {};
}

// Checks what the header cannot: the parameters and the size they imply.
Status validate_params(const ProcessedParams& p, uint64_t file_bytes, const std::string& path) {
  auto bad = [&](const std::string& why) {
    return make_error(Errc::kCorruption, "processed-id store file " + path + " holds invalid parameters: " + why);
  };
  if (p.ways != kProcessedWays) return bad(std::to_string(p.ways) + " ways per bucket, not 8");
  if (p.buckets == 0 || uint64_t{p.buckets} * kProcessedWays > kProcessedMaxCapacity)
    return bad(std::to_string(p.buckets) + " buckets");
  if (p.window_ns < kMinWindowNs || p.window_ns > kProcessedMaxWindowNs)
    return bad("window " + std::to_string(p.window_ns) + " ns");
  if (p.reserved != 0) return bad("reserved bytes are not zero");
  if (file_bytes != processed_file_bytes(p.buckets))
    return bad(std::to_string(file_bytes) + " bytes for " + std::to_string(p.buckets) + " buckets (expected " +
               std::to_string(processed_file_bytes(p.buckets)) + ")");
  return {};
}

}  // namespace

std::string processed_dir(const BusState& bus) { return bus.dir + "/processed"; }

Status validate_processed_options(const ProcessedStoreOptions& o) {
  if (o.window_ns < kMinWindowNs || o.window_ns > kProcessedMaxWindowNs)
    return make_error(Errc::kInvalidArgument, "processed store window must be between 1 ms and 365 days");
  if (o.capacity < kProcessedWays || o.capacity > kProcessedMaxCapacity || o.capacity % kProcessedWays != 0)
    return make_error(Errc::kInvalidArgument,
                      "processed store capacity must be a multiple of 8 between 8 and 16777216");
  if (o.pending_wait_ns < 0) return make_error(Errc::kInvalidArgument, "pending_wait_ns must not be negative");
  return {};
}

Result<std::shared_ptr<ProcessedStoreState>> open_processed_store(std::shared_ptr<BusState> bus,
                                                                  std::string_view name,
                                                                  const ProcessedStoreOptions& options) {
  if (auto ok = validate_store_name(name); !ok) return std::unexpected(ok.error());
  if (auto ok = validate_processed_options(options); !ok) return std::unexpected(ok.error());
  const std::string path = store_path(*bus, name);
  if (!ipc::path_exists(path)) {
    if (!options.create_if_missing) return make_error(Errc::kNotFound, "unknown processed store " + std::string(name));
    if (auto ok = ipc::make_dirs(processed_dir(*bus)); !ok) return std::unexpected(ok.error());
    if (auto ok = create_store_file(path, options); !ok) return std::unexpected(ok.error());
  }
  auto f = ipc::MappedFile::open(path, {});
  if (!f) return std::unexpected(f.error());
  if (auto ok = ipc::validate_file_header(f->data(), f->size(), ipc::FileKind::kProcessedIds, sizeof(ProcessedParams),
                                          path);
      !ok)
    return std::unexpected(ok.error());
  const ProcessedParams& p = ipc::file_params<ProcessedParams>(f->data());
  if (auto ok = validate_params(p, f->size(), path); !ok) return std::unexpected(ok.error());
  auto s = std::make_shared<ProcessedStoreState>();
  s->bus = std::move(bus);
  s->name = std::string(name);
  s->path = path;
  s->params = p;
  s->file = std::move(*f);
  s->pending_wait_ns = options.pending_wait_ns;
  return s;
}

// ---- Bus: processed-id stores ----------------------------------------------

Result<ProcessedStore> Bus::open_processed_store(std::string_view name, const ProcessedStoreOptions& options) {
  auto s = sluice::open_processed_store(state_, name, options);
  if (!s) return std::unexpected(s.error());
  return ProcessedStore(std::move(*s));
}

Result<std::vector<std::string>> Bus::list_processed_stores() const {
  std::vector<std::string> out;
  const std::string root = processed_dir(*state_);
  if (!ipc::path_exists(root)) return out;
  auto names = ipc::list_dir(root);
  if (!names) return std::unexpected(names.error());
  for (auto& n : *names)
    if (validate_store_name(n)) out.push_back(n);
  std::sort(out.begin(), out.end());
  return out;
}

Status Bus::delete_processed_store(std::string_view name) {
  if (auto ok = validate_store_name(name); !ok) return ok;
  // Processes that have it open keep their mapping (of the unlinked file)
  // until they close it; a store opened later under the name is a new one.
  if (::unlink(store_path(*state_, name).c_str()) != 0) {
    if (errno == ENOENT) return make_error(Errc::kNotFound, "unknown processed store " + std::string(name));
    return errno_error(errno, "cannot delete processed store " + std::string(name));
  }
  return {};
}

// ---- ProcessedStore: the handle ---------------------------------------------

ProcessedStore::ProcessedStore(std::shared_ptr<ProcessedStoreState> state) : state_(std::move(state)) {}
ProcessedStore::ProcessedStore(ProcessedStore&&) noexcept = default;
ProcessedStore& ProcessedStore::operator=(ProcessedStore&&) noexcept = default;
ProcessedStore::~ProcessedStore() = default;

const std::string& ProcessedStore::name() const noexcept { return state_->name; }
int64_t ProcessedStore::window_ns() const noexcept { return state_->params.window_ns; }
uint32_t ProcessedStore::capacity() const noexcept { return state_->params.buckets * kProcessedWays; }

ProcessedKey ProcessedStore::key(std::string_view id) const noexcept {
  const XXH128_hash_t h = XXH3_128bits_withSeed(id.data(), id.size(), state_->params.hash_seed);
  return ProcessedKey{h.low64, h.high64};
}

std::string_view processed_state_name(ProcessedState state) noexcept {
  switch (state) {
    case ProcessedState::kAbsent: return "absent";
    case ProcessedState::kPending: return "pending";
    case ProcessedState::kDone: return "done";
    case ProcessedState::kInDoubt: return "in-doubt";
  }
  return "unknown";
}

std::string ProcessedKey::hex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[15 - i] = kDigits[(hi >> (4 * i)) & 15];
    out[31 - i] = kDigits[(lo >> (4 * i)) & 15];
  }
  return out;
}

std::optional<ProcessedKey> ProcessedKey::from_hex(std::string_view text) noexcept {
  if (text.size() != 32) return std::nullopt;
  ProcessedKey k;
  for (size_t i = 0; i < 32; ++i) {
    const char c = text[i];
    uint64_t d;
    if (c >= '0' && c <= '9') {
      d = static_cast<uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<uint64_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      d = static_cast<uint64_t>(c - 'A' + 10);
    } else {
      return std::nullopt;
    }
    uint64_t& half = i < 16 ? k.hi : k.lo;
    half = (half << 4) | d;
  }
  return k;
}

}  // namespace sluice
