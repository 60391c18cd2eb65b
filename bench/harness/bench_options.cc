#include "bench/harness/bench_options.h"

#include <charconv>
#include <string_view>

namespace sluice::bench {

namespace {

bool parse_u64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

bool parse_list(std::string_view s, uint64_t min, uint64_t max, std::vector<uint32_t>* out) {
  out->clear();
  while (!s.empty()) {
    const size_t comma = s.find(',');
    uint64_t v;
    if (!parse_u64(s.substr(0, comma), &v) || v < min || v > max) return false;
    out->push_back(static_cast<uint32_t>(v));
    s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
  }
  return !out->empty();
}

}  // namespace

uint64_t messages_for(const BenchOptions& options, uint32_t value_bytes) {
  if (value_bytes <= 64) return options.messages;
  const uint64_t n = options.messages * 64 / value_bytes;
  return n < 1000 ? 1000 : n;
}

const char* wait_name(ipc::WaitStrategy w) {
  switch (w) {
    case ipc::WaitStrategy::kBusySpin: return "spin";
    case ipc::WaitStrategy::kSpinYield: return "yield";
    case ipc::WaitStrategy::kBlock: return "block";
  }
  return "?";
}

const char* bench_usage() {
  return "usage: sluice bench [--workload pingpong|throughput|queue|eos|all] [--sizes 64,4096]\n"
         "                    [--samples N] [--warmup N] [--messages N] [--wait spin|yield|block]\n"
         "                    [--queue-messages N] [--queue-samples N] [--queue-workers 1,2,4]\n"
         "                    [--json] [--dir DIR] [--segment-bytes B] [--no-prefault] [--no-verify]\n"
         "                    [--systems ring,sluice[/exclusive|/shared]]\n"
         "\n"
         "Two real processes (fork; pinned to two CPUs when allowed) exchange records\n"
         "through sluice and, in the same run, through a bare SPSC shared-memory ring\n"
         "that publishes its tail after every message; memcpy bandwidth is measured too.\n"
         "sluice's figures are printed as ratios to the ring's. The queue workload runs\n"
         "sluice's work queue against Boost.Interprocess message_queue between the same\n"
         "processes (64 B messages; one publisher and W workers, and a round trip).\n"
         "The eos workload runs the 64 B throughput and pingpong workloads with an\n"
         "idempotent producer and with transactions of 1, 10 and 100 records against\n"
         "a plain producer (shared and exclusive), as ratios.\n"
         "\n"
         "  --workload W      pingpong, throughput, queue, eos or all (default all)\n"
         "  --sizes LIST      value sizes in bytes (default 64,4096)\n"
         "  --samples N       pingpong round trips measured, every one kept (default 200000)\n"
         "  --warmup N        pingpong round trips before measuring (default 20000)\n"
         "  --messages N      throughput records for values up to 64 B (default 20000000);\n"
         "                    larger values move the same value bytes: N x 64 / size\n"
         "                    records (312500 at 4096 B by default)\n"
         "  --wait W          how the receiving side waits: spin (default), yield, block\n"
         "                    (pingpong and throughput; the queue workload runs spin and block)\n"
         "  --queue-messages N  queue throughput: timed messages per run (default 2000000)\n"
         "  --queue-samples N   queue latency: round trips measured per system (default\n"
         "                    50000), after 40960 unmeasured ones (the queues then run on\n"
         "                    recycled segments)\n"
         "  --queue-workers LIST  queue throughput: worker processes per run (default 1,2,4;\n"
         "                    1 to 15)\n"
         "  --json            print one JSON object on stdout (the table goes to stderr)\n"
         "  --dir DIR         parent directory of the buses (default: a fresh directory\n"
         "                    in /dev/shm, removed afterwards)\n"
         "  --segment-bytes B sluice segment size of pingpong and throughput runs (default\n"
         "                    4 MiB; retention keeps a window of 4 segments, the ring's\n"
         "                    16 MiB, and rolls recycle old segments; throughput topics\n"
         "                    back-pressure the producer instead of deleting)\n"
         "  --no-prefault     do not prefault sluice segments when they are mapped\n"
         "  --no-verify       sluice readers do not verify record checksums (the\n"
         "                    default verifies, as the library's readers do)\n"
         "  --systems LIST    ring, sluice or both (default both; ratios need both); ring\n"
         "                    also stands for the other baselines (memcpy, Boost message_queue);\n"
         "                    sluice/exclusive or sluice/shared runs one log writer mode only\n"
         "                    (pingpong and throughput)\n";
}

bool parse_bench_options(int argc, char** argv, BenchOptions* out, bool* help, std::string* error) {
  *help = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&](std::string_view* v) {
      if (i + 1 >= argc) {
        *error = std::string(arg) + " needs a value";
        return false;
      }
      *v = argv[++i];
      return true;
    };
    auto number = [&](uint64_t* n, uint64_t min) {
      std::string_view v;
      if (!value(&v)) return false;
      if (!parse_u64(v, n) || *n < min) {
        *error = std::string(arg) + ": expected an integer >= " + std::to_string(min) + ", got '" +
                 std::string(v) + "'";
        return false;
      }
      return true;
    };
    std::string_view v;
    if (arg == "--help" || arg == "-h") {
      *help = true;
      return true;
    } else if (arg == "--workload") {
      if (!value(&v)) return false;
      out->pingpong = v == "pingpong" || v == "all";
      out->throughput = v == "throughput" || v == "all";
      out->queue = v == "queue" || v == "all";
      out->eos = v == "eos" || v == "all";
      if (!out->pingpong && !out->throughput && !out->queue && !out->eos) {
        *error = "--workload: expected pingpong, throughput, queue, eos or all, got '" + std::string(v) + "'";
        return false;
      }
    } else if (arg == "--sizes") {
      if (!value(&v)) return false;
      if (!parse_list(v, 8, 16u << 20, &out->sizes)) {
        *error = "--sizes: expected a comma-separated list of sizes from 8 to 16777216, got '" +
                 std::string(v) + "'";
        return false;
      }
    } else if (arg == "--samples") {
      if (!number(&out->samples, 1)) return false;
    } else if (arg == "--warmup") {
      if (!number(&out->warmup, 0)) return false;
    } else if (arg == "--messages") {
      if (!number(&out->messages, 2)) return false;
    } else if (arg == "--queue-messages") {
      if (!number(&out->queue_messages, 2)) return false;
    } else if (arg == "--queue-samples") {
      if (!number(&out->queue_samples, 1)) return false;
    } else if (arg == "--queue-workers") {
      if (!value(&v)) return false;
      if (!parse_list(v, 1, 15, &out->queue_workers)) {
        *error = "--queue-workers: expected a comma-separated list of counts from 1 to 15, got '" +
                 std::string(v) + "'";
        return false;
      }
    } else if (arg == "--wait") {
      if (!value(&v)) return false;
      if (v == "spin") {
        out->wait = ipc::WaitStrategy::kBusySpin;
      } else if (v == "yield") {
        out->wait = ipc::WaitStrategy::kSpinYield;
      } else if (v == "block") {
        out->wait = ipc::WaitStrategy::kBlock;
      } else {
        *error = "--wait: expected spin, yield or block, got '" + std::string(v) + "'";
        return false;
      }
    } else if (arg == "--json") {
      out->json = true;
    } else if (arg == "--dir") {
      if (!value(&v)) return false;
      out->dir = std::string(v);
    } else if (arg == "--segment-bytes") {
      uint64_t b;
      if (!number(&b, 64u << 10)) return false;
      if (b > (1u << 30)) {
        *error = "--segment-bytes: at most 1073741824";
        return false;
      }
      out->segment_bytes = static_cast<uint32_t>(b);
    } else if (arg == "--systems") {
      if (!value(&v)) return false;
      out->run_ring = v.find("ring") != std::string_view::npos;
      out->run_sluice = v.find("sluice") != std::string_view::npos;
      const bool only_exclusive = v.find("sluice/exclusive") != std::string_view::npos;
      const bool only_shared = v.find("sluice/shared") != std::string_view::npos;
      out->run_exclusive = only_exclusive || !only_shared;
      out->run_shared = only_shared || !only_exclusive;
      if (!out->run_ring && !out->run_sluice) {
        *error = "--systems: expected ring, sluice or ring,sluice, got '" + std::string(v) + "'";
        return false;
      }
    } else if (arg == "--no-prefault") {
      out->prefault = false;
    } else if (arg == "--no-verify") {
      out->verify = false;
    } else {
      *error = "unknown option '" + std::string(arg) + "' (see --help)";
      return false;
    }
  }
  return true;
}

}  // namespace sluice::bench
