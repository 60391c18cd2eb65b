#include "bench/harness/report.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "bench/harness/ring_side.h"
#include "bench/harness/sluice_side.h"
#include "bench/harness/workloads.h"  // queue_warmup_round_trips

namespace sluice::bench {

namespace {

const LatencyResult* find_latency(const BenchReport& r, std::string_view system, uint32_t size) {
  for (const auto& l : r.pingpong)
    if (l.ok && l.system == system && l.value_bytes == size) return &l;
  return nullptr;
}

const ThroughputResult* find_throughput(const BenchReport& r, std::string_view system, uint32_t size) {
  for (const auto& t : r.throughput)
    if (t.ok && t.system == system && t.value_bytes == size) return &t;
  return nullptr;
}

std::string size_text(uint32_t bytes) {
  if (bytes >= 1024 && bytes % 1024 == 0) return std::to_string(bytes / 1024) + " KiB";
  return std::to_string(bytes) + " B";
}

// "sluice/shared" -> "sluice_shared"
std::string key_of(std::string_view system) {
  std::string k(system);
  for (char& c : k)
    if (c == '/' || c == '-') c = '_';
  return k;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string segments_text(const BenchOptions& o) {
  return (o.segment_bytes != 0 ? std::to_string(o.segment_bytes) + "-byte" : std::string("4 MiB")) +
         " segments, a window of 4 recycled (retention for pingpong, back-pressure for throughput)";
}

const char* goal_text(Ratio::Goal g) { return g == Ratio::Goal::kAtMost ? "<=" : g == Ratio::Goal::kAtLeast ? ">=" : ""; }

// Ratios are printed with two decimals, small ones (the queue's 1/50) with
// more, so that neither a value nor a target reads as 0.00.
std::string number_text(double v, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, v != 0 && v < 0.1 ? "%*.4f" : "%*.2f", width, v);
  return buf;
}
std::string target_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, v < 0.1 ? "%.2f" : "%.1f", v);
  return buf;
}

const LatencyResult* find_queue_latency(const BenchReport& r, std::string_view system) {
  for (const auto& l : r.queue_latency)
    if (l.ok && l.system == system) return &l;
  return nullptr;
}

const QueueThroughputResult* find_queue_throughput(const BenchReport& r, std::string_view system,
                                                   std::string_view wait, uint32_t workers) {
  for (const auto& t : r.queue_throughput)
    if (t.ok && t.system == system && t.wait == wait && t.workers == workers) return &t;
  return nullptr;
}

std::string per_worker_text(const QueueThroughputResult& t) {
  std::string s;
  for (size_t i = 0; i < t.per_worker.size(); ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%.0fk", i ? "/" : "", static_cast<double>(t.per_worker[i]) / 1e3);
    s += buf;
  }
  return s;
}

}  // namespace

