// JSON string escaping for record bytes, which need not be text.
#pragma once

#include <string>
#include <string_view>

namespace sluice::cli {

// Appends `bytes` to `out` as a quoted JSON string. Well-formed UTF-8 passes
// through; quotes, backslashes and control characters are escaped; every
// byte that is not part of a well-formed UTF-8 sequence (stray continuation
// bytes, overlong forms, surrogates, code points past U+10FFFF, truncated
// sequences) becomes \u00XX with XX its value, so the output is always
// valid JSON and no byte is silently dropped.
void append_json_string(std::string& out, std::string_view bytes);

// Length of the well-formed UTF-8 sequence at the start of `s`, or 0 if
// the first byte does not start one (RFC 3629 table 3-7).
size_t utf8_sequence_length(std::string_view s) noexcept;

}  // namespace sluice::cli
