// The chaos run's supervisor: starts the input producer and the
// transformers, SIGKILLs them at random intervals and restarts them, now
// and then turns a transformer into a zombie (SIGSTOP past its transaction
// timeout, a replacement started, SIGCONT: it must be fenced and exit), and
// meanwhile tails `out` with a read-committed and a read-uncommitted reader
// and drains `outq` with a worker (all three also act as the helpers that
// abort dead and late transactions).
// Then it stops the input, waits for the transformers to catch up, and
// stops them. Every wait has a deadline.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <random>
#include <thread>

#include "chaos.h"

namespace sluice::cli::chaos {

namespace {

using demo::WorkerProcess;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr auto kTick = milliseconds(2);
constexpr auto kStartDeadline = std::chrono::seconds(20);  // a (re)started role prints "ready" by then
constexpr auto kExitDeadline = std::chrono::seconds(20);   // a stopped or resumed role exits by then

struct Slot {
  std::string label;  // "transformer 1", "input producer"
  RoleSpec spec;
  std::optional<WorkerProcess> current;
  uint64_t instances = 0;
  bool done = false;  // the input producer finished its records: not restarted
};

class Supervisor {
 public:
  Supervisor(const std::string& dir, const ChaosOptions& o, const Launcher& launch, FILE* log)
      : dir_(dir), o_(o), launch_(launch), log_(log), rng_(o.seed) {}

  Result<ChaosTally> run();

 private:
  Status start(Slot& s);
  bool ready(Slot& s) { return s.current && !s.current->exited() && !s.current->last_line("ready").empty(); }
  // Reaps exits and restarts what exited (unless the input is done); polls
  // the tails. `restart`: false once the run is stopping.
  Status pump(bool restart);
  Status pump_for(SteadyClock::duration d);
  Status kill(Slot& s);
  Status zombie(Slot& s);
  Status stop(Slot& s);
  // Polls the tails of `out` and drains `outq`.
  void poll_readers();
  void progress(SteadyClock::time_point started);
  int64_t between(MsRange r) { return std::uniform_int_distribution<int64_t>(r.lo, std::max(r.lo, r.hi))(rng_); }
  std::vector<Slot*> slots() {
    std::vector<Slot*> all;
    for (Slot& t : transformers_) all.push_back(&t);
    all.push_back(&input_);
    return all;
  }
  void problem(std::string what) {
    std::fprintf(log_, "  PROBLEM: %s\n", what.c_str());
    tally_.problems.push_back(std::move(what));
  }

