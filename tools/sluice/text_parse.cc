#include "text_parse.h"

#include <charconv>
#include <string>

namespace sluice::cli {

namespace {

std::unexpected<Error> bad_value(std::string_view what, std::string_view text, std::string_view expected) {
  return make_error(Errc::kInvalidArgument,
                    std::string(what) + ": '" + std::string(text) + "' is not " + std::string(expected));
}

}  // namespace

Result<uint64_t> parse_u64(std::string_view text, std::string_view what) {
  uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc{} || ptr != end) return bad_value(what, text, "a non-negative integer");
  return v;
}

Result<int64_t> parse_i64(std::string_view text, std::string_view what) {
  int64_t v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc{} || ptr != end) return bad_value(what, text, "an integer");
  return v;
}

Result<uint64_t> parse_size(std::string_view text, std::string_view what) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  const std::string_view unit = text.substr(digits);
  uint64_t shift = 0;
  if (unit.empty() || unit == "B")
    shift = 0;
  else if (unit == "K" || unit == "KiB")
    shift = 10;
  else if (unit == "M" || unit == "MiB")
    shift = 20;
  else if (unit == "G" || unit == "GiB")
    shift = 30;
  else
    return bad_value(what, text, "a size (e.g. 4096, 64KiB, 16MiB, 1GiB)");
  auto n = parse_u64(text.substr(0, digits), what);
  if (!n) return bad_value(what, text, "a size (e.g. 4096, 64KiB, 16MiB, 1GiB)");
  if (*n > (UINT64_MAX >> shift)) return bad_value(what, text, "a size that fits in 64 bits");
  return *n << shift;
}

Result<SeekTarget> parse_seek_target(std::string_view text) {
  constexpr std::string_view kExpected = "beginning, end, offset:N or time:UNIX_MS";
  if (text == "beginning") return SeekTarget::beginning();
  if (text == "end") return SeekTarget::end();
  if (text.starts_with("offset:")) {
    auto n = parse_u64(text.substr(7), "--to offset");
    if (!n || *n > static_cast<uint64_t>(INT64_MAX)) return bad_value("--to", text, kExpected);
    return SeekTarget::offset(*n);
  }
  if (text.starts_with("time:")) {
    auto ms = parse_i64(text.substr(5), "--to time");
    if (!ms) return bad_value("--to", text, kExpected);
    return SeekTarget::time_ms(*ms);
  }
  return bad_value("--to", text, kExpected);
}

Result<SeekTarget> parse_from(std::string_view text) {
  constexpr std::string_view kExpected = "beginning, end, OFFSET or @UNIX_MS";
  if (text == "beginning") return SeekTarget::beginning();
  if (text == "end") return SeekTarget::end();
  if (text.starts_with("@")) {
    auto ms = parse_i64(text.substr(1), "--from");
    if (!ms) return bad_value("--from", text, kExpected);
    return SeekTarget::time_ms(*ms);
  }
  auto n = parse_u64(text, "--from");
  if (!n || *n > static_cast<uint64_t>(INT64_MAX)) return bad_value("--from", text, kExpected);
  return SeekTarget::offset(*n);
}

Result<RetentionMode> parse_retention_mode(std::string_view text) {
  if (text == "delete") return RetentionMode::kDelete;
  if (text == "backpressure" || text == "back-pressure") return RetentionMode::kBackPressure;
  return bad_value("--retention-mode", text, "delete or backpressure");
}

Result<OffsetReset> parse_offset_reset(std::string_view text) {
  if (text == "earliest") return OffsetReset::kEarliest;
  if (text == "latest") return OffsetReset::kLatest;
  if (text == "fail") return OffsetReset::kFail;
  return bad_value("--reset", text, "earliest, latest or fail");
}

Result<std::optional<uint32_t>> parse_partition(std::string_view text) {
  if (text.empty()) return std::optional<uint32_t>{};
  auto p = parse_u64(text, "--partition");
  if (!p) return std::unexpected(p.error());
  if (*p > UINT32_MAX) return make_error(Errc::kInvalidArgument, "--partition: out of range");
  return std::optional<uint32_t>(static_cast<uint32_t>(*p));
}

}  // namespace sluice::cli
