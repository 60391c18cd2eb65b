// `sluice demo`: the partitioned log end to end with real processes.
// Several producer processes write keyed records to a 4-partition topic,
// two consumer groups (one process each) read everything and check per-key
// order, one producer is SIGKILLed while it holds an uncommitted zero-copy
// claim (its partition must be repaired and go on), then one group is
// rewound to the beginning and a new process replays the log. Then a work
// queue: jobs handled by competing worker processes, some failing
// transiently (retried with backoff) or for good (dead-lettered), one worker
// SIGKILLed holding leases (its jobs go to the others), every job accounted
// for as acked or dead-lettered. Last, an exactly-once pipeline
// (demo_pipeline.h): transformer processes in transactions from one topic to
// another, one SIGKILLed mid-transaction and restarted, the output checked
// for duplicates, gaps and per-key order. Every wait is bounded by a
// deadline, so each act ends within about 20 seconds whatever happens.
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chaos.h"
#include "commands.h"
#include "dead_letters.h"
#include "demo_checks.h"
#include "demo_pipeline.h"
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
  uint64_t jobs = 2000;        // the work-queue act's jobs
  uint32_t queue_workers = 4;  // its worker processes, one of them SIGKILLed
  PipelineArgs pipeline;       // the exactly-once act; records_per_partition 0: skipped
  bool keep = false;
};

constexpr std::string_view kGroups[] = {"demo-audit", "demo-billing"};

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

// ---- the work-queue act ------------------------------------------------------

// What happened to the jobs, from the workers' topic and the dead letters.
struct JobLedger {
  std::vector<uint8_t> done, dead;  // per job id: times reported done / dead-lettered (capped at 255)
  uint64_t unknown = 0;             // records or letters naming no job of this run
};

// Creates the jobs queue (and its topic of completed jobs) afresh.
Status fresh_queue(Bus& bus) {
  if (auto names = bus.list_queues(); names) {
    for (std::string_view q : {kJobsQueue, kJobsDeadLetters})
      if (std::find(names->begin(), names->end(), q) != names->end())
        if (auto ok = bus.delete_queue(q); !ok) return ok;
  }
  if (auto names = bus.list_topics(); names && std::find(names->begin(), names->end(), kJobsDone) != names->end())
    if (auto ok = bus.delete_topic(kJobsDone); !ok) return ok;
  TopicOptions done;
  done.partitions = 1;
  done.segment_bytes = 1u << 20;
  if (auto ok = bus.create_topic(kJobsDone, done); !ok) return ok;
  QueueOptions q;
  q.lease_ns = 10'000'000'000;  // long: what brings a killed worker's jobs back is its death, not the lease
  q.retry.max_receives = 3;
  q.retry.base_delay_ns = 20'000'000;
  q.retry.multiplier = 2;
  q.retry.jitter_ns = 10'000'000;
  q.segment_bytes = 1u << 20;
  return bus.create_queue(kJobsQueue, q);
}

// Reads every completed-job report from the start of the topic.
Status read_done(Bus& bus, JobLedger& ledger) {
  auto consumer = bus.create_consumer(kJobsDone, "");  // standalone: commits nothing
  if (!consumer) return std::unexpected(consumer.error());
  std::vector<RecordView> batch(512);
  for (;;) {
    auto n = consumer->poll(batch, 50'000'000);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) return {};
    for (size_t i = 0; i < *n; ++i) {
      uint64_t id = 0;
      const std::string_view k = batch[i].key;
      auto [p, ec] = std::from_chars(k.data(), k.data() + k.size(), id);
      if (ec != std::errc{} || p != k.data() + k.size() || id >= ledger.done.size())
        ++ledger.unknown;
      else
        ledger.done[id] = static_cast<uint8_t>(std::min(ledger.done[id] + 1, 255));
    }
  }
}

