#include <sluice/bus.h>
#include <sluice/queue.h>

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <ctime>

#include "producer_state.h"
#include "queue_exactly_once.h"
#include "queue_format.h"
#include "queue_state.h"
#include "queue_writer.h"
#include "record_codec.h"
#include "transaction_state.h"

namespace sluice {

using format::DedupEntry;

ProducerOptions queue_producer_options() {
  ProducerOptions o;
  o.back_pressure_timeout_ns = 1'000'000'000;
  return o;
}

QueueWriter::QueueWriter(std::shared_ptr<BusState> bus, std::unique_ptr<QueueState> queue,
                         const ProducerOptions& options)
    : q(std::move(queue)), producer(ProducerAccess::make(std::move(bus), q->log, options)) {
  headers.reserve(16);
}

PublishResult QueueWriter::publish(const QueueMessage& m, std::span<const Header> extra,
                                   std::optional<uint32_t> sequence) noexcept {
  PublishResult r;
  if (m.priority >= q->levels()) {
    last_error = Error{Errc::kInvalidArgument, "priority " + std::to_string(m.priority) + " out of range for queue " +
                                                   q->name + " (" + std::to_string(q->levels()) + " levels)"};
    return r;
  }
  for (const Header& h : m.headers)
    if (h.name == kHeaderNotBefore || h.name == kHeaderGroup) {
      last_error = Error{Errc::kInvalidArgument, "header " + std::string(h.name) +
                                                     " is the engine's; set QueueMessage::deliver_at_unix_ns or group"};
      return r;
    }
  // The engine's own headers first, then `extra`, then the caller's: readers
  // take the first of a name (HeadersView::find).
  headers.clear();
  if (m.deliver_at_unix_ns != 0) {
    const int64_t now = q->bus->clock->now_ns();
    if (m.deliver_at_unix_ns - now > format::kMaxQueueDelayMs * 1'000'000) {
      last_error = Error{Errc::kInvalidArgument, "a message may be delayed by at most 14 days"};
      return r;
    }
    auto [end, ec] = std::to_chars(not_before, not_before + sizeof not_before, m.deliver_at_unix_ns / 1'000'000);
    headers.push_back(Header{kHeaderNotBefore, std::string_view(not_before, end - not_before)});
  }
  if (!m.group.empty()) headers.push_back(Header{kHeaderGroup, m.group});
  headers.insert(headers.end(), extra.begin(), extra.end());
  headers.insert(headers.end(), m.headers.begin(), m.headers.end());
  r.priority = m.priority;
  DedupEntry* claimed = nullptr;
  if (!m.dedup_id.empty()) {
    // The open transaction published this id already: the same message.
    if (txn != nullptr)
      if (const auto* held = txn->held_dedup(q.get(), key_hash(m.dedup_id) | 1)) {
        r.status = SendStatus::kOk;
        r.offset = held->offset;
        r.priority = held->level;
        r.duplicate = true;
        return r;
      }
    auto hit = dedup_claim(*q, m.dedup_id, q->bus->clock->now_ns(), &claimed);
    if (!hit) {
      last_error = hit.error();
      r.status = hit.error().code == Errc::kBusy ? SendStatus::kBusy : SendStatus::kError;
      return r;
    }
    if (*hit) {
      r.status = SendStatus::kOk;
      r.offset = (*hit)->offset;
      r.priority = (*hit)->level;
      r.duplicate = true;
      return r;
    }
  }
  const Message msg{{}, m.value, headers};
  const SendResult s = sequence ? producer.send_sequenced(msg, *sequence, m.priority) : producer.send(msg, m.priority);
  r.status = s.status;
  r.offset = s.offset;
  r.sequence = s.sequence;
  r.duplicate = s.duplicate;
  if (!s.ok()) last_error = producer.last_error();
  if (claimed) {
    const bool appended = s.ok() && !s.duplicate;
    // A sequence duplicate is the message the id names, committed and where
    // the log still says it is (inside a transaction it may be one of the
    // open transaction's own frames: not recorded).
    const bool original_known = s.ok() && s.duplicate && s.offset != kNoOffset && txn == nullptr;
    if (appended && txn != nullptr) {
      // Counts as the id's publish only if the transaction commits: HELD
      // (ours, naming the frame) until its decision, then completed or
      // released. The HELD word lets another publisher of the id see in the
      // log that the transaction is over even if this process is stopped
      // (queue_exactly_once.h). It cannot fail here (nobody takes over a
      // live publisher's plain PENDING entry); if it did, the entry is not
      // ours to settle.
      if (dedup_hold(claimed, q->bus->registry.self(), m.priority, s.offset))
        txn->hold_dedup(q.get(), claimed, m.priority, s.offset);
    } else if (appended || original_known)
      dedup_complete(claimed, m.priority, s.offset, q->bus->clock->now_ns());
    else
      dedup_release(claimed);
  }
  return r;
}

namespace {
// Floor division, so that times before 1970 land in the right second too.
int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
}  // namespace

std::string rfc3339_utc_ms(int64_t unix_ns) {
  const int64_t ms = floor_div(unix_ns, 1'000'000);
  const time_t secs = static_cast<time_t>(floor_div(ms, 1000));
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[48];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms - int64_t{secs} * 1000));
  return buf;
}

