// `sluice dlq list|show|redrive|replay|purge`: the dead letters of a
// dead-letter queue (docs/queues.md, section 7).
//
// How they are read: see dead_letters.h. list and show browse the queue,
// changing nothing. redrive, replay and purge (with filters) scan it
// (leasing what they can see), act on the letters that match their filters,
// and release the rest where they were. Redrive re-publishes a letter and
// acks it only once the publish succeeded: a redrive killed between the two
// leaves the letter in the dead-letter queue as well (at least once), and its
// leases come back when it dies.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "dead_letters.h"
#include "text_parse.h"

namespace sluice::cli {

namespace {

struct ListArgs {
  std::string name;
  std::string format = "text";
  FilterArgs filter;
  std::string max;
};

struct ShowArgs {
  std::string name, offset;
  std::string priority = "0";
};

struct RedriveArgs {
  std::string name;
  std::string to;
  FilterArgs filter;
  std::string rate = "0";
  std::string max;
};

struct PurgeArgs {
  std::string name;
  FilterArgs filter;
};

// "1 dead letter", "2 dead letters".
std::string letters(uint64_t n) { return std::to_string(n) + (n == 1 ? " dead letter" : " dead letters"); }

// How often a paced redrive pushes its leases on (they are kScanLeaseNs).
constexpr auto kExtendEvery = std::chrono::seconds(10);

// Refuses queues that have a dead-letter queue of their own: `dlq purge
// orders` must not empty the work queue itself. Dead-letter queues have
// none (and so do queues created with --dead-letter-queue -).
// Its stats when it is one.
Result<QueueStats> check_dead_letter_queue(Bus& bus, const std::string& name) {
  auto s = bus.queue_stats(name);
  if (!s) return std::unexpected(s.error());
  if (!s->dead_letter_queue.empty())
    return make_error(Errc::kInvalidArgument,
                      "queue " + name + " is not a dead-letter queue: its dead letters go to " + s->dead_letter_queue);
  return s;
}

int fail_read(const Error& e) { return fail(e, e.code == Errc::kCorruption ? kExitCorrupt : kExitError); }

Result<uint64_t> parse_max(const std::string& text) {
  if (text.empty()) return UINT64_MAX;
  auto v = parse_u64(text, "--max");
  if (!v) return std::unexpected(v.error());
  if (*v == 0) return make_error(Errc::kInvalidArgument, "--max: must be at least 1");
  return *v;
}

// Opens the bus and scans the dead-letter queue `name`; prints the error.
struct Opened {
  std::optional<Bus> bus;
  std::optional<DeadLetterScan> scan;
};
int open_and_scan(const Context& ctx, const std::string& name, Opened* o) {
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  o->bus.emplace(std::move(*bus));
  if (auto ok = check_dead_letter_queue(*o->bus, name); !ok) return fail(ok.error());
  auto scan = DeadLetterScan::take(*o->bus, name);
  if (!scan) return fail_read(scan.error());
  o->scan.emplace(std::move(*scan));
  return kExitOk;
}

// ---- list, show ----------------------------------------------------------------
// Read with Bus::browse_queue: no lease, no counter or receive count moves,
// and letters leased by others (state in_flight) or delayed are seen too.

// Opens the bus and checks that `name` is a dead-letter queue; prints the
// error. Its priority levels in *levels.
int open_for_browse(const Context& ctx, const std::string& name, std::optional<Bus>* bus, uint32_t* levels) {
  auto b = open_bus(ctx);
  if (!b) return fail(b.error());
  bus->emplace(std::move(*b));
  auto stats = check_dead_letter_queue(**bus, name);
  if (!stats) return fail(stats.error());
  *levels = std::max<uint32_t>(stats->options.priorities, static_cast<uint32_t>(stats->levels.size()));
  return kExitOk;
}

int run_list(const Context& ctx, const ListArgs& a) {
  if (auto ok = check_name(a.name, "queue"); !ok) return fail(ok.error());
  if (a.format != "text" && a.format != "json")
    return fail("--format: '" + a.format + "' is not text or json", kExitUsage);
  auto filter = parse_filter(a.filter);
  if (!filter) return fail(filter.error(), kExitUsage);
  auto max = parse_max(a.max);
  if (!max) return fail(max.error(), kExitUsage);
  std::optional<Bus> bus;
  uint32_t levels = 1;
  if (int code = open_for_browse(ctx, a.name, &bus, &levels); code != kExitOk) return code;
  const bool json = a.format == "json";
  std::string out;
  if (!json) append_dead_letter_title(out);
  uint64_t shown = 0, seen = 0, leased = 0;
  auto ok = browse_dead_letters(*bus, a.name, levels, [&](const QueueEntry& e) {
    ++seen;
    if (shown >= *max) return true;  // on, to count what is seen
    const DeadLetter d = dead_letter_of(e);
    if (!filter->matches(std::span<const Header>(d.headers))) return true;
    if (json)
      append_dead_letter_json(out, a.name, d);
    else
      append_dead_letter_row(out, d);
    ++shown;
    leased += e.state == QueueEntryState::kInFlight;
    return true;
  });
  if (!ok) return fail_read(ok.error());
  if (!json) {
    out += letters(shown);
    if (!filter->empty()) out += " matched, of " + std::to_string(seen) + " seen";
    if (leased > 0) out += "; " + std::to_string(leased) + " of them leased by a worker now (in_flight)";
    out += '\n';
  }
  if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size() || std::fflush(stdout) != 0)
    return fail("dlq list: cannot write to stdout");
  return kExitOk;
}

int run_show(const Context& ctx, const ShowArgs& a) {
  if (auto ok = check_name(a.name, "queue"); !ok) return fail(ok.error());
  auto offset = parse_u64(a.offset, "OFFSET");
  if (!offset) return fail(offset.error(), kExitUsage);
  auto priority = parse_u64(a.priority, "--priority");
  if (!priority) return fail(priority.error(), kExitUsage);
  std::optional<Bus> bus;
  uint32_t levels = 1;
  if (int code = open_for_browse(ctx, a.name, &bus, &levels); code != kExitOk) return code;
  std::string out;
  if (*priority < levels) {
    auto found = bus->browse_queue(a.name, static_cast<uint32_t>(*priority), *offset, 1);
    if (!found) return fail_read(found.error());
    if (!found->empty() && found->front().offset == *offset)
      append_dead_letter_json(out, a.name, dead_letter_of(found->front()));
  }
  if (out.empty())
    return fail("dlq show: no dead letter at offset " + a.offset + " of " + a.name +
                (*priority != 0 ? " priority " + a.priority : std::string()) + " (settled, or never there)");
  if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size() || std::fflush(stdout) != 0)
    return fail("dlq show: cannot write to stdout");
  return kExitOk;
}

