#include "dead_letters.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <span>
#include <utility>

#include "json_text.h"

namespace sluice::cli {

namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

// `n` decimal digits at s[at..], advancing `at`.
bool take_digits(std::string_view s, size_t& at, size_t n, unsigned* out) {
  if (at + n > s.size()) return false;
  unsigned v = 0;
  for (size_t i = 0; i < n; ++i) {
    const char c = s[at + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  at += n;
  *out = v;
  return true;
}

bool take_char(std::string_view s, size_t& at, char c) {
  if (at >= s.size() || s[at] != c) return false;
  ++at;
  return true;
}

std::optional<uint64_t> decimal(std::string_view s) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

template <typename Headers>
std::optional<std::string_view> field_of(const Headers& h, std::string_view field) {
  for (Header x : h)
    if (x.name.size() == kDlqHeaderPrefix.size() + field.size() && x.name.starts_with(kDlqHeaderPrefix) &&
        x.name.substr(kDlqHeaderPrefix.size()) == field)
      return x.value;
  return std::nullopt;
}

std::optional<std::string_view> meta(std::span<const Header> h, std::string_view field) { return field_of(h, field); }

void append_meta_string(std::string& out, std::span<const Header> h, std::string_view field) {
  out += ",\"";
  out += field;
  out += "\":";
  if (auto v = meta(h, field))
    append_json_string(out, *v);
  else
    out += "null";
}

// A number when the header is a decimal number, else its text (or null).
void append_meta_number(std::string& out, std::span<const Header> h, std::string_view field) {
  out += ",\"";
  out += field;
  out += "\":";
  auto v = meta(h, field);
  if (!v)
    out += "null";
  else if (auto n = decimal(*v))
    out += std::to_string(*n);
  else
    append_json_string(out, *v);
}

// For a table cell: control characters escaped as in JSON (no quotes),
// at most `max` bytes (cut at a character boundary, marked with "...").
std::string cell_text(std::string_view s, size_t max) {
  std::string quoted;
  append_json_string(quoted, s);
  std::string_view inner(quoted);
  inner = inner.substr(1, inner.size() - 2);
  if (inner.size() <= max) return std::string(inner);
  size_t cut = 0;
  while (cut < inner.size()) {
    const size_t n = static_cast<unsigned char>(inner[cut]) < 0x80 ? 1 : utf8_sequence_length(inner.substr(cut));
    if (cut + std::max<size_t>(n, 1) > max - 3) break;
    cut += std::max<size_t>(n, 1);
  }
  return std::string(inner.substr(0, cut)) + "...";
}

}  // namespace

std::optional<std::string_view> dead_letter_field(const HeadersView& h, std::string_view field) {
  return field_of(h, field);
}

std::optional<std::string_view> dead_letter_field(std::span<const Header> h, std::string_view field) {
  return field_of(h, field);
}

std::optional<int64_t> parse_rfc3339_ms(std::string_view s) {
  size_t at = 0;
  unsigned year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!take_digits(s, at, 4, &year) || !take_char(s, at, '-') || !take_digits(s, at, 2, &month) ||
      !take_char(s, at, '-') || !take_digits(s, at, 2, &day))
    return std::nullopt;
  if (month < 1 || month > 12) return std::nullopt;
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const unsigned month_days = kDays[month - 1] + (month == 2 && leap(year) ? 1 : 0);
  if (day < 1 || day > month_days) return std::nullopt;
  int64_t ms = days_from_civil(year, month, day) * 86'400'000;
  if (at == s.size()) return ms;  // a date alone: its midnight, UTC
  if (s[at] != 'T' && s[at] != 't' && s[at] != ' ') return std::nullopt;
  ++at;
  if (!take_digits(s, at, 2, &hour) || !take_char(s, at, ':') || !take_digits(s, at, 2, &minute) ||
      !take_char(s, at, ':') || !take_digits(s, at, 2, &second))
    return std::nullopt;
  if (hour > 23 || minute > 59 || second > 60) return std::nullopt;  // 60: a leap second
  ms += (int64_t{hour} * 3600 + int64_t{minute} * 60 + second) * 1000;
  if (at < s.size() && s[at] == '.') {
    ++at;
    const size_t start = at;
    int64_t frac_ms = 0, scale = 100;
    while (at < s.size() && s[at] >= '0' && s[at] <= '9') {
      frac_ms += (s[at] - '0') * scale;  // digits past milliseconds are cut
      scale /= 10;
      ++at;
    }
    if (at == start) return std::nullopt;
    ms += frac_ms;
  }
  if (at >= s.size()) return std::nullopt;  // RFC 3339 requires the offset
  if (s[at] == 'Z' || s[at] == 'z') {
    ++at;
  } else if (s[at] == '+' || s[at] == '-') {
    const int sign = s[at] == '+' ? 1 : -1;
    ++at;
    unsigned oh = 0, om = 0;
    if (!take_digits(s, at, 2, &oh) || !take_char(s, at, ':') || !take_digits(s, at, 2, &om) || oh > 23 || om > 59)
      return std::nullopt;
    ms -= sign * (int64_t{oh} * 60 + om) * 60'000;  // local = UTC + offset
  } else {
    return std::nullopt;
  }
  if (at != s.size()) return std::nullopt;
  return ms;
}

Result<int64_t> parse_time_option(std::string_view text, std::string_view what) {
  if (!text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    auto v = decimal(text);
    if (v && *v <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(*v);
  }
  if (auto ms = parse_rfc3339_ms(text)) return *ms;
  return make_error(Errc::kInvalidArgument, std::string(what) + ": '" + std::string(text) +
                                                "' is neither RFC 3339 (2026-03-30T12:00:00Z) nor Unix ms");
}

Result<DeadLetterFilter> parse_filter(const FilterArgs& a) {
  DeadLetterFilter f;
  f.error_type = a.error_type;
  f.source = a.source;
  if (!a.since.empty()) {
    auto v = parse_time_option(a.since, "--since");
    if (!v) return std::unexpected(v.error());
    f.since_ms = *v;
  }
  if (!a.until.empty()) {
    auto v = parse_time_option(a.until, "--until");
    if (!v) return std::unexpected(v.error());
    f.until_ms = *v;
  }
  if (f.since_ms && f.until_ms && *f.until_ms <= *f.since_ms)
    return make_error(Errc::kInvalidArgument, "--until: must be after --since");
  return f;
}

template <typename Headers>
bool filter_matches(const DeadLetterFilter& f, const Headers& h) {
  if (!f.error_type.empty() && field_of(h, "error_type").value_or(std::string_view()) != f.error_type) return false;
  if (!f.source.empty()) {
    const std::string_view s = field_of(h, "source").value_or(std::string_view());
    const bool qualified = f.source.find(':') != std::string::npos;
    if (qualified ? s != f.source : (s != "queue:" + f.source && s != "topic:" + f.source)) return false;
  }
  if (f.since_ms || f.until_ms) {
    // A letter without a readable failure time matches no time range.
    const auto at = parse_rfc3339_ms(field_of(h, "failed_at").value_or(std::string_view()));
    if (!at) return false;
    if (f.since_ms && *at < *f.since_ms) return false;
    if (f.until_ms && *at >= *f.until_ms) return false;
  }
  return true;
}

bool DeadLetterFilter::matches(const HeadersView& h) const { return filter_matches(*this, h); }
bool DeadLetterFilter::matches(std::span<const Header> h) const { return filter_matches(*this, h); }

DeadLetter dead_letter_of(const QueueEntry& e) {
  DeadLetter d;
  d.priority = e.priority;
  d.offset = e.offset;
  d.timestamp_ns = e.timestamp_ns;
  d.receives = e.attempts;
  d.state = e.state;
  d.value = e.value;
  d.headers.reserve(e.headers.size());
  for (const auto& [name, value] : e.headers) d.headers.push_back(Header{name, value});
  return d;
}

DeadLetter dead_letter_of(const Delivery& x) {
  DeadLetter d;
  d.priority = x.priority();
  d.offset = x.offset();
  d.timestamp_ns = x.timestamp_ns();
  d.receives = x.attempt();
  d.value = x.value();
  for (Header h : x.headers()) d.headers.push_back(h);
  return d;
}

std::string_view queue_entry_state_name(QueueEntryState s) {
  switch (s) {
    case QueueEntryState::kWaiting: return "waiting";
    case QueueEntryState::kInFlight: return "in_flight";
    case QueueEntryState::kReady: return "ready";
    case QueueEntryState::kDelayed: return "delayed";
    case QueueEntryState::kBlocked: return "blocked";
  }
  return "unknown";
}

void append_dead_letter_json(std::string& out, std::string_view queue, const DeadLetter& d) {
  const std::span<const Header> h = d.headers;
  out += "{\"queue\":";
  append_json_string(out, queue);
  out += ",\"priority\":" + std::to_string(d.priority);
  out += ",\"offset\":" + std::to_string(d.offset);
  out += ",\"timestamp\":" + std::to_string(d.timestamp_ns);
  out += ",\"dlq_receives\":" + std::to_string(d.receives);
  if (d.state) {
    out += ",\"state\":";
    append_json_string(out, queue_entry_state_name(*d.state));
  }
  for (std::string_view f : {"error_type", "error_message", "stack_trace", "failed_at", "source"})
    append_meta_string(out, h, f);
  for (std::string_view f : {"source_partition", "source_offset", "attempts", "worker", "pid"})
    append_meta_number(out, h, f);
  for (std::string_view f : {"consumer_group", "group"}) append_meta_string(out, h, f);
  out += ",\"value\":";
  append_json_string(out, d.value);
  out += ",\"headers\":[";
  bool first = true;
  for (Header x : h) {
    if (x.name.starts_with(kDlqHeaderPrefix)) continue;
    out += first ? "{\"name\":" : ",{\"name\":";
    first = false;
    append_json_string(out, x.name);
    out += ",\"value\":";
    append_json_string(out, x.value);
    out += '}';
  }
  out += "]}\n";
}

void append_dead_letter_json(std::string& out, std::string_view queue, const Delivery& d) {
  append_dead_letter_json(out, queue, dead_letter_of(d));
}

void append_dead_letter_title(std::string& out) {
  char line[160];
  std::snprintf(line, sizeof line, "%-8s %-9s %-24s %-8s %-32s %-22s %s\n", "OFFSET", "STATE", "FAILED_AT", "ATTEMPTS",
                "SOURCE@PARTITION:OFFSET", "ERROR_TYPE", "ERROR_MESSAGE");
  out += line;
}

void append_dead_letter_row(std::string& out, const DeadLetter& d) {
  const std::span<const Header> h = d.headers;
  const auto text = [&](std::string_view f, size_t max) {
    auto v = meta(h, f);
    return v ? cell_text(*v, max) : std::string("-");
  };
  std::string source = text("source", 200);
  if (meta(h, "source_partition") || meta(h, "source_offset"))
    source += "@" + text("source_partition", 12) + ":" + text("source_offset", 24);
  char head[128];
  const std::string_view state = d.state ? queue_entry_state_name(*d.state) : std::string_view("-");
  std::snprintf(head, sizeof head, "%-8llu %-9.*s %-24s %-8s ", static_cast<unsigned long long>(d.offset),
                static_cast<int>(state.size()), state.data(), text("failed_at", 24).c_str(), text("attempts", 8).c_str());
  out += head;
  std::string rest = source;
  rest.resize(std::max<size_t>(rest.size(), 32), ' ');
  out += rest + ' ';
  rest = text("error_type", 64);
  rest.resize(std::max<size_t>(rest.size(), 22), ' ');
  out += rest + ' ' + text("error_message", 100) + '\n';
}

// ---- the browse ----------------------------------------------------------------

Status browse_dead_letters(const Bus& bus, std::string_view queue, uint32_t levels,
                           const std::function<bool(const QueueEntry&)>& fn) {
  for (uint32_t p = 0; p < levels; ++p) {
    uint64_t from = 0;
    for (;;) {
      auto page = bus.browse_queue(queue, p, from, kBrowsePage);
      if (!page) return std::unexpected(page.error());
      for (const QueueEntry& e : *page)
        if (!fn(e)) return {};
      if (page->size() < kBrowsePage) break;
      from = page->back().offset + 1;
    }
  }
  return {};
}

// ---- the scan ----------------------------------------------------------------

Result<DeadLetterScan> DeadLetterScan::take(Bus& bus, std::string_view queue) {
  auto before = bus.queue_stats(queue);
  if (!before) return std::unexpected(before.error());
  WorkerOptions o;
  o.lease_ns = kScanLeaseNs;
  // A receive whose count reaches max_receives dead-letters the message, and
  // a dead-letter queue's own dead letters are dropped: a scan must not be
  // the receive that does it (a DLQ has the default max_receives, 5).
  RetryPolicy keep;
  keep.max_receives = 255;
  keep.base_delay_ns = 0;
  keep.jitter_ns = 0;
  o.retry = keep;
  auto worker = bus.create_worker(queue, o);
  if (!worker) return std::unexpected(worker.error());
  DeadLetterScan scan(std::move(*worker));
  scan.held_elsewhere_ = before->total().in_flight;
  std::vector<Delivery> chunk(256);
  for (;;) {
    auto n = scan.worker_.receive(chunk, 0);
    if (!n) return std::unexpected(n.error());  // the destructor releases what was taken
    if (*n == 0) break;
    for (size_t i = 0; i < *n; ++i) scan.letters_.push_back(std::move(chunk[i]));
  }
  std::sort(scan.letters_.begin(), scan.letters_.end(), [](const Delivery& a, const Delivery& b) {
    return std::pair(a.priority(), a.offset()) < std::pair(b.priority(), b.offset());
  });
  return scan;
}

DeadLetterScan::~DeadLetterScan() { (void)release_all(); }

Status DeadLetterScan::release(Delivery& d) {
  if (!d.valid()) return {};
  Status ok = d.nack(0);
  d = Delivery();
  return ok;
}

Status DeadLetterScan::release_all() {
  Status first;
  for (Delivery& d : letters_) {
    Status ok = release(d);
    if (!ok && first) first = ok;
  }
  return first;
}

Status DeadLetterScan::extend_all(int64_t lease_ns) {
  Status first;
  for (Delivery& d : letters_) {
    if (!d.valid()) continue;
    Status ok = d.extend(lease_ns);
    if (!ok && first) first = ok;
  }
  return first;
}

}  // namespace sluice::cli
