// Parking lots: the parked copy (publish_parked, for Worker::park in
// queue_worker.cc), daily release windows, and Bus::unpark. Design:
// docs/queues.md, section 7, "Parking lot".
#include "queue_parking.h"

#include <sluice/bus.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <thread>
#include <vector>

namespace sluice {

namespace {

constexpr int64_t kNsPerMinute = 60'000'000'000;
constexpr int64_t kMinutesPerDay = 24 * 60;
constexpr int64_t kNsPerDay = kMinutesPerDay * kNsPerMinute;
constexpr int64_t kPacedLeaseNs = 30'000'000'000;

uint64_t parse_u64_or(std::string_view s, uint64_t fallback) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty() ? v : fallback;
}

// Floor division, so that times before 1970 land in the right day too.
int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

}  // namespace

Result<std::unique_ptr<QueueState>> open_parking_lot(BusState& bus, std::string_view name, uint32_t segment_bytes,
                                                     int64_t max_depth_bytes) {
  QueueOptions o;
  o.segment_bytes = segment_bytes;
  o.max_depth_bytes = max_depth_bytes;
  o.retry.max_receives = format::kMaxAttempts;
  return open_or_create_queue(bus, name, o, false);
}

PublishResult publish_parked(QueueWriter& lot, std::string_view value, std::span<const Header> headers,
                             const ParkedFrom& from) noexcept {
  const int64_t now = lot.q->bus->clock->now_ns();
  const std::string at = rfc3339_utc_ms(now);
  const std::string until = rfc3339_utc_ms(std::max(now, from.until_unix_ns));
  const std::string attempts = std::to_string(from.attempts);
  const std::string priority = std::to_string(from.priority);
  const std::string offset = std::to_string(from.offset);
  uint64_t parked_before = 0;
  std::vector<Header> kept;
  std::string_view group;
  for (const Header& h : headers) {
    if (h.name == kHeaderNotBefore) continue;  // scheduling, done with; the lot's own is `until`
    if (h.name == kHeaderGroup) {
      group = h.value;
      continue;
    }
    if (h.name == kHeaderParkedCount) {
      parked_before = parse_u64_or(h.value, 0);
      continue;
    }
    if (h.name.starts_with("sluice.parked.")) continue;  // an earlier parking's, superseded
    kept.push_back(h);
  }
  const std::string count = std::to_string(parked_before + 1);
  std::vector<Header> meta = {
      {kHeaderParkedFrom, from.queue},       {kHeaderParkedReason, from.reason},
      {kHeaderParkedAt, at},                 {kHeaderParkedAttempts, attempts},
      {kHeaderParkedUntil, until},           {kHeaderParkedPriority, priority},
      {kHeaderParkedOffset, offset},         {kHeaderParkedCount, count},
  };
  if (!group.empty()) meta.push_back({kHeaderParkedGroup, group});
  const std::string dedup = "park:" + std::string(from.queue) + ":" + priority + ":" + offset + "@" +
                            std::to_string(from.queue_epoch_unix_ms);
  QueueMessage m;
  m.value = value;
  m.headers = kept;
  m.priority = std::min(from.priority, lot.q->levels() - 1);
  m.deliver_at_unix_ns = from.until_unix_ns > now ? from.until_unix_ns : 0;
  m.dedup_id = dedup;
  return lot.publish(m, meta);
}

// ---- daily windows -------------------------------------------------------------

bool DailyWindow::contains(int64_t unix_ns) const noexcept {
  if (start_minute == end_minute) return true;
  const int64_t minute = floor_div(unix_ns, kNsPerMinute) - floor_div(unix_ns, kNsPerDay) * kMinutesPerDay;
  if (start_minute < end_minute) return minute >= start_minute && minute < end_minute;
  return minute >= start_minute || minute < end_minute;  // wraps past midnight
}

int64_t DailyWindow::next_open_unix_ns(int64_t unix_ns) const noexcept {
  if (contains(unix_ns)) return unix_ns;
  int64_t open = floor_div(unix_ns, kNsPerDay) * kNsPerDay + int64_t{start_minute} * kNsPerMinute;
  if (open <= unix_ns) open += kNsPerDay;
  return open;
}

Result<DailyWindow> parse_daily_window(std::string_view text) {
  auto bad = [&] {
    return make_error(Errc::kInvalidArgument,
                      "window '" + std::string(text.substr(0, 40)) + "' is not HH:MM-HH:MM (UTC, 00:00-23:59)");
  };
  auto two = [&](size_t at, uint32_t limit, uint32_t* out) {
    const char a = text[at], b = text[at + 1];
    if (a < '0' || a > '9' || b < '0' || b > '9') return false;
    *out = static_cast<uint32_t>((a - '0') * 10 + (b - '0'));
    return *out < limit;
  };
  if (text.size() != 11 || text[2] != ':' || text[5] != '-' || text[8] != ':') return bad();
  uint32_t h0, m0, h1, m1;
  if (!two(0, 24, &h0) || !two(3, 60, &m0) || !two(6, 24, &h1) || !two(9, 60, &m1)) return bad();
  return DailyWindow{h0 * 60 + m0, h1 * 60 + m1};
}

// ---- unpark --------------------------------------------------------------------

