// Encoding records into a frame and decoding them back, with checksums.
// Byte layout: segment_format.h.
#pragma once

#include <sluice/record.h>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "segment_format.h"
#include "xxh3_wide.h"

// Inline XXH3 (from the Debian header) so that it specialises for the small
// inputs records are; a call through the shared library costs more than the
// hash of a 64-byte record, and so did a call to an out-of-line wrapper on
// the append path (docs/architecture.md, "The straight-line send").
#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

namespace sluice {

// XXH3-64 of frame header bytes [8, 32): base offset, producer fields, attributes.
inline uint64_t frame_seed(const format::FrameHeader* frame) noexcept {
  return XXH3_64bits(reinterpret_cast<const std::byte*>(frame) + 8, format::kFrameHeaderBytes - 8);
}
// The checksum of a record at `rec` whose header (length) is written: XXH3-64
// with seed `seed + index` of its bytes [16, length). Always inlined into
// the writer's seal_record(): out of line, its register saves were five
// more stores per record (docs/architecture.md, "Stores per record").
// Readers call record_checksum(), as before.
[[gnu::always_inline]] inline uint64_t record_checksum_inline(const std::byte* rec, uint64_t seed,
                                                              uint32_t index) noexcept {
  uint32_t length;
  std::memcpy(&length, rec, sizeof length);
  const size_t n = length - format::kChecksumCoverageStart;
  if (n >= kWideHashBytes) [[unlikely]]
    return xxh3_wide(rec + format::kChecksumCoverageStart, n, seed + index);
  return XXH3_64bits_withSeed(rec + format::kChecksumCoverageStart, n, seed + index);
}
inline uint64_t record_checksum(const std::byte* rec, uint64_t seed, uint32_t index) noexcept {
  return record_checksum_inline(rec, seed, index);
}
// The documented, stable key hash: XXH3-64 of the key bytes with seed 0.
uint64_t key_hash(std::string_view key) noexcept;

// Size of the headers block for `headers`; UINT64_MAX if a name or value is
// too large for the format.
uint64_t headers_block_bytes_of(std::span<const Header> headers) noexcept;
inline uint64_t headers_block_bytes(std::span<const Header> headers) noexcept {
  return headers.empty() ? 0 : headers_block_bytes_of(headers);
}
// Unpadded size of one record; callers check it against the segment size.
inline uint64_t record_size(std::string_view key, uint64_t headers_bytes, uint64_t value_bytes) {
  return format::kRecordHeaderBytes + key.size() + headers_bytes + value_bytes;
}

// Writes the headers block for `headers` at `p` (headers_block_bytes() long).
void encode_headers(std::byte* p, std::span<const Header> headers) noexcept;

// Writes a record header (checksum 0) at `rec`, in four 8-byte stores:
// record_checksum() loads it back 8 bytes at a time right after, and the
// store buffer forwards a load only from one store that covers it. From
// narrower stores the load waits for them to reach the cache, and with them
// every older store, the previous frame's into lines still on their way
// from the reader's core (docs/architecture.md, "Store forwarding").
inline void encode_record_header(std::byte* rec, uint32_t length, uint16_t header_count, int64_t timestamp_ns,
                                 uint32_t key_length, uint32_t headers_length) noexcept {
  static_assert(std::endian::native == std::endian::little);  // the format's byte order
  static_assert(offsetof(format::RecordHeader, flags) == 4 && offsetof(format::RecordHeader, header_count) == 6 &&
                offsetof(format::RecordHeader, headers_length) == 28);
  const uint64_t first = uint64_t{length} | uint64_t{header_count} << 48;  // flags 0
  const uint64_t lengths = uint64_t{key_length} | uint64_t{headers_length} << 32;
  const uint64_t checksum = 0;
  std::memcpy(rec, &first, 8);
  std::memcpy(rec + 8, &checksum, 8);
  std::memcpy(rec + 16, &timestamp_ns, 8);
  std::memcpy(rec + 24, &lengths, 8);
}

// Writes the record header, key and headers at `rec`, and the value if
// `value` is non-null. Returns where the value goes. The checksum is written
// by seal_record() once the value is in place. Inline, for records composed
// on the stack (producer.cc, send_small_*); encode_record() below is the
// out-of-line call.
[[gnu::always_inline]] inline std::byte* write_record(std::byte* rec, std::string_view key,
                                                      std::span<const Header> headers, uint64_t headers_bytes,
                                                      const char* value, uint32_t value_bytes,
                                                      int64_t timestamp_ns) noexcept {
  encode_record_header(rec, static_cast<uint32_t>(record_size(key, headers_bytes, value_bytes)),
                       static_cast<uint16_t>(headers.size()), timestamp_ns, static_cast<uint32_t>(key.size()),
                       static_cast<uint32_t>(headers_bytes));
  std::byte* p = rec + format::kRecordHeaderBytes;
  if (!key.empty()) std::memcpy(p, key.data(), key.size());
  p += key.size();
  if (!headers.empty()) encode_headers(p, headers);
  p += headers_bytes;
  if (value != nullptr && value_bytes > 0) std::memcpy(p, value, value_bytes);
  return p;
}
// write_record(), not inlined on purpose: inlined
// into send() it measured slower, pingpong p50 1.14 -> 1.37 us in the slow
// placement; likely the order of the stores into the frame's first line,
// which the reader polls, changed.
std::byte* encode_record(std::byte* rec, std::string_view key, std::span<const Header> headers,
                         uint64_t headers_bytes, const char* value, uint32_t value_bytes,
                         int64_t timestamp_ns) noexcept;
// encode_record() then seal_record(), for a record with a large value: the
// same checksum (XXH3 streamed over the same bytes), but it reads the value
// from the caller's buffer, not from the lines just copied into the mapping,
// so it does not wait for those stores to drain. 4 KiB stream: 4.60-4.93 ->
// 5.05-5.35 GB/s (docs/architecture.md). `seed` is frame_seed() + index.
std::byte* encode_sealed_record(std::byte* rec, std::string_view key, std::span<const Header> headers,
                                uint64_t headers_bytes, const char* value, uint32_t value_bytes,
                                int64_t timestamp_ns, uint64_t seed) noexcept;
[[gnu::always_inline]] inline void seal_record(std::byte* rec, uint64_t seed, uint32_t index) noexcept {
  const uint64_t sum = record_checksum_inline(rec, seed, index);
  std::memcpy(rec + offsetof(format::RecordHeader, checksum), &sum, sizeof sum);
}

enum class DecodeStatus : uint8_t { kOk, kBadLength, kBadChecksum, kBadHeaders };
// Whether `length` bytes at `block` are `count` well-formed header entries.
bool headers_block_valid(const std::byte* block, uint64_t length, uint16_t count) noexcept;

// Decodes the record at `rec`, with at most `available` bytes to the end of
// its frame. Checks every length (and the checksum if `verify`) before
// building views; never reads outside [rec, rec + available). Inline: it is
// most of a poll.
inline DecodeStatus decode_record(const std::byte* rec, uint32_t available, uint64_t seed, uint32_t index,
                                  bool verify, RecordView* out, uint32_t* padded_length) noexcept {
  using namespace format;
  if (available < kRecordHeaderBytes) [[unlikely]]
    return DecodeStatus::kBadLength;
  RecordHeader h;
  std::memcpy(&h, rec, sizeof h);
  if (h.length < kRecordHeaderBytes || h.length > available) [[unlikely]]
    return DecodeStatus::kBadLength;
  const uint64_t body = static_cast<uint64_t>(h.key_length) + h.headers_length;
  if (body > h.length - kRecordHeaderBytes) [[unlikely]]
    return DecodeStatus::kBadLength;
  if (verify && record_checksum(rec, seed, index) != h.checksum) [[unlikely]]
    return DecodeStatus::kBadChecksum;
  const std::byte* p = rec + kRecordHeaderBytes;
  // Walk the headers block once so that HeadersView can trust it.
  if ((h.header_count | h.headers_length) != 0 &&
      !headers_block_valid(p + h.key_length, h.headers_length, h.header_count)) [[unlikely]]
    return DecodeStatus::kBadHeaders;
  out->timestamp_ns = h.timestamp_ns;
  out->key = std::string_view(reinterpret_cast<const char*>(p), h.key_length);
  out->headers = HeadersView(p + h.key_length, h.headers_length, h.header_count);
  const uint32_t value_off = kRecordHeaderBytes + h.key_length + h.headers_length;
  out->value = std::string_view(reinterpret_cast<const char*>(rec + value_off), h.length - value_off);
  *padded_length = align_up(h.length);
  return DecodeStatus::kOk;
}
const char* decode_status_text(DecodeStatus s) noexcept;

}  // namespace sluice
