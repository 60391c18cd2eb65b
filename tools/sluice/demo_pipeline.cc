// The exactly-once act of `sluice demo`. Scripted, where the chaos run is
// random: the transformers start, then the input producer; the last
// transformer, once it has transformed a third of its input, sends one
// more transaction's records and holds it open (RoleSpec::hold_after_records)
// until it is SIGKILLed; its PREPARED records hold the last stable offset
// of their partitions of `out`. The restart under the same transactional id
// fences the dead instance and aborts that transaction, which releases the
// LSO; the act measures how long it was held. Once the group has consumed
// all of `in`, the transformers stop and the chaos run's checker reads
// `out` read-committed and drains `outq`.
#include "demo_pipeline.h"

#include <signal.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "chaos.h"
#include "cli_common.h"
#include "demo_protocol.h"

namespace sluice::cli::demo {

namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Where the killed transformer's open transaction starts in one partition
// of `out`.
struct Held {
  uint32_t partition = 0;
  uint64_t first_offset = 0;
};

// "1:166,3:170", as the holding transformer reports it.
std::vector<Held> parse_held(std::string_view text) {
  std::vector<Held> held;
  while (!text.empty()) {
    const std::string_view item = text.substr(0, text.find(','));
    text.remove_prefix(std::min(text.size(), item.size() + 1));
    Held h;
    const size_t colon = item.find(':');
    if (colon == std::string_view::npos) continue;
    const auto [p, ec1] = std::from_chars(item.data(), item.data() + colon, h.partition);
    const auto [o, ec2] = std::from_chars(item.data() + colon + 1, item.data() + item.size(), h.first_offset);
    if (ec1 == std::errc{} && ec2 == std::errc{}) held.push_back(h);
  }
  return held;
}

// Whether the LSO of every partition in `held` has moved past the killed
// transaction's records; `where` says where each stands.
Result<bool> lso_released(const Bus& bus, const std::vector<Held>& held, std::string* where) {
  auto out = bus.describe_topic(chaos::kOutTopic);
  if (!out) return std::unexpected(out.error());
  bool released = true;
  where->clear();
  for (const Held& h : held) {
    const PartitionInfo& p = out->partitions.at(h.partition);
    released = released && p.stable_offset > h.first_offset;
    *where += (where->empty() ? "" : ", ") + std::string("partition ") + std::to_string(h.partition) + " at " +
              std::to_string(p.stable_offset) + " (end " + std::to_string(p.end_offset) + ")";
  }
  return released;
}

// The act's topics and queue from an earlier run on this bus; their groups' offsets
// go with them.
Status drop_topics(Bus& bus) {
  auto names = bus.list_topics();
  if (!names) return std::unexpected(names.error());
  for (std::string_view t : {chaos::kInTopic, chaos::kOutTopic})
    if (std::find(names->begin(), names->end(), t) != names->end())
      if (auto ok = bus.delete_topic(t); !ok) return ok;
  auto queues = bus.list_queues();
  if (!queues) return std::unexpected(queues.error());
  if (std::find(queues->begin(), queues->end(), chaos::kOutQueue) != queues->end())
    if (auto ok = bus.delete_queue(chaos::kOutQueue); !ok) return ok;
  return {};
}

// Starts a role (`sluice chaos-worker ...`) and waits until it works.
Result<WorkerProcess> start_role(const std::string& label, const chaos::RoleSpec& spec, Deadline deadline) {
  auto w = chaos::exec_role(label, spec);
  if (!w) return w;
  std::string line;
  if (!w->wait_line("ready", deadline, &line)) return make_error(Errc::kTimeout, "demo: " + label + " did not start");
  return w;
}

// SIGTERM: a transformer finishes its transaction and exits 0.
bool stop_role(WorkerProcess& w, Deadline deadline) {
  w.send_signal(SIGTERM);
  return w.wait_exit(deadline) && w.exit_code() == 0 && !w.last_line("result").empty();
}

std::string partitions_text(const std::vector<uint32_t>& parts) {
  std::string s;
  for (uint32_t p : parts) s += (s.empty() ? "" : ", ") + std::to_string(p);
  return s;
}

}  // namespace

