// The chaos run's checker (docs/exactly-once.md, section 9). Once every
// role has stopped it reads `in` and `out` whole and checks, printing each:
// the input log is dense (the idempotent producer wrote each record once),
// every input has exactly one output (at least one, at least once), each
// key's outputs follow its inputs, `outq` holds one message per input due
// one (none lost at least once), each from its output's transaction, in
// its key's order, the group's offsets are at `in`'s end,
// the transformers' committed frames carry dense sequences, nothing is left
// undecided (LSO = end), the read-committed tail saw exactly what committed,
// the supervisor's expectations held, and `sluice verify` is clean.
#include <algorithm>
#include <charconv>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "chaos.h"

namespace sluice::cli::chaos {

namespace {

constexpr std::string_view kCheckGroup = "chaos-check";
constexpr int64_t kIdleNs = 100'000'000;  // nothing more to read: every writer has stopped

struct Input {
  uint64_t offset = 0;
  uint32_t key = 0;
  uint64_t n = 0;
  std::string value;
  uint32_t outputs = 0;
  uint32_t messages = 0;  // in `outq`
  uint64_t tag = 0;       // its (last) output's transaction (parse_tag)
};

struct InputLog {
  std::vector<std::vector<Input>> parts = std::vector<std::vector<Input>>(kPartitions);
  std::vector<std::unordered_map<uint64_t, size_t>> at = std::vector<std::unordered_map<uint64_t, size_t>>(kPartitions);
  uint64_t records = 0, bad = 0;
  std::string first_bad;
};

template <class T>
bool to_number(std::string_view s, T* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc{} && p == s.data() + s.size() && !s.empty();
}

// Reads every record of `topic` with `consumer` until it stays idle.
template <class F>
Status read_all(Consumer& consumer, F&& each) {
  std::vector<RecordView> batch(512);
  for (;;) {
    auto n = consumer.poll(batch, kIdleNs);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) return {};
    for (size_t i = 0; i < *n; ++i) each(batch[i]);
  }
}

class Checker {
 public:
  Checker(Bus& bus, const ChaosOptions& o, ChaosTally tally, FILE* log) : bus_(bus), o_(o), log_(log) {
    report_.tally = std::move(tally);
  }
  Result<ChaosReport> run();

 private:
  void expect(std::string name, bool ok, std::string detail) {
    std::fprintf(log_, "  %-22s %s: %s\n", name.c_str(), ok ? "OK" : "FAILED", detail.c_str());
    std::fflush(log_);
    report_.invariants.push_back(Invariant{std::move(name), ok, std::move(detail)});
  }
  Status read_input();
  Status read_output();
  Status queue();
  Status offsets_and_lso();
  void tails();
  Status verify();
  void counters();

