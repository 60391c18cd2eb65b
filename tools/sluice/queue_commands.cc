// `sluice queue create|list|describe|stats|publish|receive|ack|nack|reject|
// purge|unpark|delete`: work queues (docs/queues.md) from the command line.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "commands.h"
#include "json_text.h"
#include "text_parse.h"

namespace sluice::cli {

namespace {

// The engine's limits (sluice/queue.h, docs/queues.md), checked here too so
// that a bad value is reported with the option that carried it, before the
// bus is touched. The engine checks them again.
constexpr uint64_t kMaxPriorities = 10;
constexpr uint64_t kMinWindow = 64;
constexpr uint64_t kMaxWindow = 1u << 24;
constexpr uint64_t kMaxReceives = 255;
constexpr uint64_t kMaxDelayMs = 14ull * 24 * 3600 * 1000;  // leases and delays: at most 14 days
constexpr uint64_t kNsPerMs = 1'000'000;
constexpr size_t kReceiveChunk = 256;

struct CreateArgs {
  std::string name;
  std::string priorities, window, lease_ms, max_receives, base_delay_ms, multiplier, max_delay_ms, jitter_ms;
  std::optional<std::string> dead_letter_queue;
  std::string segment_bytes, max_depth_bytes;
};

struct StatsArgs {
  std::string name;
  std::string format = "text";
};

struct PublishArgs {
  std::string name;
  std::string priority = "0";
  std::string delay_ms = "0";
  std::vector<std::string> headers;  // K=V
  bool verbose = false;
};

struct ReceiveArgs {
  std::string name;
  std::string max = "1";
  std::string wait_ms = "0";
  std::string format = "value";
  bool nack = false;
  std::optional<std::string> reject_as;
  bool no_ack = false;           // print receipts, settle nothing (detached leases)
  std::optional<std::string> lease_ms;
};

// `queue ack|nack|reject NAME RECEIPT...`
struct SettleArgs {
  std::string name;
  std::vector<std::string> receipts;
  std::string type, message;  // reject only
};

// A decimal integer option in [lo, hi]; the error names the option and the range.
Result<uint64_t> parse_range(std::string_view text, std::string_view what, uint64_t lo, uint64_t hi) {
  auto v = parse_u64(text, what);
  if (!v) return std::unexpected(v.error());
  if (*v < lo || *v > hi)
    return make_error(Errc::kInvalidArgument,
                      std::string(what) + ": must be " + std::to_string(lo) + "-" + std::to_string(hi));
  return *v;
}

Result<double> parse_multiplier(std::string_view text) {
  double v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc{} || ptr != end || !std::isfinite(v))
    return make_error(Errc::kInvalidArgument, "--multiplier: '" + std::string(text) + "' is not a number");
  if (v < 1.0 || v > 1000.0) return make_error(Errc::kInvalidArgument, "--multiplier: must be between 1 and 1000");
  return v;
}

// ---- create ------------------------------------------------------------------

Result<QueueOptions> queue_options(const CreateArgs& a) {
  QueueOptions o;
  if (!a.priorities.empty()) {
    auto v = parse_range(a.priorities, "--priorities", 1, kMaxPriorities);
    if (!v) return std::unexpected(v.error());
    o.priorities = static_cast<uint32_t>(*v);
  }
  if (!a.window.empty()) {
    auto v = parse_u64(a.window, "--window");
    if (!v) return std::unexpected(v.error());
    if (*v < kMinWindow || *v > kMaxWindow || (*v & (*v - 1)) != 0)
      return make_error(Errc::kInvalidArgument, "--window: must be a power of two from 64 to 16777216");
    o.window = static_cast<uint32_t>(*v);
  }
  if (!a.lease_ms.empty()) {
    auto v = parse_range(a.lease_ms, "--lease-ms", 1, kMaxDelayMs);
    if (!v) return std::unexpected(v.error());
    o.lease_ns = static_cast<int64_t>(*v * kNsPerMs);
  }
  if (!a.max_receives.empty()) {
    auto v = parse_range(a.max_receives, "--max-receives", 1, kMaxReceives);
    if (!v) return std::unexpected(v.error());
    o.retry.max_receives = static_cast<uint32_t>(*v);
  }
  for (auto [text, what, field] : {std::tuple{&a.base_delay_ms, "--base-delay-ms", &o.retry.base_delay_ns},
                                   std::tuple{&a.max_delay_ms, "--max-delay-ms", &o.retry.max_delay_ns},
                                   std::tuple{&a.jitter_ms, "--jitter-ms", &o.retry.jitter_ns}}) {
    if (text->empty()) continue;
    auto v = parse_range(*text, what, 0, kMaxDelayMs);
    if (!v) return std::unexpected(v.error());
    *field = static_cast<int64_t>(*v * kNsPerMs);
  }
  if (o.retry.max_delay_ns + o.retry.jitter_ns > static_cast<int64_t>(kMaxDelayMs * kNsPerMs))
    return make_error(Errc::kInvalidArgument, "--max-delay-ms plus --jitter-ms: at most 14 days (1209600000 ms)");
  if (!a.multiplier.empty()) {
    auto v = parse_multiplier(a.multiplier);
    if (!v) return std::unexpected(v.error());
    o.retry.multiplier = *v;
  }
  if (!a.segment_bytes.empty()) {
    auto v = parse_size(a.segment_bytes, "--segment-bytes");
    if (!v) return std::unexpected(v.error());
    if (*v > UINT32_MAX) return make_error(Errc::kInvalidArgument, "--segment-bytes: at most 1GiB");
    o.segment_bytes = static_cast<uint32_t>(*v);
  }
  if (!a.max_depth_bytes.empty()) {
    auto v = parse_size(a.max_depth_bytes, "--max-depth-bytes");
    if (!v) return std::unexpected(v.error());
    if (*v == 0 || *v > static_cast<uint64_t>(INT64_MAX))
      return make_error(Errc::kInvalidArgument, "--max-depth-bytes: must be positive and fit in 63 bits");
    o.max_depth_bytes = static_cast<int64_t>(*v);
  }
  return o;
}

int run_create(const Context& ctx, const CreateArgs& a) {
  if (auto ok = check_name(a.name, "queue"); !ok) return fail(ok.error());
  auto options = queue_options(a);
  if (!options) return fail(options.error(), kExitUsage);
  if (a.dead_letter_queue) {
    const std::string& dlq = *a.dead_letter_queue;
    if (dlq != "-") {
      if (auto ok = check_name(dlq, "dead-letter queue"); !ok) return fail(ok.error());
      // Dead letters published into the queue they failed in would be
      // delivered (and fail) again, forever.
      if (dlq == a.name) return fail("--dead-letter-queue: a queue cannot be its own dead-letter queue", kExitUsage);
    }
    options->dead_letter_queue = dlq;
  }
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  if (auto ok = bus->create_queue(a.name, *options); !ok) return fail(ok.error());
  return kExitOk;
}

// ---- list, delete --------------------------------------------------------------

int run_list(const Context& ctx) {
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto names = bus->list_queues();
  if (!names) return fail(names.error());
  for (const auto& n : *names) std::printf("%s\n", n.c_str());
  return kExitOk;
}

int run_delete(const Context& ctx, const std::string& name) {
  if (auto ok = check_name(name, "queue"); !ok) return fail(ok.error());
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  if (auto ok = bus->delete_queue(name); !ok) return fail(ok.error());
  return kExitOk;
}

// ---- describe, stats -----------------------------------------------------------

// The counters of QueueLevelStats in the order they are printed; the age is
// printed in ms.
struct StatField {
  const char* name;
  uint64_t QueueLevelStats::*member;
};
constexpr StatField kStatFields[] = {
    {"published", &QueueLevelStats::published},
    {"settled_below", &QueueLevelStats::settled_below},
    {"depth", &QueueLevelStats::depth},
    {"in_flight", &QueueLevelStats::in_flight},
    {"ready", &QueueLevelStats::ready},
    {"delayed", &QueueLevelStats::delayed},
    {"received", &QueueLevelStats::received},
    {"acked", &QueueLevelStats::acked},
    {"nacked", &QueueLevelStats::nacked},
    {"dead_lettered", &QueueLevelStats::dead_lettered},
    {"redelivered", &QueueLevelStats::redelivered},
    {"owner_deaths", &QueueLevelStats::owner_deaths},
    {"lease_lost", &QueueLevelStats::lease_lost},
};
constexpr const char* kAgeField = "oldest_unsettled_age_ms";

int64_t age_ms(const QueueLevelStats& s) { return s.oldest_unsettled_age_ns / static_cast<int64_t>(kNsPerMs); }

// A parking lot by the default name (WorkerOptions::parking_lot): its
// unsettled messages are the parked ones.
bool is_parking_lot(const QueueStats& s) { return s.name.ends_with(".parking"); }

void append_level_json(std::string& out, const QueueLevelStats& s) {
  out += '{';
  for (const StatField& f : kStatFields) {
    out += '"';
    out += f.name;
    out += "\":" + std::to_string(s.*(f.member)) + ",";
  }
  out += "\"" + std::string(kAgeField) + "\":" + std::to_string(age_ms(s)) + "}";
}

// The per-process worker counters (QueueWorkerStats) in the order they are
// printed.
struct WorkerField {
  const char* name;
  uint64_t QueueWorkerStats::*member;
};
constexpr WorkerField kWorkerFields[] = {
    {"workers", &QueueWorkerStats::workers},
    {"received", &QueueWorkerStats::received},
    {"acked", &QueueWorkerStats::acked},
    {"nacked", &QueueWorkerStats::nacked},
    {"dead_lettered", &QueueWorkerStats::dead_lettered},
    {"lease_lost", &QueueWorkerStats::lease_lost},
    {"handler_errors", &QueueWorkerStats::handler_errors},
    {"already_done", &QueueWorkerStats::already_done},
    {"in_doubt", &QueueWorkerStats::in_doubt},
    {"breaker_opened", &QueueWorkerStats::breaker_opened},
    {"breakers_open", &QueueWorkerStats::breakers_open},
};

// "workers":[{"pid":..,"registry_slot":..,"alive":..,"attached_unix_ms":..,
// "last_active_unix_ms":..,<kWorkerFields>},..], or null when the queue's
// state file keeps no worker table (format version 1).
void append_workers_json(std::string& out, const QueueStats& s) {
  out += ",\"workers\":";
  if (!s.tracks_workers) {
    out += "null";
    return;
  }
  out += '[';
  for (size_t i = 0; i < s.workers.size(); ++i) {
    const QueueWorkerStats& w = s.workers[i];
    out += i == 0 ? "{" : ",{";
    out += "\"pid\":" + std::to_string(w.pid) + ",\"registry_slot\":" + std::to_string(w.registry_slot) +
           ",\"alive\":" + (w.alive ? "true" : "false") +
           ",\"attached_unix_ms\":" + std::to_string(w.attached_unix_ms) +
           ",\"last_active_unix_ms\":" + std::to_string(w.last_active_unix_ms);
    for (const WorkerField& f : kWorkerFields) out += ",\"" + std::string(f.name) + "\":" + std::to_string(w.*(f.member));
    out += '}';
  }
  out += ']';
}

// One line: {"queue":..,"priorities":N,"dead_letter_queue":..|null,
// "total":{..},"levels":[{"priority":0,..},..],"workers":[..]|null}
std::string stats_json(const QueueStats& s) {
  std::string out = "{\"queue\":";
  append_json_string(out, s.name);
  out += ",\"priorities\":" + std::to_string(s.levels.size());
  out += ",\"dead_letter_queue\":";
  if (s.dead_letter_queue.empty())
    out += "null";
  else
    append_json_string(out, s.dead_letter_queue);
  if (is_parking_lot(s)) {
    const QueueLevelStats t = s.total();
    out += ",\"parked\":" + std::to_string(t.unsettled) + ",\"oldest_parked_age_ms\":" + std::to_string(age_ms(t));
  }
  out += ",\"total\":";
  append_level_json(out, s.total());
  out += ",\"levels\":[";
  for (size_t l = 0; l < s.levels.size(); ++l) {
    std::string level;
    append_level_json(level, s.levels[l]);
    out += l == 0 ? "" : ",";
    out += "{\"priority\":" + std::to_string(l) + "," + level.substr(1);
  }
  out += ']';
  append_workers_json(out, s);
  out += "}\n";
  return out;
}

// After the levels: one row per process that made workers of the queue,
// alive or not (a dead one keeps its last counts until its registry slot is
// reused); idle_ms is how long ago it last received or settled.
void append_workers_text(std::string& out, const QueueStats& s, int64_t now_unix_ms) {
  if (!s.tracks_workers) {
    out += "workers: not counted (a state file of format version 1: the queue predates per-worker stats)\n";
    return;
  }
  if (s.workers.empty()) {
    out += "workers: none yet\n";
    return;
  }
  out += "workers (one row per process):\n";
  char cell[64];
  std::snprintf(cell, sizeof cell, "%10s %5s", "pid", "alive");
  out += cell;
  for (const WorkerField& f : kWorkerFields) {
    std::snprintf(cell, sizeof cell, " %*s", static_cast<int>(std::max<size_t>(8, std::strlen(f.name))), f.name);
    out += cell;
  }
  out += "    idle_ms\n";
  for (const QueueWorkerStats& w : s.workers) {
    std::snprintf(cell, sizeof cell, "%10u %5s", w.pid, w.alive ? "yes" : "no");
    out += cell;
    for (const WorkerField& f : kWorkerFields) {
      std::snprintf(cell, sizeof cell, " %*llu", static_cast<int>(std::max<size_t>(8, std::strlen(f.name))),
                    static_cast<unsigned long long>(w.*(f.member)));
      out += cell;
    }
    std::snprintf(cell, sizeof cell, " %10lld\n",
                  static_cast<long long>(std::max<int64_t>(0, now_unix_ms - w.last_active_unix_ms)));
    out += cell;
  }
}

// A header line, then one row per counter: a column per priority level and
// the total.
std::string stats_text(const QueueStats& s) {
  std::string out = "queue " + s.name + ": " + std::to_string(s.levels.size()) +
                    (s.levels.size() == 1 ? " priority, " : " priorities, ");
  out += s.dead_letter_queue.empty() ? "no dead-letter queue (dead letters are counted, then dropped)\n"
                                     : "dead-letter queue " + s.dead_letter_queue + "\n";
  if (is_parking_lot(s)) {
    const QueueLevelStats t = s.total();
    out += "parking lot: " + std::to_string(t.unsettled) + " parked, the oldest parked " +
           std::to_string(age_ms(t)) + " ms ago (sluice queue unpark " + s.name + " releases the due ones)\n";
  }
  char cell[64];
  std::snprintf(cell, sizeof cell, "%-24s", "");
  out += cell;
  for (size_t l = 0; l < s.levels.size(); ++l) {
    std::snprintf(cell, sizeof cell, " %12s", ("p" + std::to_string(l)).c_str());
    out += cell;
  }
  std::snprintf(cell, sizeof cell, " %12s\n", "total");
  out += cell;
  const QueueLevelStats total = s.total();
  for (const StatField& f : kStatFields) {
    std::snprintf(cell, sizeof cell, "%-24s", f.name);
    out += cell;
    for (const QueueLevelStats& l : s.levels) {
      std::snprintf(cell, sizeof cell, " %12llu", static_cast<unsigned long long>(l.*(f.member)));
      out += cell;
    }
    std::snprintf(cell, sizeof cell, " %12llu\n", static_cast<unsigned long long>(total.*(f.member)));
    out += cell;
  }
  std::snprintf(cell, sizeof cell, "%-24s", kAgeField);
  out += cell;
  for (const QueueLevelStats& l : s.levels) {
    std::snprintf(cell, sizeof cell, " %12lld", static_cast<long long>(age_ms(l)));
    out += cell;
  }
  std::snprintf(cell, sizeof cell, " %12lld\n", static_cast<long long>(age_ms(total)));
  out += cell;
  append_workers_text(out, s, std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count());
  return out;
}

int run_stats(const Context& ctx, const StatsArgs& a) {
  if (auto ok = check_name(a.name, "queue"); !ok) return fail(ok.error());
  if (a.format != "text" && a.format != "json")
    return fail("--format: '" + a.format + "' is not text or json", kExitUsage);
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto s = bus->queue_stats(a.name);
  if (!s) return fail(s.error());
  const std::string out = a.format == "json" ? stats_json(*s) : stats_text(*s);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return kExitOk;
}

// ---- unpark --------------------------------------------------------------------

struct UnparkArgs {
  std::string lot;
  std::string to;
  std::string rate = "0", max = "0";
  std::optional<std::string> window;
  std::string format = "text";
};

int run_unpark(const Context& ctx, const UnparkArgs& a) {
  if (auto ok = check_name(a.lot, "parking lot"); !ok) return fail(ok.error());
  if (!a.to.empty()) {
    if (auto ok = check_name(a.to, "queue"); !ok) return fail(ok.error());
    if (a.to == a.lot) return fail("--to: the parking lot itself", kExitUsage);
  }
  if (a.format != "text" && a.format != "json")
    return fail("--format: '" + a.format + "' is not text or json", kExitUsage);
  auto rate = parse_u64(a.rate, "--rate");
  if (!rate) return fail(rate.error(), kExitUsage);
  auto max = parse_u64(a.max, "--max");
  if (!max) return fail(max.error(), kExitUsage);
  UnparkOptions o;
  o.to = a.to;
  o.rate_per_sec = static_cast<double>(*rate);
  o.max_messages = *max;
  if (a.window) {
    auto w = parse_daily_window(*a.window);
    if (!w) return fail("--window: " + w.error().message, kExitUsage);
    o.window = *w;
  }
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto r = bus->unpark(a.lot, o);
  if (!r) return fail(r.error());
  if (a.format == "json") {
    std::printf("{\"lot\":");
    std::string name;
    append_json_string(name, a.lot);
    std::printf("%s,\"moved\":%llu,\"duplicates\":%llu,\"skipped\":%llu,\"outside_window\":%s,"
                "\"window_opens_unix_ms\":%lld}\n",
                name.c_str(), static_cast<unsigned long long>(r->moved), static_cast<unsigned long long>(r->duplicates),
                static_cast<unsigned long long>(r->skipped), r->outside_window ? "true" : "false",
                static_cast<long long>(r->outside_window ? r->window_opens_unix_ns / 1'000'000 : 0));
  } else if (r->outside_window) {
    std::printf("%s: outside the window %s UTC, nothing moved; it opens in %lld s\n", a.lot.c_str(),
                a.window->c_str(), static_cast<long long>((r->window_opens_unix_ns - bus->clock().now_ns()) / 1'000'000'000));
  } else {
    std::printf("unparked %llu %s from %s", static_cast<unsigned long long>(r->moved),
                r->moved == 1 ? "message" : "messages", a.lot.c_str());
    if (r->duplicates > 0) std::printf(" (%llu already there)", static_cast<unsigned long long>(r->duplicates));
    if (r->skipped > 0)
      std::printf("; %llu due left in the lot (no source queue to go back to: give --to)",
                  static_cast<unsigned long long>(r->skipped));
    std::printf("\n");
  }
  return kExitOk;
}

// ---- publish -------------------------------------------------------------------

std::string publish_failure(const QueuePublisher& publisher, const PublishResult& r) {
  switch (r.status) {
    case SendStatus::kBackPressured:
      return "back-pressured: the level holds --max-depth-bytes of unsettled messages";
    case SendStatus::kAborted:
      return "the message's claim was aborted as stalled";
    case SendStatus::kBusy:
    case SendStatus::kTooLarge:
    case SendStatus::kError:
    case SendStatus::kFenced:
    case SendStatus::kOutOfOrderSequence:
    case SendStatus::kOk:
      break;
  }
  return publisher.last_error().to_string();
}

int run_publish(const Context& ctx, const PublishArgs& a) {
  if (auto ok = check_name(a.name, "queue"); !ok) return fail(ok.error());
  auto parsed = parse_header_args(a.headers, true);  // views into a.headers, which outlives every publish
  if (!parsed) return fail(parsed.error().message, kExitUsage);
  const std::vector<Header> headers = std::move(*parsed);
  auto priority = parse_u64(a.priority, "--priority");  // its range is the queue's, checked below
  if (!priority) return fail(priority.error(), kExitUsage);
  auto delay_ms = parse_range(a.delay_ms, "--delay-ms", 0, kMaxDelayMs);
  if (!delay_ms) return fail(delay_ms.error(), kExitUsage);

  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto publisher = bus->create_queue_publisher(a.name);
  if (!publisher) return fail(publisher.error());
  // Checked before reading stdin, so an empty input fails the same way.
  if (*priority >= publisher->priorities())
    return fail("--priority: queue " + a.name + " has priorities 0-" + std::to_string(publisher->priorities() - 1),
                kExitUsage);

  uint64_t sent = 0;
  const int code = for_each_stdin_line("queue publish", [&](std::string_view text) -> std::optional<std::string> {
    QueueMessage m;
    m.value = text;
    m.headers = headers;
    m.priority = static_cast<uint32_t>(*priority);
    if (*delay_ms > 0)
      m.deliver_at_unix_ns = bus->clock().now_ns() + static_cast<int64_t>(*delay_ms * kNsPerMs);
    const PublishResult r = publisher->publish(m);
    if (!r.ok()) return publish_failure(*publisher, r);
    return std::nullopt;
  }, &sent);
  if (code == kExitOk && a.verbose)
    std::fprintf(stderr, "published %llu messages to %s\n", (unsigned long long)sent, a.name.c_str());
  return code;
}

// ---- receive -------------------------------------------------------------------

// {"priority":..,"offset":..,"attempt":..,"timestamp":ns,"value":..,"headers":[{"name":..,"value":..}]}
// With `receipt`, the value line is "<receipt>\t<value>" and the JSON object
// carries "receipt" first.
void append_delivery_line(std::string& out, const Delivery& d, bool json, bool receipt) {
  if (!json) {
    if (receipt) out += d.receipt() + '\t';
    out.append(d.value());
    out += '\n';
    return;
  }
  out += '{';
  if (receipt) {
    out += "\"receipt\":";
    append_json_string(out, d.receipt());
    out += ',';
  }
  out += "\"priority\":" + std::to_string(d.priority());
  out += ",\"offset\":" + std::to_string(d.offset());
  out += ",\"attempt\":" + std::to_string(d.attempt());
  out += ",\"timestamp\":" + std::to_string(d.timestamp_ns());
  out += ",\"value\":";
  append_json_string(out, d.value());
  out += ",\"headers\":[";
  bool first = true;
  for (Header h : d.headers()) {
    out += first ? "{\"name\":" : ",{\"name\":";
    first = false;
    append_json_string(out, h.name);
    out += ",\"value\":";
    append_json_string(out, h.value);
    out += '}';
  }
  out += "]}\n";
}

int run_receive(const Context& ctx, const ReceiveArgs& a) {
  if (auto ok = check_name(a.name, "queue"); !ok) return fail(ok.error());
  if (a.format != "value" && a.format != "json")
    return fail("--format: '" + a.format + "' is not value or json", kExitUsage);
  auto max = parse_u64(a.max, "--max");
  if (!max) return fail(max.error(), kExitUsage);
  if (*max == 0) return fail("--max: must be at least 1", kExitUsage);
  auto wait_ms = parse_u64(a.wait_ms, "--wait-ms");
  if (!wait_ms) return fail(wait_ms.error(), kExitUsage);
  if (a.reject_as && a.reject_as->empty()) return fail("--reject-as: the error type may not be empty", kExitUsage);
  WorkerOptions options;
  options.wait = WaitStrategy::kBlock;  // a long --wait-ms sleeps instead of spinning
  if (a.lease_ms) {
    if (!a.no_ack) return fail("--lease-ms: only with --no-ack (other receives settle at once)", kExitUsage);
    auto v = parse_range(*a.lease_ms, "--lease-ms", 1, kMaxDelayMs);
    if (!v) return fail(v.error(), kExitUsage);
    options.lease_ns = static_cast<int64_t>(*v * kNsPerMs);
  }
  // --no-ack: leases that outlive this process, settled later by receipt
  // (queue ack|nack|reject) or ended by their deadline.
  options.detached_leases = a.no_ack;

  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto worker = bus->create_worker(a.name, options);
  if (!worker) return fail(worker.error());

  // Everything is received before anything is settled: a message nacked
  // with no delay would otherwise come straight back into the same run.
  std::vector<Delivery> got;
  std::vector<Delivery> chunk(static_cast<size_t>(std::min<uint64_t>(*max, kReceiveChunk)));
  int64_t timeout_ns = static_cast<int64_t>(std::min<uint64_t>(*wait_ms, 86'400'000) * kNsPerMs);
  std::optional<Error> receive_error;
  while (got.size() < *max) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(chunk.size(), *max - got.size()));
    auto n = worker->receive(std::span(chunk.data(), want), timeout_ns);
    if (!n) {
      receive_error = n.error();
      break;
    }
    if (*n == 0) break;
    for (size_t i = 0; i < *n; ++i) got.push_back(std::move(chunk[i]));
    timeout_ns = 0;  // wait for the first only
  }

  std::string out;
  for (const Delivery& d : got) append_delivery_line(out, d, a.format == "json", a.no_ack);
  const bool written = std::fwrite(out.data(), 1, out.size(), stdout) == out.size() && std::fflush(stdout) == 0;

  if (a.no_ack && written) {
    // Nothing settled: the printed receipts name the leases.
    got.clear();
    if (receive_error)
      return fail(*receive_error, receive_error->code == Errc::kCorruption ? kExitCorrupt : kExitError);
    return kExitOk;
  }

  // Settle everything received: a lease left behind would only come back
  // once this process is gone (or the lease expired).
  size_t failed = 0;
  std::optional<Error> settle_error;
  for (Delivery& d : got) {
    Status ok;
    if (a.reject_as)
      ok = d.reject(Failure{*a.reject_as, "rejected with sluice queue receive --reject-as", ""});
    else if (a.nack)
      ok = d.nack();
    else if (written)
      ok = d.ack();
    else
      ok = d.nack(0);  // not printed: offer it again at once
    if (!ok) {
      ++failed;
      if (!settle_error) settle_error = ok.error();
    }
  }
  const size_t received = got.size();
  got.clear();  // the deliveries must not outlive the worker

  if (receive_error) return fail(*receive_error, receive_error->code == Errc::kCorruption ? kExitCorrupt : kExitError);
  if (!written) return fail("queue receive: cannot write to stdout; the messages were returned to the queue");
  if (failed > 0) {
    const char* what = a.reject_as ? "dead-letter" : a.nack ? "nack" : "ack";
    return fail("queue receive: could not " + std::string(what) + " " + std::to_string(failed) + " of the " +
                std::to_string(received) + " messages: " + settle_error->to_string());
  }
  return kExitOk;
}

// ---- ack, nack, reject, purge ----------------------------------------------

// "<priority>:<offset>:<lease word, hex>" (Delivery::receipt), strictly: the
// engine's own parser also takes signs, spaces and a 0x prefix.
bool is_receipt(std::string_view r) {
  const auto digits = [](std::string_view s, bool hex) {
    if (s.empty() || s.size() > (hex ? 16u : 20u)) return false;
    for (char c : s)
      if (!((c >= '0' && c <= '9') || (hex && ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))))) return false;
    return true;
  };
  const size_t a = r.find(':');
  if (a == std::string_view::npos) return false;
  const size_t b = r.find(':', a + 1);
  if (b == std::string_view::npos) return false;
  return digits(r.substr(0, a), false) && r.substr(0, a).size() <= 2 && digits(r.substr(a + 1, b - a - 1), false) &&
         digits(r.substr(b + 1), true);
}

