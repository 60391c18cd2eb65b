// What the chaos roles share: the value layout, the partition assignment,
// the stop flag and the report lines; and the launch of, and the dispatch
// to, a role.
#include <signal.h>

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "chaos.h"
#include "cli_common.h"

namespace sluice::cli::chaos {

namespace {

volatile sig_atomic_t g_stop = 0;

void on_sigterm(int) { g_stop = 1; }

// Parses "<name>=<digits>" at the start of `s` and moves past it and one space.
bool take_field(std::string_view& s, std::string_view name, uint64_t* out) {
  if (!s.starts_with(name) || s.size() <= name.size() || s[name.size()] != '=') return false;
  s.remove_prefix(name.size() + 1);
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (ec != std::errc{} || ptr == s.data()) return false;
  s.remove_prefix(static_cast<size_t>(ptr - s.data()));
  if (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return true;
}

}  // namespace

std::string_view mode_name(Mode mode) noexcept {
  return mode == Mode::kExactlyOnce ? "exactly-once" : "at-least-once";
}

std::vector<uint32_t> owned_partitions(uint32_t slot, uint32_t transformers) {
  std::vector<uint32_t> parts;
  for (uint32_t p = 0; p < kPartitions; ++p)
    if (transformers > 0 && p % transformers == slot) parts.push_back(p);
  return parts;
}

std::string format_value(uint32_t key, uint64_t n, uint64_t index) {
  char buf[80];
  const int len = std::snprintf(buf, sizeof buf, "key=k%u n=%llu i=%llu", key, (unsigned long long)n,
                                (unsigned long long)index);
  return std::string(buf, static_cast<size_t>(std::max(len, 0)));
}

bool parse_value(std::string_view value, InputValue* out) noexcept {
  if (!value.starts_with("key=k")) return false;
  value.remove_prefix(5);
  uint32_t key = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), key);
  if (ec != std::errc{} || ptr == value.data() || key >= kKeys) return false;
  value.remove_prefix(static_cast<size_t>(ptr - value.data()));
  if (value.empty() || value.front() != ' ') return false;
  value.remove_prefix(1);
  out->key = key;
  return take_field(value, "n", &out->n) && take_field(value, "i", &out->index) && value.empty();
}

std::string format_tag(uint32_t slot, uint64_t epoch, uint64_t n) {
  return std::to_string(slot) + "." + std::to_string(epoch) + "." + std::to_string(n);
}

uint64_t parse_tag(std::string_view tag) noexcept {
  uint64_t part[3] = {};
  for (int i = 0; i < 3; ++i) {
    auto [ptr, ec] = std::from_chars(tag.data(), tag.data() + tag.size(), part[i]);
    if (ec != std::errc{} || ptr == tag.data()) return 0;
    tag.remove_prefix(static_cast<size_t>(ptr - tag.data()));
    if (i < 2 && (tag.empty() || tag.front() != '.')) return 0;
    if (i < 2) tag.remove_prefix(1);
  }
  // slot: 8 bits, epoch: 16 (producer epochs are 16-bit), n: 40; n >= 1.
  if (!tag.empty() || part[0] > 0xff || part[1] > 0xffff || part[2] == 0 || part[2] >= (uint64_t{1} << 40)) return 0;
  return part[0] << 56 | part[1] << 40 | part[2];
}

std::string dedup_id(uint32_t partition, uint64_t offset) {
  return "in:" + std::to_string(partition) + ":" + std::to_string(offset);
}

void install_stop_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_sigterm;
  sa.sa_flags = SA_RESTART;  // a wait inside the library goes on; the flag is checked between batches
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
}

bool stop_requested() noexcept { return g_stop != 0; }

void say(const demo::Report& report) {
  const std::string line = report.line();
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

Result<demo::WorkerProcess> exec_role(const std::string& name, const RoleSpec& s) {
  return demo::WorkerProcess::spawn(
      name, {"--dir", s.dir, "chaos-worker", s.role, "--mode", std::string(mode_name(s.mode)), "--slot",
             std::to_string(s.slot), "--transformers", std::to_string(s.transformers), "--seed", std::to_string(s.seed),
             "--records", std::to_string(s.records_per_partition), "--rate", std::to_string(s.rate), "--timeout-ms",
             std::to_string(s.txn_timeout_ms), "--abort-percent", std::to_string(s.abort_percent), "--max-batch",
             std::to_string(s.max_batch), "--work-ms", std::to_string(s.work_ms),
             "--late-percent", std::to_string(s.late_percent), "--hold-after",
             std::to_string(s.hold_after_records), "--queue-every", std::to_string(s.queue_every)});
}
int run_role(const RoleSpec& spec) {
  g_stop = 0;
  install_stop_handler();
  if (spec.role == "input") return run_input(spec);
  if (spec.role == "transformer") {
    if (spec.transformers < 1 || spec.transformers > kMaxTransformers || spec.slot >= spec.transformers)
      return fail("chaos-worker: --slot must be below --transformers (1-" + std::to_string(kMaxTransformers) + ")",
                  kExitUsage);
    return run_transformer(spec);
  }
  return fail("chaos-worker: unknown role '" + spec.role + "' (input or transformer)", kExitUsage);
}

}  // namespace sluice::cli::chaos
