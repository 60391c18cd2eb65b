// `sluice bench`: runs the workloads in a fixed order (pingpong, then
// throughput, each size, the ring first; then the queue workload, Boost
// first), then memcpy bandwidth, and prints the report. Progress goes to
// stderr, one line per run.
#include "bench/harness/bench_main.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "bench/harness/bench_options.h"
#include "bench/harness/report.h"
#include "bench/harness/sluice_side.h"
#include "bench/harness/tsc_clock.h"
#include "bench/harness/workloads.h"

namespace sluice::bench {

namespace {

// A fresh directory "<parent>/sluice-bench-XXXXXX", removed on destruction.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& parent) {
    std::string tmpl = parent + "/sluice-bench-XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
    else error_ = "cannot create a directory in " + parent + ": " + std::strerror(errno);
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  const std::string& error() const { return error_; }

 private:
  std::string path_, error_;
};

// A bus directory for one run, removed as soon as the run is over so that
// its segments do not hold memory during the next one.
std::string run_dir(const ScratchDir& root, const std::string& name) { return root.path() + "/" + name; }
void remove_run_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

void progress(const char* workload, uint32_t size, const std::string& system, bool ok, const std::string& error,
              int64_t t0) {
  std::fprintf(stderr, "  %-10s %6u B  %-24s %s (%.1f s)\n", workload, size, system.c_str(),
               ok ? "done" : ("FAILED: " + error).c_str(), static_cast<double>(steady_ns() - t0) / 1e9);
}

}  // namespace

