// The `sluice` command line: `sluice [--dir DIR] <subcommand> ...`.
// Parsing and --help come from CLI11; each area registers its subcommands
// (commands.h). No exception leaves main: parse errors become one line on
// stderr and exit code 2, --help prints to stdout and exits 0.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "cli_common.h"
#include "commands.h"

namespace {

using sluice::cli::Context;

// Rewrites CLI11's messages for the mistakes users make most, keeping the
// rest as CLI11 words them.
std::string usage_message(const CLI::App& app, const CLI::ParseError& e) {
  const std::vector<std::string> extra = app.remaining();
  if (app.get_subcommands().empty()) {
    if (!extra.empty())
      return std::string(extra.front().starts_with("-") ? "unknown option '" : "unknown subcommand '") + extra.front() +
             "' (see sluice --help)";
    if (dynamic_cast<const CLI::RequiredError*>(&e) && extra.empty())
      return "a subcommand is required (see sluice --help)";
    return std::string(e.what()) + " (see sluice --help)";
  }
  // The deepest subcommand that was selected names the context.
  const CLI::App* sub = app.get_subcommands().front();
  std::string path = sub->get_name();
  while (!sub->get_subcommands().empty()) {
    sub = sub->get_subcommands().front();
    path += " " + sub->get_name();
  }
  std::string what = e.what();
  if (dynamic_cast<const CLI::RequiredError*>(&e) && sub->get_require_subcommand_min() > 0 &&
      sub->get_subcommands().empty() && what.find("ubcommand") != std::string::npos)
    what = "a subcommand is required";
  return path + ": " + what + " (see sluice " + path + " --help)";
}

int run(int argc, char** argv) {
  Context ctx;
  CLI::App app{"sluice: an embedded, same-host, shared-memory message engine", "sluice"};
  app.require_subcommand(1);
  // Let global options (--dir) follow the subcommand too: `sluice topic list --dir D`.
  app.fallthrough();
  app.add_option("--dir", ctx.dir, "bus directory (default: $SLUICE_DIR)")->envname("SLUICE_DIR");
  app.footer(
      "Exit codes: 0 success, 1 operation failed, 2 bad command line, 3 corruption found.\n"
      "Errors are one line on stderr: `sluice: <error>`.");

  sluice::cli::add_topic_commands(app, ctx);
  sluice::cli::add_produce_command(app, ctx);
  sluice::cli::add_consume_command(app, ctx);
  sluice::cli::add_group_commands(app, ctx);
  sluice::cli::add_queue_commands(app, ctx);
  sluice::cli::add_dlq_commands(app, ctx);
  sluice::cli::add_processed_commands(app, ctx);
  sluice::cli::add_txn_commands(app, ctx);
  sluice::cli::add_verify_commands(app, ctx);
  sluice::cli::add_bench_command(app, ctx);
  sluice::cli::add_demo_command(app, ctx);
  sluice::cli::add_demo_worker_command(app, ctx);
  sluice::cli::add_chaos_command(app, ctx);
  sluice::cli::add_chaos_worker_command(app, ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);  // help of the selected subcommand on stdout, exit 0
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    return sluice::cli::fail(usage_message(app, e), sluice::cli::kExitUsage);
  }
  return ctx.exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    return sluice::cli::fail(std::string("internal error: ") + e.what());
  } catch (...) {
    return sluice::cli::fail("internal error");
  }
}
