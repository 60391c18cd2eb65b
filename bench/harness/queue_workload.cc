// The queue workload: sluice's work queue (docs/queues.md) against
// Boost.Interprocess message_queue between the same processes, 64 B values.
//
// Throughput: one publisher process and W worker processes (process_group.h).
// Workers receive in batches of 64 and ack every message; the rate is timed
// from the first to the last ack, over all workers. Boost: one sender, W
// receivers, one blocking receive per message. A warm-up goes through first
// and is not timed. The first 8 bytes of each value carry its number; every
// receiver sums and xors the numbers it got, and the totals must equal those
// of the numbers sent (each message acknowledged exactly once).
//
// Latency: a round trip between two processes (process_pair.h). A publishes
// on "q-ping"; B's worker receives it, acks it and publishes its value on
// "q-pong"; A's worker receives that, checks it and acks it. A times the
// trip with the TSC, as pingpong.cc does, with the workers waiting by busy
// spin and then by blocking. Boost: A sends on one message_queue, B receives
// and sends it back on another, A receives; all blocking.
#include <sluice/sluice.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "bench/harness/boost_mq_side.h"
#include "bench/harness/process_group.h"
#include "bench/harness/process_pair.h"
#include "bench/harness/sluice_side.h"
#include "bench/harness/tsc_clock.h"
#include "bench/harness/workloads.h"

