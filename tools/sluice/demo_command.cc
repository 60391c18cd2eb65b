// `sluice demo`: the partitioned log end to end with real processes.
// Several producer processes write keyed records to a 4-partition topic,
// two consumer groups (one process each) read everything and check per-key
// order, one producer is SIGKILLed while it holds an uncommitted zero-copy
// claim (its partition must be repaired and go on), then one group is
// rewound to the beginning and a new process replays the log. Every wait is
// bounded by one deadline, so the demo ends in under 20 seconds whatever
// happens.
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "demo_processes.h"
#include "demo_protocol.h"

namespace sluice::cli {

namespace {

using namespace demo;
using SteadyClock = std::chrono::steady_clock;

struct DemoArgs {
  uint32_t producers = 3;      // besides the one that is killed
  uint64_t records = 100'000;  // per producer
  uint64_t rate = 50'000;      // records/s per producer; 0: unpaced
  bool keep = false;
};

constexpr std::string_view kGroups[] = {"demo-audit", "demo-billing"};

// Collects pass/fail lines for the summary.
struct Checks {
  int failed = 0;
  void expect(bool ok, const std::string& what) {
    if (!ok) {
      ++failed;
      std::printf("  CHECK FAILED: %s\n", what.c_str());
    }
  }
};

std::string ms_left(SteadyClock::time_point deadline) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
  return std::to_string(std::max<int64_t>(ms, 100));
}

double per_second(uint64_t count, int64_t span_ns) {
  return span_ns > 0 ? count * 1e9 / static_cast<double>(span_ns) : 0;
}

struct GroupResult {
  std::string name;
  Report report{"none"};
  bool ok = false;
};

// Starts a consumer process for `group` and waits until it is reading.
std::optional<WorkerProcess> start_consumer(const std::string& dir, std::string_view group, const std::string& label,
                                            SteadyClock::time_point deadline) {
  auto w = WorkerProcess::spawn(label, {"--dir", dir, "demo-worker", "consumer", "--group", std::string(group),
                                        "--timeout-ms", ms_left(deadline)});
  if (!w) {
    fail(w.error());
    return std::nullopt;
  }
  std::string line;
  if (!w->wait_line("ready", deadline, &line)) {
    fail("demo: " + label + " did not start");
    return std::nullopt;
  }
  return std::move(*w);
}

GroupResult finish_consumer(WorkerProcess& w, SteadyClock::time_point deadline) {
  GroupResult g;
  g.name = w.name();
  const bool exited = w.wait_exit(deadline);
  const std::string line = w.last_line("result");
  if (!line.empty()) g.report = Report::parse(line);
  g.ok = exited && w.exit_code() == 0 && !line.empty();
  return g;
}

int run_demo_in(const std::string& dir, const DemoArgs& a) {
  const auto started = SteadyClock::now();
  const auto deadline = started + std::chrono::seconds(18);
  Context ctx;
  ctx.dir = dir;
  auto bus = open_bus(ctx, /*create=*/true);
  if (!bus) return fail(bus.error());
  if (auto names = bus->list_topics(); names && std::find(names->begin(), names->end(), kTopic) != names->end()) {
    if (auto ok = bus->delete_topic(kTopic); !ok) return fail(ok.error());
  }
  TopicOptions topic;
  topic.partitions = kPartitions;
  topic.segment_bytes = 1u << 20;  // small, so the run rolls segments
  if (auto ok = bus->create_topic(kTopic, topic); !ok) return fail(ok.error());
  std::printf("sluice demo: bus %s, topic %s with %u partitions\n", dir.c_str(), std::string(kTopic).c_str(),
              kPartitions);

  // 1. Two consumer groups, one process each, reading from the start.
  std::vector<WorkerProcess> consumers;
  for (std::string_view g : kGroups) {
    auto w = start_consumer(dir, g, "group " + std::string(g), deadline);
    if (!w) return kExitError;
    consumers.push_back(std::move(*w));
  }
  std::printf("  started consumer groups %s and %s (pids %d, %d)\n", std::string(kGroups[0]).c_str(),
              std::string(kGroups[1]).c_str(), consumers[0].pid(), consumers[1].pid());

  // 2. Producers, plus one that will be killed holding a claim. It sends a
  // quarter of a producer's records first, so it dies mid-stream.
  std::vector<WorkerProcess> producers;
  const uint32_t victim_id = a.producers;
  for (uint32_t id = 0; id <= a.producers; ++id) {
    const bool victim = id == victim_id;
    auto w =
        WorkerProcess::spawn(victim ? "victim" : "producer " + std::to_string(id),
                             {"--dir", dir, "demo-worker", victim ? "victim" : "producer", "--id", std::to_string(id),
                              "--records", std::to_string(victim ? std::max<uint64_t>(a.records / 4, 1) : a.records),
                              "--rate", std::to_string(a.rate), "--timeout-ms", ms_left(deadline)});
    if (!w) return fail(w.error());
    producers.push_back(std::move(*w));
  }
  std::printf("  started %u producer processes writing keyed records (account-0..%u)\n", a.producers + 1,
              kAccounts - 1);

  // 3. SIGKILL the victim while its zero-copy claim is uncommitted.
  WorkerProcess& victim = producers.back();
  std::string claimed_line;
  if (!victim.wait_line("claimed", deadline, &claimed_line)) return fail("demo: the victim producer never claimed");
  const Report claimed = Report::parse(claimed_line);
  victim.kill_now(SIGKILL);
  std::printf("  producer %u SIGKILLed holding an uncommitted claim at partition %lld offset %lld\n", victim_id,
              (long long)claimed.num("partition"), (long long)claimed.num("offset"));

  // 4. The others finish; then an end marker closes every partition.
  uint64_t produced = static_cast<uint64_t>(claimed.num("sent"));
  int64_t first_send = claimed.num("start_ns"), last_send = claimed.num("end_ns");
  Checks checks;
  for (size_t i = 0; i + 1 < producers.size(); ++i) {
    WorkerProcess& p = producers[i];
    const bool ok = p.wait_exit(deadline) && p.exit_code() == 0;
    const Report r = Report::parse(p.last_line("result"));
    checks.expect(ok && r.tag() == "result", p.name() + " finished");
    produced += static_cast<uint64_t>(r.num("sent"));
    first_send = std::min(first_send, r.num("start_ns", first_send));
    last_send = std::max(last_send, r.num("end_ns", last_send));
  }
  auto closer = bus->create_producer(kTopic);
  if (!closer) return fail(closer.error());
  for (uint32_t p = 0; p < kPartitions; ++p) {
    if (!closer->send(Message{kEndKey, "end"}, p).ok()) return fail(closer->last_error());
  }
  std::printf("  producers done: %llu records; end markers appended\n", (unsigned long long)produced);

  // 5. Both groups read everything, in per-key order.
  std::vector<GroupResult> groups;
  for (WorkerProcess& c : consumers) groups.push_back(finish_consumer(c, deadline));

  // 6. Replay: rewind one group to the beginning; a new process re-reads.
  if (auto ok = bus->seek_group(kGroups[0], kTopic, SeekTarget::beginning()); !ok) return fail(ok.error());
  std::printf("  group %s rewound to the beginning; replaying\n", std::string(kGroups[0]).c_str());
  auto replayer = start_consumer(dir, kGroups[0], "replay of " + std::string(kGroups[0]), deadline);
  if (!replayer) return kExitError;
  GroupResult replay = finish_consumer(*replayer, deadline);

  // 7. What the bus itself says.
  auto desc = bus->describe_topic(kTopic);
  if (!desc) return fail(desc.error());
  uint64_t repaired = 0;
  for (const PartitionInfo& p : desc->partitions) repaired += p.repaired_claims;
  const PartitionInfo& vp = desc->partitions.at(static_cast<size_t>(claimed.num("partition")) % kPartitions);
  auto verified = bus->verify(kTopic);
  if (!verified) return fail(verified.error());

  std::printf("\nsummary\n");
  std::printf("  producers            %u processes (1 SIGKILLed mid-write), %llu records, %.0f msgs/s %s\n",
              a.producers + 1, (unsigned long long)produced, per_second(produced, last_send - first_send),
              a.rate > 0 ? "(paced by --rate)" : "(unpaced)");
  groups.push_back(std::move(replay));
  groups.back().name = "replay " + std::string(kGroups[0]);
  for (size_t i = 0; i < groups.size(); ++i) {
    const GroupResult& g = groups[i];
    const Report& r = g.report;
    const bool is_replay = i + 1 == groups.size();
    const uint64_t got = static_cast<uint64_t>(r.num("records"));
    const bool order_ok = r.num("order_errors", 1) == 0 && r.num("key_errors", 1) == 0;
    std::printf("  %-20s %llu/%llu records, per-key order %s, %.0f msgs/s", g.name.c_str(), (unsigned long long)got,
                (unsigned long long)produced, order_ok ? "OK" : "BROKEN",
                per_second(got, r.num("last_ns") - r.num("first_ns")));
    // A replay reads old records: their age is not a delivery latency.
    if (!is_replay)
      std::printf(", end-to-end latency p50 %s p99 %s", format_ns(r.num("p50_ns")).c_str(),
                  format_ns(r.num("p99_ns")).c_str());
    std::printf("\n");
    checks.expect(g.ok, g.name + " process succeeded");
    checks.expect(got == produced, g.name + " consumed every record exactly once");
    checks.expect(order_ok, g.name + " saw every key in order");
  }
  std::printf(
      "  claims repaired      %llu: partition %u stalled at the killed claim (offset %lld), went on to offset %llu\n",
      (unsigned long long)repaired, vp.partition, (long long)claimed.num("offset"), (unsigned long long)vp.end_offset);
  std::printf("  verify               %s: %llu segments, %llu records, %llu aborted frame(s)\n",
              verified->ok() ? "ok" : "ISSUES", (unsigned long long)verified->segments,
              (unsigned long long)verified->records, (unsigned long long)verified->aborted_frames);
  checks.expect(repaired >= 1, "the killed producer's claim was repaired");
  checks.expect(vp.end_offset > static_cast<uint64_t>(claimed.num("offset")) + 1, "the claimed partition went on");
  checks.expect(verified->ok(), "verify found no issue");
  checks.expect(verified->records == produced + kPartitions, "verify counted every record");
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - started).count();
  if (checks.failed > 0) return fail("demo: " + std::to_string(checks.failed) + " check(s) failed");
  std::printf("all checks passed in %.1f s\n", seconds);
  return kExitOk;
}

