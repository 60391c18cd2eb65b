#include <sluice/bus.h>
#include <sluice/queue.h>

#include <charconv>

#include "producer_state.h"
#include "queue_format.h"
#include "queue_state.h"
#include "queue_writer.h"

namespace sluice {

using format::DedupEntry;

QueueWriter::QueueWriter(std::shared_ptr<BusState> bus, std::unique_ptr<QueueState> queue)
    : q(std::move(queue)), producer(ProducerAccess::make(std::move(bus), q->log, ProducerOptions{})) {
  headers.reserve(16);
}

PublishResult QueueWriter::publish(const QueueMessage& m, std::span<const Header> extra) noexcept {
  PublishResult r;
  if (m.priority >= q->levels()) {
    last_error = Error{Errc::kInvalidArgument, "priority " + std::to_string(m.priority) + " out of range for queue " +
                                                   q->name + " (" + std::to_string(q->levels()) + " levels)"};
    return r;
  }
  headers.clear();
  headers.insert(headers.end(), m.headers.begin(), m.headers.end());
  headers.insert(headers.end(), extra.begin(), extra.end());
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
  r.priority = m.priority;
  DedupEntry* claimed = nullptr;
  if (!m.dedup_id.empty()) {
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
  const SendResult s = producer.send(Message{{}, m.value, headers}, m.priority);
  r.status = s.status;
  r.offset = s.offset;
  if (!s.ok()) last_error = producer.last_error();
  if (claimed) {
    if (s.ok())
      dedup_complete(claimed, m.priority, s.offset, q->bus->clock->now_ns());
    else
      dedup_release(claimed);
  }
  return r;
}

struct QueuePublisher::Impl {
  std::optional<QueueWriter> writer;
};

QueuePublisher::QueuePublisher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
QueuePublisher::QueuePublisher(QueuePublisher&&) noexcept = default;
QueuePublisher& QueuePublisher::operator=(QueuePublisher&&) noexcept = default;
QueuePublisher::~QueuePublisher() = default;

PublishResult QueuePublisher::publish(const QueueMessage& message) noexcept {
  return impl_->writer->publish(message, {});
}
const Error& QueuePublisher::last_error() const noexcept { return impl_->writer->last_error; }

Result<QueuePublisher> Bus::create_queue_publisher(std::string_view queue) {
  auto q = open_queue(*state_, queue);
  if (!q) return std::unexpected(q.error());
  auto impl = std::make_unique<QueuePublisher::Impl>();
  impl->writer.emplace(state_, std::move(*q));
  return QueuePublisher(std::move(impl));
}

}  // namespace sluice
