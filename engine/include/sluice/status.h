// Errors on cold paths: open, create, recover, corruption found.
// Expected outcomes on hot paths (an empty poll, a full segment, back-pressure)
// are small enums declared next to the call that returns them, never an Error.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

namespace sluice {

enum class Errc : uint16_t {
  kInvalidArgument = 1,  // a parameter out of range
  kInvalidName,          // a topic or group name outside [A-Za-z0-9._-]{1,200}
  kNotFound,             // unknown topic, group, bus or file
  kAlreadyExists,
  kIoError,              // a system call failed; the message carries errno's text
  kNoSpace,              // the file system is full (ENOSPC, EDQUOT, EFBIG)
  kCorruption,           // bytes on disk or in shared memory fail validation
  kVersionMismatch,      // a file written by another format version
  kTooLarge,             // a record larger than a segment can hold
  kTimeout,
  kBackPressured,        // the slowest registered group is a full window behind
  kAborted,              // a claim repaired as aborted before it was committed
  kBusy,                 // e.g. an exclusive writer already owns the partition
  kOffsetOutOfRange,     // the position was removed by retention
  kClosed,
  kLeaseLost,            // a queue message's lease expired and it went to another worker
  kFenced,               // a newer instance of this producer identity was opened
  kOutOfOrderSequence,   // an idempotent send skipped sequence numbers
};

std::string_view errc_name(Errc code) noexcept;

struct Error {
  Errc code;
  std::string message;  // one line, names the file or object concerned

  std::string to_string() const { return std::string(errc_name(code)) + ": " + message; }
};

template <class T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> make_error(Errc code, std::string message) {
  return std::unexpected<Error>(Error{code, std::move(message)});
}

// Maps an errno value to an Error: ENOSPC/EDQUOT/EFBIG become kNoSpace,
// ENOENT kNotFound, EEXIST kAlreadyExists, anything else kIoError.
std::unexpected<Error> errno_error(int err, std::string_view what);

}  // namespace sluice