Result<std::unique_ptr<QueueState>> open_or_create_queue(BusState& bus, std::string_view name, const QueueOptions& o,
                                                         bool dead_letter_queue) {
  auto q = open_queue(bus, name);
  if (q || q.error().code != Errc::kNotFound) return q;
  auto made = create_queue_files(bus, name, o, dead_letter_queue);
  if (!made && made.error().code != Errc::kAlreadyExists) return std::unexpected(made.error());  // a race: the winner's is as good
  return open_queue(bus, name);
}

Result<std::unique_ptr<QueueState>> open_dead_letter_queue(BusState& bus, std::string_view name,
                                                           uint32_t segment_bytes, int64_t max_depth_bytes) {
  QueueOptions o;
  o.segment_bytes = segment_bytes;
  o.max_depth_bytes = max_depth_bytes;
  return open_or_create_queue(bus, name, o, true);
}

PublishResult publish_dead_letter(QueueWriter& dlq, std::string_view value, std::span<const Header> headers,
                                  const DeadLetter& letter) noexcept {
  const std::string failed_at = rfc3339_utc_ms(dlq.q->bus->clock->now_ns());
  const std::string partition = std::to_string(letter.partition);
  const std::string offset = std::to_string(letter.offset);
  const std::string attempts = std::to_string(letter.attempts);
  const std::string pid = std::to_string(::getpid());
  const std::string worker = std::to_string(dlq.q->bus->registry.self());
  std::vector<Header> meta = {
      {"sluice.dlq.error_type", letter.failure.type},
      {"sluice.dlq.error_message", letter.failure.message},
      {"sluice.dlq.stack_trace", letter.failure.stack_trace},
      {"sluice.dlq.failed_at", failed_at},
      {"sluice.dlq.source", letter.source},
      {"sluice.dlq.source_partition", partition},
      {"sluice.dlq.source_offset", offset},
      {"sluice.dlq.attempts", attempts},
      {"sluice.dlq.worker", worker},
      {"sluice.dlq.pid", pid},
  };
  if (!letter.consumer_group.empty()) meta.push_back({"sluice.dlq.consumer_group", letter.consumer_group});
  std::vector<Header> original;
  for (const Header& h : headers) {
    if (h.name == kHeaderNotBefore) continue;  // scheduling, done with
    // An earlier dead-lettering's metadata is superseded (its group stays).
    if (h.name.starts_with("sluice.dlq.") && h.name != "sluice.dlq.group") continue;
    // Kept, but not as a live group: a dead letter must not hold others back.
    original.push_back(h.name == kHeaderGroup ? Header{"sluice.dlq.group", h.value} : h);
  }
  const std::string dedup = "dlq:" + letter.source + ":" + partition + ":" + offset;
  QueueMessage m;
  m.value = value;
  m.headers = original;
  m.dedup_id = dedup;
  return dlq.publish(m, meta);
}

