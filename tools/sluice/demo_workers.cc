// The demo's worker processes (`sluice --dir D demo-worker ROLE ...`, a
// hidden subcommand the orchestrator in demo_command.cc starts):
//   producer  sends keyed records at a steady rate, then reports;
//   victim    sends records, then takes a zero-copy claim it never commits
//             and reports it: the orchestrator SIGKILLs it there;
//   consumer  reads as a group until the end marker of every partition,
//             checking per-key order, and reports counts and latencies;
//   queue-worker  a competing worker of the jobs queue: fails some jobs
//             transiently or permanently (demo_protocol.h), reports each
//             job it completed on a topic before acking it, and stops once
//             --records jobs were published and all are settled. With --hold-after N it stops after N jobs
//             instead, leases a few more, reports them and waits to be
//             SIGKILLed holding them.
// Reports are one line on stdout (demo_protocol.h); errors one line on stderr.

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

#include "commands.h"
#include "demo_protocol.h"

namespace sluice::cli {

namespace {

using namespace demo;

struct WorkerArgs {
  std::string role;
  uint32_t id = 0;
  uint64_t records = 0;
  uint64_t rate = 0;  // records/s; 0: as fast as possible
  std::string group;
  int64_t timeout_ms = 15000;
  uint64_t hold_after = 0;  // queue-worker: jobs to handle before holding leases (0: never)
};

int64_t now_ns(const Bus& bus) { return bus.clock().now_ns(); }

void say(const Report& r) {
  const std::string line = r.line();
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

// Sends args.records records, keys round-robin over the accounts, each key
// with its own sequence 0, 1, 2 ... Paced in bursts so that a rate leaves
// the CPU to the consumers instead of burying them.
int produce(Bus& bus, Producer& producer, const WorkerArgs& a, std::array<uint64_t, kAccounts>& next_seq,
            int64_t* start_ns) {
  constexpr uint64_t kBurst = 32;
  const auto start = std::chrono::steady_clock::now();
  *start_ns = now_ns(bus);
  char key[32], value[96];
  for (uint64_t i = 0; i < a.records; ++i) {
    const uint32_t account = static_cast<uint32_t>((i * 7 + a.id) % kAccounts);
    const int key_len = std::snprintf(key, sizeof key, "account-%u", account);
    const int64_t ts = now_ns(bus);
    const size_t value_len = format_value(value, sizeof value, a.id, next_seq[account], ts);
    const SendResult r = producer.send(
        Message{std::string_view(key, static_cast<size_t>(key_len)), std::string_view(value, value_len), {}, ts});
    if (!r.ok()) return fail("demo producer " + std::to_string(a.id) + ": " + producer.last_error().to_string());
    ++next_seq[account];
    if (a.rate > 0 && (i + 1) % kBurst == 0) {
      const auto due = start + std::chrono::nanoseconds((i + 1) * 1'000'000'000ull / a.rate);
      if (due > std::chrono::steady_clock::now()) std::this_thread::sleep_until(due);
    }
  }
  return kExitOk;
}

int run_producer(Bus& bus, const WorkerArgs& a) {
  auto producer = bus.create_producer(kTopic);
  if (!producer) return fail(producer.error());
  std::array<uint64_t, kAccounts> next_seq{};
  int64_t start_ns = 0;
  if (int code = produce(bus, *producer, a, next_seq, &start_ns); code != kExitOk) return code;
  say(Report("result").set("sent", a.records).set("start_ns", start_ns).set("end_ns", now_ns(bus)));
  return kExitOk;
}

int run_victim(Bus& bus, const WorkerArgs& a) {
  auto producer = bus.create_producer(kTopic);
  if (!producer) return fail(producer.error());
  std::array<uint64_t, kAccounts> next_seq{};
  int64_t start_ns = 0;
  if (int code = produce(bus, *producer, a, next_seq, &start_ns); code != kExitOk) return code;
  // The next record of one key, claimed in place and half written: readers
  // of its partition wait here until the claim is found dead and aborted.
  const uint32_t account = static_cast<uint32_t>((a.records * 7 + a.id) % kAccounts);
  char key[32];
  const int key_len = std::snprintf(key, sizeof key, "account-%u", account);
  ClaimSpec spec;
  spec.key = std::string_view(key, static_cast<size_t>(key_len));
  spec.value_bytes = 64;
  Claim claim;
  if (SendStatus s = producer->try_claim(spec, claim); s != SendStatus::kOk)
    return fail("demo victim: try_claim failed: " + producer->last_error().to_string());
  std::memset(claim.value().data(), 'x', claim.value().size() / 2);
  say(Report("claimed")
          .set("partition", uint64_t{claim.partition()})
          .set("offset", claim.offset())
          .set("sent", a.records)
          .set("start_ns", start_ns)
          .set("end_ns", now_ns(bus)));
  // Wait to be killed; bounded, so an orchestrator that died cannot leave
  // this process behind for long. Exiting here would abort the claim cleanly,
  // which is not what the demo shows, hence the failure code.
  std::this_thread::sleep_for(std::chrono::milliseconds(a.timeout_ms));
  return fail("demo victim: was not killed");
}

int run_consumer(Bus& bus, const WorkerArgs& a) {
  ConsumerOptions options;
  options.wait = WaitStrategy::kBlock;
  auto consumer = bus.create_consumer(kTopic, a.group, options);
  if (!consumer) return fail(consumer.error());
  say(Report("ready"));

  // last_seq[producer][account]: the per-key order check. Each producer
  // numbers each key 0, 1, 2 ...; a record must carry the next number, so a
  // loss, a duplicate and a reordering all show up.
  std::vector<std::array<int64_t, kAccounts>> last_seq(kMaxProducers);
  for (auto& row : last_seq) row.fill(-1);
  std::array<int, kAccounts> partition_of;
  partition_of.fill(-1);
  uint64_t records = 0, order_errors = 0, key_errors = 0;
  uint32_t ended = 0;  // bit p: end marker of partition p seen
  std::vector<int64_t> latency;
  latency.reserve(1 << 18);
  int64_t first_ns = 0, last_ns = 0;
  std::vector<RecordView> batch(256);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(a.timeout_ms);
  while (ended != (1u << kPartitions) - 1) {
    if (std::chrono::steady_clock::now() >= deadline) return fail("demo consumer " + a.group + ": timed out");
    auto n = consumer->poll(batch, 100'000'000);
    if (!n) return fail("demo consumer " + a.group + ": " + n.error().to_string());
    const int64_t now = now_ns(bus);
    for (size_t i = 0; i < *n; ++i) {
      const RecordView& r = batch[i];
      if (r.key == kEndKey) {
        ended |= 1u << r.partition;
        continue;
      }
      DemoValue v;
      const int account = parse_account(r.key);
      if (account < 0 || !parse_value(r.value, &v) || v.producer >= kMaxProducers) {
        ++key_errors;
        continue;
      }
      if (partition_of[account] < 0) partition_of[account] = static_cast<int>(r.partition);
      if (partition_of[account] != static_cast<int>(r.partition)) ++key_errors;
      if (static_cast<int64_t>(v.seq) != last_seq[v.producer][account] + 1) ++order_errors;
      last_seq[v.producer][account] = static_cast<int64_t>(v.seq);
      latency.push_back(now - r.timestamp_ns);
      if (records++ == 0) first_ns = now;
      last_ns = now;
    }
  }
  if (auto ok = consumer->commit_sync(); !ok) return fail(ok.error());
  Report report("result");
  report.set("records", records)
      .set("order_errors", order_errors)
      .set("key_errors", key_errors)
      .set("first_ns", first_ns)
      .set("last_ns", last_ns)
      .set("claims_repaired", consumer->stats().claims_repaired)
      .set("p50_ns", quantile(latency, 0.50))
      .set("p99_ns", quantile(latency, 0.99));
  say(report);
  return order_errors == 0 && key_errors == 0 ? kExitOk : kExitError;
}

int run_queue_worker(Bus& bus, const WorkerArgs& a) {
  WorkerOptions options;
  options.wait = WaitStrategy::kBlock;
  auto worker = bus.create_worker(kJobsQueue, options);
  if (!worker) return fail(worker.error());
  auto done = bus.create_producer(kJobsDone);
  if (!done) return fail(done.error());
  const std::string me = "worker=" + std::to_string(a.id);
  uint64_t handled = 0;
  const Handler handler = [&](const Delivery& d) {
    const int64_t id = parse_job(d.value());
    if (id < 0) throw PermanentError("not a demo job: " + std::string(d.value().substr(0, 40)));
    if (job_fails_permanently(static_cast<uint64_t>(id)))
      throw PermanentError("job " + std::to_string(id) + ": the input cannot be parsed");
    if (job_fails_always(static_cast<uint64_t>(id)))
      throw TransientError("job " + std::to_string(id) + ": the downstream service timed out");
    if (job_fails_first_attempt(static_cast<uint64_t>(id)) && d.attempt() == 1)
      throw TransientError("job " + std::to_string(id) + ": the downstream service is busy");
    // Done: say so before the ack (a job reported twice is harmless, one
    // acked and never reported would fail the orchestrator's check).
    const std::string key = std::to_string(id);
    const std::string value = me + " attempt=" + std::to_string(d.attempt());
    if (!done->send(Message{key, value}).ok()) throw TransientError(done->last_error().to_string());
    ++handled;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(a.timeout_ms);
  auto next_check = std::chrono::steady_clock::now();
  bool empty = false;
  const auto stop = [&] {
    if (a.hold_after > 0 && handled >= a.hold_after) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return true;
    if (now < next_check) return false;
    next_check = now + std::chrono::milliseconds(20);  // queue_stats maps the state file: not per message
    // Empty once every job was published (the orchestrator publishes after
    // the workers are ready) and settled.
    auto s = bus.queue_stats(kJobsQueue);
    empty = s && s->total().published >= a.records && s->total().depth == 0;
    return empty;
  };
  say(Report("ready"));
  auto ran = worker->run(handler, stop);
  if (!ran) return fail("demo queue worker " + std::to_string(a.id) + ": " + ran.error().to_string());
  if (a.hold_after > 0 && handled >= a.hold_after) {
    // Lease a few jobs and keep them: the orchestrator SIGKILLs us now.
    std::array<Delivery, 16> held;
    auto n = worker->receive(held, 1'000'000'000);
    if (!n) return fail("demo queue worker " + std::to_string(a.id) + ": " + n.error().to_string());
    std::string offsets;
    for (size_t i = 0; i < *n; ++i) offsets += (i ? "," : "") + std::to_string(held[i].offset());
    say(Report("holding")
            .set("leases", uint64_t{*n})
            .set("handled", handled)
            .set("offsets", offsets.empty() ? "-" : offsets));
    if (*n > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(a.timeout_ms));
      return fail("demo queue worker " + std::to_string(a.id) + ": was not killed");
    }
  }
  if (!empty && std::chrono::steady_clock::now() >= deadline)
    return fail("demo queue worker " + std::to_string(a.id) + ": timed out");
  const WorkerStats& st = worker->stats();
  say(Report("result")
          .set("handled", handled)
          .set("received", st.received)
          .set("acked", st.acked)
          .set("nacked", st.nacked)
          .set("dead_lettered", st.dead_lettered)
          .set("lease_lost", st.lease_lost));
  return kExitOk;
}

int run_worker(const Context& ctx, const WorkerArgs& a) {
  if (a.id >= kMaxProducers)
    return fail("demo-worker: --id must be below " + std::to_string(kMaxProducers), kExitUsage);
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  if (a.role == "producer") return run_producer(*bus, a);
  if (a.role == "victim") return run_victim(*bus, a);
  if (a.role == "consumer") return run_consumer(*bus, a);
  if (a.role == "queue-worker") return run_queue_worker(*bus, a);
  return fail("demo-worker: unknown role '" + a.role + "'", kExitUsage);
}

}  // namespace

void add_demo_worker_command(CLI::App& app, Context& ctx) {
  auto a = std::make_shared<WorkerArgs>();
  CLI::App* w = app.add_subcommand("demo-worker", "a process of `sluice demo` (internal)");
  w->group("");  // hidden from --help
  w->add_option("role", a->role, "producer | victim | consumer | queue-worker")->required();
  w->add_option("--id", a->id, "producer id (0-15)");
  w->add_option("--records", a->records, "records to send (queue-worker: jobs to expect)");
  w->add_option("--rate", a->rate, "records per second (0: unpaced)");
  w->add_option("--group", a->group, "consumer group");
  w->add_option("--timeout-ms", a->timeout_ms, "give up after this long");
  w->add_option("--hold-after", a->hold_after, "queue-worker: after N jobs, hold leases until killed");
  w->callback([&ctx, a] { ctx.exit_code = run_worker(ctx, *a); });
}

}  // namespace sluice::cli
