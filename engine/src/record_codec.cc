#include "record_codec.h"

#include <cstring>

namespace sluice {

using namespace format;

uint64_t key_hash(std::string_view key) noexcept { return XXH3_64bits(key.data(), key.size()); }

uint64_t headers_block_bytes_of(std::span<const Header> headers) noexcept {
  if (headers.size() > UINT16_MAX) return UINT64_MAX;
  uint64_t n = 0;
  for (const Header& h : headers) {
    if (h.name.size() > UINT32_MAX || h.value.size() > UINT32_MAX) return UINT64_MAX;
    n += kHeaderEntryBytes + h.name.size() + h.value.size();
  }
  return n;
}

void encode_headers(std::byte* p, std::span<const Header> headers) noexcept {
  for (const Header& hd : headers) {
    const uint32_t nl = static_cast<uint32_t>(hd.name.size());
    const uint32_t vl = static_cast<uint32_t>(hd.value.size());
    std::memcpy(p, &nl, 4);
    std::memcpy(p + 4, &vl, 4);
    if (nl) std::memcpy(p + 8, hd.name.data(), nl);
    if (vl) std::memcpy(p + 8 + nl, hd.value.data(), vl);
    p += 8 + nl + vl;
  }
}

std::byte* encode_record(std::byte* rec, std::string_view key, std::span<const Header> headers,
                         uint64_t headers_bytes, const char* value, uint32_t value_bytes,
                         int64_t timestamp_ns) noexcept {
  return write_record(rec, key, headers, headers_bytes, value, value_bytes, timestamp_ns);
}

std::byte* encode_sealed_record(std::byte* rec, std::string_view key, std::span<const Header> headers,
                                uint64_t headers_bytes, const char* value, uint32_t value_bytes,
                                int64_t timestamp_ns, uint64_t seed) noexcept {
  constexpr uint64_t kStackedPrefixBytes = 256;
  if (kRecordHeaderBytes + key.size() + headers_bytes <= kStackedPrefixBytes) {
    // Hash first, then write: the header, key and headers composed on the
    // stack, the value read from the caller's buffer. The hash's own stores
    // (its state) then do not queue behind the copy's, which wait for the
    // mapping's lines to come to this core (docs/architecture.md, "Large
    // values").
    alignas(16) std::byte prefix[kStackedPrefixBytes];
    std::byte* const v = encode_record(prefix, key, headers, headers_bytes, nullptr, value_bytes, timestamp_ns);
    const auto n = static_cast<size_t>(v - prefix);
    const uint64_t sum =
        xxh3_wide(prefix + kChecksumCoverageStart, n - kChecksumCoverageStart, value, value_bytes, seed);
    std::memcpy(prefix + offsetof(RecordHeader, checksum), &sum, sizeof sum);
    std::memcpy(rec, prefix, n);
    std::memcpy(rec + n, value, value_bytes);
    return rec + n;
  }
  std::byte* const v = encode_record(rec, key, headers, headers_bytes, nullptr, value_bytes, timestamp_ns);
  std::memcpy(v, value, value_bytes);
  // Coverage as in record_checksum(): [16, length), the value last.
  const uint64_t sum = xxh3_wide(rec + kChecksumCoverageStart, static_cast<size_t>(v - rec) - kChecksumCoverageStart,
                                 value, value_bytes, seed);
  std::memcpy(rec + offsetof(RecordHeader, checksum), &sum, sizeof sum);
  return v;
}

bool headers_block_valid(const std::byte* q, uint64_t left, uint16_t count) noexcept {
  for (uint16_t i = 0; i < count; ++i) {
    if (left < kHeaderEntryBytes) return false;
    uint32_t nl, vl;
    std::memcpy(&nl, q, 4);
    std::memcpy(&vl, q + 4, 4);
    const uint64_t e = kHeaderEntryBytes + static_cast<uint64_t>(nl) + vl;
    if (e > left) return false;
    q += e;
    left -= e;
  }
  return left == 0;
}

const char* decode_status_text(DecodeStatus s) noexcept {
  switch (s) {
    case DecodeStatus::kOk: return "ok";
    case DecodeStatus::kBadLength: return "record length outside its frame";
    case DecodeStatus::kBadChecksum: return "record checksum mismatch";
    case DecodeStatus::kBadHeaders: return "record headers block malformed";
  }
  return "?";
}

}  // namespace sluice
