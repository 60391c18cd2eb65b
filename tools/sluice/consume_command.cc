// `sluice consume NAME --group G`: prints records, one per line, and
// commits the group's offsets as it goes.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "record_format.h"
#include "text_parse.h"

namespace sluice::cli {

namespace {

struct ConsumeArgs {
  std::string topic, group;
  std::string from, max, idle_exit_ms = "200", format = "value", partition;
  bool follow = false;
  bool verbose = false;
};

volatile sig_atomic_t g_stop = 0;
void on_stop_signal(int) { g_stop = 1; }

// Ctrl-C or a TERM ends a --follow run cleanly: the loop notices within one
// poll timeout and commits what was printed.
void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

Status apply_from(Consumer& consumer, const SeekTarget& target) {
  switch (target.kind) {
    case SeekTarget::Kind::kBeginning:
      consumer.seek_to_beginning();
      return {};
    case SeekTarget::Kind::kEnd:
      consumer.seek_to_end();
      return {};
    case SeekTarget::Kind::kOffset:
      for (uint32_t p : consumer.assignment()) consumer.seek(p, static_cast<uint64_t>(target.value));
      return {};
    case SeekTarget::Kind::kTime:
      return consumer.seek_to_time(target.value * 1'000'000);
  }
  return {};
}

int run_consume(const Context& ctx, const ConsumeArgs& a) {
  if (auto ok = check_name(a.topic, "topic"); !ok) return fail(ok.error());
  if (auto ok = check_name(a.group, "group"); !ok) return fail(ok.error());
  RecordFormat format;
  if (a.format == "value")
    format = RecordFormat::kValue;
  else if (a.format == "json")
    format = RecordFormat::kJson;
  else
    return fail("--format: '" + a.format + "' is not value or json", kExitUsage);
  std::optional<SeekTarget> from;
  if (!a.from.empty()) {
    auto t = parse_from(a.from);
    if (!t) return fail(t.error(), kExitUsage);
    from = *t;
  }
  uint64_t max = UINT64_MAX;
  if (!a.max.empty()) {
    auto v = parse_u64(a.max, "--max");
    if (!v) return fail(v.error(), kExitUsage);
    max = *v;
  }
  auto idle_ms = parse_u64(a.idle_exit_ms, "--idle-exit-ms");
  if (!idle_ms) return fail(idle_ms.error(), kExitUsage);
  ConsumerOptions options;
  options.auto_commit = false;  // committed below after each printed batch
  options.wait = WaitStrategy::kBlock;
  auto partition = parse_partition(a.partition);
  if (!partition) return fail(partition.error(), kExitUsage);
  if (*partition) options.partitions.push_back(**partition);
  if (a.verbose) {
    options.on_event = [](const ConsumerEvent& e) {
      std::fprintf(stderr, "event: partition %u %llu -> %llu: %s\n", e.partition, (unsigned long long)e.from_offset,
                   (unsigned long long)e.to_offset, e.message.c_str());
    };
  }

  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto consumer = bus->create_consumer(a.topic, a.group, options);
  if (!consumer) return fail(consumer.error());
  if (from) {
    if (auto ok = apply_from(*consumer, *from); !ok) return fail(ok.error());
  }
  install_stop_handlers();

  using Clock = std::chrono::steady_clock;
  const auto idle = std::chrono::milliseconds(std::min<uint64_t>(*idle_ms, 86'400'000));
  constexpr int64_t kPollSliceNs = 100'000'000;  // bounds how late a signal is noticed
  std::vector<RecordView> batch(256);
  std::string out;
  uint64_t printed = 0;
  auto idle_deadline = Clock::now() + idle;
  while (!g_stop && printed < max) {
    // Never take more than --max allows: what poll hands out counts as consumed.
    const size_t want = static_cast<size_t>(std::min<uint64_t>(batch.size(), max - printed));
    int64_t timeout_ns = kPollSliceNs;
    if (!a.follow) {
      const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(idle_deadline - Clock::now()).count();
      timeout_ns = std::clamp<int64_t>(left, 0, kPollSliceNs);
    }
    auto n = consumer->poll(std::span(batch.data(), want), timeout_ns);
    if (!n) {
      (void)consumer->commit_sync();
      return fail(n.error(), n.error().code == Errc::kCorruption ? kExitCorrupt : kExitError);
    }
    if (*n == 0) {
      if (!a.follow && Clock::now() >= idle_deadline) break;
      continue;
    }
    out.clear();
    for (size_t i = 0; i < *n; ++i) append_record_line(out, batch[i], format);
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    printed += *n;
    consumer->commit_async();
    idle_deadline = Clock::now() + idle;
  }
  if (auto ok = consumer->commit_sync(); !ok) return fail(ok.error());
  if (a.verbose) std::fprintf(stderr, "consumed %llu records\n", (unsigned long long)printed);
  return kExitOk;
}

}  // namespace

void add_consume_command(CLI::App& app, Context& ctx) {
  auto a = std::make_shared<ConsumeArgs>();
  CLI::App* c = app.add_subcommand("consume", "print records of a topic as a consumer group, committing as it goes");
  c->add_option("topic", a->topic, "topic name")->type_name("TOPIC")->required();
  c->add_option("--group,-g", a->group, "consumer group (its committed offsets are where reading starts)")
      ->type_name("GROUP")
      ->required();
  c->add_option("--from", a->from, "seek first: beginning | end | OFFSET (every partition) | @UNIX_MS")
      ->type_name("WHERE");
  c->add_option("--partition", a->partition, "read only this partition")->type_name("P");
  c->add_option("--max,-n", a->max, "stop after N records")->type_name("N");
  c->add_flag("--follow,-f", a->follow, "keep waiting for new records (Ctrl-C commits and exits)");
  c->add_option("--idle-exit-ms", a->idle_exit_ms,
                "without --follow: exit after this long with no record (default 200)")
      ->type_name("MS");
  c->add_option("--format", a->format,
                "value (raw value per line) or json (partition, offset, timestamp ns, key, value, headers)")
      ->type_name("FORMAT");
  c->add_flag("--verbose,-v", a->verbose, "report offset resets and other consumer events on stderr");
  c->callback([&ctx, a] { ctx.exit_code = run_consume(ctx, *a); });
}

}  // namespace sluice::cli
