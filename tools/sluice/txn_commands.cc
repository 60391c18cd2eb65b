// `sluice txn list|abort`: producer identities (idempotent and
// transactional) and their transactions; abort one that holds readers.
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"

namespace sluice::cli {

namespace {

int run_list(const Context& ctx) {
  auto bus = open_bus(ctx);
  if (!bus) return fail(bus.error());
  auto ids = bus->list_producers();
  if (!ids) return fail(ids.error());
  const int64_t now_ms = bus->clock().now_ns() / 1'000'000;
  std::printf("%-24s %20s %6s %-11s %5s %12s %5s %9s %8s %9s %7s %10s\n", "name", "pid", "epoch", "state", "alive",
              "deadline_in", "parts", "committed", "aborted", "by_others", "fenced", "duplicates");
  for (const ProducerIdentityInfo& p : *ids) {
    std::string deadline = "-";
    if (p.state == "ongoing") deadline = std::to_string(p.deadline_unix_ms - now_ms) + "ms";
    std::printf("%-24s %20llu %6u %-11s %5s %12s %5u %9llu %8llu %9llu %7llu %10llu\n",
                p.name.empty() ? "(unnamed)" : p.name.c_str(), (unsigned long long)p.pid, p.epoch, p.state.c_str(),
                p.alive ? "yes" : "no", deadline.c_str(), p.partitions, (unsigned long long)p.committed,
                (unsigned long long)p.aborted, (unsigned long long)p.aborted_by_others,
                (unsigned long long)p.fenced_sends, (unsigned long long)p.duplicates);
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
  txn->add_subcommand("list", "every idempotent or transactional producer identity: epoch, state, deadline, counters")
      ->callback([&ctx] { ctx.exit_code = run_list(ctx); });
  auto name = std::make_shared<std::string>();
  CLI::App* a = txn->add_subcommand(
      "abort", "abort the open transaction of a producer identity now (it holds read-committed readers; its holder "
               "is fenced), or finish one already decided");
  a->add_option("name", *name, "the transactional producer's name")->type_name("NAME")->required();
  a->callback([&ctx, name] { ctx.exit_code = run_abort(ctx, *name); });
}

}  // namespace sluice::cli