std::vector<Ratio> compute_ratios(const BenchReport& report) {
  std::vector<Ratio> out;
  const char* sluices[] = {"sluice/shared", "sluice/exclusive"};
  for (uint32_t size : report.options.sizes) {
    const std::string s = std::to_string(size) + "B";
    if (const LatencyResult* ring = find_latency(report, "ring", size)) {
      for (const char* sys : sluices) {
        const LatencyResult* l = find_latency(report, sys, size);
        if (!l) continue;
        Ratio p50{"pingpong_p50_" + s + "_" + key_of(sys), "pingpong p50, " + size_text(size) + ", " + sys,
                  l->p50_ns / ring->p50_ns};
        if (size == 64) p50.goal = Ratio::Goal::kAtMost, p50.target = 1.5;
        out.push_back(p50);
        out.push_back(Ratio{"pingpong_p999_" + s + "_" + key_of(sys),
                            "pingpong p99.9, " + size_text(size) + ", " + sys, l->p999_ns / ring->p999_ns});
      }
    }
    for (const char* sys : {"ring", "sluice/shared", "sluice/exclusive"}) {
      const LatencyResult* l = find_latency(report, sys, size);
      if (!l || l->p50_ns <= 0) continue;
      Ratio tail{"tail_p999_over_p50_" + s + "_" + key_of(sys),
                 "p99.9 / p50 (own), " + size_text(size) + ", " + sys, l->p999_ns / l->p50_ns};
      if (std::string_view(sys) != "ring") tail.goal = Ratio::Goal::kAtMost, tail.target = 3.0;
      out.push_back(tail);
    }
    if (const ThroughputResult* ring = find_throughput(report, "ring", size)) {
      for (const char* sys : {"sluice/exclusive", "sluice/shared"}) {
        const ThroughputResult* t = find_throughput(report, sys, size);
        if (!t || ring->msgs_per_s <= 0) continue;
        Ratio r{"throughput_" + s + "_" + key_of(sys), "throughput, " + size_text(size) + ", " + sys,
                t->msgs_per_s / ring->msgs_per_s};
        if (size == 64) r.goal = Ratio::Goal::kAtLeast, r.target = 0.7;
        if (size == 4096) r.goal = Ratio::Goal::kAtLeast, r.target = 0.6;
        out.push_back(r);
      }
    }
  }
  // The eos workload: idempotent producing against plain, 64 B.
  for (bool exclusive : {false, true}) {
    const ThroughputResult* plain = find_throughput(report, sluice_system_name(exclusive), 64);
    const ThroughputResult* idem = find_throughput(report, sluice_system_name(exclusive, true), 64);
    if (!plain || !idem || plain->msgs_per_s <= 0) continue;
    const std::string sys = sluice_system_name(exclusive, true);
    out.push_back(Ratio{"throughput_64B_" + key_of(sys) + "_vs_plain",
                        "throughput, 64 B, " + sys + " / plain", idem->msgs_per_s / plain->msgs_per_s,
                        Ratio::Goal::kAtLeast, 0.9});
  }
  if (const ThroughputResult* plain = find_throughput(report, "sluice/shared", 64); plain && plain->msgs_per_s > 0) {
    for (uint32_t records : {1u, 10u, 100u}) {
      const std::string sys = "sluice/txn-" + std::to_string(records);
      const ThroughputResult* t = find_throughput(report, sys, 64);
      if (!t) continue;
      Ratio r{"throughput_64B_" + key_of(sys) + "_vs_plain", "throughput, 64 B, " + sys + " / plain shared",
              t->msgs_per_s / plain->msgs_per_s};
      if (records == 100) r.goal = Ratio::Goal::kAtLeast, r.target = 0.5;  // at most 2x the cost
      out.push_back(r);
    }
  }
  // The eos workload's round trips, 64 B p50, against plain shared (the
  // issue sets no latency target; reported for comparison).
  if (const LatencyResult* plain = find_latency(report, "sluice/shared", 64); plain && plain->p50_ns > 0) {
    for (const std::string& sys : {std::string(sluice_system_name(false, true)), std::string("sluice/txn-1"),
                                  std::string("sluice/txn-10"), std::string("sluice/txn-100")}) {
      const LatencyResult* l = find_latency(report, sys, 64);
      if (!l) continue;
      out.push_back(Ratio{"pingpong_p50_64B_" + key_of(sys) + "_vs_plain",
                          "pingpong p50, 64 B, " + sys + " / plain shared", l->p50_ns / plain->p50_ns});
    }
  }
  if (const LatencyResult* plain = find_latency(report, "sluice/exclusive", 64); plain && plain->p50_ns > 0) {
    const std::string sys = sluice_system_name(true, true);
    if (const LatencyResult* l = find_latency(report, sys, 64))
      out.push_back(Ratio{"pingpong_p50_64B_" + key_of(sys) + "_vs_plain",
                          "pingpong p50, 64 B, " + sys + " / plain", l->p50_ns / plain->p50_ns});
  }
  // The queue workload, against Boost.Interprocess message_queue.
  if (const LatencyResult* boost = find_queue_latency(report, "boost/message_queue"); boost && boost->p50_ns > 0) {
    for (const char* wait : {"spin", "block"}) {
      const std::string sys = std::string("sluice/queue/") + wait;
      const LatencyResult* l = find_queue_latency(report, sys);
      if (!l) continue;
      Ratio p50{"queue_rtt_p50_" + key_of(sys) + "_vs_boost", std::string("queue round trip p50, ") + wait + " / boost",
                l->p50_ns / boost->p50_ns, Ratio::Goal::kAtMost, std::string_view(wait) == "spin" ? 1.0 / 50 : 1.0};
      out.push_back(p50);
      if (boost->p999_ns > 0)
        out.push_back(Ratio{"queue_rtt_p999_" + key_of(sys) + "_vs_boost",
                            std::string("queue round trip p99.9, ") + wait + " / boost", l->p999_ns / boost->p999_ns});
    }
  }
  for (uint32_t workers : report.options.queue_workers) {
    const QueueThroughputResult* boost = find_queue_throughput(report, "boost/message_queue", "block", workers);
    if (!boost || boost->msgs_per_s <= 0) continue;
    for (const char* wait : {"spin", "block"}) {
      const QueueThroughputResult* t = find_queue_throughput(report, "sluice/queue", wait, workers);
      if (!t) continue;
      const std::string w = std::to_string(workers);
      out.push_back(Ratio{"queue_throughput_" + w + "w_sluice_queue_" + wait + "_vs_boost",
                          "queue acked/s, " + w + " worker" + (workers == 1 ? "" : "s") + ", " + wait + " / boost",
                          t->msgs_per_s / boost->msgs_per_s, Ratio::Goal::kAtLeast, 2.0});
    }
  }
  return out;
}

