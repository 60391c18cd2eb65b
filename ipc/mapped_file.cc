#include "ipc/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/file_mapping.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <cerrno>
#include <random>

#include "ipc/filesystem.h"

namespace bip = boost::interprocess;

namespace sluice::ipc {

struct MappedFile::Impl {
  bip::file_mapping mapping;
  bip::mapped_region region;
};

MappedFile::MappedFile() = default;
MappedFile::MappedFile(MappedFile&& o) noexcept
    : impl_(std::move(o.impl_)), data_(o.data_), size_(o.size_), path_(std::move(o.path_)),
      temp_path_(std::move(o.temp_path_)) {
  o.data_ = nullptr;
  o.size_ = 0;
  o.temp_path_.clear();
}
MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
    impl_ = std::move(o.impl_);
    data_ = o.data_;
    size_ = o.size_;
    path_ = std::move(o.path_);
    temp_path_ = std::move(o.temp_path_);
    o.data_ = nullptr;
    o.size_ = 0;
    o.temp_path_.clear();
  }
  return *this;
}
MappedFile::~MappedFile() {
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
}

namespace {

constexpr uint64_t kPage = 4096;

Result<std::unique_ptr<MappedFile::Impl>> map_whole(const std::string& path, bool writable) {
  try {
    auto mode = writable ? bip::read_write : bip::read_only;
    auto impl = std::make_unique<MappedFile::Impl>();
    impl->mapping = bip::file_mapping(path.c_str(), mode);
    impl->region = bip::mapped_region(impl->mapping, mode);
    return impl;
  } catch (const bip::interprocess_exception& e) {
    int err = e.get_native_error();
    if (err != 0) return errno_error(err, "cannot map " + path);
    return make_error(Errc::kIoError, "cannot map " + path + ": " + e.what());
  }
}

void advise(std::byte* data, uint64_t size, const MapOptions& options) {
  if (options.huge_pages) ::madvise(data, size, MADV_HUGEPAGE);
}

}  // namespace

Result<MappedFile> MappedFile::create_temp(const std::string& final_path, uint64_t bytes,
                                           const MapOptions& options) {
  if (bytes == 0 || bytes % kPage != 0)
    return make_error(Errc::kInvalidArgument,
                      "mapped file size must be a positive multiple of 4096: " + final_path);
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string temp = final_path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rng());
  int fd = ::open(temp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error(errno, "cannot create " + temp);
  // posix_fallocate returns the error number instead of setting errno.
  int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
  ::close(fd);
  if (rc != 0) {
    ::unlink(temp.c_str());
    return errno_error(rc, "cannot preallocate " + std::to_string(bytes) + " bytes for " +
                               final_path);
  }
  auto impl = map_whole(temp, true);
  if (!impl) {
    ::unlink(temp.c_str());
    return std::unexpected(impl.error());
  }
  MappedFile f;
  f.impl_ = std::move(*impl);
  f.data_ = static_cast<std::byte*>(f.impl_->region.get_address());
  f.size_ = f.impl_->region.get_size();
  f.path_ = final_path;
  f.temp_path_ = std::move(temp);
  advise(f.data_, f.size_, options);
  if (options.prefault) f.prefault();
  return f;
}

Result<bool> MappedFile::publish() {
  if (temp_path_.empty()) return make_error(Errc::kInvalidArgument, "already published: " + path_);
  int rc = ::link(temp_path_.c_str(), path_.c_str());
  int err = errno;
  ::unlink(temp_path_.c_str());
  temp_path_.clear();
  if (rc == 0) return true;
  if (err == EEXIST) return false;
  return errno_error(err, "cannot publish " + path_);
}

Result<MappedFile> MappedFile::open(const std::string& path, const MapOptions& options,
                                   const std::string& display_path) {
  const std::string& name = display_path.empty() ? path : display_path;
  auto size = file_size(path);
  if (!size) return make_error(size.error().code, size.error().message + " (" + name + ")");
  if (*size == 0) return make_error(Errc::kCorruption, "empty file " + name);
  auto impl = map_whole(path, options.writable);
  if (!impl) return std::unexpected(impl.error());
  MappedFile f;
  f.impl_ = std::move(*impl);
  f.data_ = static_cast<std::byte*>(f.impl_->region.get_address());
  f.size_ = f.impl_->region.get_size();
  f.path_ = name;
  advise(f.data_, f.size_, options);
  if (options.prefault) f.prefault();
  return f;
}

Status MappedFile::sync(uint64_t offset, uint64_t bytes, bool wait) const {
  if (data_ == nullptr) return make_error(Errc::kClosed, "not mapped");
  if (offset > size_) return {};
  uint64_t begin = offset / kPage * kPage;
  uint64_t end = std::min(size_, offset + bytes);
  if (end <= begin) return {};
  if (::msync(data_ + begin, end - begin, wait ? MS_SYNC : MS_ASYNC) != 0)
    return errno_error(errno, "cannot msync " + path_);
  return {};
}

void MappedFile::prefault() const noexcept {
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif
  if (data_ == nullptr) return;
  bool writable = impl_->region.get_mode() == bip::read_write;
  if (::madvise(data_, size_, writable ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0) return;
  // Kernels before 5.14: read one byte per page (maps it; a later first write
  // to a shared tmpfs page then costs only a minor fault).
  for (uint64_t off = 0; off < size_; off += kPage) {
    [[maybe_unused]] volatile std::byte b = data_[off];
  }
}

}  // namespace sluice::ipc
