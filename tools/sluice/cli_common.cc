#include "cli_common.h"

#include <cstdio>

namespace sluice::cli {

int fail(std::string_view message, int code) {
  std::string line = "sluice: ";
  for (char c : message) {
    if (c == '\n') {
      line += "; ";
    } else if (c != '\r') {
      line += c;
    }
  }
  while (!line.empty() && (line.back() == ' ' || line.back() == ';')) line.pop_back();
  line += '\n';
  std::fflush(stdout);  // keep what was printed before the error in order
  std::fputs(line.c_str(), stderr);
  return code;
}

int fail(const Error& error, int code) { return fail(error.to_string(), code); }

Result<Bus> open_bus(const Context& ctx, bool create) {
  if (ctx.dir.empty())
    return make_error(Errc::kInvalidArgument, "no bus directory given: pass --dir DIR or set SLUICE_DIR");
  BusOptions options;
  options.create_if_missing = create;
  return Bus::open(ctx.dir, options);
}

Status check_name(std::string_view name, std::string_view what) { return validate_name(name, what); }

}  // namespace sluice::cli
