// `sluice produce NAME`: one record per line of stdin.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "text_parse.h"

namespace sluice::cli {

namespace {

struct ProduceArgs {
  std::string topic;
  std::optional<std::string> key;
  std::string key_sep;
  std::string partition;
  std::vector<std::string> headers;  // K=V
  std::string wait_ms = "5000";
  bool verbose = false;
};

std::string send_failure(const Producer& producer, const SendResult& r) {
  switch (r.status) {
    case SendStatus::kBackPressured:
      return "back-pressured: the slowest group is a full retention window behind (see --wait-ms)";
    case SendStatus::kBusy:
      return "partition " + std::to_string(r.partition) + " is owned by an exclusive producer";
    case SendStatus::kAborted:
      return "the record's claim was aborted as stalled";
    case SendStatus::kTooLarge:
    case SendStatus::kError:
    case SendStatus::kFenced:
    case SendStatus::kOutOfOrderSequence:
    case SendStatus::kOk:
      break;
  }
  return producer.last_error().to_string();
}

int run_produce(const Context& ctx, const ProduceArgs& a) {
  if (auto ok = check_name(a.topic, "topic"); !ok) return fail(ok.error());
  auto parsed = parse_header_args(a.headers, false);  // views into a.headers, which outlives every send
  if (!parsed) return fail(parsed.error().message, kExitUsage);
  const std::vector<Header> headers = std::move(*parsed);
  auto wait_ms = parse_u64(a.wait_ms, "--wait-ms");
  if (!wait_ms) return fail(wait_ms.error(), kExitUsage);
  auto parsed_partition = parse_partition(a.partition);
  if (!parsed_partition) return fail(parsed_partition.error(), kExitUsage);
  const std::optional<uint32_t> partition = *parsed_partition;

  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  ProducerOptions options;
  options.back_pressure_timeout_ns = static_cast<int64_t>(std::min<uint64_t>(*wait_ms, 86'400'000)) * 1'000'000;
  auto producer = bus->create_producer(a.topic, options);
  if (!producer) return fail(producer.error());
  if (partition && *partition >= producer->partition_count())
    return fail(
        "--partition: topic " + a.topic + " has partitions 0-" + std::to_string(producer->partition_count() - 1),
        kExitUsage);

  uint64_t sent = 0;
  const int code = for_each_stdin_line("produce", [&](std::string_view text) -> std::optional<std::string> {
    Message m;
    m.headers = headers;
    m.value = text;
    if (a.key) {
      m.key = *a.key;
    } else if (!a.key_sep.empty()) {
      // A line without the separator has no key: the whole line is the value.
      const size_t at = text.find(a.key_sep);
      if (at != std::string_view::npos) {
        m.key = text.substr(0, at);
        m.value = text.substr(at + a.key_sep.size());
      }
    }
    const SendResult r = producer->send(m, partition);
    if (!r.ok()) return send_failure(*producer, r);
    return std::nullopt;
  }, &sent);
  if (code == kExitOk && a.verbose)
    std::fprintf(stderr, "produced %llu records to %s\n", (unsigned long long)sent, a.topic.c_str());
  return code;
}

}  // namespace

void add_produce_command(CLI::App& app, Context& ctx) {
  auto a = std::make_shared<ProduceArgs>();
  CLI::App* p = app.add_subcommand("produce", "send one record per line of stdin");
  p->add_option("topic", a->topic, "topic name")->type_name("TOPIC")->required();
  CLI::Option* key = p->add_option("--key,-k", a->key, "key of every record (decides the partition)")->type_name("KEY");
  CLI::Option* sep =
      p->add_option("--key-sep", a->key_sep, "split each line at the first SEP: key SEP value")->type_name("SEP");
  key->excludes(sep);
  p->add_option("--partition", a->partition, "send every record to this partition (default: by key hash)")
      ->type_name("P");
  p->add_option("--header,-H", a->headers, "record header NAME=VALUE (repeatable)")
      ->type_name("NAME=VALUE")
      ->allow_extra_args(false)  // one value per -H: `-H a=1 TOPIC` leaves TOPIC alone
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  p->add_option("--wait-ms", a->wait_ms, "back-pressure topics: how long a send waits for room (default 5000)")
      ->type_name("MS");
  p->add_flag("--verbose,-v", a->verbose, "print the number of records sent on stderr");
  p->callback([&ctx, a] { ctx.exit_code = run_produce(ctx, *a); });
}

}  // namespace sluice::cli
