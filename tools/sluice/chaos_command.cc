// `sluice chaos`: the exactly-once chaos run (chaos.h) for a given time,
// with roles exec'd as the hidden `sluice chaos-worker ROLE ...`.
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "chaos.h"
#include "commands.h"

namespace sluice::cli {

namespace {

using namespace chaos;

struct ChaosArgs {
  double minutes = 0, seconds = 0;
  int lengths_given = 0;
  std::string mode = "exactly-once";
  uint64_t seed = 0;
  bool seed_given = false;
  uint64_t rate = 2000;
  int64_t timeout_ms = 100;
  uint32_t queue_every = 1;
  bool keep = false;
};

// The run's directory: the one given, if new or empty, else a fresh one.
Result<std::string> run_dir(const Context& ctx, bool* temporary) {
  *temporary = ctx.dir.empty();
  if (!ctx.dir.empty()) {
    std::error_code ec;
    if (std::filesystem::exists(ctx.dir, ec) && !std::filesystem::is_empty(ctx.dir, ec))
      return make_error(Errc::kAlreadyExists, "chaos: " + ctx.dir + " is not empty: a chaos run makes its own bus "
                                              "in a new or empty directory");
    return ctx.dir;
  }
  for (const char* root : {"/dev/shm", "/tmp"}) {  // tmpfs when there is one: the bus is shared memory then
    std::string tmpl = std::string(root) + "/sluice-chaos-XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) return tmpl;
  }
  return make_error(Errc::kIoError, "chaos: cannot create a directory under /dev/shm or /tmp");
}

int run_chaos(const Context& ctx, const ChaosArgs& a) {
  if (a.lengths_given != 1) return fail("chaos: give either --minutes or --seconds", kExitUsage);
  const double seconds = a.minutes != 0 ? a.minutes * 60 : a.seconds;
  if (!(seconds >= 0.1 && seconds <= 24 * 3600))
    return fail("chaos: the run lasts 0.1 s to 24 hours", kExitUsage);
  if (a.rate < 1 || a.rate > 1'000'000) return fail("chaos: --rate: 1-1000000", kExitUsage);
  if (a.timeout_ms < 1 || a.timeout_ms > 60'000) return fail("chaos: --timeout-ms: 1-60000", kExitUsage);
  if (a.queue_every > 1'000'000) return fail("chaos: --queue-every: 0-1000000", kExitUsage);
  ChaosOptions o;
  o.mode = a.mode == "at-least-once" ? Mode::kAtLeastOnce : Mode::kExactlyOnce;
  o.seed = a.seed_given ? a.seed : std::random_device{}() % 1'000'000;
  o.duration_ms = static_cast<int64_t>(std::llround(seconds * 1000));
  o.rate = a.rate;
  o.txn_timeout_ms = a.timeout_ms;
  o.queue_every = a.queue_every;
  o.progress_every_ms = 10'000;
  bool temporary = false;
  auto dir = run_dir(ctx, &temporary);
  if (!dir) return fail(dir.error());
  auto report = run(*dir, o, exec_role, stdout);
  const bool ok = report && report->ok();
  if (temporary && !a.keep && ok) {
    std::error_code ec;
    std::filesystem::remove_all(*dir, ec);
  } else if (temporary) {
    std::printf("bus kept at %s\n", dir->c_str());
  }
  if (!report) return fail("chaos: " + report.error().to_string());
  if (!ok) {
    uint64_t failed = 0;
    for (const Invariant& i : report->invariants) failed += !i.ok;
    return fail("chaos: " + std::to_string(failed) + " of " + std::to_string(report->invariants.size()) +
                " invariants failed (seed " + std::to_string(o.seed) + ")");
  }
  return kExitOk;
}

}  // namespace

void add_chaos_command(CLI::App& app, Context& ctx) {
  auto a = std::make_shared<ChaosArgs>();
  CLI::App* c = app.add_subcommand(
      "chaos",
      "the exactly-once chaos run: an idempotent input producer and transactional transformers SIGKILLed, "
      "restarted and fenced as real processes for a while, then every invariant checked");
  c->add_option_function<double>(
       "--minutes", [a](double m) { a->minutes = m, ++a->lengths_given; }, "how long the chaos lasts (fractions allowed)")
      ->type_name("N");
  c->add_option_function<double>(
       "--seconds", [a](double s) { a->seconds = s, ++a->lengths_given; }, "or this, in seconds")
      ->type_name("N");
  c->add_option("--mode", a->mode, "exactly-once (transactions, default) or at-least-once (plain producers, "
                                   "offsets committed after the sends)")
      ->check(CLI::IsMember({"exactly-once", "at-least-once"}));
  c->add_option_function<uint64_t>(
       "--seed", [a](uint64_t s) { a->seed = s, a->seed_given = true; }, "seed of the random choices (default: drawn)")
      ->type_name("S");
  c->add_option("--rate", a->rate, "input records per second (default 2000)")->type_name("N");
  c->add_option("--timeout-ms", a->timeout_ms,
                "the transformers' transaction timeout (default 100; a few ms: helpers abort some late ones)")
      ->type_name("MS");
  c->add_option("--queue-every", a->queue_every,
                "publish the inputs whose offset is a multiple of K to queue outq too (default 1: all; 0: none)")
      ->type_name("K");
  c->add_flag("--keep", a->keep, "keep the temporary bus directory (it is kept anyway when a check fails)");
  c->footer(
      "Without --dir (or SLUICE_DIR) the bus is a fresh directory under /dev/shm, removed at the end; a given\n"
      "directory must be new or empty. Exit code 1 when an invariant fails.");
  c->callback([&ctx, a] { ctx.exit_code = run_chaos(ctx, *a); });
}

void add_chaos_worker_command(CLI::App& app, Context& ctx) {
  auto s = std::make_shared<RoleSpec>();
  auto mode = std::make_shared<std::string>("exactly-once");
  CLI::App* w = app.add_subcommand("chaos-worker", "a process of `sluice chaos` (internal)");
  w->group("");  // hidden from --help
  w->add_option("role", s->role, "input | transformer")->required();
  w->add_option("--mode", *mode)->check(CLI::IsMember({"exactly-once", "at-least-once"}));
  w->add_option("--slot", s->slot);
  w->add_option("--transformers", s->transformers);
  w->add_option("--seed", s->seed);
  w->add_option("--records", s->records_per_partition);
  w->add_option("--rate", s->rate);
  w->add_option("--timeout-ms", s->txn_timeout_ms);
  w->add_option("--abort-percent", s->abort_percent);
  w->add_option("--max-batch", s->max_batch);
  w->add_option("--work-ms", s->work_ms);
  w->add_option("--late-percent", s->late_percent);
  w->add_option("--hold-after", s->hold_after_records);
  w->add_option("--queue-every", s->queue_every);
  w->callback([&ctx, s, mode] {
    if (ctx.dir.empty()) {
      ctx.exit_code = fail("chaos-worker: --dir is required", kExitUsage);
      return;
    }
    s->dir = ctx.dir;
    s->mode = *mode == "at-least-once" ? Mode::kAtLeastOnce : Mode::kExactlyOnce;
    ctx.exit_code = run_role(*s);
  });
}

}  // namespace sluice::cli
