// Registration of each area's subcommands on the root CLI11 app. Each
// function adds its subcommands with callbacks that run the command and
// store its exit code in `ctx` (CLI11 runs them after a successful parse).
#pragma once

#include <CLI/CLI.hpp>

#include "cli_common.h"

namespace sluice::cli {

void add_topic_commands(CLI::App& app, Context& ctx);       // init, topic ...
void add_produce_command(CLI::App& app, Context& ctx);      // produce
void add_consume_command(CLI::App& app, Context& ctx);      // consume
void add_group_commands(CLI::App& app, Context& ctx);       // group ...
void add_queue_commands(CLI::App& app, Context& ctx);       // queue ...
void add_dlq_commands(CLI::App& app, Context& ctx);         // dlq ...
void add_processed_commands(CLI::App& app, Context& ctx);   // processed ...
void add_txn_commands(CLI::App& app, Context& ctx);         // txn ...
void add_verify_commands(CLI::App& app, Context& ctx);      // verify, dump
void add_bench_command(CLI::App& app, Context& ctx);        // bench (forwarded to the harness)
void add_demo_command(CLI::App& app, Context& ctx);         // demo
void add_demo_worker_command(CLI::App& app, Context& ctx);  // demo-worker (hidden)
void add_chaos_command(CLI::App& app, Context& ctx);         // chaos
void add_chaos_worker_command(CLI::App& app, Context& ctx);  // chaos-worker (hidden)

}  // namespace sluice::cli
