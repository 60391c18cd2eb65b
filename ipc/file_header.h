// The header every file sluice creates starts with. Immutable once the file
// is published; mutable state lives after it, at offsets each file kind's
// format header defines.
//
// File header, little-endian, 48 bytes followed by kind-specific parameters:
//
//   0               1               2               3
//   0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//  +---------------------------------------------------------------+
//  |  magic (u64) = "SLUICE" 0x1A 0x00                             |
//  |                                                               |
//  +-------------------------------+-------------------------------+
//  |  format_version (u32)         |  kind (u32, FileKind)         |
//  +-------------------------------+-------------------------------+
//  |  header_bytes (u32)           |  data_offset (u32)            |
//  +-------------------------------+-------------------------------+
//  |  file_bytes (u64): the size the file was created with         |
//  |                                                               |
//  +---------------------------------------------------------------+
//  |  created_unix_ns (u64)                                        |
//  |                                                               |
//  +---------------------------------------------------------------+
//  |  header_checksum (u64): XXH3-64 of [0, header_bytes) with     |
//  |  this field read as zero                                      |
//  +---------------------------------------------------------------+
//  |  parameters (kind-specific POD, header_bytes - 48 bytes)     ...
//
// header_bytes covers the fixed part and the parameters; data_offset is where
// the kind's own layout begins (>= header_bytes, usually a page or a cache
// line boundary).
#pragma once

#include <sluice/status.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace sluice::ipc {

inline constexpr uint64_t kFileMagic = 0x00'1A'45'43'49'55'4C'53ull;  // "SLUICE\x1a\0"

enum class FileKind : uint32_t {
  kBus = 1,             // bus.meta
  kProcessTable = 2,    // procs/table
  kTopic = 3,           // topics/<t>/topic
  kPartitionState = 4,  // topics/<t>/<p>/state
  kSegment = 5,         // topics/<t>/<p>/<base>.seg
  kOffsetIndex = 6,     // topics/<t>/<p>/<base>.idx
  kGroupOffsets = 7,    // groups/<g>/<t>.offsets
  kQueueState = 8,      // queues/<q>/state
  kQueueDedup = 9,      // queues/<q>/dedup
  kProducerTable = 10,  // producers/table (docs/exactly-once.md)
  kPartitionProducers = 11,  // topics/<t>/<p>/producers
  kProcessedIds = 12,   // processed/<store> (the last: validate_file_header knows the range)
};
const char* file_kind_name(FileKind kind) noexcept;

// Each kind's format versions: this build writes `current` and reads
// `oldest`..`current`. A kind's version moves when its bytes change meaning.
//   kSegment 2: the PREPARED claim state (transactions, docs/exactly-once.md).
//               A version-1 segment holds no PREPARED word: read as it is.
//   kSegment 3: the CLAIMED_COPY claim state (engine/src/segment_format.h).
//               Older segments hold none and are read as they are; writers
//               claim there as before (CLAIMED and a publishing CAS).
//   kQueueState 2: the worker table (engine/src/queue_format.h). A
//               version-1 state file is read as it is: no per-worker stats.
// Older builds refuse newer files with kVersionMismatch, so processes of
// builds with different versions must not share a bus.
struct FormatVersions {
  uint32_t oldest;
  uint32_t current;
};
constexpr FormatVersions format_versions(FileKind kind) noexcept {
  if (kind == FileKind::kSegment) return FormatVersions{1, 3};
  return kind == FileKind::kQueueState ? FormatVersions{1, 2} : FormatVersions{1, 1};
}

struct FileHeader {
  uint64_t magic;
  uint32_t format_version;
  uint32_t kind;
  uint32_t header_bytes;
  uint32_t data_offset;
  uint64_t file_bytes;
  uint64_t created_unix_ns;
  uint64_t header_checksum;
};
inline constexpr size_t kFileHeaderBytes = 48;
static_assert(sizeof(FileHeader) == kFileHeaderBytes);
static_assert(offsetof(FileHeader, header_checksum) == 40);

// Writes the header and `params` (a POD of `params_bytes`) at `base`, which
// must be zero-filled, and seals it with the checksum. `format_version` 0
// means the kind's current one (others: tests that make older files).
void write_file_header(std::byte* base, FileKind kind, uint32_t data_offset, uint64_t file_bytes,
                       const void* params, uint32_t params_bytes, uint32_t format_version = 0);

// Checks magic, version, kind, sizes and checksum of the header at `base` in a
// mapping of `mapped_bytes`, and that the parameters are `params_bytes` long.
// Errors name `path`: kCorruption (not a sluice file, damaged header,
// truncated), kVersionMismatch.
Status validate_file_header(const std::byte* base, uint64_t mapped_bytes, FileKind kind,
                            uint32_t params_bytes, const std::string& path);

// The parameters that follow the fixed header, typed. REQUIRES: validated.
template <class Params>
const Params& file_params(const std::byte* base) {
  return *reinterpret_cast<const Params*>(base + kFileHeaderBytes);
}

}  // namespace sluice::ipc
