#include "ipc/file_header.h"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <chrono>

namespace sluice::ipc {

const char* file_kind_name(FileKind kind) noexcept {
  switch (kind) {
    case FileKind::kBus: return "bus";
    case FileKind::kProcessTable: return "process table";
    case FileKind::kTopic: return "topic";
    case FileKind::kPartitionState: return "partition state";
    case FileKind::kSegment: return "segment";
    case FileKind::kOffsetIndex: return "offset index";
    case FileKind::kGroupOffsets: return "group offsets";
    case FileKind::kQueueState: return "queue state";
    case FileKind::kQueueDedup: return "queue de-duplication table";
    case FileKind::kProducerTable: return "producer table";
    case FileKind::kPartitionProducers: return "partition producer table";
    case FileKind::kProcessedIds: return "processed-id store";
  }
  return "unknown";
}

namespace {
uint64_t header_checksum(const std::byte* base, uint32_t header_bytes) {
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  XXH3_64bits_update(&st, base, offsetof(FileHeader, header_checksum));
  const size_t after = offsetof(FileHeader, header_checksum) + sizeof(uint64_t);
  XXH3_64bits_update(&st, base + after, header_bytes - after);
  return XXH3_64bits_digest(&st);
}
}  // namespace

void write_file_header(std::byte* base, FileKind kind, uint32_t data_offset, uint64_t file_bytes,
                       const void* params, uint32_t params_bytes, uint32_t format_version) {
  FileHeader h{};
  h.magic = kFileMagic;
  h.format_version = format_version != 0 ? format_version : format_versions(kind).current;
  h.kind = static_cast<uint32_t>(kind);
  h.header_bytes = static_cast<uint32_t>(kFileHeaderBytes + params_bytes);
  h.data_offset = data_offset;
  h.file_bytes = file_bytes;
  h.created_unix_ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
  std::memcpy(base, &h, sizeof h);
  if (params_bytes > 0) std::memcpy(base + kFileHeaderBytes, params, params_bytes);
  h.header_checksum = header_checksum(base, h.header_bytes);
  std::memcpy(base + offsetof(FileHeader, header_checksum), &h.header_checksum, sizeof(uint64_t));
}

Status validate_file_header(const std::byte* base, uint64_t mapped_bytes, FileKind kind,
                            uint32_t params_bytes, const std::string& path) {
  const std::string what = std::string(file_kind_name(kind)) + " file " + path;
  if (mapped_bytes < kFileHeaderBytes)
    return make_error(Errc::kCorruption, what + " is truncated (" + std::to_string(mapped_bytes) +
                                             " bytes, shorter than its header)");
  FileHeader h;
  std::memcpy(&h, base, sizeof h);
  if (h.magic != kFileMagic) return make_error(Errc::kCorruption, what + " is not a sluice file (bad magic)");
  // The version is checked before anything else the version could change,
  // and against the kind the file says it is: a file of the wrong kind is
  // reported as that (below), not as a version mismatch.
  const bool known_kind = h.kind >= static_cast<uint32_t>(FileKind::kBus) &&
                          h.kind <= static_cast<uint32_t>(FileKind::kProcessedIds);
  const FormatVersions v = format_versions(known_kind ? static_cast<FileKind>(h.kind) : kind);
  if (h.format_version < v.oldest || h.format_version > v.current)
    return make_error(Errc::kVersionMismatch,
                      what + " has format version " + std::to_string(h.format_version) + "; this build reads " +
                          (v.oldest == v.current ? "version " + std::to_string(v.current)
                                                 : "versions " + std::to_string(v.oldest) + " to " +
                                                       std::to_string(v.current)));
  if (h.header_bytes != kFileHeaderBytes + params_bytes || h.header_bytes > mapped_bytes ||
      h.data_offset < h.header_bytes)
    return make_error(Errc::kCorruption, what + " has a damaged header (layout sizes)");
  if (header_checksum(base, h.header_bytes) != h.header_checksum)
    return make_error(Errc::kCorruption, what + " has a damaged header (checksum mismatch)");
  if (h.kind != static_cast<uint32_t>(kind))
    return make_error(Errc::kCorruption, what + " holds a " +
                                             file_kind_name(static_cast<FileKind>(h.kind)) + " file");
  if (h.file_bytes != mapped_bytes)
    return make_error(Errc::kCorruption, what + " is " + std::to_string(mapped_bytes) +
                                             " bytes but was created with " +
                                             std::to_string(h.file_bytes) + " (truncated?)");
  return {};
}

}  // namespace sluice::ipc
