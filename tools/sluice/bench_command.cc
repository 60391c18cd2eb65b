// `sluice bench ...`: forwards everything after `bench` to the two-process
// benchmark harness (bench/harness), which parses its own arguments.
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/harness/bench_main.h"
#include "commands.h"

namespace sluice::cli {

void add_bench_command(CLI::App& app, Context& ctx) {
  CLI::App* b =
      app.add_subcommand("bench", "two-process benchmarks (pingpong, throughput); `sluice bench --help` for theirs");
  // Everything after `bench` belongs to the harness, --help included; and
  // positionals must not fall through to the root app as unknown subcommands.
  b->prefix_command();
  b->allow_extras();
  b->set_help_flag();
  b->fallthrough(false);
  b->callback([&ctx, b] {
    // The harness may need a bus directory; hand it --dir the way a child
    // process would find it.
    if (!ctx.dir.empty()) ::setenv("SLUICE_DIR", ctx.dir.c_str(), 1);
    std::vector<std::string> args = b->remaining();
    std::vector<char*> argv;
    static char name[] = "bench";
    argv.push_back(name);
    for (std::string& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    ctx.exit_code = sluice::bench::run(static_cast<int>(argv.size() - 1), argv.data());
  });
}

}  // namespace sluice::cli