  std::string dir_;
  ChaosOptions o_;
  const Launcher& launch_;
  FILE* log_;
  std::mt19937_64 rng_;
  ChaosTally tally_;
  std::optional<Bus> bus_;
  std::optional<Consumer> committed_tail_, uncommitted_tail_;
  std::optional<Worker> queue_worker_;
  std::vector<RecordView> views_ = std::vector<RecordView>(256);
  std::vector<Slot> transformers_;
  Slot input_;
};

Status Supervisor::start(Slot& s) {
  // Every instance draws its own choices.
  s.spec.seed = o_.seed * 1'000'003 + s.instances * 7919 + s.spec.slot * 104'729 + (s.spec.role == "input");
  auto w = launch_(s.label + " #" + std::to_string(s.instances), s.spec);
  if (!w) return std::unexpected(w.error());
  s.current.emplace(std::move(*w));
  ++s.instances;
  return {};
}

Status Supervisor::pump(bool restart) {
  for (Slot* s : slots()) {
    if (!s->current || !s->current->poll_exit()) continue;
    const int code = s->current->exit_code();
    const bool input = s == &input_;
    if (code == kExitTimedOut && !input) {
      ++tally_.timed_out_exits;
    } else if (code == 0 && input) {
      s->done = true;
    } else if (code != 0) {
      ++tally_.failed_exits;
      problem(s->current->name() + " exited with code " + std::to_string(code) +
              (code == kExitFenced ? " (fenced while it was the current instance)" : ""));
    }
    s->current.reset();
    if (restart && !s->done) {
      ++tally_.restarts;
      if (auto ok = start(*s); !ok) return ok;
    }
  }
  poll_readers();
  return {};
}

Status Supervisor::pump_for(SteadyClock::duration d) {
  const auto until = SteadyClock::now() + d;
  while (SteadyClock::now() < until) {
    if (auto ok = pump(true); !ok) return ok;
    std::this_thread::sleep_for(kTick);
  }
  return {};
}

Status Supervisor::kill(Slot& s) {
  if (!s.current || s.current->exited()) return {};
  s.current->kill_now(SIGKILL);  // reaps it
  s.current.reset();
  ++tally_.restarts;
  return start(s);
}

// SIGSTOP past the timeout, a replacement, SIGCONT: the zombie must learn
// that it was fenced (kFenced) and exit without committing anything.
Status Supervisor::zombie(Slot& s) {
  WorkerProcess z = std::move(*s.current);
  s.current.reset();
  z.send_signal(SIGSTOP);
  ++tally_.zombies_stopped;
  // Past its transaction's timeout: the tails may abort it meanwhile.
  if (auto ok = pump_for(milliseconds(o_.txn_timeout_ms + 100)); !ok) return ok;
  ++tally_.restarts;
  if (auto ok = start(s); !ok) return ok;
  const auto deadline = SteadyClock::now() + kStartDeadline;
  while (!ready(s) && SteadyClock::now() < deadline) {
    if (auto ok = pump(true); !ok) return ok;
    std::this_thread::sleep_for(kTick);
  }
  if (!ready(s)) problem("the replacement of zombie " + z.name() + " did not start");
  z.send_signal(SIGCONT);
  const auto exit_deadline = SteadyClock::now() + kExitDeadline;
  while (!z.poll_exit() && SteadyClock::now() < exit_deadline) {
    if (auto ok = pump(true); !ok) return ok;
    std::this_thread::sleep_for(kTick);
  }
  if (!z.exited()) {
    problem("zombie " + z.name() + " did not exit after SIGCONT");
    z.kill_now(SIGKILL);
  } else if (z.exit_code() == kExitFenced) {
    ++tally_.zombies_fenced;
  } else if (z.exit_code() == kExitTimedOut) {
    // Its transaction was aborted past the timeout before the replacement
    // opened the name, and it learned that first: it commits nothing either.
    ++tally_.zombies_timed_out;
  } else {
    problem("zombie " + z.name() + " exited with code " + std::to_string(z.exit_code()) + ", not as fenced");
  }
  return {};
}

// SIGTERM: the role finishes its transaction or send and exits 0.
Status Supervisor::stop(Slot& s) {
  if (!s.current) return {};
  s.current->send_signal(SIGTERM);
  const auto deadline = SteadyClock::now() + kExitDeadline;
  while (!s.current->poll_exit() && SteadyClock::now() < deadline) {
    poll_readers();
    std::this_thread::sleep_for(kTick);
  }
  // Killed by the SIGTERM itself: it came before the role set its handler,
  // so the role had not started working.
  const bool early = s.current->exit_code() == 128 + SIGTERM && s.current->last_line("ready").empty();
  if (!s.current->exited()) {
    problem(s.current->name() + " did not stop after SIGTERM");
    s.current->kill_now(SIGKILL);
  } else if (s.current->exit_code() != 0 && !early) {
    ++tally_.failed_exits;
    problem(s.current->name() + " stopped with code " + std::to_string(s.current->exit_code()));
  }
  s.current.reset();
  return {};
}

void Supervisor::poll_readers() {
  for (auto [tail, offsets, seen] :
       {std::tuple{&committed_tail_, &tally_.committed_offsets, &tally_.tail_committed_seen},
        std::tuple{&uncommitted_tail_, &tally_.uncommitted_offsets, &tally_.tail_uncommitted_seen}}) {
    if (!*tail) continue;
    for (int round = 0; round < 8; ++round) {
      auto n = (*tail)->try_poll(views_);
      if (!n) {
        problem("a tail of " + std::string(kOutTopic) + " failed: " + n.error().to_string());
        tail->reset();
        break;
      }
      for (size_t i = 0; i < *n; ++i) (*offsets)[views_[i].partition].push_back(views_[i].offset);
      *seen += *n;
      if (*n < views_.size()) break;
    }
  }
  if (!queue_worker_) return;
  // Drained as it fills: a long run's queue stays within its window.
  if (auto n = drain_queue(*queue_worker_, tally_.queue_seen, 0); !n) {
    problem("a worker of " + std::string(kOutQueue) + " failed: " + n.error().to_string());
    queue_worker_.reset();
  }
}

void Supervisor::progress(SteadyClock::time_point started) {
  auto in = bus_->describe_topic(kInTopic);
  auto g = bus_->describe_group(kGroup);
  uint64_t end = 0, committed = 0;
  if (in)
    for (const PartitionInfo& p : in->partitions) end += p.end_offset;
  if (g)
    for (const PartitionLag& l : g->partitions)
      if (l.topic == kInTopic && l.committed != kNoOffset) committed += l.committed;
  std::fprintf(log_, "  %5.1f s  in %llu, group at %llu, kills %llu + %llu, zombies %llu (%llu fenced)\n",
               std::chrono::duration<double>(SteadyClock::now() - started).count(), (unsigned long long)end,
               (unsigned long long)committed, (unsigned long long)tally_.transformer_kills,
               (unsigned long long)tally_.input_kills, (unsigned long long)tally_.zombies_stopped,
               (unsigned long long)tally_.zombies_fenced);
  std::fflush(log_);
}

Result<ChaosTally> Supervisor::run() {
  auto bus = Bus::open(dir_);
  if (!bus) return std::unexpected(bus.error());
  bus_.emplace(std::move(*bus));
  tally_.committed_offsets.resize(kPartitions);
  tally_.uncommitted_offsets.resize(kPartitions);
  for (Isolation iso : {Isolation::kReadCommitted, Isolation::kReadUncommitted}) {
    ConsumerOptions co;
    co.auto_commit = false;
    co.isolation = iso;
    co.wait = WaitStrategy::kSpinYield;
    auto c = bus_->create_consumer(kOutTopic, "", co);
    if (!c) return std::unexpected(c.error());
    (iso == Isolation::kReadCommitted ? committed_tail_ : uncommitted_tail_).emplace(std::move(*c));
  }
  auto worker = bus_->create_worker(kOutQueue);
  if (!worker) return std::unexpected(worker.error());
  queue_worker_.emplace(std::move(*worker));

  RoleSpec base;
  base.dir = dir_;
  base.mode = o_.mode;
  base.transformers = o_.transformers;
  base.txn_timeout_ms = o_.txn_timeout_ms;
  base.abort_percent = o_.abort_percent;
  base.work_ms = o_.work_ms;
  base.late_percent = o_.late_percent;
  base.queue_every = o_.queue_every;
  input_.label = "input producer";
  input_.spec = base;
  input_.spec.role = "input";
  input_.spec.records_per_partition = o_.records_per_partition;
  input_.spec.rate = o_.rate;
  transformers_.resize(o_.transformers);
  for (uint32_t t = 0; t < o_.transformers; ++t) {
    Slot& s = transformers_[t];
    s.label = "transformer " + std::to_string(t);
    s.spec = base;
    s.spec.role = "transformer";
    s.spec.slot = t;
    if (auto ok = start(s); !ok) return std::unexpected(ok.error());
  }
  if (auto ok = start(input_); !ok) return std::unexpected(ok.error());

  const auto started = SteadyClock::now();
  const auto ends = o_.duration_ms > 0 ? started + milliseconds(o_.duration_ms) : SteadyClock::time_point::max();
  const bool zombies = o_.mode == Mode::kExactlyOnce && o_.zombie_ms.hi > 0;
  auto next_kill = started + milliseconds(between(o_.transformer_kill_ms));
  auto next_input_kill = started + milliseconds(between(o_.input_kill_ms));
  auto next_zombie = zombies ? started + milliseconds(between(o_.zombie_ms)) : SteadyClock::time_point::max();
  auto next_progress =
      o_.progress_every_ms > 0 ? started + milliseconds(o_.progress_every_ms) : SteadyClock::time_point::max();
  while (!input_.done && SteadyClock::now() < ends) {
    if (auto ok = pump(true); !ok) return std::unexpected(ok.error());
    const auto now = SteadyClock::now();
    if (now >= next_kill) {
      Slot& s = transformers_[rng_() % transformers_.size()];
      if (s.current) ++tally_.transformer_kills;
      if (auto ok = kill(s); !ok) return std::unexpected(ok.error());
      next_kill = SteadyClock::now() + milliseconds(between(o_.transformer_kill_ms));
    }
    // Not before it is ready: under a sanitizer on a loaded machine a
    // restart can take longer than the time between kills, and a short run
    // then ended with no input at all.
    if (now >= next_input_kill && !input_.done && ready(input_)) {
      if (input_.current) ++tally_.input_kills;
      if (auto ok = kill(input_); !ok) return std::unexpected(ok.error());
      next_input_kill = SteadyClock::now() + milliseconds(between(o_.input_kill_ms));
    }
    if (now >= next_zombie) {
      // A transformer at work (past its start); none yet: soon again.
      std::vector<Slot*> working;
      for (Slot& s : transformers_)
        if (ready(s)) working.push_back(&s);
      if (working.empty()) {
        next_zombie = now + milliseconds(20);
      } else {
        if (auto ok = zombie(*working[rng_() % working.size()]); !ok) return std::unexpected(ok.error());
        next_zombie = SteadyClock::now() + milliseconds(between(o_.zombie_ms));
      }
    }
    if (now >= next_progress) {
      progress(started);
      next_progress += milliseconds(o_.progress_every_ms);
    }
    std::this_thread::sleep_for(kTick);
  }
  // The input stops (or has finished); the transformers catch up, unharmed.
  if (!input_.done) {
    if (auto ok = stop(input_); !ok) return std::unexpected(ok.error());
    input_.done = true;
  }
  const auto catch_up = SteadyClock::now() + milliseconds(o_.catch_up_ms);
  for (;;) {
    if (auto ok = pump(true); !ok) return std::unexpected(ok.error());
    auto done = caught_up(*bus_);
    if (!done) return std::unexpected(done.error());
    if (*done) break;
    if (SteadyClock::now() >= catch_up) {
      problem("the transformers did not catch up with " + std::string(kInTopic) + " within " +
              std::to_string(o_.catch_up_ms) + " ms");
      break;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  for (Slot& s : transformers_)
    if (auto ok = stop(s); !ok) return std::unexpected(ok.error());
  // The tails and the queue's worker read to the end: nothing is written
  // any more, and what is undecided belongs to dead or fenced instances,
  // which readers settle.
  const auto seen = [&] { return tally_.tail_committed_seen + tally_.tail_uncommitted_seen + tally_.queue_seen.size(); };
  for (int idle = 0; idle < 50;) {
    const uint64_t before = seen();
    poll_readers();
    idle = seen() == before ? idle + 1 : 0;
    std::this_thread::sleep_for(kTick);
  }
  committed_tail_.reset();
  uncommitted_tail_.reset();
  queue_worker_.reset();
  return std::move(tally_);
}

}  // namespace

Result<ChaosTally> supervise(const std::string& dir, const ChaosOptions& options, const Launcher& launch, FILE* log) {
  Supervisor s(dir, options, launch, log);
  return s.run();
}

}  // namespace sluice::cli::chaos