int run_settle(const Context& ctx, const SettleArgs& a, Settle how) {
  const char* verb = how == Settle::kAck ? "ack" : how == Settle::kNack ? "nack" : "reject";
  if (auto ok = check_name(a.name, "queue"); !ok) return fail(ok.error());
  for (const std::string& r : a.receipts)
    if (!is_receipt(r))
      return fail("queue " + std::string(verb) + ": '" + r + "' is not a receipt (PRIORITY:OFFSET:LEASE, as printed by "
                  "queue receive --no-ack)", kExitUsage);
  if (how == Settle::kReject && a.type.empty()) return fail("--type: the error type may not be empty", kExitUsage);
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  // Unknown queues are reported as such, not as a lost lease per receipt.
  if (auto s = bus->queue_stats(a.name); !s) return fail(s.error());
  const Failure why{a.type, a.message.empty() ? "rejected with sluice queue reject" : a.message, ""};
  size_t failed = 0;
  std::optional<Error> first;
  for (const std::string& r : a.receipts) {
    if (auto ok = bus->settle_receipt(a.name, r, how, why); !ok) {
      ++failed;
      if (!first) first = ok.error();
    }
  }
  if (failed == 0) return kExitOk;
  if (a.receipts.size() == 1) return fail(*first);
  return fail("queue " + std::string(verb) + ": " + std::to_string(failed) + " of " +
              std::to_string(a.receipts.size()) + " receipts failed, the first: " + first->to_string());
}

