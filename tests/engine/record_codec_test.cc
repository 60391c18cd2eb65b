// The record checksum is one function of the bytes, whichever way it is
// computed: inline XXH3 for small records, libxxhash's dispatched (AVX2 /
// AVX-512) XXH3 for large ones, streamed from the caller's buffer by send().
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "record_codec.h"
#include "segment_format.h"
#include "xxh3_wide.h"

namespace sluice {
namespace {

using namespace format;

std::string bytes_of(size_t n, uint32_t salt) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + salt) & 0xFF);
  return s;
}

TEST(RecordCodec, TheWideHashHasTheInlineHashsValues) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{240}, size_t{1023}, size_t{1024}, size_t{4096}, size_t{100'003}}) {
    const std::string s = bytes_of(n, static_cast<uint32_t>(n));
    const uint64_t seed = 0x9E3779B97F4A7C15ull ^ n;
    EXPECT_EQ(xxh3_wide(s.data(), s.size(), seed), XXH3_64bits_withSeed(s.data(), s.size(), seed)) << n << " bytes";
    const size_t cut = n / 3;
    EXPECT_EQ(xxh3_wide(s.data(), cut, s.data() + cut, n - cut, seed), XXH3_64bits_withSeed(s.data(), s.size(), seed))
        << n << " bytes in two parts";
  }
}

// encode_record_header() stores whole words (for store forwarding): the
// bytes must be the documented fields, each where segment_format.h puts it.
TEST(RecordCodec, ARecordHeaderWrittenInWordsHoldsEachFieldInItsPlace) {
  std::byte got[kRecordHeaderBytes];
  std::memset(got, 0xA5, sizeof got);
  encode_record_header(got, 0x01020304, 0x0506, -0x0708090A0B0C0D0Ell, 0x11121314, 0x21222324);
  RecordHeader h{};
  h.length = 0x01020304;
  h.flags = 0;
  h.header_count = 0x0506;
  h.checksum = 0;
  h.timestamp_ns = -0x0708090A0B0C0D0Ell;
  h.key_length = 0x11121314;
  h.headers_length = 0x21222324;
  EXPECT_EQ(std::memcmp(got, &h, sizeof h), 0);
}

// Both ways encode_sealed_record() takes: a header, key and headers small
// enough to compose on the stack (hashed before the copy), and larger ones
// (written in place first).
TEST(RecordCodec, ALargeRecordSealedFromItsSourceHasTheChecksumOfItsBytes) {
  const std::vector<Header> some = {{"h", "v"}, {"trace", "abc"}};
  const std::string big_value(300, 'x');  // Header holds views: the bytes must outlive it
  const std::vector<Header> big = {{"h", big_value}};
  struct Case {
    std::string key;
    const std::vector<Header>* headers;
  };
  const Case cases[] = {{"", nullptr}, {"key", &some}, {std::string(500, 'k'), nullptr}, {"key", &big}};
  for (const Case& c : cases) {
    for (uint32_t value_bytes : {1024u, 4096u, 65537u}) {
      const std::span<const Header> headers =
          c.headers != nullptr ? std::span<const Header>(*c.headers) : std::span<const Header>();
      const uint64_t hb = headers_block_bytes(headers);
      const std::string value = bytes_of(value_bytes, 7);
      std::vector<std::byte> a(kRecordHeaderBytes + c.key.size() + hb + value_bytes), b(a.size());
      const uint64_t seed = 12345;
      encode_record(a.data(), c.key, headers, hb, value.data(), value_bytes, 42);
      seal_record(a.data(), seed, 0);
      const std::byte* at = encode_sealed_record(b.data(), c.key, headers, hb, value.data(), value_bytes, 42, seed);
      EXPECT_EQ(at, b.data() + kRecordHeaderBytes + c.key.size() + hb) << "where the value went";
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0) << value_bytes << " bytes, key of " << c.key.size();
      RecordView v;
      uint32_t padded;
      EXPECT_EQ(decode_record(b.data(), static_cast<uint32_t>(b.size()), seed, 0, true, &v, &padded),
                DecodeStatus::kOk);
      EXPECT_EQ(v.value, value);
    }
  }
}

}  // namespace
}  // namespace sluice