// ---- redrive, replay -------------------------------------------------------------

// Where a letter goes back to: --to, else its source queue; a stream
// consumer's letter (source topic:T, consumer group G) to G's retry queue
// T.G.retry, whose worker handles it as a retry. Empty, with `why`, when
// there is nowhere to go.
std::string target_of(const HeadersView& h, const std::string& to, std::string* why) {
  if (!to.empty()) return to;
  const std::string_view source = dead_letter_field(h, "source").value_or(std::string_view());
  if (source.starts_with("queue:")) return std::string(source.substr(6));
  if (source.starts_with("topic:")) {
    const std::string_view group = dead_letter_field(h, "consumer_group").value_or(std::string_view());
    if (!group.empty()) return std::string(source.substr(6)) + "." + std::string(group) + ".retry";
    *why = "from topic " + std::string(source.substr(6)) + " without a consumer group";
    return {};
  }
  *why = source.empty() ? std::string("no sluice.dlq.source") : "unknown source '" + std::string(source) + "'";
  return {};
}

struct Target {
  std::optional<QueuePublisher> publisher;
  uint32_t levels = 1;
  std::optional<Error> error;  // could not be opened: its letters stay
  uint64_t moved = 0;
};

int run_redrive(const Context& ctx, const RedriveArgs& a) {
  if (auto ok = check_name(a.name, "queue"); !ok) return fail(ok.error());
  if (!a.to.empty()) {
    if (auto ok = check_name(a.to, "queue"); !ok) return fail(ok.error());
    if (a.to == a.name) return fail("--to: dead letters cannot be redriven into their own queue", kExitUsage);
  }
  auto filter = parse_filter(a.filter);
  if (!filter) return fail(filter.error(), kExitUsage);
  auto max = parse_max(a.max);
  if (!max) return fail(max.error(), kExitUsage);
  auto rate = parse_u64(a.rate, "--rate");
  if (!rate) return fail(rate.error(), kExitUsage);

  Opened o;
  if (int code = open_and_scan(ctx, a.name, &o); code != kExitOk) return code;
  Bus& bus = *o.bus;
  DeadLetterScan& scan = *o.scan;
  // The letters to move, in offset order; the others go back at once.
  std::vector<Delivery*> chosen;
  for (Delivery& d : scan.letters()) {
    if (chosen.size() < *max && filter->matches(d.headers()))
      chosen.push_back(&d);
    else
      (void)scan.release(d);
  }

  std::map<std::string, Target> targets;
  uint64_t moved = 0, nowhere = 0, unopened = 0, ack_failed = 0;
  std::string nowhere_why;
  std::optional<Error> open_error, publish_error, ack_error;
  std::vector<Header> headers;
  const auto start = std::chrono::steady_clock::now();
  auto last_extend = start;
  for (size_t i = 0; i < chosen.size(); ++i) {
    Delivery& d = *chosen[i];
    if (*rate > 0) {
      const auto due = start + std::chrono::nanoseconds(static_cast<int64_t>(i * 1'000'000'000.0 / *rate));
      if (due > std::chrono::steady_clock::now()) std::this_thread::sleep_until(due);
    }
    if (std::chrono::steady_clock::now() - last_extend > kExtendEvery) {
      (void)scan.extend_all(kScanLeaseNs);
      last_extend = std::chrono::steady_clock::now();
    }
    std::string why;
    const std::string to = target_of(d.headers(), a.to, &why);
    if (to.empty() || to == a.name) {
      ++nowhere;
      if (nowhere_why.empty()) nowhere_why = to.empty() ? why : "its source is this queue";
      (void)scan.release(d);
      continue;
    }
    auto [it, fresh] = targets.try_emplace(to);
    Target& t = it->second;
    if (fresh) {
      auto stats = bus.queue_stats(to);
      if (!stats) {
        t.error = stats.error();
      } else if (auto publisher = bus.create_queue_publisher(to); !publisher) {
        t.error = publisher.error();
      } else {
        t.publisher.emplace(std::move(*publisher));
        t.levels = static_cast<uint32_t>(stats->levels.size());
      }
    }
    if (t.error) {
      ++unopened;
      if (!open_error) open_error = t.error;
      (void)scan.release(d);
      continue;
    }
    // The payload and original headers; the sluice.dlq.* ones stay behind,
    // the FIFO group becomes a live group again.
    headers.clear();
    for (Header h : d.headers())
      if (!h.name.starts_with(kDlqHeaderPrefix)) headers.push_back(h);
    QueueMessage m;
    m.value = d.value();
    m.headers = headers;
    m.group = dead_letter_field(d.headers(), "group").value_or(std::string_view());
    // A queue's letter returns to its priority level when the target has it.
    const std::string_view source = dead_letter_field(d.headers(), "source").value_or(std::string_view());
    uint64_t level = 0;
    if (source.starts_with("queue:")) {
      auto p = parse_u64(dead_letter_field(d.headers(), "source_partition").value_or(std::string_view()), "p");
      if (p && *p < t.levels) level = *p;
    }
    m.priority = static_cast<uint32_t>(level);
    const PublishResult r = t.publisher->publish(m);
    if (!r.ok()) {
      publish_error = Error{t.publisher->last_error().code, "queue " + to + ": " +
                                                                (r.status == SendStatus::kBackPressured
                                                                     ? std::string("back-pressured (max depth reached)")
                                                                     : t.publisher->last_error().to_string())};
      break;  // the rest stay where they are
    }
    if (auto ok = d.ack(); !ok) {
      // Published, but the letter could not be removed (its lease ended):
      // it is in both queues now.
      ++ack_failed;
      if (!ack_error) ack_error = ok.error();
    } else {
      ++moved;
      ++t.moved;
    }
    d = Delivery();
  }
  (void)scan.release_all();

  std::string line = "redrove " + letters(moved) + " from " + a.name;
  std::string sep = ": ";
  for (const auto& [name, t] : targets) {
    if (t.moved == 0) continue;
    line += sep + std::to_string(t.moved) + " to " + name;
    sep = ", ";
  }
  if (*rate > 0 && moved > 1) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    char buf[64];
    std::snprintf(buf, sizeof buf, " (%.1f/s)", s > 0 ? static_cast<double>(moved) / s : 0.0);
    line += buf;
  }
  if (nowhere > 0) line += "; " + std::to_string(nowhere) + " left in place: " + nowhere_why + " (use --to)";
  std::printf("%s\n", line.c_str());
  if (publish_error)
    return fail("dlq redrive: stopped after " + std::to_string(moved) + ": " + publish_error->to_string());
  if (ack_error)
    return fail("dlq redrive: " + std::to_string(ack_failed) + " dead letter(s) were re-published but are still in " +
                a.name + ": " + ack_error->to_string());
  if (open_error)
    return fail("dlq redrive: " + std::to_string(unopened) +
                " dead letter(s) left in place: " + open_error->to_string());
  return kExitOk;
}

// ---- purge -----------------------------------------------------------------------

int run_purge(const Context& ctx, const PurgeArgs& a) {
  if (auto ok = check_name(a.name, "queue"); !ok) return fail(ok.error());
  auto filter = parse_filter(a.filter);
  if (!filter) return fail(filter.error(), kExitUsage);
  if (filter->empty()) {
    auto bus = open_bus(ctx);
    if (!bus) return fail(bus.error());
    if (auto ok = check_dead_letter_queue(*bus, a.name); !ok) return fail(ok.error());
    auto removed = bus->purge_queue(a.name);
    if (!removed) return fail(removed.error());
    std::printf("purged %s from %s\n", letters(*removed).c_str(), a.name.c_str());
    return kExitOk;
  }
  Opened o;
  if (int code = open_and_scan(ctx, a.name, &o); code != kExitOk) return code;
  uint64_t removed = 0, failed = 0;
  std::optional<Error> first;
  for (Delivery& d : o.scan->letters()) {
    if (!filter->matches(d.headers())) continue;
    if (auto ok = d.ack(); !ok) {
      ++failed;
      if (!first) first = ok.error();
    } else {
      ++removed;
    }
    d = Delivery();
  }
  (void)o.scan->release_all();
  std::printf("purged %s from %s\n", letters(removed).c_str(), a.name.c_str());
  if (failed > 0) return fail("dlq purge: " + std::to_string(failed) + " could not be removed: " + first->to_string());
  return kExitOk;
}

void add_filter_options(CLI::App* c, FilterArgs& f) {
  c->add_option("--error-type", f.error_type, "only letters with this sluice.dlq.error_type")->type_name("TYPE");
  c->add_option("--source", f.source, "only letters from this source: queue:NAME, topic:NAME, or NAME for either")
      ->type_name("SOURCE");
  c->add_option("--since", f.since, "only letters that failed at or after this time (RFC 3339 or Unix ms)")
      ->type_name("TIME");
  c->add_option("--until", f.until, "only letters that failed before this time (RFC 3339 or Unix ms)")
      ->type_name("TIME");
}

}  // namespace