int run_pipeline_act(Bus& bus, const std::string& dir, const PipelineArgs& a, Deadline deadline, Checks& checks) {
  const auto act_started = SteadyClock::now();
  chaos::ChaosOptions o;
  o.records_per_partition = a.records_per_partition;
  o.rate = std::max<uint64_t>(a.records_per_partition * chaos::kPartitions, 1);  // about a second of input
  o.transformers = a.transformers;
  // Long: what ends the killed transformer's transaction is its restart (or
  // a reader that finds its holder dead), not the timeout.
  o.txn_timeout_ms = 10'000;
  if (auto ok = drop_topics(bus); !ok) return fail(ok.error());
  if (auto ok = chaos::set_up(bus, o); !ok) return fail(ok.error());
  // The identities' counters outlive a run on the same bus: this act's are
  // what they gain from here.
  auto counts_before = chaos::transaction_counts(bus);
  if (!counts_before) return fail(counts_before.error());
  const uint64_t inputs = a.records_per_partition * chaos::kPartitions;
  std::printf("\nexactly-once pipeline: %s (%u partitions) -> %u transformer processes -> %s and queue %s\n",
              std::string(chaos::kInTopic).c_str(), chaos::kPartitions, a.transformers,
              std::string(chaos::kOutTopic).c_str(), std::string(chaos::kOutQueue).c_str());

  // 1. The transformers: consume-transform-produce, one transaction per poll
  // (its outputs, their messages in `outq` and the group's offsets), 5% of
  // them aborted on purpose.
  chaos::RoleSpec spec;
  spec.role = "transformer";
  spec.dir = dir;
  spec.transformers = a.transformers;
  spec.txn_timeout_ms = o.txn_timeout_ms;
  spec.abort_percent = 5;
  spec.max_batch = a.max_txn_records;
  spec.work_ms = 0;
  spec.late_percent = 0;
  const uint32_t victim_slot = a.transformers - 1;
  std::vector<WorkerProcess> transformers;
  for (uint32_t slot = 0; slot < a.transformers; ++slot) {
    chaos::RoleSpec s = spec;
    s.slot = slot;
    s.seed = slot + 1;
    const std::vector<uint32_t> parts = chaos::owned_partitions(slot, a.transformers);
    if (slot == victim_slot) s.hold_after_records = std::max<uint64_t>(parts.size() * a.records_per_partition / 3, 1);
    auto w = start_role("transformer " + std::to_string(slot), s, deadline);
    if (!w) return fail(w.error());
    std::printf("  transformer %u (pid %d) reads partitions %s as transactional id %s%u, group %s\n", slot, w->pid(),
                partitions_text(parts).c_str(), std::string(chaos::kTransformerIdPrefix).c_str(), slot,
                std::string(chaos::kGroup).c_str());
    transformers.push_back(std::move(*w));
  }
  WorkerProcess& victim = transformers.back();
  const uint16_t old_epoch = static_cast<uint16_t>(Report::parse(victim.last_line("ready")).num("epoch"));

  // 2. The input: keyed records k0..k63, each key's numbered 0, 1, 2 ...
  chaos::RoleSpec in = spec;
  in.role = "input";
  in.records_per_partition = a.records_per_partition;
  in.rate = o.rate;
  in.seed = 100;
  auto input = start_role("input producer", in, deadline);
  if (!input) return fail(input.error());
  std::printf("  input producer (pid %d, idempotent) writes %llu keyed records, k0..k63, over about a second\n",
              input->pid(), (unsigned long long)inputs);

  // 3. The victim holds a transaction open; SIGKILL it there.
  std::string holding_line;
  if (!victim.wait_line("holding", deadline, &holding_line))
    return fail("demo: transformer " + std::to_string(victim_slot) + " never held a transaction open");
  const Report holding = Report::parse(holding_line);
  victim.kill_now(SIGKILL);
  const int64_t killed_ns = bus.clock().now_ns();
  const int64_t since_ns = holding.num("since_ns");
  const std::vector<Held> held = parse_held(holding.text("first"));
  std::printf("  transformer %u SIGKILLed mid-transaction: %lld record(s) sent to %s, PREPARED, not committed\n",
              victim_slot, (long long)holding.num("records"), std::string(chaos::kOutTopic).c_str());
  std::string where;
  auto released = lso_released(bus, held, &where);
  if (!released) return fail(released.error());
  std::printf("  %s LSO %s: %s\n", std::string(chaos::kOutTopic).c_str(),
              *released ? "already released" : "held by the dead transaction", where.c_str());

  // 4. The restart: the same identity fences the dead instance and aborts
  // its transaction. Watch the LSO move on.
  chaos::RoleSpec again = spec;
  again.slot = victim_slot;
  again.seed = 50;
  auto replacement = chaos::exec_role("transformer " + std::to_string(victim_slot) + " (restarted)", again);
  if (!replacement) return fail(replacement.error());
  const auto release_deadline = std::min(deadline, SteadyClock::now() + std::chrono::seconds(5));
  int64_t released_ns = 0;
  while (SteadyClock::now() < release_deadline) {
    released = lso_released(bus, held, &where);
    if (!released) return fail(released.error());
    if (*released) {
      released_ns = bus.clock().now_ns();
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  std::string ready_line;
  if (!replacement->wait_line("ready", deadline, &ready_line))
    return fail("demo: the restarted transformer " + std::to_string(victim_slot) + " did not start");
  const uint16_t new_epoch = static_cast<uint16_t>(Report::parse(ready_line).num("epoch"));
  std::printf("  transformer %u restarted (pid %d): %s%u epoch %u fences epoch %u, aborts its transaction\n",
              victim_slot, replacement->pid(), std::string(chaos::kTransformerIdPrefix).c_str(), victim_slot, new_epoch,
              old_epoch);
  if (released_ns > 0)
    std::printf("  %s LSO released %s after the SIGKILL: %s\n", std::string(chaos::kOutTopic).c_str(),
                format_ns(released_ns - killed_ns).c_str(), where.c_str());

  // 5. The input ends; the transformers catch up and stop.
  const bool input_ok = input->wait_exit(deadline) && input->exit_code() == 0;
  bool caught_up = false;
  while (SteadyClock::now() < deadline) {
    auto done = chaos::caught_up(bus);
    if (!done) return fail(done.error());
    if ((caught_up = *done)) break;
    std::this_thread::sleep_for(milliseconds(5));
  }
  chaos::ChaosTally tally;
  tally.transformer_kills = 1;
  tally.restarts = 1;
  if (!input_ok) tally.problems.push_back("the input producer failed");
  if (!caught_up) tally.problems.push_back("the transformers did not consume all of " + std::string(chaos::kInTopic));
  for (size_t i = 0; i + 1 < transformers.size(); ++i)
    if (!stop_role(transformers[i], deadline)) tally.problems.push_back(transformers[i].name() + " failed");
  if (!stop_role(*replacement, deadline)) tally.problems.push_back(replacement->name() + " failed");
  tally.failed_exits = tally.problems.size();

  // 6. The checker reads `in` and `out` whole, read committed, and drains `outq`.
  std::printf("  checker (%s read committed, %s drained)\n", std::string(chaos::kOutTopic).c_str(),
              std::string(chaos::kOutQueue).c_str());
  auto report = chaos::check(bus, o, std::move(tally), stdout);
  if (!report) return fail(report.error());
  const chaos::ChaosReport& r = *report;
  const bool order_ok = std::any_of(r.invariants.begin(), r.invariants.end(),
                                    [](const chaos::Invariant& i) { return i.name == "per-key order" && i.ok; });
  const uint64_t commits = r.commits - counts_before->commits;
  const uint64_t holder_aborts = r.holder_aborts - counts_before->holder_aborts;
  const uint64_t helper_aborts = r.helper_aborts - counts_before->helper_aborts;
  const double act_s = std::chrono::duration<double>(SteadyClock::now() - act_started).count();
  std::printf(
      "  %-20s %llu inputs, %llu outputs read committed: %llu duplicates, %llu missing, per-key order %s (%.1f s)\n",
      "exactly once", (unsigned long long)r.inputs, (unsigned long long)r.outputs, (unsigned long long)r.duplicates,
      (unsigned long long)r.lost, order_ok ? "OK" : "BROKEN", act_s);
  std::printf("  %-20s %llu messages for %llu inputs, each with its output: %llu duplicates, %llu missing\n",
              ("queue " + std::string(chaos::kOutQueue)).c_str(), (unsigned long long)r.queue_messages,
              (unsigned long long)r.queue_due, (unsigned long long)r.queue_duplicates,
              (unsigned long long)r.queue_lost);
  std::printf("  %-20s %llu committed; aborted: %llu by their transformers (on purpose), %llu by another process "
              "(the killed one's)\n",
              "transactions", (unsigned long long)commits, (unsigned long long)holder_aborts,
              (unsigned long long)helper_aborts);
  if (released_ns > 0)
    std::printf("  %-20s %s by the killed transformer's open transaction, %s of it after the SIGKILL\n", "LSO held",
                format_ns(released_ns - since_ns).c_str(), format_ns(released_ns - killed_ns).c_str());
  else
    std::printf("  %-20s NOT RELEASED within 5 s of the SIGKILL: %s\n", "LSO held", where.c_str());

  checks.expect(r.ok(), "every invariant of the exactly-once checker holds");
  checks.expect(r.inputs == inputs, "the input holds every record written (" + std::to_string(inputs) + ")");
  checks.expect(r.outputs == r.inputs, "one output per input");
  checks.expect(r.duplicates == 0, "no duplicate output");
  checks.expect(r.lost == 0, "no missing output");
  checks.expect(order_ok, "each key's outputs in its inputs' order");
  checks.expect(r.queue_messages == r.inputs && r.queue_duplicates == 0 && r.queue_lost == 0,
                "one message in " + std::string(chaos::kOutQueue) + " per input");
  checks.expect(helper_aborts == 1, "the killed transformer's transaction was aborted by another process");
  checks.expect(new_epoch != old_epoch, "the restart fenced the killed instance (a new epoch)");
  checks.expect(!held.empty(), "the killed transformer reported its open transaction's records");
  checks.expect(released_ns > 0, "the killed transformer's transaction released the LSO");
  return kExitOk;
}

}  // namespace sluice::cli::demo
