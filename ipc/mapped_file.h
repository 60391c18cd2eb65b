// A file mapped shared into this process. The only code in sluice that maps
// memory; it uses Boost.Interprocess (file_mapping + mapped_region) and turns
// its exceptions into Errors.
//
// Files are created under a temporary name, preallocated with
// posix_fallocate (so a full disk is an Error here and never a SIGBUS on a
// later store), initialised by the caller, then published under their final
// name with link(2), which fails if another process published first. A file
// visible under its final name is therefore always complete.
#pragma once

#include <sluice/status.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace sluice::ipc {

struct MapOptions {
  bool writable = true;
  // Touch every page at map time, so the first appends take no page faults.
  bool prefault = false;
  // Ask for transparent huge pages (MADV_HUGEPAGE). Honoured where the file
  // system supports it (tmpfs mounted with huge=within_size or always);
  // elsewhere it is a harmless no-op.
  bool huge_pages = false;
};

class MappedFile {
 public:
  MappedFile();
  MappedFile(MappedFile&&) noexcept;
  MappedFile& operator=(MappedFile&&) noexcept;
  ~MappedFile();

  // Creates a zero-filled, preallocated file of `bytes` under a temporary
  // name next to `final_path` and maps it. Errors: kNoSpace when the file
  // system (or RLIMIT_FSIZE) cannot hold it.
  static Result<MappedFile> create_temp(const std::string& final_path, uint64_t bytes,
                                        const MapOptions& options);
  // Links the temporary file to its final name. Returns true when this call
  // published it, false when a file of that name already existed (the caller
  // then opens that one); the temporary name is removed either way.
  Result<bool> publish();
  // Maps an existing file whole. Errors name `display_path` (default: path),
  // so that a file opened through /proc/self/fd/N is named by its real name.
  static Result<MappedFile> open(const std::string& path, const MapOptions& options,
                                 const std::string& display_path = {});

  std::byte* data() const noexcept { return data_; }
  uint64_t size() const noexcept { return size_; }
  const std::string& path() const noexcept { return path_; }
  // The temporary name until publish(), empty after.
  const std::string& temp_path() const noexcept { return temp_path_; }
  bool is_mapped() const noexcept { return data_ != nullptr; }

  // msync of [offset, offset + bytes), rounded out to pages. `wait` selects
  // MS_SYNC (durable on return) over MS_ASYNC.
  Status sync(uint64_t offset, uint64_t bytes, bool wait) const;
  // Faults every page in now (MADV_POPULATE_WRITE/READ, or a touch loop).
  void prefault() const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
  std::string path_;
  std::string temp_path_;  // non-empty until publish()
};

}  // namespace sluice::ipc