void print_table(std::FILE* out, const BenchReport& r) {
  const BenchOptions& o = r.options;
  if (!r.pingpong.empty() || !r.throughput.empty())
    std::fprintf(out, "sluice bench: two processes%s, wait %s, buses in %s\n",
                 r.pinned ? " pinned to two CPUs" : " (NOT pinned)", wait_name(o.wait), r.dir.c_str());
  else
    std::fprintf(out, "sluice bench: processes%s, buses in %s\n", r.pinned ? " pinned" : " (NOT all pinned)",
                 r.dir.c_str());
  if (!r.pingpong.empty() || !r.throughput.empty())
    std::fprintf(out,
                 "sluice: 1 partition, %s%s,\n"
                 "producer send() (copying), reader %s checksums (in a group for throughput);\n"
                 "ring: fixed slots in %llu MiB, tail published after every message\n",
                 segments_text(o).c_str(), o.prefault ? ", prefaulted" : "", o.verify ? "verifying" : "NOT verifying",
                 static_cast<unsigned long long>(kRingBytes >> 20));
  if (!r.pingpong.empty()) {
    std::fprintf(out, "\npingpong: round trip A->B->A, %llu samples after %llu warm-up, every sample kept (us)\n",
                 static_cast<unsigned long long>(o.samples), static_cast<unsigned long long>(o.warmup));
    if (std::any_of(r.pingpong.begin(), r.pingpong.end(),
                    [](const LatencyResult& l) { return l.system.starts_with("sluice/txn-"); }))
      std::fprintf(out,
                   "(sluice/txn-N: A commits a transaction of N records, B echoes once it has read all N, read\n"
                   "committed; at most 2,000,000 records a run, so fewer round trips for N > 10)\n");
    std::fprintf(out, "  %6s  %-28s %8s %8s %8s %8s %9s %8s\n", "size", "system", "min", "p50", "p99", "p99.9",
                 "max", "mean");
    for (const auto& l : r.pingpong) {
      if (!l.ok) {
        std::fprintf(out, "  %6s  %-28s FAILED: %s\n", size_text(l.value_bytes).c_str(), l.system.c_str(),
                     l.error.c_str());
        continue;
      }
      std::fprintf(out, "  %6s  %-28s %8.3f %8.3f %8.3f %8.3f %9.3f %8.3f\n", size_text(l.value_bytes).c_str(),
                   l.system.c_str(), l.min_ns / 1e3, l.p50_ns / 1e3, l.p99_ns / 1e3, l.p999_ns / 1e3,
                   l.max_ns / 1e3, l.mean_ns / 1e3);
    }
  }
  if (!r.throughput.empty()) {
    std::fprintf(out,
                 "\nthroughput: A sends as fast as it can; B times its first to its last record (A's rate:\n"
                 "A's own time to hand every record over, for diagnosis; a ring producer waits when it is full)\n");
    std::fprintf(out, "  %6s  %-28s %10s %9s %9s %12s %12s\n", "size", "system", "records", "seconds", "Mmsg/s",
                 "GB/s values", "A's Mmsg/s");
    for (const auto& t : r.throughput) {
      if (!t.ok) {
        std::fprintf(out, "  %6s  %-28s FAILED: %s\n", size_text(t.value_bytes).c_str(), t.system.c_str(),
                     t.error.c_str());
        continue;
      }
      std::fprintf(out, "  %6s  %-28s %10llu %9.3f %9.2f %12.2f %12.2f\n", size_text(t.value_bytes).c_str(),
                   t.system.c_str(), static_cast<unsigned long long>(t.messages), t.seconds, t.msgs_per_s / 1e6,
                   t.value_gb_per_s,
                   t.producer_seconds > 0 ? static_cast<double>(t.messages) / t.producer_seconds / 1e6 : 0.0);
    }
  }
  if (!r.queue_latency.empty()) {
    std::fprintf(out,
                 "\nqueue round trip, 64 B: A publishes on q-ping; B's worker receives, acks and publishes it on\n"
                 "q-pong; A's worker receives and acks it (sluice/queue/W: workers wait by W). Boost: A sends on\n"
                 "a message_queue, B receives and sends it back on another, blocking. Queues: window 1024, 1 MiB\n"
                 "segments%s, max depth 2 MiB, recycled after the warm-up. %llu samples after %llu warm-up,\n"
                 "every sample kept (us)\n",
                 o.prefault ? " (prefaulted)" : "", static_cast<unsigned long long>(o.queue_samples),
                 static_cast<unsigned long long>(queue_warmup_round_trips()));
    std::fprintf(out, "  %-32s %8s %8s %8s %8s %9s %8s\n", "system", "min", "p50", "p99", "p99.9", "max", "mean");
    for (const auto& l : r.queue_latency) {
      if (!l.ok) {
        std::fprintf(out, "  %-32s FAILED: %s\n", l.system.c_str(), l.error.c_str());
        continue;
      }
      std::fprintf(out, "  %-32s %8.3f %8.3f %8.3f %8.3f %9.3f %8.3f\n", l.system.c_str(), l.min_ns / 1e3,
                   l.p50_ns / 1e3, l.p99_ns / 1e3, l.p999_ns / 1e3, l.max_ns / 1e3, l.mean_ns / 1e3);
    }
  }
  if (!r.queue_throughput.empty()) {
    const QueueThroughputResult& first = r.queue_throughput.front();
    const QueueThroughputResult* widest = &first;  // its placement says the most
    for (const auto& t : r.queue_throughput)
      if (t.workers > widest->workers) widest = &t;
    std::fprintf(out,
                 "\nqueue throughput, 64 B: one publisher (member 0), W workers (%s).\n"
                 "Timed from the first to the last ack (Boost: receive) over all workers, %llu messages after\n"
                 "%llu untimed; the publisher's own rate is a diagnostic (it may run ahead of the workers).\n",
                 widest->placement.c_str(), static_cast<unsigned long long>(first.messages),
                 static_cast<unsigned long long>(first.warmup));
    for (const char* sys : {"sluice/queue", "boost/message_queue"})
      for (const auto& t : r.queue_throughput)
        if (t.system == sys) {
          std::fprintf(out, "%s: %s\n", sys, t.config.c_str());
          break;
        }
    std::fprintf(out, "  %-26s %7s %9s %9s %12s  %s\n", "system", "workers", "seconds", "Mmsg/s", "pub. Mmsg/s",
                 "per worker");
    for (const auto& t : r.queue_throughput) {
      const std::string sys = t.system + "/" + t.wait;
      if (!t.ok) {
        std::fprintf(out, "  %-26s %7u FAILED: %s\n", sys.c_str(), t.workers, t.error.c_str());
        continue;
      }
      std::fprintf(out, "  %-26s %7u %9.3f %9.2f %12.2f  %s", sys.c_str(), t.workers, t.seconds, t.msgs_per_s / 1e6,
                   t.publisher_seconds > 0 ? static_cast<double>(t.messages) / t.publisher_seconds / 1e6 : 0.0,
                   per_worker_text(t).c_str());
      if (t.publisher_retries != 0 || t.redelivered != 0 || t.lease_lost != 0)
        std::fprintf(out, "  (publish retries %llu, redelivered %llu, lease lost %llu)",
                     static_cast<unsigned long long>(t.publisher_retries),
                     static_cast<unsigned long long>(t.redelivered), static_cast<unsigned long long>(t.lease_lost));
      std::fprintf(out, "\n");
    }
  }
  if (r.memcpy.ran)
    std::fprintf(out, "\nmemcpy: %u-byte blocks over %llu MiB, %.1f GiB copied, one process: %.2f GB/s\n",
                 r.memcpy.block_bytes, static_cast<unsigned long long>(r.memcpy.buffer_bytes >> 20),
                 static_cast<double>(r.memcpy.total_bytes) / (1ull << 30), r.memcpy.gb_per_s);
  const auto ratios = compute_ratios(r);
  if (!ratios.empty()) {
    std::fprintf(out, "\nratios (same run)                                           value  target\n");
    for (const auto& x : ratios) {
      if (x.goal == Ratio::Goal::kNone) {
        std::fprintf(out, "  %-56s %s\n", x.label.c_str(), number_text(x.value, 6).c_str());
      } else {
        std::fprintf(out, "  %-56s %s  %s %s  %s\n", x.label.c_str(), number_text(x.value, 6).c_str(),
                     goal_text(x.goal), target_text(x.target).c_str(), x.pass() ? "met" : "MISSED");
      }
    }
  }
  std::fprintf(out, "\ntotal %.1f s\n", r.wall_seconds);
}

