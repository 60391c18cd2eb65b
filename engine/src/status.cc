#include <sluice/status.h>

#include <cerrno>
#include <cstring>

namespace sluice {

std::string_view errc_name(Errc code) noexcept {
  switch (code) {
    case Errc::kInvalidArgument: return "invalid argument";
    case Errc::kInvalidName: return "invalid name";
    case Errc::kNotFound: return "not found";
    case Errc::kAlreadyExists: return "already exists";
    case Errc::kIoError: return "I/O error";
    case Errc::kNoSpace: return "no space";
    case Errc::kCorruption: return "corruption";
    case Errc::kVersionMismatch: return "version mismatch";
    case Errc::kTooLarge: return "too large";
    case Errc::kTimeout: return "timeout";
    case Errc::kBackPressured: return "back-pressured";
    case Errc::kAborted: return "aborted";
    case Errc::kBusy: return "busy";
    case Errc::kOffsetOutOfRange: return "offset out of range";
    case Errc::kClosed: return "closed";
    case Errc::kLeaseLost: return "lease lost";
    case Errc::kFenced: return "fenced";
    case Errc::kOutOfOrderSequence: return "out-of-order sequence";
  }
  return "unknown error";
}

std::unexpected<Error> errno_error(int err, std::string_view what) {
  Errc code = Errc::kIoError;
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) code = Errc::kNoSpace;
  else if (err == ENOENT) code = Errc::kNotFound;
  else if (err == EEXIST) code = Errc::kAlreadyExists;
  return make_error(code, std::string(what) + ": " + std::strerror(err));
}

}  // namespace sluice