namespace {

// The message as it was before parking: its headers without the parked
// copy's metadata (its parking count kept), its group and level restored.
struct Restored {
  std::vector<Header> headers;
  std::string_view group;
  uint32_t priority = 0;
};

Restored restore(const Delivery& d) {
  Restored r;
  for (Header h : d.headers()) {
    if (h.name == kHeaderNotBefore) continue;  // the lot's until, done with
    if (h.name == kHeaderParkedGroup) r.group = h.value;
    if (h.name == kHeaderParkedPriority) r.priority = static_cast<uint32_t>(std::min<uint64_t>(parse_u64_or(h.value, 0), 9));
    if (h.name.starts_with("sluice.parked.") && h.name != kHeaderParkedCount) continue;
    r.headers.push_back(h);
  }
  return r;
}

}  // namespace

Result<UnparkResult> Bus::unpark(std::string_view lot, const UnparkOptions& options) {
  if (auto ok = validate_name(lot, "parking lot"); !ok) return std::unexpected(ok.error());
  if (!options.to.empty()) {
    if (auto ok = validate_name(options.to, "unpark target queue"); !ok) return std::unexpected(ok.error());
    if (options.to == lot) return make_error(Errc::kInvalidArgument, "unpark: --to is the parking lot itself");
  }
  if (!(options.rate_per_sec >= 0) || !std::isfinite(options.rate_per_sec))
    return make_error(Errc::kInvalidArgument, "unpark: the rate must be a finite number >= 0");
  int64_t epoch_ms = 0;
  {
    auto q = open_queue(*state_, lot);  // kNotFound for an unknown lot
    if (!q) return std::unexpected(q.error());
    epoch_ms = (*q)->params.epoch_unix_ms;
  }
  UnparkResult result;
  const Clock& c = clock();
  if (options.window && !options.window->contains(c.now_ns())) {
    result.outside_window = true;
    result.window_opens_unix_ns = options.window->next_open_unix_ns(c.now_ns());
    return result;
  }
  auto worker = create_worker(lot);
  if (!worker) return std::unexpected(worker.error());
  std::map<std::string, QueuePublisher, std::less<>> publishers;
  // Due messages left in the lot: held until the end, so that this call
  // does not receive them again, then offered again at once.
  std::vector<Delivery> skipped;
  auto release_skipped = [&] {
    result.skipped = skipped.size();
    for (Delivery& s : skipped) (void)s.nack(int64_t{0});
    skipped.clear();
  };
  const int64_t start = c.now_ns();
  while (options.max_messages == 0 || result.moved < options.max_messages) {
    if (options.window && !options.window->contains(c.now_ns())) break;  // it closed meanwhile
    Delivery got[1];
    auto n = worker->receive(got, 0);
    if (!n) {
      release_skipped();
      return std::unexpected(n.error());
    }
    if (*n == 0) break;
    Delivery& d = got[0];
    const std::string_view target = options.to.empty() ? d.headers().find(kHeaderParkedFrom) : options.to;
    if ((options.filter && !options.filter(d)) || target.empty() || target == lot) {
      skipped.push_back(std::move(d));
      continue;
    }
    auto it = publishers.find(target);
    if (it == publishers.end()) {
      // A source that is gone (or a name that is not one): the message
      // stays in the lot for an operator's --to, and the others still move.
      auto p = create_queue_publisher(target);
      if (!p) {
        skipped.push_back(std::move(d));
        continue;
      }
      it = publishers.emplace(std::string(target), std::move(*p)).first;
    }
    // Paced before each publish but the first: message i goes at start + i / rate.
    if (options.rate_per_sec > 0 && result.moved > 0) {
      const int64_t due = start + static_cast<int64_t>(static_cast<double>(result.moved) * 1e9 / options.rate_per_sec);
      if (c.now_ns() < due) {
        if (options.wait_until)
          options.wait_until(due);
        else  // once: a clock that does not follow real time must not hold us forever
          std::this_thread::sleep_for(std::chrono::nanoseconds(due - c.now_ns()));
        (void)d.extend(kPacedLeaseNs);  // a slow rate must not outwait the lease
      }
    }
    QueuePublisher& pub = it->second;
    const Restored r = restore(d);
    const std::string dedup = "unpark:" + std::string(lot) + ":" + std::to_string(d.priority()) + ":" +
                              std::to_string(d.offset()) + "@" + std::to_string(epoch_ms);
    QueueMessage m;
    m.value = d.value();
    m.headers = r.headers;
    m.group = r.group;
    m.priority = std::min(r.priority, pub.priorities() - 1);
    m.dedup_id = dedup;
    const PublishResult p = pub.publish(m);
    if (!p.ok()) {
      skipped.push_back(std::move(d));
      release_skipped();
      return make_error(pub.last_error().code, "unpark: publish to " + std::string(target) + ": " +
                                                   pub.last_error().message);
    }
    if (options.before_ack && !options.before_ack(d)) {
      // A simulated crash: the lease stays until it expires; the next run
      // re-publishes under the same de-duplication id.
      d = Delivery();
      break;
    }
    if (auto ok = d.ack(); !ok) continue;  // lease lost: its next holder re-publishes (a duplicate, dropped)
    ++result.moved;
    if (p.duplicate) ++result.duplicates;
  }
  release_skipped();
  return result;
}

}  // namespace sluice
