#include "cli_common.h"

#include <cstdio>
#include <cstdlib>

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

Result<std::vector<Header>> parse_header_args(const std::vector<std::string>& text, bool engine_names_reserved) {
  std::vector<Header> headers;
  for (const std::string& h : text) {
    const size_t eq = h.find('=');
    if (eq == std::string::npos || eq == 0)
      return make_error(Errc::kInvalidArgument, "--header: '" + h + "' is not NAME=VALUE");
    if (engine_names_reserved && h.starts_with("sluice."))
      return make_error(Errc::kInvalidArgument, "--header: names starting with 'sluice.' are reserved");
    headers.push_back(Header{std::string_view(h).substr(0, eq), std::string_view(h).substr(eq + 1)});
  }
  return headers;
}

int for_each_stdin_line(std::string_view what, const std::function<std::optional<std::string>(std::string_view)>& send,
                        uint64_t* sent) {
  char* line = nullptr;
  size_t capacity = 0;
  *sent = 0;
  int code = kExitOk;
  for (;;) {
    const ssize_t n = ::getline(&line, &capacity, stdin);
    if (n < 0) break;
    std::string_view text(line, static_cast<size_t>(n));
    if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    if (auto error = send(text)) {
      code = fail(std::string(what) + ": line " + std::to_string(*sent + 1) + ": " + *error);
      break;
    }
    ++*sent;
  }
  std::free(line);
  if (code == kExitOk && std::ferror(stdin)) code = fail(std::string(what) + ": cannot read stdin");
  return code;
}

}  // namespace sluice::cli