int run(int argc, char** argv) {
  BenchOptions options;
  bool help = false;
  std::string error;
  if (!parse_bench_options(argc, argv, &options, &help, &error)) {
    std::fprintf(stderr, "sluice: bench: %s\n", error.c_str());
    return 2;
  }
  if (help) {
    std::fputs(bench_usage(), stdout);
    return 0;
  }
  ScratchDir root(options.dir.empty() ? "/dev/shm" : options.dir);
  if (root.path().empty()) {
    std::fprintf(stderr, "sluice: bench: %s\n", root.error().c_str());
    return 1;
  }
  const int64_t start = steady_ns();
  BenchReport report;
  report.options = options;
  report.dir = root.path();
  bool all_ok = true;
  std::fprintf(stderr, "sluice bench: running in %s\n", root.path().c_str());

  if (options.pingpong) {
    for (uint32_t size : options.sizes) {
      int64_t t0 = steady_ns();
      if (options.run_ring) {
        report.pingpong.push_back(run_ring_pingpong(options, size));
        progress("pingpong", size, "ring", report.pingpong.back().ok, report.pingpong.back().error, t0);
      }
      for (bool exclusive : {false, true}) {
        if (!options.run_sluice) break;
        if (!(exclusive ? options.run_exclusive : options.run_shared)) continue;
        t0 = steady_ns();
        const std::string dir = run_dir(root, "pingpong-" + std::to_string(size) + (exclusive ? "-excl" : "-shared"));
        report.pingpong.push_back(run_sluice_pingpong(options, size, exclusive, dir));
        remove_run_dir(dir);
        progress("pingpong", size, report.pingpong.back().system, report.pingpong.back().ok,
                 report.pingpong.back().error, t0);
      }
    }
  }
  if (options.throughput) {
    for (uint32_t size : options.sizes) {
      for (uint32_t every : {1u, 32u}) {
        if (!options.run_ring) break;
        const int64_t t0 = steady_ns();
        report.throughput.push_back(run_ring_throughput(options, size, every));
        progress("throughput", size, report.throughput.back().system, report.throughput.back().ok,
                 report.throughput.back().error, t0);
      }
      for (bool exclusive : {true, false}) {
        if (!options.run_sluice) break;
        if (!(exclusive ? options.run_exclusive : options.run_shared)) continue;
        const int64_t t0 = steady_ns();
        const std::string dir = run_dir(root, "throughput-" + std::to_string(size) + (exclusive ? "-excl" : "-shared"));
        report.throughput.push_back(run_sluice_throughput(options, size, exclusive, dir));
        remove_run_dir(dir);
        progress("throughput", size, report.throughput.back().system, report.throughput.back().ok,
                 report.throughput.back().error, t0);
      }
    }
  }
  if (options.eos && options.run_sluice) {
    // Idempotent producing against plain, 64 B, in this run: the plain
    // figures come from the throughput workload when it ran at 64 B.
    constexpr uint32_t kSize = 64;
    for (bool exclusive : {true, false}) {
      for (bool idempotent : {false, true}) {
        const std::string system = sluice_system_name(exclusive, idempotent);
        if (std::any_of(report.throughput.begin(), report.throughput.end(),
                        [&](const ThroughputResult& t) { return t.system == system && t.value_bytes == kSize; }))
          continue;
        const int64_t t0 = steady_ns();
        const std::string dir = run_dir(root, "eos-" + std::string(exclusive ? "excl" : "shared") +
                                                  (idempotent ? "-idempotent" : ""));
        report.throughput.push_back(run_sluice_throughput(options, kSize, exclusive, dir, idempotent));
        remove_run_dir(dir);
        progress("throughput", kSize, report.throughput.back().system, report.throughput.back().ok,
                 report.throughput.back().error, t0);
      }
    }
    for (uint32_t records : {1u, 10u, 100u}) {  // transactional, shared writer
      const int64_t t0 = steady_ns();
      const std::string dir = run_dir(root, "eos-txn-" + std::to_string(records));
      report.throughput.push_back(run_sluice_throughput(options, kSize, false, dir, false, records));
      remove_run_dir(dir);
      progress("throughput", kSize, report.throughput.back().system, report.throughput.back().ok,
               report.throughput.back().error, t0);
    }
    // The same comparisons as round trips: plain (unless the pingpong
    // workload measured it at 64 B), idempotent, and transactions of 1, 10
    // and 100 records.
    auto eos_pingpong = [&](const std::string& name, bool exclusive, bool idempotent, uint32_t records) {
      if (std::any_of(report.pingpong.begin(), report.pingpong.end(),
                      [&](const LatencyResult& l) { return l.system == name && l.value_bytes == kSize; }))
        return;
      const int64_t t0 = steady_ns();
      const std::string dir = run_dir(root, "eos-pingpong-" + std::string(exclusive ? "excl" : "shared") +
                                                (idempotent ? "-idempotent" : "") +
                                                (records > 0 ? "-txn-" + std::to_string(records) : ""));
      report.pingpong.push_back(run_sluice_pingpong(options, kSize, exclusive, dir, idempotent, records));
      remove_run_dir(dir);
      progress("pingpong", kSize, report.pingpong.back().system, report.pingpong.back().ok,
               report.pingpong.back().error, t0);
    };
    for (bool exclusive : {false, true})
      for (bool idempotent : {false, true})
        eos_pingpong(sluice_system_name(exclusive, idempotent), exclusive, idempotent, 0);
    for (uint32_t records : {1u, 10u, 100u})
      eos_pingpong("sluice/txn-" + std::to_string(records), false, false, records);
  }
  if (options.queue) {
    auto rtt_done = [&](int64_t t0) {
      const LatencyResult& l = report.queue_latency.back();
      progress("queue-rtt", 64, l.system, l.ok, l.error, t0);
    };
    auto tput_done = [&](int64_t t0) {
      const QueueThroughputResult& q = report.queue_throughput.back();
      progress("queue", 64, q.system + "/" + q.wait + " x" + std::to_string(q.workers), q.ok, q.error, t0);
    };
    const ipc::WaitStrategy waits[] = {ipc::WaitStrategy::kBusySpin, ipc::WaitStrategy::kBlock};
    if (options.run_ring) {
      const int64_t t0 = steady_ns();
      report.queue_latency.push_back(run_boost_mq_latency(options));
      rtt_done(t0);
    }
    for (ipc::WaitStrategy wait : waits) {
      if (!options.run_sluice) break;
      const int64_t t0 = steady_ns();
      const std::string dir = run_dir(root, std::string("queue-rtt-") + wait_name(wait));
      report.queue_latency.push_back(run_sluice_queue_latency(options, wait, dir));
      remove_run_dir(dir);
      rtt_done(t0);
    }
    for (uint32_t workers : options.queue_workers) {
      if (options.run_ring) {
        const int64_t t0 = steady_ns();
        report.queue_throughput.push_back(run_boost_mq_throughput(options, workers));
        tput_done(t0);
      }
      for (ipc::WaitStrategy wait : waits) {
        if (!options.run_sluice) break;
        const int64_t t0 = steady_ns();
        const std::string dir = run_dir(root, "queue-" + std::to_string(workers) + "-" + wait_name(wait));
        report.queue_throughput.push_back(run_sluice_queue_throughput(options, workers, wait, dir));
        remove_run_dir(dir);
        tput_done(t0);
      }
    }
  }
  if (options.run_ring && (options.pingpong || options.throughput))
    report.memcpy = run_memcpy_bandwidth(4096, 256u << 20, 4ull << 30);
  for (const auto& l : report.pingpong) {
    all_ok = all_ok && l.ok;
    report.pinned = report.pinned && l.pinned;
  }
  for (const auto& t : report.throughput) {
    all_ok = all_ok && t.ok;
    report.pinned = report.pinned && t.pinned;
  }
  for (const auto& l : report.queue_latency) {
    all_ok = all_ok && l.ok;
    report.pinned = report.pinned && l.pinned;
  }
  for (const auto& t : report.queue_throughput) {
    all_ok = all_ok && t.ok;
    report.pinned = report.pinned && t.pinned;
  }
  report.wall_seconds = static_cast<double>(steady_ns() - start) / 1e9;
  if (options.json) {
    print_table(stderr, report);
    print_json(stdout, report);
  } else {
    print_table(stdout, report);
  }
  return all_ok ? 0 : 1;
}

}  // namespace sluice::bench
