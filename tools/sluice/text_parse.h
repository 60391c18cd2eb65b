// Parsing of the command line's value syntaxes (numbers, sizes, seek
// targets), with errors that name the option, so each subcommand reports a
// bad value the same way.
#pragma once

#include <sluice/sluice.h>

#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice::cli {

// A decimal integer, nothing else (no sign, no spaces).
Result<uint64_t> parse_u64(std::string_view text, std::string_view what);
// An optional --partition value: nullopt when `text` is empty.
Result<std::optional<uint32_t>> parse_partition(std::string_view text);
// A decimal integer that may be negative.
Result<int64_t> parse_i64(std::string_view text, std::string_view what);
// A byte count: 4096, 64K/64KiB, 1M/1MiB, 1G/1GiB (binary multiples).
Result<uint64_t> parse_size(std::string_view text, std::string_view what);

// `group seek --to`: beginning | end | offset:N | time:UNIX_MS.
Result<SeekTarget> parse_seek_target(std::string_view text);
// `consume --from`: beginning | end | OFFSET | @UNIX_MS.
Result<SeekTarget> parse_from(std::string_view text);

// --retention-mode delete|backpressure, --reset earliest|latest|fail.
Result<RetentionMode> parse_retention_mode(std::string_view text);
Result<OffsetReset> parse_offset_reset(std::string_view text);

}  // namespace sluice::cli
