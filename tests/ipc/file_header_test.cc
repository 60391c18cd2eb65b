#include "ipc/file_header.h"

#include <gtest/gtest.h>

#include <vector>

namespace sluice::ipc {
namespace {

struct Params {
  uint64_t a;
  uint32_t b;
  uint32_t c;
};

std::vector<std::byte> make(uint64_t bytes = 4096) {
  std::vector<std::byte> buf(bytes);
  Params p{42, 7, 9};
  write_file_header(buf.data(), FileKind::kSegment, 4096, bytes, &p, sizeof p);
  return buf;
}

TEST(FileHeader, ValidHeaderPassesAndCarriesParams) {
  auto buf = make();
  ASSERT_TRUE(validate_file_header(buf.data(), buf.size(), FileKind::kSegment, sizeof(Params), "f"));
  EXPECT_EQ(file_params<Params>(buf.data()).a, 42u);
}

// Overwrites the version field (the header checksum then fails too; the
// version is checked first, so the error says what is really wrong).
void set_version(std::vector<std::byte>& buf, uint32_t v) {
  std::memcpy(buf.data() + offsetof(FileHeader, format_version), &v, 4);
}

TEST(FileHeader, OtherFormatVersionIsAVersionMismatchNamingTheFile) {
  for (uint32_t v : {format_versions(FileKind::kSegment).current + 1, format_versions(FileKind::kSegment).oldest - 1}) {
    auto buf = make();
    set_version(buf, v);
    auto r = validate_file_header(buf.data(), buf.size(), FileKind::kSegment, sizeof(Params), "/x/seg");
    ASSERT_FALSE(r) << "version " << v;
    EXPECT_EQ(r.error().code, Errc::kVersionMismatch);
    EXPECT_NE(r.error().message.find("/x/seg"), std::string::npos);
    EXPECT_NE(r.error().message.find("versions 1 to 3"), std::string::npos) << r.error().message;
  }
}

TEST(FileHeader, NewFilesGetTheirKindsCurrentVersion) {
  auto buf = make();
  FileHeader h;
  std::memcpy(&h, buf.data(), sizeof h);
  EXPECT_EQ(h.format_version, format_versions(FileKind::kSegment).current);
  EXPECT_EQ(format_versions(FileKind::kSegment).current, 3u) << "segments moved to 3 with the CLAIMED_COPY state";
  EXPECT_EQ(format_versions(FileKind::kTopic).current, 1u);
}

TEST(FileHeader, AnOlderReadableVersionIsAccepted) {
  std::vector<std::byte> buf(4096);
  Params p{42, 7, 9};
  write_file_header(buf.data(), FileKind::kSegment, 4096, buf.size(), &p, sizeof p, 1);
  ASSERT_TRUE(validate_file_header(buf.data(), buf.size(), FileKind::kSegment, sizeof(Params), "f"));
  write_file_header(buf.data(), FileKind::kTopic, 4096, buf.size(), &p, sizeof p, 2);
  EXPECT_EQ(validate_file_header(buf.data(), buf.size(), FileKind::kTopic, sizeof(Params), "f").error().code,
            Errc::kVersionMismatch);
}

TEST(FileHeader, FlippedParameterByteIsDetectedAsDamagedHeader) {
  auto buf = make();
  buf[kFileHeaderBytes + 1] ^= std::byte{0x01};
  auto r = validate_file_header(buf.data(), buf.size(), FileKind::kSegment, sizeof(Params), "f");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kCorruption);
  EXPECT_NE(r.error().message.find("checksum"), std::string::npos);
}

TEST(FileHeader, BadMagicIsNotASluiceFile) {
  auto buf = make();
  buf[0] = std::byte{'X'};
  auto r = validate_file_header(buf.data(), buf.size(), FileKind::kSegment, sizeof(Params), "f");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not a sluice file"), std::string::npos);
}

TEST(FileHeader, TruncatedFileIsReported) {
  auto buf = make(8192);
  auto r = validate_file_header(buf.data(), 4096, FileKind::kSegment, sizeof(Params), "f");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("truncated"), std::string::npos);
}

TEST(FileHeader, WrongKindIsRefused) {
  auto buf = make();
  auto r = validate_file_header(buf.data(), buf.size(), FileKind::kTopic, sizeof(Params), "f");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kCorruption);
}

}  // namespace
}  // namespace sluice::ipc
