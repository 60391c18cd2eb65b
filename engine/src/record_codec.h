// Encoding records into a frame and decoding them back, with checksums.
// Byte layout: segment_format.h.
#pragma once

#include <sluice/record.h>

#include <cstdint>
#include <span>

#include "segment_format.h"

namespace sluice {

// XXH3-64 of frame header bytes [8, 32): base offset, producer fields, attributes.
uint64_t frame_seed(const format::FrameHeader* frame) noexcept;
// The checksum of a record at `rec` whose header (length) is written.
uint64_t record_checksum(const std::byte* rec, uint64_t seed, uint32_t index) noexcept;
// The documented, stable key hash: XXH3-64 of the key bytes with seed 0.
uint64_t key_hash(std::string_view key) noexcept;

// Size of the headers block for `headers`; UINT64_MAX if a name or value is
// too large for the format.
uint64_t headers_block_bytes(std::span<const Header> headers) noexcept;
// Unpadded size of one record; callers check it against the segment size.
inline uint64_t record_size(std::string_view key, uint64_t headers_bytes, uint64_t value_bytes) {
  return format::kRecordHeaderBytes + key.size() + headers_bytes + value_bytes;
}

// Writes the record header, key and headers at `rec`, and the value if
// `value` is non-null. Returns where the value goes. The checksum is written
// by seal_record() once the value is in place.
std::byte* encode_record(std::byte* rec, std::string_view key, std::span<const Header> headers,
                         uint64_t headers_bytes, const char* value, uint32_t value_bytes,
                         int64_t timestamp_ns) noexcept;
void seal_record(std::byte* rec, uint64_t seed, uint32_t index) noexcept;

enum class DecodeStatus : uint8_t { kOk, kBadLength, kBadChecksum, kBadHeaders };
// Decodes the record at `rec`, with at most `available` bytes to the end of
// its frame. Checks every length (and the checksum if `verify`) before
// building views; never reads outside [rec, rec + available).
DecodeStatus decode_record(const std::byte* rec, uint32_t available, uint64_t seed, uint32_t index,
                           bool verify, RecordView* out, uint32_t* padded_length) noexcept;
const char* decode_status_text(DecodeStatus s) noexcept;

}  // namespace sluice
