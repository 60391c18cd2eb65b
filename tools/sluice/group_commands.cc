// `sluice group list|describe|seek`: consumer groups' committed offsets,
// lag, and replay by moving the offsets.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "commands.h"
#include "held_by_text.h"
#include "json_text.h"
#include "text_parse.h"

namespace sluice::cli {

namespace {

struct SeekArgs {
  std::string group, topic, to, partition;
};

struct DescribeArgs {
  std::string group;
  std::string format = "text";
};

std::string offset_text(uint64_t o) { return o == kNoOffset ? "-" : std::to_string(o); }

int run_list(const Context& ctx) {
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto groups = bus->list_groups();
  if (!groups) return fail(groups.error());
  for (const auto& g : *groups) std::printf("%s\n", g.c_str());
  return kExitOk;
}

// One JSON object per line and partition.
void append_lag_json(std::string& out, const std::string& group, const PartitionLag& l) {
  out += "{\"group\":";
  append_json_string(out, group);
  out += ",\"topic\":";
  append_json_string(out, l.topic);
  out += ",\"partition\":" + std::to_string(l.partition) +
         ",\"committed\":" + (l.committed == kNoOffset ? std::string("null") : std::to_string(l.committed)) +
         ",\"end_offset\":" + std::to_string(l.end_offset) + ",\"stable_offset\":" + std::to_string(l.stable_offset) +
         ",\"lag_records\":" + std::to_string(l.lag_records) +
         ",\"lag_stable_records\":" + std::to_string(l.lag_stable_records) +
         ",\"lag_bytes\":" + std::to_string(l.lag_bytes) +
         ",\"oldest_unconsumed_age_ns\":" + std::to_string(l.oldest_unconsumed_age_ns) +
         ",\"last_commit_unix_ns\":" + std::to_string(l.last_commit_unix_ns) + ",";
  append_held_by_json(out, l.held_by);
  out += "}\n";
}

int run_describe(const Context& ctx, const DescribeArgs& a) {
  if (auto ok = check_name(a.group, "group"); !ok) return fail(ok.error());
  if (a.format != "text" && a.format != "json")
    return fail("--format: '" + a.format + "' is not text or json", kExitUsage);
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto d = bus->describe_group(a.group);
  if (!d) return fail(d.error());
  if (a.format == "json") {
    std::string out;
    for (const PartitionLag& l : d->partitions) append_lag_json(out, d->group, l);
    std::fputs(out.c_str(), stdout);
    return kExitOk;
  }
  std::printf("group %s\n", d->group.c_str());
  std::printf("%-24s %9s %12s %12s %12s %12s %14s %12s\n", "topic", "partition", "committed", "end", "lso", "lag",
              "lag_bytes", "oldest_age");
  for (const PartitionLag& l : d->partitions) {
    std::printf("%-24s %9u %12s %12llu %12llu %12llu %14llu %12s\n", l.topic.c_str(), l.partition,
                offset_text(l.committed).c_str(), (unsigned long long)l.end_offset,
                (unsigned long long)l.stable_offset, (unsigned long long)l.lag_records,
                (unsigned long long)l.lag_bytes, age_text(l.oldest_unconsumed_age_ns).c_str());
    // A held partition: who holds it, and what a read-committed member can
    // still read (the lag column counts up to the end).
    if (l.stable_offset < l.end_offset)
      std::printf("%s lag_stable %llu\n", held_by_line(l.topic, l.partition, l.held_by).c_str(),
                  (unsigned long long)l.lag_stable_records);
  }
  return kExitOk;
}

int run_seek(const Context& ctx, const SeekArgs& a) {
  if (auto ok = check_name(a.group, "group"); !ok) return fail(ok.error());
  if (auto ok = check_name(a.topic, "topic"); !ok) return fail(ok.error());
  auto target = parse_seek_target(a.to);
  if (!target) return fail(target.error(), kExitUsage);
  auto parsed_partition = parse_partition(a.partition);
  if (!parsed_partition) return fail(parsed_partition.error(), kExitUsage);
  const std::optional<uint32_t> partition = *parsed_partition;
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  if (auto ok = bus->seek_group(a.group, a.topic, *target, partition); !ok) return fail(ok.error());
  // Show where the group now stands, so a seek by time says which offsets it hit.
  auto d = bus->describe_group(a.group);
  if (!d) return fail(d.error());
  for (const PartitionLag& l : d->partitions) {
    if (l.topic != a.topic || (partition && l.partition != *partition)) continue;
    std::printf("%s %s partition %u -> %s\n", a.group.c_str(), l.topic.c_str(), l.partition,
                offset_text(l.committed).c_str());
  }
  return kExitOk;
}

}  // namespace

void add_group_commands(CLI::App& app, Context& ctx) {
  CLI::App* group = app.add_subcommand("group", "list and describe consumer groups, move their offsets");
  group->require_subcommand(1);

  group->add_subcommand("list", "list the consumer groups of the bus")->callback([&ctx] {
    ctx.exit_code = run_list(ctx);
  });

  auto describe = std::make_shared<DescribeArgs>();
  CLI::App* d = group->add_subcommand(
      "describe", "per topic and partition: committed offset, end offset, last stable offset (lso: where "
                  "read-committed readers stop), lag (records, bytes), oldest unconsumed age; under a partition "
                  "whose lso is below its end, a held-by line: the transaction holding it (name, pid, epoch, "
                  "state, how long, alive or dead) and lag_stable, the records a read-committed member can read");
  d->add_option("group", describe->group, "group name")->type_name("GROUP")->required();
  d->add_option("--format", describe->format, "text (default) or json (one object per partition and line)")
      ->type_name("FORMAT");
  d->callback([&ctx, describe] { ctx.exit_code = run_describe(ctx, *describe); });

  auto seek = std::make_shared<SeekArgs>();
  CLI::App* s =
      group->add_subcommand("seek", "move a group's committed offsets (replay or skip); running members follow");
  s->add_option("group", seek->group, "group name")->type_name("GROUP")->required();
  s->add_option("topic", seek->topic, "topic name")->type_name("TOPIC")->required();
  s->add_option("--to", seek->to, "beginning | end | offset:N | time:UNIX_MS")->type_name("TARGET")->required();
  s->add_option("--partition", seek->partition, "only this partition (default: all)")->type_name("P");
  s->callback([&ctx, seek] { ctx.exit_code = run_seek(ctx, *seek); });
}

}  // namespace sluice::cli
