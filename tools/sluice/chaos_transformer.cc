// The chaos run's transformers: consume-transform-produce from `in` to
// `out` under the transactional id "chaos-xform-<slot>", one output per
// input with its source partition and offset in headers, the group's
// offsets committed in the same transaction through the consumer bound to
// the identity (TransactionalProducer::consumer). Some transactions are
// aborted on purpose (the consumer is rewound to the group's offsets). A
// transformer that learns it was fenced, or that its transaction was
// aborted past its timeout, says so and exits: the supervisor restarts it
// if it is still the current instance of its slot.
//
// For `sluice demo`, an instance can instead hold one transaction open
// until it is SIGKILLed (RoleSpec::hold_after_records).
//
// Inputs whose offset is a multiple of RoleSpec::queue_every (every input
// by default) are also published to queue `outq` in the same transaction,
// with the input's place as de-duplication id and its key as FIFO group.
//
// At-least-once mode: a plain producer and publisher, the group committed
// after the sends; a kill between the two repeats the batch (the
// de-duplication ids refuse the repeated publishes within their window).
#include <algorithm>
#include <chrono>
#include <iterator>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "chaos.h"
#include "cli_common.h"

namespace sluice::cli::chaos {

namespace {

using demo::Report;
using SteadyClock = std::chrono::steady_clock;

constexpr int64_t kPollTimeoutNs = 50'000'000;
// An idle transformer looks at its identity this often: a zombie whose
// partitions are quiet must still learn that it was fenced.
constexpr auto kIdleProbe = std::chrono::milliseconds(200);

std::string identity(uint32_t slot) { return std::string(kTransformerIdPrefix) + std::to_string(slot); }

// The end of a fenced or timed-out instance, or a failure.
int ended(const Error& e, const std::string& name) {
  if (e.code == Errc::kFenced) {
    say(Report("fenced").set("name", name));
    return kExitFenced;
  }
  if (e.code == Errc::kAborted) {
    say(Report("timed-out").set("name", name));
    return kExitTimedOut;
  }
  return fail("chaos transformer " + name + ": " + e.to_string());
}

// One output record: the input's key and value, where the input is, and
// the transaction's tag; and the input's queue message: the same, in the
// key's FIFO group, under a de-duplication id naming the input.
struct Output {
  char partition[12];
  char offset[24];
  std::string dedup;
  Header headers[3];
  Message message;
  QueueMessage queued;
  Output(const RecordView& r, std::string_view tag) {
    const int pl = std::snprintf(partition, sizeof partition, "%u", r.partition);
    const int ol = std::snprintf(offset, sizeof offset, "%llu", (unsigned long long)r.offset);
    headers[0] = Header{kSourcePartition, std::string_view(partition, static_cast<size_t>(pl))};
    headers[1] = Header{kSourceOffset, std::string_view(offset, static_cast<size_t>(ol))};
    headers[2] = Header{kTxnTag, tag};
    message = Message{r.key, r.value, std::span<const Header>(headers, 3)};
    queued.value = r.value;
    queued.headers = std::span<const Header>(headers, 3);
    queued.group = r.key;
    dedup = dedup_id(r.partition, r.offset);
    queued.dedup_id = dedup;
  }
};

// Whether input `r` also goes to `outq`.
bool queued(const RoleSpec& spec, const RecordView& r) {
  return spec.queue_every > 0 && r.offset % spec.queue_every == 0;
}

Result<Consumer> open_input(Bus& bus, const std::vector<uint32_t>& parts) {
  ConsumerOptions co;
  co.auto_commit = false;
  co.partitions = parts;
  co.wait = WaitStrategy::kBlock;
  co.isolation = Isolation::kReadCommitted;
  return bus.create_consumer(kInTopic, kGroup, co);
}

// The demo's victim (RoleSpec::hold_after_records): its transaction's
// records are out, PREPARED, and stay undecided. Reports them and waits to
// be SIGKILLed (bounded: an orchestrator that died cannot leave it behind).
// Exiting instead would leave the transaction to its timeout, which is not
// what the demo shows, hence the failure.
int hold_open(const std::string& name, const uint64_t (&first)[kPartitions], int64_t since_ns, size_t records) {
  std::string offsets;
  for (uint32_t p = 0; p < kPartitions; ++p)
    if (first[p] != kNoOffset)
      offsets += (offsets.empty() ? "" : ",") + std::to_string(p) + ":" + std::to_string(first[p]);
  say(Report("holding")
          .set("name", name)
          .set("records", uint64_t{records})
          .set("since_ns", since_ns)
          .set("first", offsets));
  const auto until = SteadyClock::now() + std::chrono::seconds(30);
  while (!stop_requested() && SteadyClock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return fail("chaos transformer " + name + ": holding a transaction open, it was not killed");
}

// Whether a newer instance of `name` was opened (its epoch moved on). Only
// asked while idle, with no transaction open: then nothing else moves it.
bool epoch_moved(Bus& bus, const std::string& name, uint16_t mine) {
  auto ids = bus.list_producers();
  if (!ids) return false;
  for (const ProducerIdentityInfo& id : *ids)
    if (id.name == name) return id.epoch != mine;
  return false;
}

int run_exactly_once(Bus& bus, const RoleSpec& spec, const std::vector<uint32_t>& parts, std::mt19937_64& rng) {
  const std::string name = identity(spec.slot);
  TransactionOptions to;
  to.timeout_ns = spec.txn_timeout_ms * 1'000'000;
  // First the identity (fencing the previous instance and settling what it
  // left open), then the consumer, which starts at the group's offsets.
  auto tx = bus.create_transactional_producer(name, to);
  if (!tx) return fail("chaos transformer " + name + ": " + tx.error().to_string());
  // Bound to the identity: commit() adds its positions to the transaction,
  // abort() rewinds it to the group's offsets.
  ConsumerOptions co;
  co.partitions = parts;
  co.wait = WaitStrategy::kBlock;
  auto in = tx->consumer(kInTopic, kGroup, co);
  if (!in) return fail("chaos transformer " + name + ": " + in.error().to_string());
  auto out = tx->producer(kOutTopic);
  if (!out) return fail("chaos transformer " + name + ": " + out.error().to_string());
  // Its publishes join the transaction: delivered with the outputs, or never.
  auto outq = tx->queue(kOutQueue);
  if (!outq) return fail("chaos transformer " + name + ": " + outq.error().to_string());
  say(Report("ready").set("name", name).set("epoch", uint64_t{tx->producer_epoch()}));

  std::vector<RecordView> batch(spec.max_batch);
  uint64_t commits = 0, aborts = 0, records = 0, begun = 0;
  auto idle_since = SteadyClock::now();
  // committed[p]: the group's offset as this instance left it, where an
  // abort must rewind the consumer to.
  uint64_t committed[kPartitions] = {};
  for (uint32_t p : parts) committed[p] = (*in)->position(p);
  // The consumer's positions commit with the transaction: past the records
  // handed out, and past aborted frames of `in` it stepped over, so that
  // the group reaches `in`'s end even when the log ends with such frames.
  const auto commit = [&]() -> Status {
    if (auto ok = tx->commit(); !ok) return ok;
    for (uint32_t p : parts) committed[p] = (*in)->position(p);
    ++commits;
    return {};
  };
  const auto moved = [&] {
    for (uint32_t p : parts)
      if ((*in)->position(p) != committed[p]) return true;
    return false;
  };
  while (!stop_requested()) {
    const size_t want = 1 + rng() % spec.max_batch;
    auto n = (*in)->poll(std::span<RecordView>(batch.data(), want), kPollTimeoutNs);
    if (!n) return fail("chaos transformer " + name + ": poll: " + n.error().to_string());
    if (*n == 0 && moved()) {
      // Only aborted frames were passed: commit the positions alone.
      if (auto ok = tx->begin(); !ok) return ended(ok.error(), name);
      if (auto ok = commit(); !ok) return ended(ok.error(), name);
      continue;
    }
    if (*n == 0) {
      if (SteadyClock::now() - idle_since >= kIdleProbe) {
        idle_since = SteadyClock::now();
        if (epoch_moved(bus, name, tx->producer_epoch())) {
          // The API's own word for it: the next call is refused.
          auto b = tx->begin();
          return ended(b ? Error{Errc::kFenced, "a newer instance was opened"} : b.error(), name);
        }
      }
      continue;
    }
    idle_since = SteadyClock::now();
    if (auto ok = tx->begin(); !ok) return ended(ok.error(), name);
    const std::string tag = format_tag(spec.slot, tx->producer_epoch(), ++begun);
    const bool hold = spec.hold_after_records > 0 && records >= spec.hold_after_records;
    uint64_t first[kPartitions];  // hold: where this transaction's records start in each partition of `out`
    std::fill(std::begin(first), std::end(first), kNoOffset);
    const int64_t since_ns = bus.clock().now_ns();
    bool stalled = false;
    // Late on purpose: past the timeout, with PREPARED frames out for the
    // tails to meet, one of which then aborts the transaction.
    const bool late = rng() % 100 < spec.late_percent;
    const int64_t work_ms = late ? spec.txn_timeout_ms + 20 : static_cast<int64_t>(rng() % (spec.work_ms + 1));
    for (size_t i = 0; i < *n; ++i) {
      const RecordView& r = batch[i];
      const Output o(r, tag);
      const SendResult s = (*out)->send(o.message, r.partition);
      const bool to_queue = queued(spec, r);
      PublishResult q;
      SendStatus status = s.status;
      if (s.ok() && to_queue) status = (q = (*outq)->publish(o.queued)).status;
      if (status == SendStatus::kAborted) {  // our claim was aborted as stalled: this transaction goes
        stalled = true;
        break;
      }
      if (status == SendStatus::kFenced) {
        // A send says kFenced both when a newer instance opened the name and
        // when a helper aborted our transaction past its timeout (the epoch
        // moved either way); the transaction knows which (kFenced, kAborted).
        auto a = tx->abort();
        return ended(a ? Error{Errc::kFenced, "send refused"} : a.error(), name);
      }
      if (!s.ok()) return fail("chaos transformer " + name + ": send: " + (*out)->last_error().to_string());
      if (to_queue && !q.ok())
        return fail("chaos transformer " + name + ": publish: " + (*outq)->last_error().to_string());
      // The id counts once its transaction commits, and only an earlier
      // commit of this input can hold it: the input was transformed twice,
      // unless we are a zombie whose send passed its fencing check before
      // the newer instance opened, and that instance has committed this
      // input since (the protocol lets that send through; our transaction
      // can no longer commit). Our abort then says kFenced.
      if (to_queue && q.duplicate) {
        if (auto a = tx->abort(); !a && (a.error().code == Errc::kFenced || a.error().code == Errc::kAborted))
          return ended(a.error(), name);
        return fail("chaos transformer " + name + ": " + std::string(kOutQueue) + " already holds de-duplication id " +
                    std::string(o.queued.dedup_id) + " (committed at offset " + std::to_string(q.offset) + ")");
      }
      first[r.partition] = std::min(first[r.partition], s.offset);
      if (i == (*n - 1) / 2 && work_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(work_ms));
    }
    if (hold && !stalled) return hold_open(name, first, since_ns, *n);
    const bool on_purpose = !stalled && rng() % 100 < spec.abort_percent;
    if (stalled || on_purpose) {
      if (auto ok = tx->abort(); !ok) return ended(ok.error(), name);
      for (uint32_t p : parts)
        if ((*in)->position(p) != committed[p])
          return fail("chaos transformer " + name + ": abort left partition " + std::to_string(p) + " at " +
                      std::to_string((*in)->position(p)) + ", not at the group's " + std::to_string(committed[p]));
      ++aborts;
      continue;
    }
    if (auto ok = commit(); !ok) return ended(ok.error(), name);
    records += *n;
  }
  say(Report("result").set("name", name).set("commits", commits).set("aborts", aborts).set("records", records));
  return kExitOk;
}

int run_at_least_once(Bus& bus, const RoleSpec& spec, const std::vector<uint32_t>& parts, std::mt19937_64& rng) {
  const std::string name = identity(spec.slot);
  auto in = open_input(bus, parts);
  if (!in) return fail("chaos transformer " + name + ": " + in.error().to_string());
  auto out = bus.create_producer(kOutTopic);
  if (!out) return fail("chaos transformer " + name + ": " + out.error().to_string());
  auto outq = bus.create_queue_publisher(kOutQueue);
  if (!outq) return fail("chaos transformer " + name + ": " + outq.error().to_string());
  say(Report("ready").set("name", name));
  std::vector<RecordView> batch(spec.max_batch);
  uint64_t commits = 0, records = 0;
  uint64_t committed[kPartitions] = {};
  for (uint32_t p : parts) committed[p] = in->position(p);
  while (!stop_requested()) {
    const size_t want = 1 + rng() % spec.max_batch;
    auto n = in->poll(std::span<RecordView>(batch.data(), want), kPollTimeoutNs);
    if (!n) return fail("chaos transformer " + name + ": poll: " + n.error().to_string());
    bool moved = *n > 0;
    for (uint32_t p : parts) moved = moved || in->position(p) != committed[p];
    if (!moved) continue;
    // No epoch at least once: epoch 0 (tags are compared with the
    // outputs' only exactly once).
    const std::string tag = format_tag(spec.slot, 0, commits + 1);
    for (size_t i = 0; i < *n; ++i) {
      const Output o(batch[i], tag);
      SendResult s = out->send(o.message, batch[i].partition);
      for (int retry = 0; s.status == SendStatus::kAborted && retry < 100; ++retry)
        s = out->send(o.message, batch[i].partition);  // a stalled claim was aborted: at least once, so again
      if (!s.ok()) return fail("chaos transformer " + name + ": send: " + out->last_error().to_string());
      if (!queued(spec, batch[i])) continue;
      // A repeat after a kill is refused by the de-duplication id while it
      // counts (the queue's window): the queue's duplicates are fewer.
      PublishResult q = outq->publish(o.queued);
      for (int retry = 0; q.status == SendStatus::kAborted && retry < 100; ++retry) q = outq->publish(o.queued);
      if (!q.ok()) return fail("chaos transformer " + name + ": publish: " + outq->last_error().to_string());
    }
    // The work, between the sends and the commit: a kill there repeats them.
    if (const auto work_ms = rng() % (spec.work_ms + 1); work_ms > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(work_ms));
    if (auto ok = in->commit_sync(); !ok)
      return fail("chaos transformer " + name + ": commit: " + ok.error().to_string());
    for (uint32_t p : parts) committed[p] = in->position(p);
    ++commits;
    records += *n;
  }
  say(Report("result").set("name", name).set("commits", commits).set("aborts", uint64_t{0}).set("records", records));
  return kExitOk;
}

}  // namespace

int run_transformer(const RoleSpec& spec) {
  auto bus = Bus::open(spec.dir);
  if (!bus) return fail(bus.error());
  if (spec.max_batch < 1) return fail("chaos-worker: --max-batch must be at least 1", kExitUsage);
  const std::vector<uint32_t> parts = owned_partitions(spec.slot, spec.transformers);
  std::mt19937_64 rng(spec.seed);
  return spec.mode == Mode::kExactlyOnce ? run_exactly_once(*bus, spec, parts, rng)
                                         : run_at_least_once(*bus, spec, parts, rng);
}

}  // namespace sluice::cli::chaos
