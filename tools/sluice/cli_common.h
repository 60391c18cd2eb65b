// What every subcommand of the `sluice` command line shares: the global
// options, the exit codes and the one-line error convention.
#pragma once

#include <sluice/sluice.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::cli {

// Exit codes. Scripts rely on them, so they never change meaning.
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;    // the operation failed (unknown topic, I/O, ...)
inline constexpr int kExitUsage = 2;    // the command line itself is wrong
inline constexpr int kExitCorrupt = 3;  // verify found corruption

// Global options and the outcome of the subcommand that ran. Subcommand
// callbacks run inside CLI11's parse and report through `exit_code`.
struct Context {
  std::string dir;  // --dir, else $SLUICE_DIR; empty: none given
  int exit_code = kExitOk;
};

// Prints "sluice: <message>" as exactly one line on stderr (newlines in the
// message become "; ") and returns `code`, so callers write
// `return fail(...)`.
int fail(std::string_view message, int code = kExitError);
int fail(const Error& error, int code = kExitError);

// Opens the bus in ctx.dir. Only `init` and `demo` create a bus: anything
// else on a directory that holds none is an error, so a typo in --dir does
// not silently make a new, empty bus.
Result<Bus> open_bus(const Context& ctx, bool create = false);

// Checks a topic or group name with the library's rule before anything
// touches the file system, so the error is the same with or without a bus.
Status check_name(std::string_view name, std::string_view what);

// Parses --header NAME=VALUE arguments. The headers view into `text`, which
// must outlive them. `engine_names_reserved`: names starting with "sluice."
// are refused (the engine reads its own back, e.g. a queue's
// sluice.not_before and a dead letter's sluice.dlq.*). The error names the
// bad argument.
Result<std::vector<Header>> parse_header_args(const std::vector<std::string>& text, bool engine_names_reserved);

// Hands each line of stdin (without its newline) to `send` until it returns
// an error message. Returns kExitOk, or fail()s with "<what>: line N:
// <error>" (or a read error). *sent: the lines sent.
int for_each_stdin_line(std::string_view what, const std::function<std::optional<std::string>(std::string_view)>& send,
                        uint64_t* sent);

}  // namespace sluice::cli