int run_queue_act(Bus& bus, const std::string& dir, const DemoArgs& a, SteadyClock::time_point deadline,
                  Checks& checks) {
  const auto act_started = SteadyClock::now();
  if (auto ok = fresh_queue(bus); !ok) return fail(ok.error());
  std::printf("\nwork queue %s: %llu jobs, %u worker processes, max 3 receives, retry after 20 ms x 2^n\n",
              std::string(kJobsQueue).c_str(), (unsigned long long)a.jobs, a.queue_workers);

  // 1. The worker to be killed starts alone, so that it surely gets jobs:
  // it handles a few, then leases more and holds them.
  std::vector<WorkerProcess> workers;
  const uint32_t victim_id = a.queue_workers - 1;
  const auto spawn = [&](uint32_t id, bool victim) -> bool {
    std::vector<std::string> args{"--dir", dir, "demo-worker", "queue-worker", "--id", std::to_string(id),
                                  "--records", std::to_string(a.jobs), "--timeout-ms", ms_left(deadline)};
    if (victim)
      args.insert(args.end(), {"--hold-after", std::to_string(std::max<uint64_t>(a.jobs / (8 * a.queue_workers), 1))});
    auto w = WorkerProcess::spawn("queue worker " + std::to_string(id), args);
    if (!w) return fail(w.error()), false;
    workers.push_back(std::move(*w));
    std::string line;
    if (!workers.back().wait_line("ready", deadline, &line))
      return fail("demo: queue worker " + std::to_string(id) + " did not start"), false;
    return true;
  };
  if (!spawn(victim_id, true)) return kExitError;

  // 2. The jobs.
  {
    auto publisher = bus.create_queue_publisher(kJobsQueue);
    if (!publisher) return fail(publisher.error());
    for (uint64_t id = 0; id < a.jobs; ++id) {
      const std::string value = "job-" + std::to_string(id);
      QueueMessage m;
      m.value = value;
      const PublishResult r = publisher->publish(m);
      if (!r.ok())
        return fail("demo: publishing job " + std::to_string(id) + ": " + publisher->last_error().to_string());
    }
  }
  std::string holding_line;
  if (!workers[0].wait_line("holding", deadline, &holding_line))
    return fail("demo: the queue worker to kill never held leases");
  const Report holding = Report::parse(holding_line);
  const uint64_t held = static_cast<uint64_t>(holding.num("leases"));

  // 3. The others join, and the first one is SIGKILLed while they work.
  for (uint32_t id = 0; id < victim_id; ++id)
    if (!spawn(id, false)) return kExitError;
  WorkerProcess& victim = workers.front();
  std::printf("  queue worker %u handled %lld jobs alone, then leased %llu more; workers 0-%u started\n", victim_id,
              (long long)holding.num("handled"), (unsigned long long)held, victim_id - 1);
  if (held > 0) {
    victim.kill_now(SIGKILL);
    std::printf("  queue worker %u SIGKILLed holding %llu leases (offsets %s)\n", victim_id, (unsigned long long)held,
                holding.text("offsets").c_str());
  } else {
    std::printf("  queue worker %u found nothing left to hold: not killed\n", victim_id);
  }

  // 4. The survivors stop once the queue is empty: every job settled.
  uint64_t survivors_ok = 0, lease_lost = 0;
  for (size_t i = 1; i < workers.size(); ++i) {
    WorkerProcess& w = workers[i];
    const bool exited = w.wait_exit(deadline);
    const Report r = Report::parse(w.last_line("result"));
    if (exited && w.exit_code() == 0 && r.tag() == "result") ++survivors_ok;
    lease_lost += static_cast<uint64_t>(r.num("lease_lost"));
  }
  if (held == 0) (void)victim.wait_exit(deadline);
  auto stats = bus.queue_stats(kJobsQueue);
  if (!stats) return fail(stats.error());
  const QueueLevelStats t = stats->total();

  // 5. Where each job ended: the workers' reports and the dead letters.
  JobLedger ledger;
  ledger.done.assign(a.jobs, 0);
  ledger.dead.assign(a.jobs, 0);
  if (auto ok = read_done(bus, ledger); !ok) return fail(ok.error());
  std::map<std::string, uint64_t> by_type;
  std::string example;  // one dead letter as JSON, preferably one that used up its receives
  uint64_t letters = 0;
  if (auto names = bus.list_queues();
      names && std::find(names->begin(), names->end(), kJobsDeadLetters) != names->end()) {
    auto scan = DeadLetterScan::take(bus, kJobsDeadLetters);
    if (!scan) return fail(scan.error());
    for (Delivery& d : scan->letters()) {
      ++letters;
      const std::string type(dead_letter_field(d.headers(), "error_type").value_or("?"));
      ++by_type[type];
      const int64_t id = parse_job(d.value());
      if (id < 0 || static_cast<uint64_t>(id) >= a.jobs)
        ++ledger.unknown;
      else
        ledger.dead[static_cast<size_t>(id)] = static_cast<uint8_t>(std::min(ledger.dead[id] + 1, 255));
      if (example.empty() ||
          (type == "MaxReceivesExceeded" && example.find("MaxReceivesExceeded") == std::string::npos)) {
        example.clear();
        append_dead_letter_json(example, kJobsDeadLetters, d);
      }
    }
  }
  uint64_t done = 0, dead = 0, both = 0, neither = 0, expected_dead = 0;
  for (uint64_t id = 0; id < a.jobs; ++id) {
    done += ledger.done[id] > 0;
    dead += ledger.dead[id] > 0;
    both += ledger.done[id] > 0 && ledger.dead[id] > 0;
    neither += ledger.done[id] == 0 && ledger.dead[id] == 0;
    expected_dead += job_fails_permanently(id) || job_fails_always(id);
  }
  const double act_s = std::chrono::duration<double>(SteadyClock::now() - act_started).count();

  std::printf("  %-20s %llu published, %llu acked, %llu dead-lettered, depth %llu (%.1f s)\n", "jobs",
              (unsigned long long)t.published, (unsigned long long)t.acked, (unsigned long long)t.dead_lettered,
              (unsigned long long)t.depth, act_s);
  std::printf("  %-20s %llu nacked (transient failures, retried after their backoff), %llu receives in all\n",
              "retries", (unsigned long long)t.nacked, (unsigned long long)t.received);
  std::printf(
      "  %-20s %llu after the SIGKILL (owner_deaths; %llu leases were held, for 10 s: the death brought them back), "
      "%llu redelivered in all\n",
      "redeliveries", (unsigned long long)t.owner_deaths, (unsigned long long)held, (unsigned long long)t.redelivered);
  std::string types;
  for (const auto& [type, n] : by_type) types += (types.empty() ? "" : ", ") + std::to_string(n) + " " + type;
  std::printf("  %-20s %llu in %s%s%s\n", "dead letters", (unsigned long long)letters,
              std::string(kJobsDeadLetters).c_str(), types.empty() ? "" : ": ", types.c_str());
  if (!example.empty()) std::printf("  %-20s %s", "one dead letter", example.c_str());
  std::printf("  %-20s %s: %llu completed + %llu dead-lettered = %llu of %llu jobs, %llu both, %llu neither\n",
              "every job", neither == 0 && both == 0 ? "acked or dead-lettered, OK" : "NOT ACCOUNTED FOR",
              (unsigned long long)done, (unsigned long long)dead, (unsigned long long)(done + dead),
              (unsigned long long)a.jobs, (unsigned long long)both, (unsigned long long)neither);

  checks.expect(survivors_ok + 1 == workers.size(), "every surviving queue worker finished");
  checks.expect(t.published == a.jobs, "the queue holds every job published");
  checks.expect(t.depth == 0, "the queue was drained (depth 0)");
  checks.expect(t.acked + t.dead_lettered == a.jobs, "acked + dead-lettered = jobs (queue counters)");
  checks.expect(neither == 0, "every job was completed or dead-lettered");
  checks.expect(both == 0, "no job was both completed and dead-lettered");
  checks.expect(ledger.unknown == 0, "no report or dead letter names an unknown job");
  checks.expect(dead == expected_dead && letters == expected_dead,
                "the dead letters are exactly the failing jobs (" + std::to_string(expected_dead) + ")");
  checks.expect(done == t.acked || lease_lost > 0, "each completed job was acked once");
  checks.expect(held == 0 || t.owner_deaths == held, "the killed worker's leases came back through its death");
  return kExitOk;
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
  if (a.jobs > 0) {
    // The queue act gets its own few seconds, whatever the log act left.
    const auto queue_deadline = std::max(deadline, SteadyClock::now() + std::chrono::seconds(10));
    if (int code = run_queue_act(*bus, dir, a, queue_deadline, checks); code != kExitOk) return code;
  }
  if (a.pipeline.records_per_partition > 0) {
    const auto pipeline_deadline = std::max(deadline, SteadyClock::now() + std::chrono::seconds(20));
    if (int code = run_pipeline_act(*bus, dir, a.pipeline, pipeline_deadline, checks); code != kExitOk) return code;
  }
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - started).count();
  if (checks.failed > 0) return fail("demo: " + std::to_string(checks.failed) + " check(s) failed");
  std::printf("all checks passed in %.1f s\n", seconds);
  return kExitOk;
}

