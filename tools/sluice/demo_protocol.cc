#include "demo_protocol.h"

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdio>

namespace sluice::cli::demo {

namespace {

// Parses "<name>=<digits>" at the start of `s` and moves `s` past it and one space.
template <class T>
bool take_field(std::string_view& s, std::string_view name, T* out) {
  if (!s.starts_with(name) || s.size() <= name.size() || s[name.size()] != '=') return false;
  s.remove_prefix(name.size() + 1);
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (ec != std::errc{}) return false;
  s.remove_prefix(static_cast<size_t>(ptr - s.data()));
  if (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return true;
}

}  // namespace

int parse_account(std::string_view key) noexcept {
  constexpr std::string_view kPrefix = "account-";
  if (!key.starts_with(kPrefix)) return -1;
  key.remove_prefix(kPrefix.size());
  int n = -1;
  auto [ptr, ec] = std::from_chars(key.data(), key.data() + key.size(), n);
  if (ec != std::errc{} || ptr != key.data() + key.size() || n < 0 || n >= static_cast<int>(kAccounts)) return -1;
  return n;
}

int64_t parse_job(std::string_view value) noexcept {
  constexpr std::string_view kPrefix = "job-";
  if (!value.starts_with(kPrefix)) return -1;
  value.remove_prefix(kPrefix.size());
  int64_t n = -1;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (value.empty() || ec != std::errc{} || ptr != value.data() + value.size() || n < 0) return -1;
  return n;
}

size_t format_value(char* buf, size_t size, uint32_t producer, uint64_t seq, int64_t sent_ns) noexcept {
  const int n = std::snprintf(buf, size, "producer=%u seq=%llu sent_ns=%lld", producer, (unsigned long long)seq,
                              (long long)sent_ns);
  return n < 0 ? 0 : std::min(static_cast<size_t>(n), size - 1);
}

bool parse_value(std::string_view value, DemoValue* out) noexcept {
  return take_field(value, "producer", &out->producer) && take_field(value, "seq", &out->seq) &&
         take_field(value, "sent_ns", &out->sent_ns) && value.empty();
}

Report Report::parse(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  size_t sp = line.find(' ');
  Report r(std::string(line.substr(0, sp)));
  while (sp != std::string_view::npos) {
    line.remove_prefix(sp + 1);
    sp = line.find(' ');
    const std::string_view word = line.substr(0, sp);
    const size_t eq = word.find('=');
    if (eq != std::string_view::npos) r.fields_[std::string(word.substr(0, eq))] = std::string(word.substr(eq + 1));
  }
  return r;
}

Report& Report::set(const std::string& key, const std::string& value) {
  fields_[key] = value;
  return *this;
}

int64_t Report::num(const std::string& key, int64_t fallback) const {
  auto it = fields_.find(key);
  if (it == fields_.end()) return fallback;
  int64_t v = fallback;
  std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  return v;
}

std::string Report::text(const std::string& key) const {
  auto it = fields_.find(key);
  return it == fields_.end() ? std::string() : it->second;
}

std::string Report::line() const {
  std::string s = tag_;
  for (const auto& [k, v] : fields_) s += " " + k + "=" + v;
  return s + "\n";
}

int64_t quantile(std::vector<int64_t>& samples, double q) {
  if (samples.empty()) return 0;
  const size_t k = std::min(samples.size() - 1, static_cast<size_t>(q * static_cast<double>(samples.size())));
  std::nth_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(k), samples.end());
  return samples[k];
}

std::string format_ns(int64_t ns) {
  char buf[32];
  if (ns < 1'000)
    std::snprintf(buf, sizeof buf, "%lldns", (long long)ns);
  else if (ns < 1'000'000)
    std::snprintf(buf, sizeof buf, "%.1fus", ns / 1e3);
  else if (ns < 1'000'000'000)
    std::snprintf(buf, sizeof buf, "%.2fms", ns / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%.2fs", ns / 1e9);
  return buf;
}

}  // namespace sluice::cli::demo
