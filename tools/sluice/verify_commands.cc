// `sluice verify [TOPIC]` (checksums, frame chains, index slots) and
// `sluice dump TOPIC --partition P` (records with offsets and positions).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "record_format.h"
#include "text_parse.h"

namespace sluice::cli {

namespace {

struct DumpArgs {
  std::string topic, partition, from, max;
  std::string idle_exit_ms = "100";
};

int run_verify(const Context& ctx, const std::string& topic) {
  if (!topic.empty()) {
    if (auto ok = check_name(topic, "topic"); !ok) return fail(ok.error());
  }
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error(), bus.error().code == Errc::kCorruption ? kExitCorrupt : kExitError);
  // Opening a bus no other process has open runs recovery, which may cut a
  // torn tail before the walk below could see it. Say what it did, and
  // count cut frames as damage found: they were committed records.
  const RecoveryReport& rec = bus->recovery();
  for (const std::string& note : rec.notes) std::printf("recovery: %s\n", note.c_str());
  auto report = bus->verify(topic);
  if (!report) return fail(report.error(), report.error().code == Errc::kCorruption ? kExitCorrupt : kExitError);
  const std::string prepared =
      report->prepared_frames > 0 ? ", " + std::to_string(report->prepared_frames) + " in open transactions" : "";
  std::printf("verified %s: %llu segments, %llu frames (%llu aborted%s), %llu records, %llu bytes\n",
              topic.empty() ? "all topics" : ("topic " + topic).c_str(), (unsigned long long)report->segments,
              (unsigned long long)report->frames, (unsigned long long)report->aborted_frames, prepared.c_str(),
              (unsigned long long)report->records, (unsigned long long)report->bytes);
  if (report->open_claims > 0)
    std::printf("%llu open claims (writers between claim and publish, or dead ones' that the next reader repairs)\n",
                (unsigned long long)report->open_claims);
  if (report->segments_partly_checked > 0)
    std::printf("%llu segments checked up to a claim a live writer is filling; run verify again for the rest\n",
                (unsigned long long)report->segments_partly_checked);
  for (const VerifyIssue& i : report->issues)
    std::printf("issue: %s/%u offset %llu position %llu in %s: %s\n", i.topic.c_str(), i.partition,
                (unsigned long long)i.offset, (unsigned long long)i.position, i.segment.c_str(), i.what.c_str());
  const uint64_t problems = report->issues.size() + rec.torn_frames;
  if (problems == 0) {
    std::printf("ok\n");
    return kExitOk;
  }
  return fail("verify: " + std::to_string(report->issues.size()) + " issue(s), " + std::to_string(rec.torn_frames) +
                  " torn frame(s) cut by recovery",
              kExitCorrupt);
}

int run_dump(const Context& ctx, const DumpArgs& a) {
  if (auto ok = check_name(a.topic, "topic"); !ok) return fail(ok.error());
  auto partition = parse_u64(a.partition, "--partition");
  if (!partition) return fail(partition.error(), kExitUsage);
  if (*partition > UINT32_MAX) return fail("--partition: out of range", kExitUsage);
  uint64_t from = 0, max = UINT64_MAX;
  bool seek = false;
  if (!a.from.empty()) {
    auto v = parse_u64(a.from, "--from");
    if (!v) return fail(v.error(), kExitUsage);
    from = *v;
    seek = true;
  }
  if (!a.max.empty()) {
    auto v = parse_u64(a.max, "--max");
    if (!v) return fail(v.error(), kExitUsage);
    max = *v;
  }
  auto idle_ms = parse_u64(a.idle_exit_ms, "--idle-exit-ms");
  if (!idle_ms) return fail(idle_ms.error(), kExitUsage);

  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  std::string out;
  uint64_t corrupt = 0;
  ConsumerOptions options;
  options.partitions.push_back(static_cast<uint32_t>(*partition));
  options.skip_corrupt = true;  // a dump shows what it can read around damage
  options.on_event = [&](const ConsumerEvent& e) {
    if (e.kind == ConsumerEvent::Kind::kCorruption) ++corrupt;
    out +=
        "!! offsets " + std::to_string(e.from_offset) + " -> " + std::to_string(e.to_offset) + ": " + e.message + "\n";
  };
  // No group: a standalone reader that commits nothing.
  auto consumer = bus->create_consumer(a.topic, "", options);
  if (!consumer) return fail(consumer.error());
  if (seek) consumer->seek(static_cast<uint32_t>(*partition), from);

  append_dump_title(out);
  // One record per poll so that a corruption note lands between the records
  // it separates.
  RecordView record;
  uint64_t shown = 0;
  const int64_t idle_ns = static_cast<int64_t>(std::min<uint64_t>(*idle_ms, 86'400'000)) * 1'000'000;
  while (shown < max) {
    auto n = consumer->poll(std::span(&record, 1), idle_ns);
    if (!n) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      return fail(n.error(), n.error().code == Errc::kCorruption ? kExitCorrupt : kExitError);
    }
    if (*n == 0) break;
    append_dump_line(out, record);
    ++shown;
    if (out.size() > (64u << 10)) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  if (corrupt > 0) return fail("dump: " + std::to_string(corrupt) + " corrupt frame(s) skipped", kExitCorrupt);
  return kExitOk;
}

}  // namespace

void add_verify_commands(CLI::App& app, Context& ctx) {
  auto topic = std::make_shared<std::string>();
  CLI::App* v =
      app.add_subcommand("verify", "check every record's checksum, frame chain and index slot; exit 3 on corruption");
  v->add_option("topic", *topic, "only this topic (default: all)")->type_name("TOPIC");
  v->callback([&ctx, topic] { ctx.exit_code = run_verify(ctx, *topic); });

  auto a = std::make_shared<DumpArgs>();
  CLI::App* d = app.add_subcommand("dump", "list a partition's records: offset, frame position, timestamp, sizes, key");
  d->add_option("topic", a->topic, "topic name")->type_name("TOPIC")->required();
  d->add_option("--partition,-p", a->partition, "partition to dump")->type_name("P")->required();
  d->add_option("--from", a->from, "first offset (default: the log start)")->type_name("OFFSET");
  d->add_option("--max,-n", a->max, "at most N records")->type_name("N");
  d->add_option("--idle-exit-ms", a->idle_exit_ms, "stop after this long with no record (default 100)")
      ->type_name("MS");
  d->callback([&ctx, a] { ctx.exit_code = run_dump(ctx, *a); });
}

}  // namespace sluice::cli
