// `sluice group list|describe|seek`: consumer groups' committed offsets,
// lag, and replay by moving the offsets.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "commands.h"
#include "text_parse.h"

namespace sluice::cli {

namespace {

struct SeekArgs {
  std::string group, topic, to, partition;
};

std::string age_text(int64_t ns) {
  if (ns <= 0) return "-";
  char buf[32];
  if (ns < 1'000'000)
    std::snprintf(buf, sizeof buf, "%.1fus", ns / 1e3);
  else if (ns < 1'000'000'000)
    std::snprintf(buf, sizeof buf, "%.1fms", ns / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%.1fs", ns / 1e9);
  return buf;
}

std::string offset_text(uint64_t o) { return o == kNoOffset ? "-" : std::to_string(o); }

int run_list(const Context& ctx) {
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto groups = bus->list_groups();
  if (!groups) return fail(groups.error());
  for (const auto& g : *groups) std::printf("%s\n", g.c_str());
  return kExitOk;
}

int run_describe(const Context& ctx, const std::string& group) {
  if (auto ok = check_name(group, "group"); !ok) return fail(ok.error());
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto d = bus->describe_group(group);
  if (!d) return fail(d.error());
  std::printf("group %s\n", d->group.c_str());
  std::printf("%-24s %9s %12s %12s %12s %12s %14s %12s\n", "topic", "partition", "committed", "end", "lso", "lag",
              "lag_bytes", "oldest_age");
  for (const PartitionLag& l : d->partitions)
    std::printf("%-24s %9u %12s %12llu %12llu %12llu %14llu %12s\n", l.topic.c_str(), l.partition,
                offset_text(l.committed).c_str(), (unsigned long long)l.end_offset,
                (unsigned long long)l.stable_offset, (unsigned long long)l.lag_records,
                (unsigned long long)l.lag_bytes, age_text(l.oldest_unconsumed_age_ns).c_str());
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

  auto describe_group = std::make_shared<std::string>();
  CLI::App* d = group->add_subcommand(
      "describe", "per topic and partition: committed offset, end offset, last stable offset (lso: where read-committed readers stop), lag (records, bytes), oldest unconsumed age");
  d->add_option("group", *describe_group, "group name")->type_name("GROUP")->required();
  d->callback([&ctx, describe_group] { ctx.exit_code = run_describe(ctx, *describe_group); });

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