int run_demo(const Context& ctx, const DemoArgs& a) {
  if (a.producers < 1 || a.producers + 1 > kMaxProducers)
    return fail("--producers: 1-" + std::to_string(kMaxProducers - 1), kExitUsage);
  if (a.records < 1) return fail("--records: at least 1", kExitUsage);
  std::string dir = ctx.dir;
  const bool fresh = dir.empty();
  if (fresh) {
    // tmpfs when there is one: the bus is shared memory then.
    for (const char* root : {"/dev/shm", "/tmp"}) {
      std::string tmpl = std::string(root) + "/sluice-demo-XXXXXX";
      if (::mkdtemp(tmpl.data()) != nullptr) {
        dir = tmpl;
        break;
      }
    }
    if (dir.empty()) return fail("demo: cannot create a directory under /dev/shm or /tmp");
  }
  const int code = run_demo_in(dir, a);
  if (fresh && !a.keep) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  } else if (fresh) {
    std::printf("bus kept at %s\n", dir.c_str());
  }
  return code;
}

}  // namespace

void add_demo_command(CLI::App& app, Context& ctx) {
  auto a = std::make_shared<DemoArgs>();
  CLI::App* d = app.add_subcommand(
      "demo", "producers, two consumer groups, a SIGKILLed writer and a replay, as real processes (--dir optional)");
  d->add_option("--producers", a->producers, "producer processes besides the one killed (default 3)")->type_name("N");
  d->add_option("--records", a->records, "records per producer (default 100000)")->type_name("N");
  d->add_option("--rate", a->rate, "records per second per producer, 0 for unpaced (default 50000)")->type_name("N");
  d->add_flag("--keep", a->keep, "keep the temporary bus directory");
  d->footer("Without --dir (or SLUICE_DIR) the bus is a fresh directory under /dev/shm, removed at the end.");
  d->callback([&ctx, a] { ctx.exit_code = run_demo(ctx, *a); });
}

}  // namespace sluice::cli