  Bus& bus_;
  const ChaosOptions& o_;
  FILE* log_;
  ChaosReport report_;
  InputLog in_;
  std::vector<std::vector<uint64_t>> out_offsets_ = std::vector<std::vector<uint64_t>>(kPartitions);
};

Status Checker::read_input() {
  ConsumerOptions co;
  co.auto_commit = false;
  auto c = bus_.create_consumer(kInTopic, "", co);
  if (!c) return std::unexpected(c.error());
  std::vector<int32_t> key_partition(kKeys, -1);
  uint64_t pid = 0;
  auto bad = [&](const RecordView& r, const std::string& why) {
    if (in_.bad++ == 0)
      in_.first_bad = "partition " + std::to_string(r.partition) + " offset " + std::to_string(r.offset) + ": " + why;
  };
  auto ok = read_all(*c, [&](const RecordView& r) {
    InputValue v;
    std::vector<Input>& part = in_.parts[r.partition];
    if (!parse_value(r.value, &v)) return bad(r, "not an input value");
    if (v.index != part.size()) return bad(r, "index " + std::to_string(v.index) + " where " +
                                                  std::to_string(part.size()) + " was due (a duplicate or a gap)");
    if (pid == 0) pid = r.producer_id;
    if (r.producer_id != pid || r.sequence != static_cast<uint32_t>(v.index))
      return bad(r, "sequence " + std::to_string(r.sequence) + " of producer " + std::to_string(r.producer_id));
    if (key_partition[v.key] < 0) key_partition[v.key] = static_cast<int32_t>(r.partition);
    if (key_partition[v.key] != static_cast<int32_t>(r.partition)) return bad(r, "key in two partitions");
    in_.at[r.partition][r.offset] = part.size();
    part.push_back(Input{r.offset, v.key, v.n, std::string(r.value), 0});
    ++in_.records;
  });
  if (!ok) return ok;
  report_.inputs = in_.records;
  std::string sizes;
  for (const auto& p : in_.parts) sizes += (sizes.empty() ? "" : " ") + std::to_string(p.size());
  expect("input log", in_.bad == 0 && in_.records > 0,
         std::to_string(in_.records) + " records (" + sizes + "), each index and sequence once, from 0" +
             (in_.bad ? "; " + std::to_string(in_.bad) + " bad, first: " + in_.first_bad : ""));
  return {};
}

Status Checker::read_output() {
  ConsumerOptions co;
  co.auto_commit = false;
  auto c = bus_.create_consumer(kOutTopic, kCheckGroup, co);
  if (!c) return std::unexpected(c.error());
  const bool exactly = o_.mode == Mode::kExactlyOnce;
  uint64_t outputs = 0, unknown = 0, mismatched = 0, order_errors = 0, replays = 0, seq_errors = 0;
  std::string first_problem;
  auto note = [&](uint64_t& counter, const RecordView& r, const std::string& why) {
    ++counter;
    if (first_problem.empty())
      first_problem = "out " + std::to_string(r.partition) + "@" + std::to_string(r.offset) + ": " + why;
  };
  std::vector<int64_t> last_n(kKeys, -1);
  std::map<std::pair<uint64_t, uint32_t>, uint32_t> next_seq;  // (pid, partition) -> sequence due
  auto ok = read_all(*c, [&](const RecordView& r) {
    ++outputs;
    out_offsets_[r.partition].push_back(r.offset);
    uint32_t sp = 0;
    uint64_t so = 0;
    if (!to_number(r.headers.find(kSourcePartition), &sp) || !to_number(r.headers.find(kSourceOffset), &so) ||
        sp >= kPartitions || !in_.at[sp].contains(so))
      return note(unknown, r, "names no input");
    Input& in = in_.parts[sp][in_.at[sp].at(so)];
    ++in.outputs;
    in.tag = parse_tag(r.headers.find(kTxnTag));
    if (sp != r.partition || r.value != in.value || r.key != "k" + std::to_string(in.key))
      return note(mismatched, r, "differs from its input");
    if (static_cast<int64_t>(in.n) <= last_n[in.key]) {
      if (exactly) note(order_errors, r, "key k" + std::to_string(in.key) + " went back");
      ++replays;
    } else if (exactly && static_cast<int64_t>(in.n) != last_n[in.key] + 1) {
      note(order_errors, r, "key k" + std::to_string(in.key) + " skipped a number");
    }
    last_n[in.key] = static_cast<int64_t>(in.n);
    if (exactly) {
      uint32_t& due = next_seq[{r.producer_id, r.partition}];
      if (r.producer_id == 0 || r.sequence != due) note(seq_errors, r, "sequence " + std::to_string(r.sequence));
      due = r.sequence + 1;
    }
  });
  if (!ok) return ok;
  if (auto committed = c->commit_sync(); !committed) return committed;
  uint64_t lost = 0, duplicated = 0, duplicates = 0;
  for (const auto& part : in_.parts)
    for (const Input& in : part) {
      lost += in.outputs == 0;
      duplicated += in.outputs > 1;
      duplicates += in.outputs > 1 ? in.outputs - 1 : 0;
    }
  report_.outputs = outputs;
  report_.lost = lost;
  report_.duplicates = duplicates;
  const std::string counts = std::to_string(in_.records) + " inputs, " + std::to_string(outputs) + " outputs, " +
                             std::to_string(duplicates) + " duplicates, " + std::to_string(lost) + " lost";
  const std::string tail = unknown + mismatched ? "; " + std::to_string(unknown) + " naming no input, " +
                                                      std::to_string(mismatched) + " differing, first: " + first_problem
                                                : "";
  if (exactly) {
    expect("one output per input", lost == 0 && duplicated == 0 && unknown == 0 && mismatched == 0, counts + tail);
    expect("per-key order", order_errors == 0,
           order_errors ? std::to_string(order_errors) + " out of order, first: " + first_problem
                        : "each key's outputs follow its inputs (n = 0, 1, 2 ...)");
    expect("dense sequences", seq_errors == 0,
           std::to_string(next_seq.size()) + " (transformer, partition) pairs, committed sequences from 0 without "
           "a gap" + (seq_errors ? "; " + std::to_string(seq_errors) + " wrong, first: " + first_problem : ""));
  } else {
    expect("no input lost", lost == 0 && unknown == 0 && mismatched == 0,
           counts + " (" + std::to_string(duplicated) + " inputs repeated, " + std::to_string(replays) +
               " outputs went back in their key's order)" + tail);
  }
  return {};
}

// What a worker drained from `outq` during the run, and the rest now. A
// message of an aborted transaction would carry another tag than its
// input's committed output (exactly once there is one output per input).
Status Checker::queue() {
  if (o_.queue_every == 0) return {};
  std::vector<QueueSeen>& seen = report_.tally.queue_seen;
  auto worker = bus_.create_worker(kOutQueue);
  if (!worker) return std::unexpected(worker.error());
  for (;;) {
    auto n = drain_queue(*worker, seen, kIdleNs);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) break;
  }
  auto stats = bus_.queue_stats(kOutQueue);
  if (!stats) return std::unexpected(stats.error());
  const QueueLevelStats level = stats->total();
  const bool exactly = o_.mode == Mode::kExactlyOnce;
  uint64_t unreadable = 0, unknown = 0, mismatched = 0, unexpected = 0, foreign = 0, order_errors = 0, back = 0;
  std::string first_problem;
  auto note = [&](uint64_t& counter, const QueueSeen& q, const std::string& why) {
    if (counter++ == 0 && first_problem.empty())
      first_problem = "the message of " + std::string(kInTopic) + " " + std::to_string(q.partition) + "@" +
                      std::to_string(q.offset) + ": " + why;
  };
  std::vector<int64_t> last_n(kKeys, -1);
  for (const QueueSeen& q : seen) {
    if (q.partition >= kPartitions) {
      note(unreadable, q, "unreadable headers or value");
      continue;
    }
    const auto at = in_.at[q.partition].find(q.offset);
    if (at == in_.at[q.partition].end()) {
      note(unknown, q, "names no input");
      continue;
    }
    Input& in = in_.parts[q.partition][at->second];
    if (q.key != in.key || q.n != in.n) {
      note(mismatched, q, "differs from its input");
      continue;
    }
    if (q.offset % o_.queue_every != 0) {
      note(unexpected, q, "not due a message");
      continue;
    }
    ++in.messages;
    if (exactly && q.tag != in.tag) note(foreign, q, "not from its output's transaction");
    if (static_cast<int64_t>(q.n) <= last_n[q.key]) {
      ++back;
      if (exactly) note(order_errors, q, "key k" + std::to_string(q.key) + " went back in its group");
    }
    last_n[q.key] = static_cast<int64_t>(q.n);
  }
  uint64_t due = 0, lost = 0, duplicates = 0, out_duplicates = 0;
  for (const auto& part : in_.parts)
    for (const Input& in : part) {
      if (in.offset % o_.queue_every != 0) continue;
      ++due;
      lost += in.messages == 0;
      duplicates += in.messages > 1 ? in.messages - 1 : 0;
      out_duplicates += in.outputs > 1 ? in.outputs - 1 : 0;
    }
  report_.queue_due = due;
  report_.queue_messages = seen.size();
  report_.queue_duplicates = duplicates;
  report_.queue_lost = lost;
  report_.queue_published = level.published;
  const uint64_t strays = unreadable + unknown + mismatched + unexpected;
  const std::string which =
      o_.queue_every > 1 ? " (their offsets multiples of " + std::to_string(o_.queue_every) + ")" : "";
  const std::string counts = std::to_string(seen.size()) + " messages for " + std::to_string(due) + " inputs" + which +
                             ", " + std::to_string(duplicates) + " duplicates, " + std::to_string(lost) + " lost";
  const std::string levels = std::to_string(level.published) + " offsets published (" +
                             std::to_string(level.published - std::min<uint64_t>(level.published, seen.size())) +
                             " aborted publishes, never delivered), depth " + std::to_string(level.depth);
  const std::string problems = strays + foreign ? "; " + std::to_string(strays) + " stray, " +
                                                      std::to_string(foreign) + " from aborted transactions, first: " +
                                                      first_problem
                                                : "";
  const std::string name = "queue " + std::string(kOutQueue);
  if (exactly) {
    expect(name, lost == 0 && duplicates == 0 && strays == 0 && foreign == 0 && level.depth == 0,
           counts + ", each in its output's transaction; " + levels + problems);
    expect(name + " order", order_errors == 0,
           order_errors ? std::to_string(order_errors) + " out of order, first: " + first_problem
                        : "each key's messages follow its inputs in its FIFO group");
  } else {
    const std::string window = std::to_string(kQueueDedupWindowNs / 1'000'000'000) + " s";
    expect(name, lost == 0 && strays == 0 && level.depth == 0,
           counts + " (their outputs: " + std::to_string(out_duplicates) + " duplicates; a repeated publish within " +
               window + " is refused by its de-duplication id), " + std::to_string(back) +
               " went back in their key's group; " + levels + problems);
  }
  return {};
}

Status Checker::offsets_and_lso() {
  auto in = bus_.describe_topic(kInTopic);
  if (!in) return std::unexpected(in.error());
  auto group = bus_.describe_group(kGroup);
  if (!group) return std::unexpected(group.error());
  auto check = bus_.describe_group(kCheckGroup);
  if (!check) return std::unexpected(check.error());
  uint64_t at_end = 0, held = 0;
  std::string offsets;
  for (const PartitionInfo& p : in->partitions)
    for (const PartitionLag& l : group->partitions)
      if (l.topic == kInTopic && l.partition == p.partition) {
        at_end += l.committed == p.end_offset;
        offsets += (offsets.empty() ? "" : " ") + std::to_string(l.committed) + "/" + std::to_string(p.end_offset);
      }
  expect("group offsets", at_end == kPartitions,
         std::string(kGroup) + " committed/end of " + std::string(kInTopic) + ": " + offsets);
  for (const GroupDescription* g : {&*group, &*check})
    for (const PartitionLag& l : g->partitions) held += l.stable_offset != l.end_offset;
  auto ids = bus_.list_producers();
  if (!ids) return std::unexpected(ids.error());
  uint64_t open = 0;
  for (const ProducerIdentityInfo& id : *ids) open += id.state != "ready" && id.state != "free";
  auto v = bus_.verify();
  if (!v) return std::unexpected(v.error());
  expect("nothing undecided", held == 0 && open == 0 && v->prepared_frames == 0,
         "LSO = end in " + std::to_string(group->partitions.size() + check->partitions.size()) + " partitions (" +
             std::to_string(held) + " held), " + std::to_string(v->prepared_frames) + " PREPARED frames, " +
             std::to_string(open) + " open transactions");
  expect("verify", v->ok(),
         std::to_string(v->segments) + " segments, " + std::to_string(v->records) + " records, " +
             std::to_string(v->aborted_frames) + " aborted frames" +
             (v->ok() ? "" : "; " + std::to_string(v->issues.size()) + " issues, first: " + v->issues[0].what));
  return {};
}

void Checker::tails() {
  const ChaosTally& t = report_.tally;
  uint64_t differ = 0, later_aborted = 0, missed = 0;
  for (uint32_t p = 0; p < kPartitions; ++p) {
    const std::vector<uint64_t>& final_offsets = out_offsets_[p];
    if (p < t.committed_offsets.size() && t.committed_offsets[p] != final_offsets) ++differ;
    if (p >= t.uncommitted_offsets.size()) continue;
    const std::vector<uint64_t>& seen = t.uncommitted_offsets[p];
    std::vector<uint64_t> a = seen;
    std::sort(a.begin(), a.end());
    for (uint64_t o : a) later_aborted += !std::binary_search(final_offsets.begin(), final_offsets.end(), o);
    for (uint64_t o : final_offsets) missed += !std::binary_search(a.begin(), a.end(), o);
  }
  report_.uncommitted_later_aborted = later_aborted;
  expect("tails", differ == 0 && missed == 0,
         "a read-committed reader during the run saw " + std::to_string(t.tail_committed_seen) + " outputs, " +
             (differ ? "NOT the committed ones in " + std::to_string(differ) + " partitions"
                     : "exactly the committed ones") +
             "; a read-uncommitted one saw " + std::to_string(t.tail_uncommitted_seen) + ", " +
             std::to_string(later_aborted) + " of them later aborted" +
             (missed ? ", and missed " + std::to_string(missed) + " committed" : ""));
}

void Checker::counters() {
  auto ids = bus_.list_producers();
  if (!ids) return;
  for (const ProducerIdentityInfo& id : *ids)
    if (id.name == kInputName) report_.input_duplicates += id.duplicates;
  auto counts = transaction_counts(bus_);
  if (!counts) return;
  report_.commits = counts->commits;
  report_.holder_aborts = counts->holder_aborts;
  report_.helper_aborts = counts->helper_aborts;
  report_.fenced_sends = counts->fenced_sends;
}

Result<ChaosReport> Checker::run() {
  if (auto ok = read_input(); !ok) return std::unexpected(ok.error());
  if (auto ok = read_output(); !ok) return std::unexpected(ok.error());
  if (auto ok = queue(); !ok) return std::unexpected(ok.error());
  if (auto ok = offsets_and_lso(); !ok) return std::unexpected(ok.error());
  if (!report_.tally.committed_offsets.empty()) tails();
  const ChaosTally& t = report_.tally;
  std::string problems;
  for (const std::string& p : t.problems) problems += "; " + p;
  const bool zombies_ok = t.zombies_fenced + t.zombies_timed_out == t.zombies_stopped;
  expect("supervisor", t.problems.empty() && zombies_ok,
         std::to_string(t.transformer_kills + t.input_kills) + " SIGKILLs, " + std::to_string(t.restarts) +
             " restarts, " +
             (o_.mode == Mode::kExactlyOnce
                  ? std::to_string(t.zombies_fenced) + " of " + std::to_string(t.zombies_stopped) + " zombies fenced" +
                        (t.zombies_timed_out ? " (" + std::to_string(t.zombies_timed_out) + " timed out first)" : "") +
                        ", "
                  : std::string()) +
             std::to_string(t.failed_exits) + " roles failed" + problems);
  counters();
  return std::move(report_);
}

}  // namespace

Result<TransactionCounts> transaction_counts(Bus& bus) {
  auto ids = bus.list_producers();
  if (!ids) return std::unexpected(ids.error());
  TransactionCounts c;
  for (const ProducerIdentityInfo& id : *ids) {
    if (!id.name.starts_with(kTransformerIdPrefix)) continue;
    c.commits += id.committed;
    c.holder_aborts += id.aborted;
    c.helper_aborts += id.aborted_by_others;
    c.fenced_sends += id.fenced_sends;
  }
  return c;
}

Result<ChaosReport> check(Bus& bus, const ChaosOptions& options, ChaosTally tally, FILE* log) {
  Checker c(bus, options, std::move(tally), log);
  return c.run();
}

}  // namespace sluice::cli::chaos
