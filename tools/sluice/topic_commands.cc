// `sluice init` and `sluice topic create|list|describe|delete`.
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

struct CreateArgs {
  std::string name;
  std::string partitions;
  std::string segment_bytes, retention_bytes, retention_ms, retention_mode, reset;
};

std::string size_text(uint64_t bytes) {
  char buf[32];
  if (bytes >= (1ull << 30) && bytes % (1ull << 30) == 0)
    std::snprintf(buf, sizeof buf, "%lluGiB", (unsigned long long)(bytes >> 30));
  else if (bytes >= (1ull << 20) && bytes % (1ull << 20) == 0)
    std::snprintf(buf, sizeof buf, "%lluMiB", (unsigned long long)(bytes >> 20));
  else if (bytes >= (1ull << 10) && bytes % (1ull << 10) == 0)
    std::snprintf(buf, sizeof buf, "%lluKiB", (unsigned long long)(bytes >> 10));
  else
    std::snprintf(buf, sizeof buf, "%lluB", (unsigned long long)bytes);
  return buf;
}

int run_init(const Context& ctx) {
  auto bus = open_bus(ctx, /*create=*/true);
  if (!bus) return fail(bus.error());
  std::printf("bus ready at %s\n", bus->dir().c_str());
  return kExitOk;
}

int run_create(const Context& ctx, const CreateArgs& a) {
  if (auto ok = check_name(a.name, "topic"); !ok) return fail(ok.error());
  TopicOptions o;
  auto partitions = parse_u64(a.partitions, "--partitions");
  if (!partitions) return fail(partitions.error(), kExitUsage);
  if (*partitions == 0 || *partitions > UINT32_MAX) return fail("--partitions: must be 1-4096", kExitUsage);
  o.partitions = static_cast<uint32_t>(*partitions);
  if (!a.segment_bytes.empty()) {
    auto v = parse_size(a.segment_bytes, "--segment-bytes");
    if (!v) return fail(v.error(), kExitUsage);
    if (*v > UINT32_MAX) return fail("--segment-bytes: at most 1GiB", kExitUsage);
    o.segment_bytes = static_cast<uint32_t>(*v);
  }
  if (!a.retention_bytes.empty()) {
    auto v = parse_size(a.retention_bytes, "--retention-bytes");
    if (!v) return fail(v.error(), kExitUsage);
    if (*v > static_cast<uint64_t>(INT64_MAX)) return fail("--retention-bytes: too large", kExitUsage);
    o.retention_bytes = static_cast<int64_t>(*v);
  }
  if (!a.retention_ms.empty()) {
    auto v = parse_u64(a.retention_ms, "--retention-ms");
    if (!v) return fail(v.error(), kExitUsage);
    if (*v > static_cast<uint64_t>(INT64_MAX)) return fail("--retention-ms: too large", kExitUsage);
    o.retention_ms = static_cast<int64_t>(*v);
  }
  if (!a.retention_mode.empty()) {
    auto v = parse_retention_mode(a.retention_mode);
    if (!v) return fail(v.error(), kExitUsage);
    o.retention_mode = *v;
  }
  if (!a.reset.empty()) {
    auto v = parse_offset_reset(a.reset);
    if (!v) return fail(v.error(), kExitUsage);
    o.auto_offset_reset = *v;
  }
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  if (auto ok = bus->create_topic(a.name, o); !ok) return fail(ok.error());
  return kExitOk;
}

int run_list(const Context& ctx) {
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto names = bus->list_topics();
  if (!names) return fail(names.error());
  for (const auto& n : *names) std::printf("%s\n", n.c_str());
  return kExitOk;
}

const char* reset_name(OffsetReset r) {
  switch (r) {
    case OffsetReset::kEarliest:
      return "earliest";
    case OffsetReset::kLatest:
      return "latest";
    case OffsetReset::kFail:
      return "fail";
  }
  return "?";
}

struct DescribeArgs {
  std::string name;
  bool segments = false;
  std::string format = "text";
};

// One JSON object per line and partition.
void append_partition_json(std::string& out, const std::string& topic, const PartitionInfo& p, bool segments) {
  out += "{\"topic\":";
  append_json_string(out, topic);
  out += ",\"partition\":" + std::to_string(p.partition) + ",\"start_offset\":" + std::to_string(p.start_offset) +
         ",\"end_offset\":" + std::to_string(p.end_offset) + ",\"stable_offset\":" + std::to_string(p.stable_offset) +
         ",\"records\":" + std::to_string(p.end_offset - p.start_offset) +
         ",\"segments\":" + std::to_string(p.segments.size()) + ",\"bytes\":" + std::to_string(p.bytes) +
         ",\"repaired_claims\":" + std::to_string(p.repaired_claims) + ",";
  append_held_by_json(out, p.held_by);
  if (segments) {
    out += ",\"segment_files\":[";
    for (size_t i = 0; i < p.segments.size(); ++i) {
      const SegmentInfo& s = p.segments[i];
      out += std::string(i ? "," : "") + "{\"base_offset\":" + std::to_string(s.base_offset) +
             ",\"end_offset\":" + std::to_string(s.end_offset) + ",\"bytes_used\":" + std::to_string(s.bytes_used) +
             ",\"capacity\":" + std::to_string(s.capacity) + ",\"sealed\":" + (s.sealed ? "true" : "false") +
             ",\"path\":";
      append_json_string(out, s.path);
      out += "}";
    }
    out += "]";
  }
  out += "}\n";
}

