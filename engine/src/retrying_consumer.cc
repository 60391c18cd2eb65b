// Retries and dead letters for stream consumers (docs/queues.md, section 7):
// a failing record goes to a retry queue, which the same member works, so
// that the group moves on at once and retries are scheduled, never slept
// (kRetryQueue); or it is retried in place, its partition paused (kInPlace,
// below).
//
// Attempts: attempt 1 is the topic's; attempt k > 1 is the retry queue's
// receive k - 1. The retry queue's own max_receives is the policy's, so its
// budget lasts one receive longer than the helper's: the helper makes the
// final decision (dead-letters with the stream source, then acks); if it
// dies holding the last attempt, the next receive finds the record over
// budget and dead-letters it unrun; only if that holder dies too does the
// queue dead-letter it (source "queue:<retry queue>", the sluice.stream.*
// headers kept). Nothing is lost either way.
//
// In place: a record that fails pauses its partition in the consumer
// (Consumer::pause), sought back to the record: nothing behind it is read
// while it waits, and the consumer's position there, which its commits
// commit, is the record. When the retry is due the partition is resumed and
// the record read from the log again (no copy is kept). The attempts begun
// on it, and when the next is due, are also kept in the group's offsets
// file (GroupSlot::retry_attempts, retry_at_ns), so a member that replaces
// a dead one goes on counting, and waits out the backoff it left.
#include <sluice/bus.h>
#include <sluice/retrying_consumer.h>

// Header-only, as in failure.cc: the type of a handler's exception for its
// dead letter.
#include <boost/core/demangle.hpp>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <random>
#include <typeinfo>
#include <vector>

#include "consumer_access.h"
#include "group_offsets.h"
#include "in_place_retries.h"
#include "queue_state.h"

namespace sluice {

namespace {

constexpr size_t kBatch = 64;  // records per poll of the topic, and due retries per poll

// Where a retried record came from, carried through the retry queue (and
// into its dead letter) after the producer's own headers.
constexpr std::string_view kStreamPrefix = "sluice.stream.";
constexpr std::string_view kStreamTopic = "sluice.stream.topic";
constexpr std::string_view kStreamPartition = "sluice.stream.partition";
constexpr std::string_view kStreamOffset = "sluice.stream.offset";
constexpr std::string_view kStreamTimestamp = "sluice.stream.timestamp";  // ns, decimal
constexpr std::string_view kStreamKey = "sluice.stream.key";              // absent: no key

template <class T>
bool parse(std::string_view s, T* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return !s.empty() && ec == std::errc() && p == s.data() + s.size();
}

Status make_queue(Bus& bus, const std::string& name, const QueueOptions& options) {
  auto ok = bus.create_queue(name, options);
  if (!ok && ok.error().code != Errc::kAlreadyExists) return ok;
  return {};
}

}  // namespace

struct RetryingConsumerState {
  RetryingConsumerState(Consumer c, QueuePublisher d) : consumer(std::move(c)), dlq(std::move(d)) {}
  ~RetryingConsumerState() {
    // The consumer's event handler reaches this state; the consumer may
    // outlive it by a few members' destructors.
    if (event_hook) *event_hook = nullptr;
  }

  std::string topic;
  std::string group;
  std::string retry_name;
  std::string dlq_name;
  RetryPolicy retry;
  RetryMode mode = RetryMode::kRetryQueue;
  const Clock* clock = nullptr;
  int64_t sweep_interval_ns = 0;  // the worker's
  Consumer consumer;
  std::optional<Worker> worker;            // kRetryQueue
  std::optional<QueuePublisher> retries;   // kRetryQueue
  QueuePublisher dlq;
  RetryingConsumerStats stats;
  std::unique_ptr<InPlaceRetries> in_place;  // kInPlace
  const GroupOffsets* offsets = nullptr;     // kInPlace: the attempt counts; the consumer's
  std::shared_ptr<RetryingConsumerState*> event_hook;  // kInPlace: the consumer's on_event reaches us
  std::mt19937_64 rng{std::random_device{}()};
  std::array<RecordView, kBatch> batch{};
  // Reused, so that a record costs no allocation once they have grown: the
  // handler's view of the headers, and those of a message handed on.
  std::vector<Header> headers;
  std::vector<Header> outgoing;
  char partition_text[12], offset_text[24], timestamp_text[24];

