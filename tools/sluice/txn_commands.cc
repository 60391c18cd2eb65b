// `sluice txn list|abort`: producer identities (idempotent and
// transactional) and their transactions; abort one that holds readers.
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"

namespace sluice::cli {

namespace {

bool has_open_transaction(const ProducerIdentityInfo& p) {
  return p.state == "ongoing" || p.state == "committing" || p.state == "aborting";
}

// The partitions whose last stable offset each open transaction holds, as
// "topic/partition,...", by pid: one describe per topic, and only when some
// transaction is open. A topic whose describe fails is left out.
std::map<uint64_t, std::string> held_partitions(Bus& bus, const std::vector<ProducerIdentityInfo>& ids) {
  std::map<uint64_t, std::string> held;
  if (std::none_of(ids.begin(), ids.end(), has_open_transaction)) return held;
  auto topics = bus.list_topics();
  if (!topics) return held;
  for (const std::string& t : *topics) {
    auto d = bus.describe_topic(t);
    if (!d) continue;  // deleted meanwhile
    for (const PartitionInfo& p : d->partitions) {
      if (!p.held_by || p.held_by->pid == 0) continue;
      std::string& list = held[p.held_by->pid];
      list += (list.empty() ? "" : ",") + t + "/" + std::to_string(p.partition);
    }
  }
  return held;
}

int run_list(const Context& ctx) {
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto ids = bus->list_producers();
  if (!ids) return fail(ids.error());
  const int64_t now_ms = bus->clock().now_ns() / 1'000'000;
  const std::map<uint64_t, std::string> held = held_partitions(*bus, *ids);
  std::printf("%-24s %20s %6s %-11s %5s %12s %5s %9s %8s %9s %7s %10s %s\n", "name", "pid", "epoch", "state", "alive",
              "deadline_in", "parts", "committed", "aborted", "by_others", "fenced", "duplicates", "holds_lso");
  for (const ProducerIdentityInfo& p : *ids) {
    std::string deadline = "-";
    if (p.state == "ongoing") deadline = std::to_string(p.deadline_unix_ms - now_ms) + "ms";
    auto h = has_open_transaction(p) ? held.find(p.pid) : held.end();
    std::printf("%-24s %20llu %6u %-11s %5s %12s %5u %9llu %8llu %9llu %7llu %10llu %s\n",
                p.name.empty() ? "(unnamed)" : p.name.c_str(), (unsigned long long)p.pid, p.epoch, p.state.c_str(),
                p.alive ? "yes" : "no", deadline.c_str(), p.partitions, (unsigned long long)p.committed,
                (unsigned long long)p.aborted, (unsigned long long)p.aborted_by_others,
                (unsigned long long)p.fenced_sends, (unsigned long long)p.duplicates,
                h == held.end() ? "-" : h->second.c_str());
  }
  return kExitOk;
}

int run_abort(const Context& ctx, const std::string& name) {
  if (auto ok = check_name(name, "producer"); !ok) return fail(ok.error());
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  if (auto ok = bus->abort_transaction(name); !ok) return fail(ok.error());
  std::printf("aborted the open transaction of %s (its holder is fenced)\n", name.c_str());
  return kExitOk;
}

}  // namespace

void add_txn_commands(CLI::App& app, Context& ctx) {
  CLI::App* txn = app.add_subcommand("txn", "producer identities and their transactions");
  txn->require_subcommand(1);
  txn->add_subcommand("list", "every idempotent or transactional producer identity: epoch, state, deadline, counters, "
                              "and the partitions whose last stable offset its open transaction holds (holds_lso)")
      ->callback([&ctx] { ctx.exit_code = run_list(ctx); });
  auto name = std::make_shared<std::string>();
  CLI::App* a = txn->add_subcommand(
      "abort", "abort the open transaction of a producer identity now (it holds read-committed readers; its holder "
               "is fenced), or finish one already decided");
  a->add_option("name", *name, "the transactional producer's name")->type_name("NAME")->required();
  a->callback([&ctx, name] { ctx.exit_code = run_abort(ctx, *name); });
}

}  // namespace sluice::cli
