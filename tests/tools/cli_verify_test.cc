// `sluice verify` on a good bus and after a flipped byte; the flip lands at
// an offset taken from the format headers, not a magic number.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstddef>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "engine/src/segment_format.h"
#include "ipc/file_header.h"
#include "support/test_support.h"

namespace sluice {
namespace {

using test::CliResult;
using test::run_cli_in;

constexpr int kExitCorrupt = 3;

// Flips every bit of the first key byte of the first record of partition 0.
void flip_first_record_byte(const std::string& bus_dir, const std::string& topic) {
  const std::string path = bus_dir + "/topics/" + topic + "/0/00000000000000000000.seg";
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path;
  ipc::FileHeader h{};
  ASSERT_EQ(::pread(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
  ASSERT_EQ(h.magic, ipc::kFileMagic);
  const off_t at = static_cast<off_t>(h.data_offset) + format::kFrameHeaderBytes + format::kRecordHeaderBytes;
  unsigned char b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, at), 1);
  b ^= 0xFF;
  ASSERT_EQ(::pwrite(fd, &b, 1, at), 1);
  ::close(fd);
}

class CliVerify : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(run_cli_in(dir_.path(), {"init"}).code, 0);
    ASSERT_EQ(run_cli_in(dir_.path(), {"topic", "create", "t", "--partitions", "2", "--segment-bytes", "64KiB"}).code,
              0);
    std::string input;
    for (int i = 0; i < 20; ++i) input += "key" + std::to_string(i) + ":value-" + std::to_string(i) + "\n";
    ASSERT_EQ(
        run_cli_in(dir_.path(), {"produce", "t", "--key-sep", ":", "--partition", "0"}, test::with_input(input)).code,
        0);
  }
  test::TempDir dir_;
};

TEST_F(CliVerify, GoodBusVerifiesClean) {
  CliResult r = run_cli_in(dir_.path(), {"verify"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("20 records"), std::string::npos) << r.out;
  EXPECT_TRUE(r.err.empty());
  EXPECT_EQ(run_cli_in(dir_.path(), {"verify", "t"}).code, 0);
}

TEST_F(CliVerify, FlippedRecordByteIsReportedWithExitCode3) {
  flip_first_record_byte(dir_.path(), "t");
  CliResult r = run_cli_in(dir_.path(), {"verify"});
  EXPECT_EQ(r.code, kExitCorrupt) << r.out << r.err;
  EXPECT_NE(r.out.find("issue: t/0 offset 0"), std::string::npos) << r.out;
  ASSERT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_EQ(r.err.rfind("sluice: verify:", 0), 0u) << r.err;
  EXPECT_EQ(run_cli_in(dir_.path(), {"verify", "t"}).code, kExitCorrupt);
}

TEST_F(CliVerify, CorruptLastRecordIsKeptAndReportedByEveryVerify) {
  // Nothing valid follows the bad frame, but no crash could have torn it
  // (same boot, file not truncated): recovery on open must not cut it, so
  // the damage stays visible instead of its offsets being silently reused.
  ASSERT_EQ(run_cli_in(dir_.path(), {"topic", "create", "single", "--partitions", "1"}).code, 0);
  ASSERT_EQ(run_cli_in(dir_.path(), {"produce", "single", "--key", "k"}, test::with_input("only\n")).code, 0);
  flip_first_record_byte(dir_.path(), "single");
  for (int round = 0; round < 2; ++round) {
    CliResult r = run_cli_in(dir_.path(), {"verify", "single"});
    EXPECT_EQ(r.code, kExitCorrupt) << "round " << round << r.out << r.err;
    EXPECT_EQ(r.out.find("cut a torn tail"), std::string::npos) << r.out;
    ASSERT_EQ(r.err_lines().size(), 1u) << r.err;
  }
  // Appends go on after the damaged record; it is never handed out.
  ASSERT_EQ(run_cli_in(dir_.path(), {"produce", "single", "--key", "k"}, test::with_input("next\n")).code, 0);
  CliResult d = run_cli_in(dir_.path(), {"dump", "single", "--partition", "0"});
  EXPECT_EQ(d.out.find("only"), std::string::npos) << d.out;
}

TEST_F(CliVerify, ConsumerStopsAtTheCorruptRecordInsteadOfReturningIt) {
  flip_first_record_byte(dir_.path(), "t");
  CliResult r = run_cli_in(dir_.path(), {"consume", "t", "--group", "g", "--idle-exit-ms", "100"});
  EXPECT_EQ(r.code, kExitCorrupt) << r.err;
  EXPECT_EQ(r.out.find("value-0"), std::string::npos);
  ASSERT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_NE(r.err.find("corruption"), std::string::npos) << r.err;
}

TEST_F(CliVerify, DumpSkipsTheCorruptFrameAndSaysSo) {
  flip_first_record_byte(dir_.path(), "t");
  CliResult r = run_cli_in(dir_.path(), {"dump", "t", "--partition", "0"});
  EXPECT_EQ(r.code, kExitCorrupt) << r.err;
  EXPECT_NE(r.out.find("!! offsets 0"), std::string::npos) << r.out;
  EXPECT_EQ(r.out_lines().size(), 1u + 1u + 19u) << r.out;  // title, note, the 19 good records
}

TEST_F(CliVerify, TopicFileOfAnotherVersionIsAOneLineError) {
  const std::string path = dir_.path() + "/topics/t/topic";
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const uint32_t other_version = ipc::format_versions(ipc::FileKind::kTopic).current + 1;
  ASSERT_EQ(::pwrite(fd, &other_version, sizeof other_version, offsetof(ipc::FileHeader, format_version)),
            static_cast<ssize_t>(sizeof other_version));
  ::close(fd);
  for (auto args : std::vector<std::vector<std::string>>{{"topic", "describe", "t"}, {"verify", "t"}}) {
    CliResult r = run_cli_in(dir_.path(), args);
    EXPECT_EQ(r.code, 1) << args[0];
    ASSERT_EQ(r.err_lines().size(), 1u) << r.err;
    EXPECT_NE(r.err.find("version mismatch"), std::string::npos) << r.err;
  }
}

TEST_F(CliVerify, RecordLargerThanASegmentIsRefused) {
  const std::string big(100'000, 'x');  // the segment holds 64 KiB
  CliResult r = run_cli_in(dir_.path(), {"produce", "t", "--partition", "1"}, test::with_input("small\n" + big + "\n"));
  EXPECT_EQ(r.code, 1);
  ASSERT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_NE(r.err.find("line 2"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("too large"), std::string::npos) << r.err;
  // The line before it was sent; nothing after.
  CliResult c = run_cli_in(dir_.path(), {"consume", "t", "--group", "g", "--partition", "1", "--idle-exit-ms", "100"});
  EXPECT_EQ(c.out, "small\n");
}

}  // namespace
}  // namespace sluice