void add_dlq_commands(CLI::App& app, Context& ctx) {
  CLI::App* dlq = app.add_subcommand(
      "dlq", "dead-letter queues: list and show dead letters, redrive (or replay) them to their source, purge them");
  dlq->require_subcommand(1);
  dlq->footer(
      "NAME is a dead-letter queue (by default SOURCE.dlq). list and show only read it: they change nothing\n"
      "and also show letters a worker holds now (state in_flight). redrive, replay and purge with a filter\n"
      "lease its letters for a moment and release those they leave where they were: its received and nacked\n"
      "counters grow, and so does each such letter's receive count (dlq_receives). These commands never drop a\n"
      "letter for that count; an ordinary receive does: an engine-made dead-letter queue has max-receives 5, and\n"
      "`sluice queue receive Q.dlq` drops (counts as dead-lettered) a letter already received 5 times.");

  auto list = std::make_shared<ListArgs>();
  CLI::App* l = dlq->add_subcommand("list", "list dead letters with where they came from and why they failed");
  l->add_option("name", list->name, "dead-letter queue name")->type_name("NAME")->required();
  l->add_option("--format", list->format,
                "text (a table: offset, state, failed at, attempts, source@partition:offset, error) or json (one object "
                "per line, as dlq show)")
      ->type_name("FORMAT");
  add_filter_options(l, list->filter);
  l->add_option("--max,-n", list->max, "list at most N")->type_name("N");
  l->callback([&ctx, list] { ctx.exit_code = run_list(ctx, *list); });

  auto show = std::make_shared<ShowArgs>();
  CLI::App* s =
      dlq->add_subcommand("show", "one dead letter as JSON: its sluice.dlq.* metadata, payload and original headers");
  s->add_option("name", show->name, "dead-letter queue name")->type_name("NAME")->required();
  s->add_option("offset", show->offset, "the letter's offset in the dead-letter queue (dlq list shows it)")
      ->type_name("OFFSET")
      ->required();
  s->add_option("--priority", show->priority, "its priority level (default 0; dead-letter queues have one)")
      ->type_name("P");
  s->callback([&ctx, show] { ctx.exit_code = run_show(ctx, *show); });

  for (const char* name : {"redrive", "replay"}) {
    const bool replay = std::string(name) == "replay";
    auto redrive = std::make_shared<RedriveArgs>();
    CLI::App* r = dlq->add_subcommand(
        name, replay ? "re-publish every dead letter to its source queue (redrive without filters)"
                     : "re-publish matching dead letters to their source queue (or --to), then remove them");
    r->add_option("name", redrive->name, "dead-letter queue name")->type_name("NAME")->required();
    r->add_option("--to", redrive->to,
                  "publish to this queue instead of each letter's source (queue:Q goes back to Q; topic:T of group "
                  "G to G's retry queue T.G.retry)")
        ->type_name("QUEUE");
    if (!replay) add_filter_options(r, redrive->filter);
    r->add_option("--rate", redrive->rate, "at most N letters per second (default 0: unpaced)")->type_name("N");
    r->add_option("--max,-n", redrive->max, "move at most N")->type_name("N");
    r->footer(
        "The payload and original headers are published (the sluice.dlq.* headers left behind, a FIFO group\n"
        "restored), at the letter's priority; the letter is removed only after its publish succeeded.");
    r->callback([&ctx, redrive] { ctx.exit_code = run_redrive(ctx, *redrive); });
  }

  auto purge = std::make_shared<PurgeArgs>();
  CLI::App* p =
      dlq->add_subcommand("purge", "remove matching dead letters (all of them without a filter); print how many");
  p->add_option("name", purge->name, "dead-letter queue name")->type_name("NAME")->required();
  add_filter_options(p, purge->filter);
  p->callback([&ctx, purge] { ctx.exit_code = run_purge(ctx, *purge); });
}

}  // namespace sluice::cli
