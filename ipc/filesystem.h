// File-system helpers for the bus directory. Every failure becomes an Error
// that names the path; nothing here throws.
#pragma once

#include <sluice/status.h>

#include <string>
#include <utility>
#include <vector>

namespace sluice::ipc {

// Creates `dir` and its parents if missing.
Status make_dirs(const std::string& dir);
// Whether `path` exists (any type).
bool path_exists(const std::string& path) noexcept;
// (device, inode) of the file at `path`, as FileLock::identity() gives it
// for a descriptor; (0, 0) if it cannot be read.
std::pair<uint64_t, uint64_t> path_identity(const std::string& path) noexcept;
// Names of the entries of `dir` (no "." or ".."), sorted.
Result<std::vector<std::string>> list_dir(const std::string& dir);
// Removes `path` and, if it is a directory, everything below it.
Status remove_tree(const std::string& path);
// fsync()s a directory so that a rename or unlink in it survives a power cut.
Status sync_dir(const std::string& dir);
// Writes `bytes` to `path` atomically: a temporary file in the same directory,
// fsync, then rename over `path`.
Status write_file_atomic(const std::string& path, std::string_view bytes);
Result<std::string> read_file(const std::string& path);
// Size in bytes of the file at `path`.
Result<uint64_t> file_size(const std::string& path);
// Renames `from` to `to` unless `to` exists: renameat2(RENAME_NOREPLACE), one
// system call, or link + unlink where the file system lacks it. false with
// errno set on failure (EEXIST: `to` exists).
bool rename_noreplace(const std::string& from, const std::string& to) noexcept;

}  // namespace sluice::ipc