namespace sluice::bench {

namespace {

constexpr uint32_t kValueBytes = 64;
constexpr size_t kBatch = 64;                      // sluice: Deliveries per receive()
constexpr int64_t kReceiveTimeoutNs = 2'000'000;   // a receive() then a look at the channel
constexpr uint32_t kBoostMaxMessages = 65536;      // Boost queue capacity (throughput)
constexpr uint32_t kBoostPingPongMessages = 64;    // Boost queue capacity (latency)
// Boost receivers stop at these (each takes exactly one of the W sent).
constexpr uint64_t kEndSeq = UINT64_MAX;
constexpr uint64_t kWarmupEndSeq = UINT64_MAX - 1;

// What each receiver reports, in the shared region; member 0 reads it after
// the last barrier.
struct alignas(64) ReceiverReport {
  int64_t first_ns;  // after its first acknowledgement of the timed phase (0: none)
  int64_t last_ns;   // after its last one
  uint64_t count;
  uint64_t seq_sum;
  uint64_t seq_xor;
};

struct QueueShared {
  alignas(64) std::atomic<uint64_t> acked;  // sluice: acks by every worker, warm-up included
  ReceiverReport receivers[kMaxGroupMembers];
};

// 0 ^ 1 ^ ... ^ (n - 1)
uint64_t xor_below(uint64_t n) {
  if (n == 0) return 0;
  const uint64_t m = n - 1;
  switch (m & 3) {
    case 0: return m;
    case 1: return 1;
    case 2: return m + 1;
    default: return 0;
  }
}

// from + ... + (to - 1), mod 2^64: count * (from + to - 1) / 2, halving
// whichever factor is even (their sum, 2 to - 1, is odd).
uint64_t sum_range(uint64_t from, uint64_t to) {
  const uint64_t count = to - from, pair = from + to - 1;
  return count % 2 == 0 ? (count / 2) * pair : count * (pair / 2);
}

void note_seq(ReceiverReport& r, uint64_t seq) {
  ++r.count;
  r.seq_sum += seq;
  r.seq_xor ^= seq;
}

// Takes the group's outcome; if it went well, fills seconds, rate and
// per-receiver counts from the reports, and checks that every timed message
// [from, from + n) was acknowledged exactly once. Returns r.ok.
bool finish_throughput(QueueThroughputResult& r, const GroupOutcome& outcome, const QueueShared& shared,
                       uint32_t receivers, uint64_t from, uint64_t n) {
  r.placement = outcome.placement;
  r.pinned = outcome.pinned;
  r.ok = outcome.ok;
  r.error = outcome.error;
  if (!r.ok) return false;
  int64_t first = INT64_MAX, last = 0;
  uint64_t count = 0, sum = 0, x = 0;
  for (uint32_t i = 1; i <= receivers; ++i) {
    const ReceiverReport& rep = shared.receivers[i];
    r.per_worker.push_back(rep.count);
    count += rep.count;
    sum += rep.seq_sum;
    x ^= rep.seq_xor;
    if (rep.count == 0) continue;
    first = std::min(first, rep.first_ns);
    last = std::max(last, rep.last_ns);
  }
  if (count != n || sum != sum_range(from, from + n) || x != (xor_below(from + n) ^ xor_below(from))) {
    r.ok = false;
    r.error = "receivers acknowledged " + std::to_string(count) + " of " + std::to_string(n) +
              " messages" + (count == n ? " with wrong numbers (a message twice, another never)" : "");
    return false;
  }
  r.seconds = last > first ? static_cast<double>(last - first) / 1e9 : 0;
  r.msgs_per_s = r.seconds > 0 ? static_cast<double>(n - 1) / r.seconds : 0;
  return true;
}

// Throughput: 4 MiB segments and a depth of 32 MiB (8 segments, 262,144
// messages of 64 B; Boost's queue holds 65,536), so that the publisher may
// run well ahead of the workers but the log runs in bounded memory. A
// queue's log keeps settled segments until it is max_depth_bytes deep and
// only then retires (and recycles) them: with the default 1 GiB the
// publisher would write to fresh pages, a page fault every 32 messages, for
// the first 1 GiB of every run. Segments are prefaulted when mapped, as the
// log workloads' are (--no-prefault turns it off): each worker process maps
// every segment, and faulting its pages in one by one cost the 4 workers a
// third of their throughput.
constexpr uint32_t kSegmentBytes = 4u << 20;
constexpr int64_t kMaxDepthBytes = 32LL << 20;
// 32 B frame header + 32 B record header + the value.
constexpr uint64_t kFrameBytes = 64 + kValueBytes;

QueueOptions throughput_queue_options(const BenchOptions& options) {
  QueueOptions q;
  q.window = 65536;  // messages in flight per level
  q.segment_bytes = kSegmentBytes;
  q.max_depth_bytes = kMaxDepthBytes;
  q.dead_letter_queue = "-";
  q.prefault_segments = options.prefault;
  return q;
}

// Enough messages to take the log once through its depth and two more
// segments, so that the timed part runs on recycled segments as a queue in
// service does; Boost gets the same number.
uint64_t warmup_messages() { return (kMaxDepthBytes + 2 * kSegmentBytes) / kFrameBytes; }

// Latency: 1 MiB segments (8,192 messages) and a depth of 2 MiB. The
// warm-up takes each log through its depth and a few segments more, so that
// the samples run on recycled segments, prefaulted as above; a roll lands
// among the samples every 8,192 round trips per queue.
constexpr uint32_t kLatencySegmentBytes = 1u << 20;
constexpr int64_t kLatencyMaxDepthBytes = 2LL << 20;

QueueOptions latency_queue_options(const BenchOptions& options) {
  QueueOptions q;
  q.window = 1024;
  q.segment_bytes = kLatencySegmentBytes;
  q.max_depth_bytes = kLatencyMaxDepthBytes;
  q.dead_letter_queue = "-";
  q.prefault_segments = options.prefault;
  return q;
}

template <class Channel>
std::optional<Bus> open_bus(Channel& ch, const std::string& dir) {
  auto bus = Bus::open(dir);
  if (!bus) {
    ch.fail("Bus::open(" + dir + "): " + bus.error().to_string());
    return std::nullopt;
  }
  return std::move(*bus);
}

// Publishes `value`, retrying while the queue is max_depth_bytes deep.
template <class Channel, class Budget>
bool publish(QueuePublisher& pub, std::string_view value, Channel& ch, Budget& budget, uint64_t* retries) {
  QueueMessage m;
  m.value = value;
  for (;;) {
    const PublishResult r = pub.publish(m);
    if (r.ok()) return true;
    if (r.status != SendStatus::kBackPressured) return ch.fail("publish: " + pub.last_error().to_string());
    ++*retries;
    if (!budget.keep_going()) return false;
    std::this_thread::yield();
  }
}

// Receives at least one message with the worker's own wait strategy, a
// bounded wait at a time. 0 once the run should stop.
template <class Channel>
size_t receive_some(Worker& worker, std::span<Delivery> out, Channel& ch) {
  for (;;) {
    auto n = worker.receive(out, kReceiveTimeoutNs);
    if (!n) {
      ch.fail("receive: " + n.error().to_string());
      return 0;
    }
    if (*n > 0) return *n;
    if (ch.should_abort()) return 0;
  }
}

uint64_t seq_of(std::string_view v) {
  uint64_t s = 0;
  std::memcpy(&s, v.data(), std::min(v.size(), sizeof s));
  return s;
}

}  // namespace

uint64_t queue_warmup_round_trips() { return (kLatencyMaxDepthBytes + 3 * kLatencySegmentBytes) / kFrameBytes; }

QueueThroughputResult run_sluice_queue_throughput(const BenchOptions& options, uint32_t workers,
                                                  ipc::WaitStrategy wait, const std::string& bus_dir) {
  const uint64_t n = options.queue_messages;
  const uint64_t w = warmup_messages();
  GroupRegion region(sizeof(QueueShared));
  auto* shared = reinterpret_cast<QueueShared*>(region.user());
  QueueThroughputResult r;
  r.system = "sluice/queue";
  r.wait = wait_name(wait);
  r.workers = workers;
  r.value_bytes = kValueBytes;
  r.batch = kBatch;
  r.messages = n;
  r.warmup = w;
  r.config = "window 65536, " + std::to_string(kSegmentBytes >> 20) + " MiB segments" +
             (options.prefault ? " (prefaulted)" : "") + ", an exclusive publisher, max_depth_bytes " +
             std::to_string(kMaxDepthBytes >> 20) + " MiB; workers receive up to " + std::to_string(kBatch) +
             " at once and ack each";
  int64_t publisher_ns = 0;
  uint64_t retries = 0;
  std::string stats_error;

  auto body = [&](GroupChannel& ch) -> bool {
    if (ch.member() == 0) {  // the publisher
      auto bus = open_bus(ch, bus_dir);
      if (!bus) return false;
      if (auto ok = bus->create_queue("bench", throughput_queue_options(options)); !ok)
        return ch.fail("create_queue: " + ok.error().to_string());
      // The queue's only publisher: exclusive, as a one-publisher queue in
      // service would be (QueuePublisherOptions::exclusive).
      QueuePublisherOptions po;
      po.exclusive = true;
      auto pub = bus->create_queue_publisher("bench", po);
      if (!pub) return ch.fail("create_queue_publisher: " + pub.error().to_string());
      std::vector<char> msg(kValueBytes, 'q');
      GroupSpinBudget budget(ch);
      auto produce = [&](uint64_t from, uint64_t to) {
        for (uint64_t i = from; i < to; ++i) {
          std::memcpy(msg.data(), &i, sizeof i);
          if (!publish(*pub, std::string_view(msg.data(), msg.size()), ch, budget, &retries)) return false;
        }
        return true;
      };
      // 1: the queue exists; 2: the workers have theirs; 3: the warm-up is acked.
      if (!ch.sync(1) || !ch.sync(2) || !produce(0, w) || !ch.sync(3)) return false;
      const int64_t t0 = steady_ns();
      if (!produce(w, w + n)) return false;
      publisher_ns = steady_ns() - t0;
      const bool all_acked = ch.sync(4);
      // The queue's own account, after the run or at the failure (what was
      // left where, when the workers stopped getting messages).
      auto stats = bus->queue_stats("bench");
      if (!stats) return ch.fail("queue_stats: " + stats.error().to_string());
      const QueueLevelStats t = stats->total();
      r.redelivered = t.redelivered;
      r.lease_lost = t.lease_lost;
      if (!all_acked || t.published != w + n || t.acked != w + n || t.depth != 0)
        stats_error = std::string(all_acked ? "queue_stats after the run" : "queue_stats at the failure") +
                      ": published " + std::to_string(t.published) + " (" + std::to_string(w + n) +
                      " sent), received " + std::to_string(t.received) + ", acked " + std::to_string(t.acked) +
                      ", ack floor " + std::to_string(t.settled_below) + ", depth " + std::to_string(t.depth) +
                      ", in flight " + std::to_string(t.in_flight) + ", ready " + std::to_string(t.ready) +
                      ", delayed " + std::to_string(t.delayed) + ", redelivered " + std::to_string(t.redelivered) +
                      ", lease lost " + std::to_string(t.lease_lost);
      return all_acked;
    }
    // A worker.
    ReceiverReport& rep = shared->receivers[ch.member()];
    if (!ch.sync(1)) return false;
    auto bus = open_bus(ch, bus_dir);
    if (!bus) return false;
    WorkerOptions wo;
    wo.wait = static_cast<WaitStrategy>(wait);
    auto worker = bus->create_worker("bench", wo);
    if (!worker) return ch.fail("create_worker: " + worker.error().to_string());
    std::vector<Delivery> batch(kBatch);
    ReceiverReport mine{0, 0, 0, 0, 0};
    auto drain = [&](uint64_t target, bool timed) {
      // acquire: pairs with the others' acq_rel additions; only a stop test.
      while (shared->acked.load(std::memory_order_acquire) < target) {
        // One bounded wait, then the counter again: the last messages may
        // have gone to the other workers.
        auto n = worker->receive(batch, kReceiveTimeoutNs);
        if (!n) return ch.fail("receive: " + n.error().to_string());
        const size_t got = *n;
        if (got == 0) {
          if (ch.should_abort()) return false;
          continue;
        }
        for (size_t k = 0; k < got; ++k) {
          const std::string_view v = batch[k].value();
          if (v.size() != kValueBytes)
            return ch.fail("a message of " + std::to_string(v.size()) + " bytes at offset " +
                           std::to_string(batch[k].offset()));
          const uint64_t seq = seq_of(v);
          if (auto ok = batch[k].ack(); !ok)
            return ch.fail("ack of message " + std::to_string(seq) + ": " + ok.error().to_string());
          if (timed) {
            if (mine.count == 0) mine.first_ns = steady_ns();
            note_seq(mine, seq);
          }
        }
        if (timed) mine.last_ns = steady_ns();
        shared->acked.fetch_add(got, std::memory_order_acq_rel);
      }
      return true;
    };
    if (!ch.sync(2) || !drain(w, false) || !ch.sync(3)) return false;
    if (!drain(w + n, true)) return false;
    rep = mine;
    return ch.sync(4);
  };
  const GroupOutcome outcome =
      run_process_group(region, static_cast<int>(workers) + 1, body, options.workload_timeout_ms);
  if (finish_throughput(r, outcome, *shared, workers, w, n)) {
    r.publisher_seconds = static_cast<double>(publisher_ns) / 1e9;
    r.publisher_retries = retries;
  }
  if (r.ok && !stats_error.empty()) r.ok = false, r.error = stats_error;
  else if (!stats_error.empty()) r.error += "; " + stats_error;
  return r;
}

QueueThroughputResult run_boost_mq_throughput(const BenchOptions& options, uint32_t receivers) {
  const uint64_t n = options.queue_messages;
  const uint64_t w = warmup_messages();
  GroupRegion region(sizeof(QueueShared));
  auto* shared = reinterpret_cast<QueueShared*>(region.user());
  QueueThroughputResult r;
  r.system = "boost/message_queue";
  r.wait = "block";
  r.workers = receivers;
  r.value_bytes = kValueBytes;
  r.batch = 1;
  r.messages = n;
  r.warmup = w;
  r.config = "capacity " + std::to_string(kBoostMaxMessages) + " x " + std::to_string(kValueBytes) +
             " B; receivers do one blocking receive per message";
  const BoostMqName name("tput");
  int64_t publisher_ns = 0;

  auto body = [&](GroupChannel& ch) -> bool {
    BoostDeadline deadline;
    std::vector<char> msg(kValueBytes, 'b');
    if (ch.member() == 0) {  // the sender
      bip::message_queue mq(bip::create_only, name.c_str(), kBoostMaxMessages, kValueBytes);
      auto produce = [&](uint64_t from, uint64_t to) {
        for (uint64_t i = from; i < to; ++i) {
          std::memcpy(msg.data(), &i, sizeof i);
          if (!mq_send(mq, msg.data(), msg.size(), deadline, ch)) return false;
        }
        return true;
      };
      auto stop_all = [&](uint64_t marker) {
        std::memcpy(msg.data(), &marker, sizeof marker);
        for (uint32_t k = 0; k < receivers; ++k)
          if (!mq_send(mq, msg.data(), msg.size(), deadline, ch)) return false;
        return true;
      };
      // 1: the queue exists; 2: every receiver opened it; 3: warm-up received.
      if (!ch.sync(1) || !ch.sync(2) || !produce(0, w) || !stop_all(kWarmupEndSeq) || !ch.sync(3)) return false;
      const int64_t t0 = steady_ns();
      if (!produce(w, w + n)) return false;
      publisher_ns = steady_ns() - t0;
      if (!stop_all(kEndSeq)) return false;
      return ch.sync(4);
    }
    ReceiverReport& rep = shared->receivers[ch.member()];
    if (!ch.sync(1)) return false;
    bip::message_queue mq(bip::open_only, name.c_str());
    ReceiverReport mine{0, 0, 0, 0, 0};
    auto drain = [&](uint64_t marker, bool timed) {
      for (;;) {
        size_t got = 0;
        if (!mq_receive(mq, msg.data(), msg.size(), &got, deadline, ch)) return false;
        if (got != kValueBytes) return ch.fail("a message of " + std::to_string(got) + " bytes");
        const uint64_t seq = seq_of(std::string_view(msg.data(), got));
        if (seq == marker) return true;
        if (seq >= kWarmupEndSeq) return ch.fail("an unexpected end marker");
        if (timed) {
          mine.last_ns = steady_ns();
          if (mine.count == 0) mine.first_ns = mine.last_ns;
          note_seq(mine, seq);
        }
      }
    };
    if (!ch.sync(2) || !drain(kWarmupEndSeq, false) || !ch.sync(3)) return false;
    if (!drain(kEndSeq, true)) return false;
    rep = mine;
    return ch.sync(4);
  };
  const GroupOutcome outcome =
      run_process_group(region, static_cast<int>(receivers) + 1, body, options.workload_timeout_ms);
  if (finish_throughput(r, outcome, *shared, receivers, w, n))
    r.publisher_seconds = static_cast<double>(publisher_ns) / 1e9;
  return r;
}

LatencyResult run_sluice_queue_latency(const BenchOptions& options, ipc::WaitStrategy wait,
                                       const std::string& bus_dir) {
  PairRegion region(0);
  const uint64_t warmup = queue_warmup_round_trips();
  const uint64_t total = warmup + options.queue_samples;
  std::vector<uint64_t> ticks(options.queue_samples);
  TscCalibration cal;
  WorkerOptions wo;
  wo.wait = static_cast<WaitStrategy>(wait);

  auto side_a = [&](PairChannel& ch) {
    auto bus = open_bus(ch, bus_dir);
    if (!bus) return false;
    for (const char* q : {"q-ping", "q-pong"})
      if (auto ok = bus->create_queue(q, latency_queue_options(options)); !ok)
        return ch.fail(std::string("create_queue ") + q + ": " + ok.error().to_string());
    auto pub = bus->create_queue_publisher("q-ping");
    if (!pub) return ch.fail("create_queue_publisher: " + pub.error().to_string());
    auto worker = bus->create_worker("q-pong", wo);
    if (!worker) return ch.fail("create_worker: " + worker.error().to_string());
    std::vector<char> msg(kValueBytes, 'p');
    Delivery echo[1];
    SpinBudget budget(ch);
    uint64_t retries = 0;
    if (!ch.sync(1) || !ch.sync(2)) return false;  // 1: the queues exist; 2: B is ready
    for (uint64_t i = 0; i < total; ++i) {
      if (i == warmup) cal.start();
      std::memcpy(msg.data(), &i, sizeof i);
      const uint64_t t0 = tsc_now();
      if (!publish(*pub, std::string_view(msg.data(), msg.size()), ch, budget, &retries)) return false;
      if (receive_some(*worker, echo, ch) == 0) return false;
      const std::string_view v = echo[0].value();
      if (v.size() != kValueBytes || seq_of(v) != i)
        return ch.fail("round trip " + std::to_string(i) + " came back as " + std::to_string(seq_of(v)) + " (" +
                       std::to_string(v.size()) + " bytes)");
      if (auto ok = echo[0].ack(); !ok) return ch.fail("ack: " + ok.error().to_string());
      const uint64_t t1 = tsc_now();
      if (i >= warmup) ticks[i - warmup] = t1 - t0;
    }
    cal.stop();
    return ch.sync(3);
  };
  auto side_b = [&](PairChannel& ch) {
    if (!ch.sync(1)) return false;
    auto bus = open_bus(ch, bus_dir);
    if (!bus) return false;
    auto worker = bus->create_worker("q-ping", wo);
    if (!worker) return ch.fail("create_worker: " + worker.error().to_string());
    auto pub = bus->create_queue_publisher("q-pong");
    if (!pub) return ch.fail("create_queue_publisher: " + pub.error().to_string());
    Delivery in[1];
    SpinBudget budget(ch);
    uint64_t retries = 0;
    if (!ch.sync(2)) return false;
    for (uint64_t i = 0; i < total; ++i) {
      if (receive_some(*worker, in, ch) == 0) return false;
      if (auto ok = in[0].ack(); !ok) return ch.fail("ack: " + ok.error().to_string());
      // The value stays readable after the ack while the Delivery lives.
      if (!publish(*pub, in[0].value(), ch, budget, &retries)) return false;
    }
    return ch.sync(3);
  };
  const PairOutcome outcome = run_process_pair(region, side_a, side_b, options.workload_timeout_ms);
  return latency_result(std::string("sluice/queue/") + wait_name(wait), kValueBytes, outcome, ticks, cal.ns_per_tick());
}

LatencyResult run_boost_mq_latency(const BenchOptions& options) {
  PairRegion region(0);
  const uint64_t warmup = queue_warmup_round_trips();
  const uint64_t total = warmup + options.queue_samples;
  std::vector<uint64_t> ticks(options.queue_samples);
  TscCalibration cal;
  const BoostMqName ping("ping"), pong("pong");

  auto side_a = [&](PairChannel& ch) {
    bip::message_queue tx(bip::create_only, ping.c_str(), kBoostPingPongMessages, kValueBytes);
    bip::message_queue rx(bip::create_only, pong.c_str(), kBoostPingPongMessages, kValueBytes);
    std::vector<char> msg(kValueBytes, 'p'), echo(kValueBytes);
    BoostDeadline deadline;
    if (!ch.sync(1) || !ch.sync(2)) return false;  // 1: the queues exist; 2: B opened them
    for (uint64_t i = 0; i < total; ++i) {
      if (i == warmup) cal.start();
      std::memcpy(msg.data(), &i, sizeof i);
      const uint64_t t0 = tsc_now();
      if (!mq_send(tx, msg.data(), msg.size(), deadline, ch)) return false;
      size_t got = 0;
      if (!mq_receive(rx, echo.data(), echo.size(), &got, deadline, ch)) return false;
      if (got != kValueBytes || seq_of(std::string_view(echo.data(), got)) != i)
        return ch.fail("round trip " + std::to_string(i) + " came back wrong");
      const uint64_t t1 = tsc_now();
      if (i >= warmup) ticks[i - warmup] = t1 - t0;
    }
    cal.stop();
    return ch.sync(3);
  };
  auto side_b = [&](PairChannel& ch) {
    if (!ch.sync(1)) return false;
    bip::message_queue rx(bip::open_only, ping.c_str());
    bip::message_queue tx(bip::open_only, pong.c_str());
    std::vector<char> msg(kValueBytes);
    BoostDeadline deadline;
    if (!ch.sync(2)) return false;
    for (uint64_t i = 0; i < total; ++i) {
      size_t got = 0;
      if (!mq_receive(rx, msg.data(), msg.size(), &got, deadline, ch)) return false;
      if (!mq_send(tx, msg.data(), got, deadline, ch)) return false;
    }
    return ch.sync(3);
  };
  const PairOutcome outcome = run_process_pair(region, side_a, side_b, options.workload_timeout_ms);
  return latency_result("boost/message_queue", kValueBytes, outcome, ticks, cal.ns_per_tick());
}

}  // namespace sluice::bench