struct QueuePublisher::Impl {
  std::optional<QueueWriter> writer;
};

QueuePublisher QueuePublisherAccess::make(std::shared_ptr<BusState> bus, std::unique_ptr<QueueState> queue,
                                          const ProducerOptions& options) {
  auto impl = std::make_unique<QueuePublisher::Impl>();
  impl->writer.emplace(std::move(bus), std::move(queue), options);
  return QueuePublisher(std::move(impl));
}

QueueWriter& QueuePublisherAccess::writer(QueuePublisher& p) { return *p.impl_->writer; }

QueuePublisher::QueuePublisher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
QueuePublisher::QueuePublisher(QueuePublisher&&) noexcept = default;
QueuePublisher& QueuePublisher::operator=(QueuePublisher&&) noexcept = default;
QueuePublisher::~QueuePublisher() = default;

PublishResult QueuePublisher::publish(const QueueMessage& message) noexcept {
  return impl_->writer->publish(message, {});
}
PublishResult QueuePublisher::publish_sequenced(const QueueMessage& message, uint32_t sequence) noexcept {
  QueueWriter& w = *impl_->writer;
  if (w.producer.producer_id() == 0) {
    w.last_error = Error{Errc::kInvalidArgument, "queue " + w.q->name + ": publish_sequenced needs an idempotent "
                                                                       "publisher (QueuePublisherOptions::idempotent)"};
    return PublishResult{};
  }
  return w.publish(message, {}, sequence);
}
Result<uint32_t> QueuePublisher::next_sequence(uint32_t priority) noexcept {
  QueueWriter& w = *impl_->writer;
  if (w.producer.producer_id() == 0)
    return make_error(Errc::kInvalidArgument, "queue " + w.q->name + ": sequences belong to idempotent publishers "
                                                                     "(QueuePublisherOptions::idempotent)");
  if (priority >= w.q->levels())
    return make_error(Errc::kInvalidArgument, "priority " + std::to_string(priority) + " out of range for queue " +
                                                  w.q->name + " (" + std::to_string(w.q->levels()) + " levels)");
  return w.producer.next_sequence(priority);
}
uint64_t QueuePublisher::producer_id() const noexcept { return impl_->writer->producer.producer_id(); }
uint16_t QueuePublisher::producer_epoch() const noexcept { return impl_->writer->producer.producer_epoch(); }
PublishResult QueuePublisher::publish_dead_letter(std::string_view value, std::span<const Header> headers,
                                                  const DeadLetter& letter) noexcept {
  return sluice::publish_dead_letter(*impl_->writer, value, headers, letter);
}
const Error& QueuePublisher::last_error() const noexcept { return impl_->writer->last_error; }
uint32_t QueuePublisher::priorities() const noexcept { return impl_->writer->q->levels(); }

Result<QueuePublisher> Bus::create_queue_publisher(std::string_view queue, const QueuePublisherOptions& options) {
  if (!options.idempotent && !options.producer_name.empty())
    return make_error(Errc::kInvalidArgument, "a queue publisher's producer_name needs idempotent = true");
  auto q = open_queue(*state_, queue);
  if (!q) return std::unexpected(q.error());
  ProducerOptions o = queue_producer_options();
  o.idempotent = options.idempotent;
  o.producer_name = options.producer_name;
  o.exclusive = options.exclusive;
  QueuePublisher p = QueuePublisherAccess::make(state_, std::move(*q), o);
  // The topic producer's identity and sequences, per level (a partition of
  // the queue's internal topic): docs/exactly-once.md, section 2.
  if (options.idempotent)
    if (auto ok = ProducerAccess::make_idempotent(QueuePublisherAccess::writer(p).producer, options.producer_name); !ok)
      return std::unexpected(ok.error());
  return p;
}

}  // namespace sluice
