// `sluice processed create|list|show|mark-done|forget|delete`: processed-id
// stores (docs/exactly-once.md, section 6) from the command line, chiefly to
// find in-doubt ids (a runner died inside fn) and settle them by hand.
//
// Ids are bytes; the store keeps each id's first 46 bytes and its length for
// display, and identifies it by a 128-bit key. `show` prints both; an id too
// long to be shown whole is settled with --key.
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "json_text.h"
#include "text_parse.h"

namespace sluice::cli {

namespace {

constexpr uint64_t kNsPerMs = 1'000'000;
constexpr uint64_t kMaxWindowMs = 365ull * 24 * 3600 * 1000;
constexpr uint64_t kMaxCapacity = 1u << 24;

struct CreateArgs {
  std::string name, window_ms, capacity;
};
struct ListArgs {
  bool in_doubt = false;
  std::string format = "text";
};
struct ShowArgs {
  std::string name;
  bool in_doubt = false, all = false;
  std::string max, format = "text";
};
// `processed mark-done|forget STORE [ID...] [--key HEX...]`
struct SettleArgs {
  std::string name;
  std::vector<std::string> ids, keys;
};

int fail_read(const Error& e) { return fail(e, e.code == Errc::kCorruption ? kExitCorrupt : kExitError); }

Result<std::string> check_format(const std::string& format) {
  if (format != "text" && format != "json")
    return make_error(Errc::kInvalidArgument, "--format: '" + format + "' is not text or json");
  return format;
}

// Opens an existing store (never creates one).
Result<ProcessedStore> open_existing(Bus& bus, const std::string& name) {
  ProcessedStoreOptions o;
  o.create_if_missing = false;
  o.pending_wait_ns = 0;
  return bus.open_processed_store(name, o);
}

// RFC 3339 UTC with milliseconds.
std::string utc(int64_t unix_ns) {
  const int64_t ms = unix_ns / 1'000'000;
  const time_t secs = static_cast<time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms % 1000));
  return buf;
}