namespace {
// The elements of a JSON array of latency results (the brackets are the caller's).
void print_latency_json(std::FILE* out, const std::vector<LatencyResult>& rows) {
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& l = rows[i];
    std::fprintf(out,
                 "%s\n    {\"system\": %s, \"value_bytes\": %u, \"ok\": %s, \"error\": %s, \"samples\": %llu, "
                 "\"min_ns\": %.1f, \"p50_ns\": %.1f, \"p99_ns\": %.1f, \"p999_ns\": %.1f, \"max_ns\": %.1f, "
                 "\"mean_ns\": %.1f}",
                 i ? "," : "", json_string(l.system).c_str(), l.value_bytes, l.ok ? "true" : "false",
                 json_string(l.error).c_str(), static_cast<unsigned long long>(l.samples), l.min_ns, l.p50_ns,
                 l.p99_ns, l.p999_ns, l.max_ns, l.mean_ns);
  }
}
}  // namespace

void print_json(std::FILE* out, const BenchReport& r) {
  const BenchOptions& o = r.options;
  std::fprintf(out, "{\n  \"config\": {\"wait\": \"%s\", \"pinned\": %s, \"dir\": %s, \"samples\": %llu, "
               "\"warmup\": %llu, \"messages\": %llu, \"segment_bytes\": %u, \"prefault\": %s, \"verify\": %s, "
               "\"ring_bytes\": %u, \"sizes\": [",
               wait_name(o.wait), r.pinned ? "true" : "false", json_string(r.dir).c_str(),
               static_cast<unsigned long long>(o.samples), static_cast<unsigned long long>(o.warmup),
               static_cast<unsigned long long>(o.messages), o.segment_bytes, o.prefault ? "true" : "false",
               o.verify ? "true" : "false", static_cast<unsigned>(kRingBytes));
  for (size_t i = 0; i < o.sizes.size(); ++i) std::fprintf(out, "%s%u", i ? ", " : "", o.sizes[i]);
  std::fprintf(out, "]},\n  \"pingpong\": [");
  print_latency_json(out, r.pingpong);
  std::fprintf(out, "\n  ],\n  \"throughput\": [");
  for (size_t i = 0; i < r.throughput.size(); ++i) {
    const auto& t = r.throughput[i];
    std::fprintf(out,
                 "%s\n    {\"system\": %s, \"value_bytes\": %u, \"ok\": %s, \"error\": %s, \"messages\": %llu, "
                 "\"seconds\": %.6f, \"msgs_per_s\": %.0f, \"value_gb_per_s\": %.4f, \"producer_seconds\": %.6f}",
                 i ? "," : "", json_string(t.system).c_str(), t.value_bytes, t.ok ? "true" : "false",
                 json_string(t.error).c_str(), static_cast<unsigned long long>(t.messages), t.seconds,
                 t.msgs_per_s, t.value_gb_per_s, t.producer_seconds);
  }
  std::fprintf(out,
               "\n  ],\n  \"queue\": {\"value_bytes\": 64, \"messages\": %llu, \"samples\": %llu, "
               "\"warmup\": %llu, \"latency\": [",
               static_cast<unsigned long long>(o.queue_messages), static_cast<unsigned long long>(o.queue_samples),
               static_cast<unsigned long long>(queue_warmup_round_trips()));
  print_latency_json(out, r.queue_latency);
  std::fprintf(out, "\n  ], \"throughput\": [");
  for (size_t i = 0; i < r.queue_throughput.size(); ++i) {
    const auto& t = r.queue_throughput[i];
    std::string per;
    for (size_t k = 0; k < t.per_worker.size(); ++k)
      per += (k ? ", " : "") + std::to_string(t.per_worker[k]);
    std::fprintf(out,
                 "%s\n    {\"system\": %s, \"wait\": %s, \"workers\": %u, \"value_bytes\": %u, \"batch\": %u, "
                 "\"ok\": %s, \"error\": %s, \"messages\": %llu, \"seconds\": %.6f, \"msgs_per_s\": %.0f, "
                 "\"publisher_seconds\": %.6f, \"publisher_retries\": %llu, \"per_worker\": [%s], "
                 "\"redelivered\": %llu, \"lease_lost\": %llu, \"pinned\": %s, \"placement\": %s}",
                 i ? "," : "", json_string(t.system).c_str(), json_string(t.wait).c_str(), t.workers,
                 t.value_bytes, t.batch, t.ok ? "true" : "false", json_string(t.error).c_str(),
                 static_cast<unsigned long long>(t.messages), t.seconds, t.msgs_per_s, t.publisher_seconds,
                 static_cast<unsigned long long>(t.publisher_retries), per.c_str(),
                 static_cast<unsigned long long>(t.redelivered), static_cast<unsigned long long>(t.lease_lost),
                 t.pinned ? "true" : "false", json_string(t.placement).c_str());
  }
  std::fprintf(out, "\n  ]},\n  \"memcpy\": ");
  if (r.memcpy.ran)
    std::fprintf(out, "{\"block_bytes\": %u, \"buffer_bytes\": %llu, \"total_bytes\": %llu, \"gb_per_s\": %.3f}",
                 r.memcpy.block_bytes, static_cast<unsigned long long>(r.memcpy.buffer_bytes),
                 static_cast<unsigned long long>(r.memcpy.total_bytes), r.memcpy.gb_per_s);
  else
    std::fprintf(out, "null");
  std::fprintf(out, ",\n  \"ratios\": {");
  const auto ratios = compute_ratios(r);
  for (size_t i = 0; i < ratios.size(); ++i) {
    const auto& x = ratios[i];
    std::fprintf(out, "%s\n    %s: {\"value\": %.4f", i ? "," : "", json_string(x.key).c_str(), x.value);
    if (x.goal != Ratio::Goal::kNone)
      std::fprintf(out, ", \"target\": \"%s %.2f\", \"met\": %s", goal_text(x.goal), x.target,
                   x.pass() ? "true" : "false");
    std::fprintf(out, "}");
  }
  std::fprintf(out, "\n  },\n  \"wall_seconds\": %.2f\n}\n", r.wall_seconds);
}

}  // namespace sluice::bench