int run_describe(const Context& ctx, const DescribeArgs& a) {
  if (auto ok = check_name(a.name, "topic"); !ok) return fail(ok.error());
  if (a.format != "text" && a.format != "json")
    return fail("--format: '" + a.format + "' is not text or json", kExitUsage);
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto d = bus->describe_topic(a.name);
  if (!d) return fail(d.error());
  if (a.format == "json") {
    std::string out;
    for (const PartitionInfo& p : d->partitions) append_partition_json(out, d->name, p, a.segments);
    std::fputs(out.c_str(), stdout);
    return kExitOk;
  }
  const TopicOptions& o = d->options;
  std::printf("topic %s: %u partitions, segment %s, retention %s / %s, mode %s, reset %s\n", d->name.c_str(),
              o.partitions, size_text(o.segment_bytes).c_str(),
              o.retention_bytes < 0 ? "unlimited bytes" : size_text(static_cast<uint64_t>(o.retention_bytes)).c_str(),
              o.retention_ms < 0 ? "unlimited age" : (std::to_string(o.retention_ms) + " ms").c_str(),
              o.retention_mode == RetentionMode::kDelete ? "delete" : "backpressure", reset_name(o.auto_offset_reset));
  std::printf("%-9s %12s %12s %12s %12s %9s %14s %8s\n", "partition", "start", "end", "lso", "offsets", "segments",
              "bytes", "repaired");
  uint64_t total_records = 0, total_bytes = 0, total_repaired = 0;
  for (const PartitionInfo& p : d->partitions) {
    const uint64_t records = p.end_offset - p.start_offset;
    total_records += records;
    total_bytes += p.bytes;
    total_repaired += p.repaired_claims;
    std::printf("%-9u %12llu %12llu %12llu %12llu %9zu %14llu %8llu\n", p.partition, (unsigned long long)p.start_offset,
                (unsigned long long)p.end_offset, (unsigned long long)p.stable_offset, (unsigned long long)records,
                p.segments.size(),
                (unsigned long long)p.bytes, (unsigned long long)p.repaired_claims);
    if (p.stable_offset < p.end_offset) std::printf("%s\n", held_by_line(d->name, p.partition, p.held_by).c_str());
    if (!a.segments) continue;
    for (const SegmentInfo& s : p.segments)
      std::printf("    segment base %llu end %llu used %llu/%u%s %s\n", (unsigned long long)s.base_offset,
                  (unsigned long long)s.end_offset, (unsigned long long)s.bytes_used, s.capacity,
                  s.sealed ? " sealed" : "", s.path.c_str());
  }
  std::printf("%-9s %12s %12s %12s %12llu %9s %14llu %8llu\n", "total", "", "", "", (unsigned long long)total_records, "",
              (unsigned long long)total_bytes, (unsigned long long)total_repaired);
  return kExitOk;
}

int run_delete(const Context& ctx, const std::string& name) {
  if (auto ok = check_name(name, "topic"); !ok) return fail(ok.error());
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  if (auto ok = bus->delete_topic(name); !ok) return fail(ok.error());
  return kExitOk;
}

}  // namespace

void add_topic_commands(CLI::App& app, Context& ctx) {
  app.add_subcommand("init", "create an empty bus in --dir (nothing to do if one is there)")->callback([&ctx] {
    ctx.exit_code = run_init(ctx);
  });

  CLI::App* topic = app.add_subcommand("topic", "create, list, describe and delete topics");
  topic->require_subcommand(1);

  auto create = std::make_shared<CreateArgs>();
  CLI::App* c = topic->add_subcommand("create", "create a topic");
  c->add_option("name", create->name, "topic name: 1-200 of A-Z a-z 0-9 . _ -")->type_name("NAME")->required();
  c->add_option("--partitions,-p", create->partitions, "number of partitions (1-4096)")->type_name("N")->required();
  c->add_option("--segment-bytes", create->segment_bytes, "segment size, e.g. 64MiB (default 64MiB)")
      ->type_name("BYTES");
  c->add_option("--retention-bytes", create->retention_bytes, "per-partition size limit, e.g. 1GiB (default unlimited)")
      ->type_name("BYTES");
  c->add_option("--retention-ms", create->retention_ms, "record age limit in ms (default unlimited)")->type_name("MS");
  c->add_option("--retention-mode", create->retention_mode,
                "delete (old segments go) or backpressure (producers wait for the slowest group)")
      ->type_name("MODE");
  c->add_option("--reset", create->reset, "where a group without a valid offset starts: earliest|latest|fail")
      ->type_name("POLICY");
  c->callback([&ctx, create] { ctx.exit_code = run_create(ctx, *create); });

  topic->add_subcommand("list", "list the topics of the bus")->callback([&ctx] { ctx.exit_code = run_list(ctx); });

  auto describe = std::make_shared<DescribeArgs>();
  CLI::App* d = topic->add_subcommand(
      "describe", "partitions, offsets, last stable offset (lso), segments, bytes and repaired claims; under a "
                  "partition whose lso is below its end, a held-by line: the transaction holding it (name, pid, "
                  "epoch, state, how long, alive or dead)");
  d->add_option("name", describe->name, "topic name")->type_name("NAME")->required();
  d->add_flag("--segments", describe->segments, "also list every segment file");
  d->add_option("--format", describe->format, "text (default) or json (one object per partition and line)")
      ->type_name("FORMAT");
  d->callback([&ctx, describe] { ctx.exit_code = run_describe(ctx, *describe); });

  auto delete_name = std::make_shared<std::string>();
  CLI::App* del = topic->add_subcommand("delete", "delete a topic, its segments and its group offsets");
  del->add_option("name", *delete_name, "topic name")->type_name("NAME")->required();
  del->callback([&ctx, delete_name] { ctx.exit_code = run_delete(ctx, *delete_name); });
}

}  // namespace sluice::cli
