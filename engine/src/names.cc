#include <sluice/bus.h>

namespace sluice {

Status validate_name(std::string_view name, std::string_view what) {
  auto bad = [&](std::string_view why) {
    return make_error(Errc::kInvalidName, std::string(what) + " name '" + std::string(name.substr(0, 64)) +
                                              (name.size() > 64 ? "...'" : "'") + " " + std::string(why) +
                                              " (allowed: 1-200 of A-Z a-z 0-9 . _ -)");
  };
  if (name.empty()) return bad("is empty");
  if (name.size() > 200) return bad("is longer than 200 characters");
  if (name == "." || name == "..") return bad("is reserved");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return bad("contains a character that is not allowed");
  }
  return {};
}

}  // namespace sluice
