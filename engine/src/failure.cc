// Failures that handlers report, and the backoff between retries.
#include <sluice/queue.h>

// Header-only Boost.Stacktrace: frames by _Unwind_Backtrace, names by
// dladdr. Only a handler's failure pays for it, never a message.
#include <boost/stacktrace.hpp>

#include <algorithm>
#include <cmath>

namespace sluice {

namespace {
std::string current_stack() { return boost::stacktrace::to_string(boost::stacktrace::stacktrace(2, 64)); }
}  // namespace

TransientError::TransientError(const std::string& what) : std::runtime_error(what), stack_(current_stack()) {}
PermanentError::PermanentError(const std::string& what) : std::runtime_error(what), stack_(current_stack()) {}

int64_t RetryPolicy::delay_ns(uint32_t attempt, uint64_t random) const noexcept {
  const double exp = std::pow(multiplier, static_cast<double>(std::max<uint32_t>(attempt, 1) - 1));
  const double d = std::min(static_cast<double>(max_delay_ns), static_cast<double>(base_delay_ns) * exp);
  const int64_t jitter = jitter_ns > 0 ? static_cast<int64_t>(random % static_cast<uint64_t>(jitter_ns + 1)) : 0;
  return static_cast<int64_t>(d) + jitter;
}

}  // namespace sluice