int run_purge(const Context& ctx, const std::string& name) {
  if (auto ok = check_name(name, "queue"); !ok) return fail(ok.error());
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto removed = bus->purge_queue(name);
  if (!removed) return fail(removed.error());
  std::printf("purged %llu %s from %s\n", static_cast<unsigned long long>(*removed),
              *removed == 1 ? "message" : "messages", name.c_str());
  return kExitOk;
}

}  // namespace

void add_queue_commands(CLI::App& app, Context& ctx) {
  CLI::App* queue = app.add_subcommand("queue",
                                       "work queues: create, list, describe, purge and delete them; publish, receive "
                                       "and settle messages (also by receipt)");
  queue->require_subcommand(1);

  auto create = std::make_shared<CreateArgs>();
  CLI::App* c = queue->add_subcommand("create", "create a work queue");
  c->add_option("name", create->name, "queue name: 1-200 of A-Z a-z 0-9 . _ -")->type_name("NAME")->required();
  c->add_option("--priorities", create->priorities, "priority levels 0..N-1, the highest served first (1-10, default 1)")
      ->type_name("N");
  c->add_option("--window", create->window,
                "messages in flight or waiting per level: a power of two, 64-16777216 (default 65536)")
      ->type_name("N");
  c->add_option("--lease-ms", create->lease_ms, "visibility timeout of a received message (default 30000)")
      ->type_name("MS");
  c->add_option("--max-receives", create->max_receives, "receives before a message is dead-lettered (1-255, default 5)")
      ->type_name("N");
  c->add_option("--base-delay-ms", create->base_delay_ms, "retry delay after the first failure (default 1000)")
      ->type_name("MS");
  c->add_option("--multiplier", create->multiplier, "retry delay growth per failure, 1-1000 (default 2)")
      ->type_name("X");
  c->add_option("--max-delay-ms", create->max_delay_ms, "retry delay cap (default 300000)")->type_name("MS");
  c->add_option("--jitter-ms", create->jitter_ms, "random extra retry delay, up to (default 500)")->type_name("MS");
  c->add_option("--dead-letter-queue", create->dead_letter_queue,
                "where dead letters go (default NAME.dlq, created on first use); - drops them")
      ->type_name("NAME|-");
  c->add_option("--segment-bytes", create->segment_bytes, "log segment size, e.g. 16MiB (default 64MiB)")
      ->type_name("BYTES");
  c->add_option("--max-depth-bytes", create->max_depth_bytes,
                "per level: unsettled bytes before publishers are back-pressured (default 1GiB)")
      ->type_name("BYTES");
  c->callback([&ctx, create] { ctx.exit_code = run_create(ctx, *create); });

  queue->add_subcommand("list", "list the queues of the bus")->callback([&ctx] { ctx.exit_code = run_list(ctx); });

  for (const char* name : {"describe", "stats"}) {
    auto stats = std::make_shared<StatsArgs>();
    CLI::App* s = queue->add_subcommand(
        name, std::string(name) == "stats"
                  ? "counters per priority level and in total (published, ack floor, depth, in flight, acked, ...), "
                    "then per worker process (pid, alive, received, acked, nacked, dead-lettered, ...)"
                  : "the same as stats: the queue's counters and its dead-letter queue");
    s->add_option("name", stats->name, "queue name")->type_name("NAME")->required();
    s->add_option("--format", stats->format, "text (a table) or json (one object)")->type_name("FORMAT");
    s->callback([&ctx, stats] { ctx.exit_code = run_stats(ctx, *stats); });
  }

  auto publish = std::make_shared<PublishArgs>();
  CLI::App* p = queue->add_subcommand("publish", "publish one message per line of stdin");
  p->add_option("name", publish->name, "queue name")->type_name("NAME")->required();
  p->add_option("--priority", publish->priority, "priority level of every message (default 0)")->type_name("P");
  p->add_option("--delay-ms", publish->delay_ms, "deliver no sooner than this from now (at most 14 days)")
      ->type_name("MS");
  p->add_option("--header,-H", publish->headers, "message header NAME=VALUE (repeatable; sluice.* is reserved)")
      ->type_name("NAME=VALUE")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  p->add_flag("--verbose,-v", publish->verbose, "print the number of messages published on stderr");
  p->callback([&ctx, publish] { ctx.exit_code = run_publish(ctx, *publish); });

  auto receive = std::make_shared<ReceiveArgs>();
  CLI::App* r = queue->add_subcommand(
      "receive", "receive up to --max messages, print them, then ack them (or nack, or dead-letter them)");
  r->add_option("name", receive->name, "queue name")->type_name("NAME")->required();
  r->add_option("--max,-n", receive->max, "receive at most N messages (default 1)")->type_name("N");
  r->add_option("--wait-ms", receive->wait_ms,
                "wait up to this long for the first message (default 0: only what is there)")
      ->type_name("MS");
  r->add_option("--format", receive->format,
                "value (raw value per line) or json (priority, offset, attempt, timestamp ns, value, headers)")
      ->type_name("FORMAT");
  CLI::Option* nack =
      r->add_flag("--nack", receive->nack, "nack instead of ack: retried after the queue's backoff");
  CLI::Option* reject = r->add_option("--reject-as", receive->reject_as,
                                      "dead-letter instead of ack, recording TYPE as sluice.dlq.error_type")
                            ->type_name("TYPE");
  nack->excludes(reject);
  CLI::Option* no_ack = r->add_flag("--no-ack", receive->no_ack,
                                    "settle nothing: print each message's receipt (value format: RECEIPT<TAB>VALUE) "
                                    "for queue ack|nack|reject; the lease outlives this process");
  no_ack->excludes(nack);
  no_ack->excludes(reject);
  r->add_option("--lease-ms", receive->lease_ms,
                "with --no-ack: how long the receipts hold (default: the queue's lease)")
      ->type_name("MS");
  r->callback([&ctx, receive] { ctx.exit_code = run_receive(ctx, *receive); });

  for (Settle how : {Settle::kAck, Settle::kNack, Settle::kReject}) {
    auto settle = std::make_shared<SettleArgs>();
    const char* name = how == Settle::kAck ? "ack" : how == Settle::kNack ? "nack" : "reject";
    const char* what = how == Settle::kAck    ? "ack messages by receipt (from queue receive --no-ack)"
                       : how == Settle::kNack ? "nack messages by receipt: retried after the queue's backoff"
                                              : "dead-letter messages by receipt, recording --type and --message";
    CLI::App* s = queue->add_subcommand(name, what);
    s->add_option("name", settle->name, "queue name")->type_name("NAME")->required();
    s->add_option("receipt", settle->receipts, "receipts printed by queue receive --no-ack")
        ->type_name("RECEIPT")
        ->required();
    if (how == Settle::kReject) {
      s->add_option("--type", settle->type, "error type recorded as sluice.dlq.error_type")
          ->type_name("TYPE")
          ->required();
      s->add_option("--message", settle->message, "error message recorded as sluice.dlq.error_message")
          ->type_name("TEXT");
    }
    s->callback([&ctx, settle, how] { ctx.exit_code = run_settle(ctx, *settle, how); });
  }

  auto purge_name = std::make_shared<std::string>();
  CLI::App* pu = queue->add_subcommand(
      "purge", "remove every message published so far, leased ones included; print how many were removed");
  pu->add_option("name", *purge_name, "queue name")->type_name("NAME")->required();
  pu->callback([&ctx, purge_name] { ctx.exit_code = run_purge(ctx, *purge_name); });

  auto unpark = std::make_shared<UnparkArgs>();
  CLI::App* up = queue->add_subcommand(
      "unpark", "move a parking lot's due messages back to their source queue (or --to), each acked in the lot "
                "after its re-publish");
  up->add_option("lot", unpark->lot, "parking lot (a queue, e.g. orders.parking)")->type_name("LOT")->required();
  up->add_option("--to", unpark->to, "publish to this queue instead of each message's source")->type_name("QUEUE");
  up->add_option("--rate", unpark->rate, "at most N messages per second (default 0: unpaced)")->type_name("N");
  up->add_option("--max,-n", unpark->max, "move at most N messages (default 0: every due one)")->type_name("N");
  up->add_option("--window", unpark->window, "release only inside this daily UTC window, e.g. 02:00-04:00")
      ->type_name("HH:MM-HH:MM");
  up->add_option("--format", unpark->format, "text or json (one object: moved, duplicates, skipped, ...)")
      ->type_name("FORMAT");
  up->callback([&ctx, unpark] { ctx.exit_code = run_unpark(ctx, *unpark); });

  auto delete_name = std::make_shared<std::string>();
  CLI::App* del = queue->add_subcommand("delete", "delete a queue and its messages (not its dead-letter queue)");
  del->add_option("name", *delete_name, "queue name")->type_name("NAME")->required();
  del->callback([&ctx, delete_name] { ctx.exit_code = run_delete(ctx, *delete_name); });
}

}  // namespace sluice::cli
