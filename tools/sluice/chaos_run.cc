// A whole chaos run: the bus set up, the supervisor, the checker, and the
// summary of what was done to the roles; and the drain of `outq` that the
// supervisor and the checker share.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>

#include "chaos.h"

namespace sluice::cli::chaos {

namespace {

// Entries for the ids of one window at up to 4,000 inputs/s (or the rate),
// 1/64 full on average: a bucket of 8 full of live ids (kBusy) stays
// unlikely in the catch-up's bursts too. A power of two, 16 MiB at most.
uint32_t dedup_capacity(const ChaosOptions& o) {
  const uint64_t every = std::max<uint32_t>(o.queue_every, 1);
  const uint64_t live = std::max<uint64_t>(o.rate, 4000) * (kQueueDedupWindowNs / 1'000'000'000) / every;
  uint64_t capacity = 16384;
  while (capacity < 64 * live && capacity < (1u << 19)) capacity *= 2;
  return static_cast<uint32_t>(capacity);
}

template <class T>
bool header_number(const HeadersView& h, std::string_view name, T* out) {
  const std::string_view s = h.find(name);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return !s.empty() && ec == std::errc{} && p == s.data() + s.size();
}

}  // namespace

Result<uint64_t> drain_queue(Worker& worker, std::vector<QueueSeen>& seen, int64_t timeout_ns) {
  std::vector<Delivery> d(256);
  uint64_t got = 0;
  for (int64_t wait = timeout_ns;; wait = 0) {
    auto n = worker.receive(d, wait);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) return got;
    for (size_t i = 0; i < *n; ++i) {
      QueueSeen q;
      InputValue v;
      if (header_number(d[i].headers(), kSourcePartition, &q.partition) &&
          header_number(d[i].headers(), kSourceOffset, &q.offset) && q.partition < kPartitions &&
          parse_value(d[i].value(), &v)) {
        q.key = v.key;
        q.n = v.n;
        q.tag = parse_tag(d[i].headers().find(kTxnTag));
      } else {
        q.partition = kPartitions;
      }
      seen.push_back(q);
      if (auto ok = d[i].ack(); !ok) return std::unexpected(ok.error());
      d[i] = Delivery();
    }
    got += *n;
  }
}

Status set_up(Bus& bus, const ChaosOptions& options) {
  auto names = bus.list_topics();
  if (!names) return std::unexpected(names.error());
  for (const std::string& n : *names)
    if (n == kInTopic || n == kOutTopic)
      return make_error(Errc::kAlreadyExists, "the bus in " + bus.dir() + " already has a topic '" + n +
                                                  "': a chaos run needs a new or empty directory");
  auto queues = bus.list_queues();
  if (!queues) return std::unexpected(queues.error());
  if (std::find(queues->begin(), queues->end(), kOutQueue) != queues->end())
    return make_error(Errc::kAlreadyExists, "the bus in " + bus.dir() + " already has a queue '" +
                                                std::string(kOutQueue) + "': a chaos run needs a new or empty "
                                                "directory");
  TopicOptions t;
  t.partitions = kPartitions;
  t.segment_bytes = options.segment_bytes;
  // A stopped zombie's claim in flight is repaired after this long (its
  // replacement's takeover waits for it); live writers publish in microseconds.
  t.claim_timeout_ns = 1'000'000'000;
  for (std::string_view topic : {kInTopic, kOutTopic})
    if (auto ok = bus.create_topic(topic, t); !ok) return ok;
  QueueOptions q;
  q.segment_bytes = options.segment_bytes;
  q.dead_letter_queue = "-";  // its workers ack everything
  q.dedup_window_ns = kQueueDedupWindowNs;
  q.dedup_capacity = dedup_capacity(options);
  if (auto ok = bus.create_queue(kOutQueue, q); !ok) return ok;
  // The group's offsets file, from the beginning of `in`, before any
  // transformer commits to it.
  ConsumerOptions co;
  co.auto_commit = false;
  auto group = bus.create_consumer(kInTopic, kGroup, co);
  if (!group) return std::unexpected(group.error());
  return {};
}

Result<bool> caught_up(const Bus& bus) {
  auto in = bus.describe_topic(kInTopic);
  if (!in) return std::unexpected(in.error());
  auto g = bus.describe_group(kGroup);
  if (!g) return std::unexpected(g.error());
  for (const PartitionInfo& p : in->partitions) {
    bool found = p.end_offset == 0;
    for (const PartitionLag& l : g->partitions)
      if (l.topic == kInTopic && l.partition == p.partition)
        found = p.end_offset == 0 || (l.committed != kNoOffset && l.committed >= p.end_offset);
    if (!found) return false;
  }
  return true;
}

Result<ChaosReport> run(const std::string& dir, const ChaosOptions& o, const Launcher& launch, FILE* log) {
  const auto started = std::chrono::steady_clock::now();
  auto bus = Bus::open(dir);
  if (!bus) return std::unexpected(bus.error());
  if (auto ok = set_up(*bus, o); !ok) return std::unexpected(ok.error());
  std::string length;
  if (o.duration_ms > 0) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f s", o.duration_ms / 1000.0);
    length = buf;
  }
  if (o.records_per_partition > 0)
    length += (length.empty() ? "" : " or ") + std::to_string(o.records_per_partition) + " records per partition";
  std::fprintf(log, "sluice chaos: %s, seed %llu, %s, input %llu records/s, %u transformers, bus %s\n",
               std::string(mode_name(o.mode)).c_str(), (unsigned long long)o.seed, length.c_str(),
               (unsigned long long)o.rate, o.transformers, dir.c_str());
  std::fflush(log);
  auto tally = supervise(dir, o, launch, log);
  if (!tally) return std::unexpected(tally.error());
  std::fprintf(log, "checks\n");
  auto report = check(*bus, o, std::move(*tally), log);
  if (!report) return std::unexpected(report.error());
  ChaosReport& r = *report;
  const ChaosTally& t = r.tally;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::fprintf(log, "summary (%.1f s)\n", r.seconds);
  std::fprintf(log, "  %-22s %llu records; %llu SIGKILLs of the input producer, %llu resends refused as duplicates\n",
               "input", (unsigned long long)r.inputs, (unsigned long long)t.input_kills,
               (unsigned long long)r.input_duplicates);
  std::fprintf(log, "  %-22s %llu SIGKILLs", "transformers", (unsigned long long)t.transformer_kills);
  if (o.mode == Mode::kExactlyOnce)
    std::fprintf(log, ", %llu past their timeout (aborted by a helper), %llu zombies: %llu fenced; %llu sends refused",
                 (unsigned long long)t.timed_out_exits, (unsigned long long)t.zombies_stopped,
                 (unsigned long long)t.zombies_fenced, (unsigned long long)r.fenced_sends);
  std::fprintf(log, "\n");
  if (o.mode == Mode::kExactlyOnce)
    std::fprintf(log, "  %-22s %llu committed, %llu aborted by their holders, %llu by others (dead, late or fenced)\n",
                 "transactions", (unsigned long long)r.commits, (unsigned long long)r.holder_aborts,
                 (unsigned long long)r.helper_aborts);
  std::fprintf(log, "  %-22s %llu for %llu inputs: %llu duplicates, %llu lost; %llu seen uncommitted, then aborted\n",
               "outputs", (unsigned long long)r.outputs, (unsigned long long)r.inputs,
               (unsigned long long)r.duplicates, (unsigned long long)r.lost,
               (unsigned long long)r.uncommitted_later_aborted);
  if (o.queue_every > 0)
    std::fprintf(log, "  %-22s %llu messages for %llu inputs: %llu duplicates, %llu lost; %llu publishes aborted\n",
                 std::string(kOutQueue).c_str(), (unsigned long long)r.queue_messages, (unsigned long long)r.queue_due,
                 (unsigned long long)r.queue_duplicates, (unsigned long long)r.queue_lost,
                 (unsigned long long)(r.queue_published - std::min(r.queue_published, r.queue_messages)));
  uint64_t failed = 0;
  for (const Invariant& i : r.invariants) failed += !i.ok;
  if (failed == 0)
    std::fprintf(log, "all %zu invariants hold (%s)\n", r.invariants.size(), std::string(mode_name(o.mode)).c_str());
  std::fflush(log);
  return report;
}

}  // namespace sluice::cli::chaos