int run_demo(const Context& ctx, const DemoArgs& a) {
  if (a.producers < 1 || a.producers + 1 > kMaxProducers)
    return fail("--producers: 1-" + std::to_string(kMaxProducers - 1), kExitUsage);
  if (a.records < 1) return fail("--records: at least 1", kExitUsage);
  if (a.jobs > 1'000'000) return fail("--jobs: at most 1000000", kExitUsage);
  if (a.queue_workers < 2 || a.queue_workers > kMaxProducers)
    return fail("--queue-workers: 2-" + std::to_string(kMaxProducers), kExitUsage);
  if (a.pipeline.records_per_partition > 1'000'000) return fail("--pipeline-records: at most 1000000", kExitUsage);
  if (a.pipeline.transformers < 2 || a.pipeline.transformers > chaos::kMaxTransformers)
    return fail("--transformers: 2-" + std::to_string(chaos::kMaxTransformers), kExitUsage);
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
      "demo",
      "producers, consumer groups, a SIGKILLed writer, a replay, then a work queue with retries, dead letters and a "
      "SIGKILLed worker, then an exactly-once pipeline with a transformer SIGKILLed mid-transaction, as real "
      "processes (--dir optional)");
  d->add_option("--producers", a->producers, "producer processes besides the one killed (default 3)")->type_name("N");
  d->add_option("--records", a->records, "records per producer (default 100000)")->type_name("N");
  d->add_option("--rate", a->rate, "records per second per producer, 0 for unpaced (default 50000)")->type_name("N");
  d->add_option("--jobs", a->jobs, "jobs of the work-queue act, 0 to skip it (default 2000)")->type_name("N");
  d->add_option("--queue-workers", a->queue_workers, "its worker processes, one SIGKILLed (default 4)")
      ->type_name("N");
  d->add_option("--pipeline-records", a->pipeline.records_per_partition,
                "input records per partition (4) of the exactly-once act, 0 to skip it (default 500)")
      ->type_name("N");
  d->add_option("--transformers", a->pipeline.transformers,
                "its transformer processes, one SIGKILLed mid-transaction (2-4, default 2)")
      ->type_name("N");
  d->add_flag("--keep", a->keep, "keep the temporary bus directory");
  d->footer("Without --dir (or SLUICE_DIR) the bus is a fresh directory under /dev/shm, removed at the end.");
  d->callback([&ctx, a] { ctx.exit_code = run_demo(ctx, *a); });
}

}  // namespace sluice::cli