// An id for a text table: printable bytes as they are, others as \xNN; a cut
// id gets "...(N bytes)"; an unknown one (marked by key) is "-".
std::string shown_id(const ProcessedEntry& e) {
  if (e.id_bytes == 0) return "-";
  std::string out;
  for (unsigned char c : e.id) {
    if (c < 0x20 || c == 0x7f || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (!e.id_complete()) out += "...(" + std::to_string(e.id_bytes) + " bytes)";
  return out;
}

// ---- create, delete ------------------------------------------------------------

int run_create(const Context& ctx, const CreateArgs& a) {
  if (auto ok = check_name(a.name, "processed store"); !ok) return fail(ok.error());
  ProcessedStoreOptions o;
  if (!a.window_ms.empty()) {
    auto v = parse_u64(a.window_ms, "--window-ms");
    if (!v) return fail(v.error(), kExitUsage);
    if (*v < 1 || *v > kMaxWindowMs) return fail("--window-ms: must be 1-31536000000 (1 ms to 365 days)", kExitUsage);
    o.window_ns = static_cast<int64_t>(*v * kNsPerMs);
  }
  if (!a.capacity.empty()) {
    auto v = parse_u64(a.capacity, "--capacity");
    if (!v) return fail(v.error(), kExitUsage);
    if (*v < 8 || *v > kMaxCapacity || *v % 8 != 0)
      return fail("--capacity: must be a multiple of 8 from 8 to 16777216", kExitUsage);
    o.capacity = static_cast<uint32_t>(*v);
  }
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  if (open_existing(*bus, a.name)) return fail("processed store " + a.name + " already exists");
  auto store = bus->open_processed_store(a.name, o);
  if (!store) return fail(store.error());
  return kExitOk;
}

int run_delete(const Context& ctx, const std::string& name) {
  if (auto ok = check_name(name, "processed store"); !ok) return fail(ok.error());
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  if (auto ok = bus->delete_processed_store(name); !ok) return fail(ok.error());
  return kExitOk;
}

// ---- list, show -------------------------------------------------------------------

void append_stats_json(std::string& out, const ProcessedStoreStats& s) {
  out += "{\"store\":";
  append_json_string(out, s.name);
  char buf[512];
  std::snprintf(buf, sizeof buf,
                ",\"capacity\":%u,\"window_ms\":%" PRId64 ",\"done\":%" PRIu64 ",\"pending\":%" PRIu64
                ",\"in_doubt\":%" PRIu64 ",\"ran\":%" PRIu64 ",\"already_done\":%" PRIu64
                ",\"reported_in_doubt\":%" PRIu64 ",\"resolved_done\":%" PRIu64 ",\"resolved_ran\":%" PRIu64
                ",\"busy\":%" PRIu64 ",\"fn_threw\":%" PRIu64 ",\"completions_lost\":%" PRIu64,
                s.capacity, s.window_ns / static_cast<int64_t>(kNsPerMs), s.done, s.pending, s.in_doubt, s.ran,
                s.already_done, s.reported_in_doubt, s.resolved_done, s.resolved_ran, s.busy, s.fn_threw,
                s.completions_lost);
  out += buf;
}

int run_list(const Context& ctx, const ListArgs& a) {
  if (auto ok = check_format(a.format); !ok) return fail(ok.error(), kExitUsage);
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto names = bus->list_processed_stores();
  if (!names) return fail(names.error());
  std::string out;
  if (a.format == "text") out += "STORE                CAPACITY  WINDOW-MS       DONE    PENDING   IN-DOUBT\n";
  for (const std::string& name : *names) {
    auto store = open_existing(*bus, name);
    if (!store) return fail_read(store.error());
    auto s = store->stats();
    if (!s) return fail_read(s.error());
    if (a.in_doubt && s->in_doubt == 0) continue;
    if (a.format == "json") {
      append_stats_json(out, *s);
      out += "}\n";
      continue;
    }
    char buf[256];
    std::snprintf(buf, sizeof buf, "%-20s %9u %10" PRId64 " %10" PRIu64 " %10" PRIu64 " %10" PRIu64 "\n",
                  name.c_str(), s->capacity, s->window_ns / static_cast<int64_t>(kNsPerMs), s->done, s->pending,
                  s->in_doubt);
    out += buf;
  }
  std::fputs(out.c_str(), stdout);
  return kExitOk;
}

int run_show(const Context& ctx, const ShowArgs& a) {
  if (auto ok = check_name(a.name, "processed store"); !ok) return fail(ok.error());
  if (auto ok = check_format(a.format); !ok) return fail(ok.error(), kExitUsage);
  size_t max = SIZE_MAX;
  if (!a.max.empty()) {
    auto v = parse_u64(a.max, "--max");
    if (!v) return fail(v.error(), kExitUsage);
    if (*v == 0) return fail("--max: must be at least 1", kExitUsage);
    max = static_cast<size_t>(*v);
  }
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto store = open_existing(*bus, a.name);
  if (!store) return fail_read(store.error());
  auto s = store->stats();
  if (!s) return fail_read(s.error());
  const ProcessedFilter filter =
      a.in_doubt ? ProcessedFilter::kInDoubt : a.all ? ProcessedFilter::kAll : ProcessedFilter::kUnsettled;
  auto ids = store->list(filter, max);
  if (!ids) return fail_read(ids.error());
  std::string out;
  if (a.format == "json") {
    append_stats_json(out, *s);
    out += ",\"ids\":[";
    for (size_t i = 0; i < ids->size(); ++i) {
      const ProcessedEntry& e = (*ids)[i];
      out += i == 0 ? "{\"state\":\"" : ",{\"state\":\"";
      out += processed_state_name(e.state);
      out += "\",\"since_ns\":" + std::to_string(e.since_unix_ns) + ",\"key\":\"" + e.key.hex() + "\",\"id\":";
      if (e.id_bytes == 0) {
        out += "null";
      } else {
        append_json_string(out, e.id);
      }
      out += ",\"id_bytes\":" + std::to_string(e.id_bytes) + ",\"id_complete\":" + (e.id_complete() ? "true" : "false");
      out += "}";
    }
    out += "]}\n";
  } else {
    out += "store " + s->name + ": capacity " + std::to_string(s->capacity) + " ids, window " +
           std::to_string(s->window_ns / static_cast<int64_t>(kNsPerMs)) + " ms\n";
    out += "ids now: " + std::to_string(s->done) + " done, " + std::to_string(s->pending) + " pending, " +
           std::to_string(s->in_doubt) + " in doubt\n";
    out += "since created: " + std::to_string(s->ran) + " ran, " + std::to_string(s->already_done) +
           " already done, " + std::to_string(s->reported_in_doubt) + " reported in doubt, " +
           std::to_string(s->resolved_done) + " resolved done, " + std::to_string(s->resolved_ran) +
           " resolved not done, " + std::to_string(s->busy) + " busy, " + std::to_string(s->fn_threw) + " threw, " +
           std::to_string(s->completions_lost) + " completions lost\n";
    out += "STATE     SINCE                     KEY                               ID\n";
    for (const ProcessedEntry& e : *ids) {
      char buf[128];
      std::snprintf(buf, sizeof buf, "%-9s %-25s %s  ", std::string(processed_state_name(e.state)).c_str(),
                    utc(e.since_unix_ns).c_str(), e.key.hex().c_str());
      out += buf + shown_id(e) + "\n";
    }
  }
  std::fputs(out.c_str(), stdout);
  return kExitOk;
}

// ---- mark-done, forget --------------------------------------------------------------

int run_settle(const Context& ctx, const SettleArgs& a, bool mark_done) {
  const char* verb = mark_done ? "mark-done" : "forget";
  if (auto ok = check_name(a.name, "processed store"); !ok) return fail(ok.error());
  if (a.ids.empty() && a.keys.empty())
    return fail(std::string("processed ") + verb + ": give an ID or --key KEY", kExitUsage);
  std::vector<ProcessedKey> keys;
  for (const std::string& k : a.keys) {
    auto key = ProcessedKey::from_hex(k);
    if (!key) return fail("--key: '" + k + "' is not 32 hex digits (as processed show prints keys)", kExitUsage);
    keys.push_back(*key);
  }
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto store = open_existing(*bus, a.name);
  if (!store) return fail_read(store.error());
  auto settle = [&](auto&& what, const std::string& shown) -> std::optional<int> {
    auto was = mark_done ? store->mark_done(what) : store->forget(what);
    if (!was) return fail_read(was.error());
    if (!mark_done && *was == ProcessedState::kAbsent)
      return fail("processed store " + a.name + " holds no " + shown + " (nothing to forget)");
    return std::nullopt;
  };
  for (const std::string& id : a.ids)
    if (auto code = settle(std::string_view(id), "id '" + id + "'")) return *code;
  for (const ProcessedKey& k : keys)
    if (auto code = settle(k, "key " + k.hex())) return *code;
  return kExitOk;
}

}  // namespace

void add_processed_commands(CLI::App& app, Context& ctx) {
  CLI::App* processed = app.add_subcommand(
      "processed", "processed-id stores (idempotent consumers): list them, show in-doubt ids, settle them by hand");
  processed->require_subcommand(1);

  auto create = std::make_shared<CreateArgs>();
  CLI::App* c = processed->add_subcommand("create", "create a processed-id store (programs create theirs on open)");
  c->add_option("name", create->name, "store name: 1-200 of A-Z a-z 0-9 . _ -")->type_name("STORE")->required();
  c->add_option("--window-ms", create->window_ms, "how long a done id counts (default 3600000: 1 h)")
      ->type_name("MS");
  c->add_option("--capacity", create->capacity, "ids the window holds, a multiple of 8 (default 131072)")
      ->type_name("N");
  c->callback([&ctx, create] { ctx.exit_code = run_create(ctx, *create); });

  auto list = std::make_shared<ListArgs>();
  CLI::App* l = processed->add_subcommand("list", "list the stores with their ids by state (done, pending, in doubt)");
  l->add_flag("--in-doubt", list->in_doubt, "only stores that hold in-doubt ids");
  l->add_option("--format", list->format, "text (a table) or json (one object per store and line)")
      ->type_name("FORMAT");
  l->callback([&ctx, list] { ctx.exit_code = run_list(ctx, *list); });

  auto show = std::make_shared<ShowArgs>();
  CLI::App* s = processed->add_subcommand(
      "show", "a store's parameters and counters, then its pending and in-doubt ids (state, since, key, id)");
  s->add_option("name", show->name, "store name")->type_name("STORE")->required();
  CLI::Option* in_doubt = s->add_flag("--in-doubt", show->in_doubt, "only in-doubt ids");
  CLI::Option* all = s->add_flag("--all", show->all, "also the done ids of the window");
  in_doubt->excludes(all);
  s->add_option("--max", show->max, "at most N ids")->type_name("N");
  s->add_option("--format", show->format, "text or json (one object)")->type_name("FORMAT");
  s->callback([&ctx, show] { ctx.exit_code = run_show(ctx, *show); });

  for (bool mark_done : {true, false}) {
    auto settle = std::make_shared<SettleArgs>();
    CLI::App* m = processed->add_subcommand(
        mark_done ? "mark-done" : "forget",
        mark_done ? "settle ids as done: process_once will not run them within the window"
                  : "forget ids: process_once will run them again");
    m->add_option("name", settle->name, "store name")->type_name("STORE")->required();
    m->add_option("id", settle->ids, "ids, as given to process_once")->type_name("ID...");
    m->add_option("--key", settle->keys, "an id by its key, as processed show prints it (repeatable)")
        ->type_name("KEY")
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    m->callback([&ctx, settle, mark_done] { ctx.exit_code = run_settle(ctx, *settle, mark_done); });
  }

  auto del = std::make_shared<std::string>();
  CLI::App* d = processed->add_subcommand("delete", "delete a store: all its ids are forgotten");
  d->add_option("name", *del, "store name")->type_name("STORE")->required();
  d->callback([&ctx, del] { ctx.exit_code = run_delete(ctx, *del); });
}

}  // namespace sluice::cli