  struct Outcome {
    enum Kind : uint8_t { kOk, kTransient, kPermanent } kind = kOk;
    Failure failure;
  };

  Outcome call(const RecordHandler& handler, const StreamRecord& r);
  // The headers of `from` without the engine's, into `headers`.
  template <class Headers>
  void producer_headers(const Headers& from);
  // r's headers and its source, into `outgoing`.
  void source_headers(const StreamRecord& r);
  Status send_to_retry(const StreamRecord& r);
  Status dead_letter(const StreamRecord& r, const Failure& why);
  Failure exhausted(uint32_t attempts, const Failure& last) const;
  Status handle_record(const RecordHandler& handler, const RecordView& v);
  Status handle_retry(const RecordHandler& handler, Delivery& d);
  Result<uint64_t> poll(const RecordHandler& handler, uint64_t max_records, int64_t wait_ns);
  // kInPlace.
  // True if it ran or settled the record, false if the record waits out a
  // backoff its predecessor left.
  Result<bool> handle_in_place(const RecordHandler& handler, const RecordView& v);
  Result<uint64_t> poll_in_place(const RecordHandler& handler, uint64_t max_records, int64_t wait_ns);
  // Pauses the lane after a failed attempt, and counts it (and when the
  // next is due) in the group's file.
  void hold(uint32_t partition, uint64_t offset, uint32_t attempts, int64_t retry_at_ns, std::optional<Failure> letter);
  // The record is settled, or its retry void: the partition flows, its count goes.
  void end_pause(uint32_t partition);
  // Attempts begun on the record at `offset` by earlier members (the
  // group's file), and when the next is due (0: at once); none: 0 and 0.
  GroupOffsets::RetryAttempts attempts_begun(uint32_t partition, uint64_t offset);
};

RetryingConsumerState::Outcome RetryingConsumerState::call(const RecordHandler& handler, const StreamRecord& r) {
  ++stats.attempts;
  try {
    handler(r);
    return {};
  } catch (const PermanentError& e) {
    return {Outcome::kPermanent, {"PermanentError", e.what(), e.stack_trace()}};
  } catch (const TransientError& e) {
    return {Outcome::kTransient, {"TransientError", e.what(), e.stack_trace()}};
  } catch (const std::exception& e) {
    return {Outcome::kTransient, {boost::core::demangle(typeid(e).name()), e.what(), ""}};
  } catch (...) {
    // Caught too: one escaping poll() would leave its batch neither handed
    // on nor rewound, and the next commit would pass over it.
    return {Outcome::kTransient, {"unknown", "an exception not derived from std::exception", ""}};
  }
}

template <class Headers>
void RetryingConsumerState::producer_headers(const Headers& from) {
  headers.clear();
  // Also the queue's scheduling headers: the retry queue wrote not_before,
  // and neither may reach it from a record (it would act on them).
  for (Header h : from)
    if (!h.name.starts_with(kStreamPrefix) && h.name != kHeaderNotBefore && h.name != kHeaderGroup)
      headers.push_back(h);
}

void RetryingConsumerState::source_headers(const StreamRecord& r) {
  outgoing.assign(r.headers.begin(), r.headers.end());
  auto text = [](char* buf, size_t size, auto v) {
    auto [end, ec] = std::to_chars(buf, buf + size, v);
    return std::string_view(buf, end - buf);
  };
  outgoing.push_back({kStreamTopic, topic});
  outgoing.push_back({kStreamPartition, text(partition_text, sizeof partition_text, r.partition)});
  outgoing.push_back({kStreamOffset, text(offset_text, sizeof offset_text, r.offset)});
  outgoing.push_back({kStreamTimestamp, text(timestamp_text, sizeof timestamp_text, r.timestamp_ns)});
  if (!r.key.empty()) outgoing.push_back({kStreamKey, r.key});
}

Status RetryingConsumerState::send_to_retry(const StreamRecord& r) {
  source_headers(r);
  QueueMessage m;
  m.value = r.value;
  m.headers = outgoing;
  // The first backoff is a delayed message; the queue's nacks schedule the
  // later ones.
  const int64_t delay = retry.delay_ns(r.attempt, rng());
  if (delay > 0) m.deliver_at_unix_ns = clock->now_ns() + delay;
  const PublishResult p = retries->publish(m);
  if (!p.ok()) return std::unexpected(retries->last_error());
  ++stats.retried;
  return {};
}

Status RetryingConsumerState::dead_letter(const StreamRecord& r, const Failure& why) {
  source_headers(r);  // the producer's headers, and the stream source as data
  DeadLetter letter;
  letter.failure = why;
  letter.source = "topic:" + topic;
  letter.partition = r.partition;
  letter.offset = r.offset;
  letter.attempts = r.attempt;
  letter.consumer_group = group;
  // One record, one dead letter, however often its dead-lettering repeats
  // (a member killed before committing or acking): the de-duplication id.
  const PublishResult p = dlq.publish_dead_letter(r.value, outgoing, letter);
  if (!p.ok()) return std::unexpected(dlq.last_error());
  ++stats.dead_lettered;
  return {};
}

Failure RetryingConsumerState::exhausted(uint32_t attempts, const Failure& last) const {
  return {"MaxReceivesExceeded",
          "failed on each of " + std::to_string(attempts) + " attempts; the last: " + last.type + ": " + last.message,
          last.stack_trace};
}

// A record from the topic: attempt 1.
Status RetryingConsumerState::handle_record(const RecordHandler& handler, const RecordView& v) {
  ++stats.records;
  producer_headers(v.headers);
  const StreamRecord r{topic, v.partition, v.offset, v.timestamp_ns, v.key, v.value, headers, 1};
  const Outcome o = call(handler, r);
  if (o.kind == Outcome::kOk) return {};
  if (o.kind == Outcome::kPermanent) return dead_letter(r, o.failure);
  if (retry.max_receives <= 1) return dead_letter(r, exhausted(1, o.failure));
  return send_to_retry(r);
}

// A record from the retry queue: attempt = its receives + 1.
Status RetryingConsumerState::handle_retry(const RecordHandler& handler, Delivery& d) {
  const HeadersView& h = d.headers();
  StreamRecord r{topic, 0, 0, 0, h.find(kStreamKey), d.value(), {}, d.attempt() + 1};
  if (!parse(h.find(kStreamPartition), &r.partition) || !parse(h.find(kStreamOffset), &r.offset) ||
      !parse(h.find(kStreamTimestamp), &r.timestamp_ns)) {
    // Not published by a helper: the queue's own dead-lettering takes it.
    (void)d.reject({"NotAStreamRetry", "a message of retry queue " + retry_name + " without its sluice.stream.* source",
                    ""});
    return {};
  }
  producer_headers(h);
  r.headers = headers;
  // On a failure to dead-letter, the nack offers the record again later (or
  // has the queue dead-letter it), and the caller learns why.
  auto settle_dead = [&](const Failure& why) -> Status {
    if (auto ok = dead_letter(r, why); !ok) {
      (void)d.nack();
      return ok;
    }
    (void)d.ack();  // kLeaseLost: the dead letter's dedup id absorbs the other holder's
    return {};
  };
  if (r.attempt > retry.max_receives)  // the holder of its last attempt died or overran its lease
    return settle_dead({"MaxReceivesExceeded",
                        "received " + std::to_string(r.attempt - 1) + " times from " + retry_name +
                            " without being settled",
                        ""});
  const Outcome o = call(handler, r);
  if (o.kind == Outcome::kOk) {
    ++stats.succeeded_after_retry;
    (void)d.ack();  // kLeaseLost: another member has it too (at least once)
    return {};
  }
  if (o.kind == Outcome::kPermanent) return settle_dead(o.failure);
  if (r.attempt >= retry.max_receives) return settle_dead(exhausted(r.attempt, o.failure));
  // The backoff after attempt r.attempt, not after receive r.attempt - 1,
  // which the queue's own policy would use.
  (void)d.nack(retry.delay_ns(r.attempt, rng()));
  ++stats.retried;
  return {};
}

Result<uint64_t> RetryingConsumerState::poll(const RecordHandler& handler, uint64_t max_records, int64_t wait_ns) {
  const uint64_t limit = max_records == 0 ? kBatch : max_records;
  uint64_t n = 0;
  // Due retries first: they have waited out their backoff already.
  Delivery d[1];
  while (n < limit) {
    auto got = worker->receive(d, 0);
    if (!got) return std::unexpected(got.error());
    if (*got == 0) break;
    ++n;
    const Status ok = handle_retry(handler, d[0]);
    d[0] = Delivery();
    if (!ok) return std::unexpected(ok.error());
  }
  if (n == limit) return n;
  const size_t want = static_cast<size_t>(std::min<uint64_t>(kBatch, limit - n));
  auto got = consumer.poll(std::span(batch).first(want), n == 0 ? wait_ns : 0);
  if (!got) return std::unexpected(got.error());
  for (size_t i = 0; i < *got; ++i) {
    if (auto ok = handle_record(handler, batch[i]); !ok) {
      // Rewind every partition to its first record not handed on, so the
      // commit below keeps it (at least once).
      std::vector<uint32_t> rewound;
      for (size_t j = i; j < *got; ++j) {
        if (std::find(rewound.begin(), rewound.end(), batch[j].partition) != rewound.end()) continue;
        rewound.push_back(batch[j].partition);
        consumer.seek(batch[j].partition, batch[j].offset);
      }
      consumer.commit_async();
      return std::unexpected(ok.error());
    }
  }
  // After handling: a crash before this commit hands the batch out again.
  if (*got > 0) consumer.commit_async();
  return n + *got;
}

// ---- kInPlace ----------------------------------------------------------------

void RetryingConsumerState::hold(uint32_t partition, uint64_t offset, uint32_t attempts, int64_t retry_at_ns,
                                 std::optional<Failure> letter) {
  in_place->pause(partition, offset, attempts, retry_at_ns, clock->now_ns(), std::move(letter));
  // Beyond the largest encodable offset the count stays in memory.
  if (offsets) (void)offsets->store_retry_attempts(partition, offset, attempts, retry_at_ns);
}

void RetryingConsumerState::end_pause(uint32_t partition) {
  in_place->resume(partition, clock->now_ns());
  // Flowing in the consumer already unless the retry was voided while it
  // waited (an admin seek, from the consumer's event handler).
  (void)consumer.resume(partition);  // assigned: the lanes only hold assigned partitions
  if (offsets && offsets->retry_attempts(partition)) offsets->clear_retry_attempts(partition);
}

GroupOffsets::RetryAttempts RetryingConsumerState::attempts_begun(uint32_t partition, uint64_t offset) {
  const GroupOffsets::RetryAttempts none{offset, 0, 0};
  if (!offsets) return none;
  const auto begun = offsets->retry_attempts(partition);
  if (!begun) return none;
  if (begun->offset == offset) return *begun;
  // A count for a record behind this one is stale (the group was moved past
  // it, or a member of an older build settled it): drop it, so that a
  // rewind to that record later starts it afresh. One ahead belongs to a
  // record this member has not reached yet (it re-reads what its
  // predecessor handled but did not commit).
  if (begun->offset < offset) offsets->clear_retry_attempts(partition);
  return none;
}

// A record of a flowing or due partition: attempt 1 (or, after a restart,
// the attempt after those the group's file counts, once it is due), or the
// paused record's next attempt.
Result<bool> RetryingConsumerState::handle_in_place(const RecordHandler& handler, const RecordView& v) {
  InPlaceRetries& lanes = *in_place;
  const uint32_t partition = v.partition;
  uint32_t attempt = 0;
  if (lanes.lane(partition) == InPlaceRetries::Lane::kDue) {
    if (v.offset == lanes.offset(partition))
      attempt = lanes.failed_attempts(partition) + 1;
    else  // the consumer was moved (a seek through consumer(), a retention reset): its retry is void
      end_pause(partition);
  }
  if (attempt == 0) {
    ++stats.records;
    const GroupOffsets::RetryAttempts begun = attempts_begun(partition, v.offset);
    attempt = begun.attempts + 1;
    // A predecessor's backoff not over yet: the partition waits for it here,
    // as it would have in that member. Never past the longest backoff of
    // the policy from now, whatever the word says (the clock was set back,
    // or the word damaged); and with no attempt left, the record is
    // dead-lettered at once below.
    if (begun.retry_at_ns != 0 && attempt <= retry.max_receives) {
      const int64_t now = clock->now_ns();
      const int64_t due = std::min(begun.retry_at_ns, now + retry.max_delay_ns + retry.jitter_ns);
      if (due > now) {
        hold(partition, v.offset, begun.attempts, due, std::nullopt);
        return false;
      }
    }
  }
  producer_headers(v.headers);
  const StreamRecord r{topic, partition, v.offset, v.timestamp_ns, v.key, v.value, headers, attempt};
  // A refused letter keeps the partition paused at the record, to be written
  // by the next poll without running the handler again.
  auto settle_dead = [&](const StreamRecord& failed, Failure why) -> Result<bool> {
    if (auto ok = dead_letter(failed, why); !ok) {
      hold(partition, v.offset, failed.attempt, clock->now_ns(), std::move(why));
      return std::unexpected(ok.error());
    }
    end_pause(partition);
    return true;
  };
  if (const Failure* letter = lanes.pending_letter(partition); letter != nullptr && attempt > 1) {
    StreamRecord failed = r;
    failed.attempt = attempt - 1;  // the attempts it had
    return settle_dead(failed, *letter);
  }
  if (attempt > retry.max_receives) {
    // Every attempt was begun by members that stopped before settling it
    // (killed in the handler, or holding a refused letter): dead-letter it
    // unrun, as the retry queue does a record received too often.
    StreamRecord failed = r;
    failed.attempt = attempt - 1;
    return settle_dead(failed, {"MaxReceivesExceeded",
                                "begun " + std::to_string(failed.attempt) + " times by members of group " + group +
                                    " that stopped before settling it",
                                ""});
  }
  // Counted before it runs: a member killed in the handler has begun it
  // (and its replacement goes on at once: this due time is over).
  if (attempt > 1 && offsets) (void)offsets->store_retry_attempts(partition, v.offset, attempt);
  const Outcome o = call(handler, r);
  if (o.kind == Outcome::kOk) {
    if (attempt > 1) {
      ++stats.succeeded_after_retry;
      end_pause(partition);
    }
    return true;
  }
  if (o.kind == Outcome::kPermanent) return settle_dead(r, o.failure);
  if (attempt >= retry.max_receives) return settle_dead(r, exhausted(attempt, o.failure));
  hold(partition, v.offset, attempt, clock->now_ns() + retry.delay_ns(attempt, rng()), std::nullopt);
  ++stats.retried;
  return true;
}

Result<uint64_t> RetryingConsumerState::poll_in_place(const RecordHandler& handler, uint64_t max_records,
                                                      int64_t wait_ns) {
  InPlaceRetries& lanes = *in_place;
  // Retries whose backoff has passed: their partitions are read again, from
  // the record (their position).
  lanes.start_due(clock->now_ns(), [&](uint32_t p) { (void)consumer.resume(p); });
  const size_t want = static_cast<size_t>(std::min<uint64_t>(kBatch, max_records == 0 ? kBatch : max_records));
  auto got = consumer.poll(std::span(batch).first(want), wait_ns);
  if (!got) return std::unexpected(got.error());
  uint64_t n = 0;
  Status handled;
  size_t i = 0;
  for (; i < *got; ++i) {
    const RecordView& v = batch[i];
    // Behind a record that failed in this batch: read again after it. (Or
    // the partition was resumed behind the helper's back: hold it again.)
    if (lanes.lane(v.partition) == InPlaceRetries::Lane::kWaiting) {
      lanes.hold(v.partition);
      continue;
    }
    const Result<bool> ran = handle_in_place(handler, v);
    if (!ran) {
      handled = std::unexpected(ran.error());
      break;
    }
    n += *ran;
  }
  if (!handled) {
    // Rewind every other partition to its first record not handed on, so
    // that the commit below keeps it (at least once); the record whose
    // letter was refused waits in its paused partition.
    std::vector<uint32_t> rewound;
    for (size_t j = i + 1; j < *got; ++j) {
      const uint32_t p = batch[j].partition;
      if (lanes.lane(p) == InPlaceRetries::Lane::kWaiting) continue;
      if (std::find(rewound.begin(), rewound.end(), p) != rewound.end()) continue;
      rewound.push_back(p);
      consumer.seek(p, batch[j].offset);
    }
  }
  // After the batch, since a seek ends its views: each partition paused in
  // it goes back to its record and waits there. The consumer's position is
  // then the record, so its commit below keeps it (and those of the
  // partitions that flow pass what was handled).
  lanes.hold_new([&](uint32_t p, uint64_t offset) {
    consumer.seek(p, offset);
    // Unless retention removed the record just now: the seek's reset event
    // voided the retry (on_event), and the partition flows from the reset.
    if (lanes.lane(p) == InPlaceRetries::Lane::kWaiting)
      (void)consumer.pause(p);  // assigned: a record of it was just read
  });
  consumer.commit_async();
  if (!handled) return std::unexpected(handled.error());
  return n;
}

// ---- RetryingConsumer ------------------------------------------------------

RetryingConsumer::RetryingConsumer(std::unique_ptr<RetryingConsumerState> state) : state_(std::move(state)) {}
RetryingConsumer::RetryingConsumer(RetryingConsumer&&) noexcept = default;
RetryingConsumer& RetryingConsumer::operator=(RetryingConsumer&&) noexcept = default;
RetryingConsumer::~RetryingConsumer() = default;

const RetryingConsumerStats& RetryingConsumer::stats() const noexcept { return state_->stats; }
RetryMode RetryingConsumer::mode() const noexcept { return state_->mode; }
const std::string& RetryingConsumer::retry_queue() const noexcept { return state_->retry_name; }
const std::string& RetryingConsumer::dead_letter_queue() const noexcept { return state_->dlq_name; }
Consumer& RetryingConsumer::consumer() noexcept { return state_->consumer; }

Result<uint64_t> RetryingConsumer::poll(const RecordHandler& handler, uint64_t max_records) {
  if (state_->in_place) return state_->poll_in_place(handler, max_records, 0);
  return state_->poll(handler, max_records, 0);
}

Result<uint64_t> RetryingConsumer::run(const RecordHandler& handler, const std::function<bool()>& stop,
                                       uint64_t max_records, int64_t idle_ns) {
  RetryingConsumerState& s = *state_;
  // Waits on the topic are cut where a worker's would be, or (in place) at
  // the next retry: retries come due by time, without a wake-up.
  const int64_t slice =
      s.in_place ? std::max<int64_t>(idle_ns, 0) : std::min(idle_ns, std::max<int64_t>(s.sweep_interval_ns, 1'000'000));
  uint64_t handled = 0;
  while ((max_records == 0 || handled < max_records) && !(stop && stop())) {
    const uint64_t left = max_records == 0 ? 0 : max_records - handled;
    Result<uint64_t> n = 0;
    if (s.in_place) {
      const int64_t until_retry = s.in_place->next_retry_at_ns() - s.clock->now_ns();
      n = s.poll_in_place(handler, left, std::clamp<int64_t>(until_retry, 0, slice));
    } else {
      n = s.poll(handler, left, slice);
    }
    if (!n) return n;
    handled += *n;
  }
  if (auto ok = s.consumer.commit_sync(); !ok) return std::unexpected(ok.error());
  return handled;
}

Result<RetryingConsumer> RetryingConsumer::create(Bus& bus, std::string_view topic, std::string_view group,
                                                  const RetryingConsumerOptions& options) {
  if (group.empty()) return make_error(Errc::kInvalidArgument, "a retrying consumer needs a consumer group");
  const bool in_place = options.mode == RetryMode::kInPlace;
  if (in_place && options.consumer.guarantee == Guarantee::kAtMostOnce)
    return make_error(Errc::kInvalidArgument,
                      "RetryMode::kInPlace keeps the group's offset at the record it retries; "
                      "Guarantee::kAtMostOnce commits before handling");
  const std::string retry_name =
      in_place ? std::string()
      : options.retry_queue.empty() ? std::string(topic) + "." + std::string(group) + ".retry"
                                    : options.retry_queue;
  const std::string dlq_name =
      options.dead_letter_queue.empty() ? std::string(topic) + ".dlq" : options.dead_letter_queue;
  QueueOptions rq = options.queue;
  rq.retry = options.retry;
  rq.dead_letter_queue = dlq_name;
  if (auto ok = validate_queue_options(rq); !ok) return std::unexpected(ok.error());

  ConsumerOptions co = options.consumer;
  // In place, an admin seek of a paused partition voids its retry: the
  // member follows the group from the new offset, at once (the consumer
  // notices the seek while the partition is paused, and a resume from its
  // event handler takes effect in the same poll). So does a retention reset
  // that removed the record. Set once the state exists (after the
  // consumer); events come only from its polls.
  auto hook = std::make_shared<RetryingConsumerState*>(nullptr);
  if (in_place) {
    co.on_event = [hook, user = std::move(co.on_event)](const ConsumerEvent& e) {
      RetryingConsumerState* s = *hook;
      if (s && (e.kind == ConsumerEvent::Kind::kGroupSeek || e.kind == ConsumerEvent::Kind::kOffsetReset) &&
          s->in_place->lane(e.partition) != InPlaceRetries::Lane::kFlowing)
        s->end_pause(e.partition);
      if (user) user(e);
    };
  }
  // The topic and group first: nothing is created for a consumer that
  // cannot be.
  auto consumer = bus.create_consumer(topic, group, co);
  if (!consumer) return std::unexpected(consumer.error());
  // As open_dead_letter_queue() makes one: the queue's shape, no DLQ of its own.
  QueueOptions dq;
  dq.segment_bytes = options.queue.segment_bytes;
  dq.max_depth_bytes = options.queue.max_depth_bytes;
  dq.dead_letter_queue = "-";
  if (auto ok = make_queue(bus, dlq_name, dq); !ok) return std::unexpected(ok.error());
  auto dlq = bus.create_queue_publisher(dlq_name);
  if (!dlq) return std::unexpected(dlq.error());
  auto s = std::make_unique<RetryingConsumerState>(std::move(*consumer), std::move(*dlq));
  s->topic = topic;
  s->group = group;
  s->retry_name = retry_name;
  s->dlq_name = dlq_name;
  s->retry = options.retry;
  s->mode = options.mode;
  s->clock = &bus.clock();
  if (in_place) {
    s->in_place = std::make_unique<InPlaceRetries>(s->consumer.assignment(), &s->stats);
    s->offsets = ConsumerAccess::offsets(s->consumer);
    s->event_hook = hook;
    *hook = s.get();
    return RetryingConsumer(std::move(s));
  }

  // Made now, not on the first failure: the run loop works the retry queue
  // from the start, since other members' failures land there too.
  if (auto ok = make_queue(bus, retry_name, rq); !ok) return std::unexpected(ok.error());
  // A member that dies holding a retry leaves it to the queue's own
  // dead-lettering, which must reach the same DLQ.
  auto stats = bus.queue_stats(retry_name);
  if (!stats) return std::unexpected(stats.error());
  if (stats->dead_letter_queue != dlq_name)
    return make_error(Errc::kInvalidArgument, "retry queue " + retry_name + " dead-letters to '" +
                                                  stats->dead_letter_queue + "', not to " + dlq_name);
  WorkerOptions wo = options.worker;
  wo.retry = options.retry;  // whatever policy the queue was created with
  wo.guarantee = Guarantee::kAtLeastOnce;
  auto worker = bus.create_worker(retry_name, wo);
  if (!worker) return std::unexpected(worker.error());
  auto retries = bus.create_queue_publisher(retry_name);
  if (!retries) return std::unexpected(retries.error());
  s->worker.emplace(std::move(*worker));
  s->retries.emplace(std::move(*retries));
  s->sweep_interval_ns = wo.sweep_interval_ns;
  return RetryingConsumer(std::move(s));
}

}  // namespace sluice
