// produce -> consume through the command line, group offsets, seeks and
// replay. Every consume exits on its own (--idle-exit-ms), never --follow.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli_runner.h"
#include "support/test_support.h"

namespace sluice {
namespace {

using test::CliResult;
using test::run_cli_in;

// A bus with topic `t` of `partitions` partitions.
class CliRoundTrip : public test::CliBusTest {
 protected:
  void SetUp() override {
    CliBusTest::SetUp();
    if (HasFatalFailure()) return;
    ok({"topic", "create", "t", "--partitions", "3", "--segment-bytes", "64KiB"});
  }
  CliResult consume(const std::string& group, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"consume", "t", "--group", group, "--idle-exit-ms", "150"};
    args.insert(args.end(), extra.begin(), extra.end());
    return cli(args);
  }
};

// Loose JSON reading: the raw text of a string field (escapes kept), or
// of a number / null field, in one line.
std::string field(const std::string& line, const std::string& name) {
  const std::string tag = "\"" + name + "\":";
  size_t at = line.find(tag);
  if (at == std::string::npos) return "<missing>";
  at += tag.size();
  if (line[at] != '"') return line.substr(at, line.find_first_of(",}", at) - at);
  std::string out;
  for (size_t i = at + 1; i < line.size() && line[i] != '"'; ++i) {
    if (line[i] == '\\') out += line[i++];
    out += line[i];
  }
  return out;
}

using test::row;

TEST_F(CliRoundTrip, ProducedLinesComeBackAsJsonWithKeysAndHeaders) {
  CliResult p = cli({"produce", "t", "--key-sep", ":", "--header", "trace=abc", "--header", "kind=test"},
                    "k1:hello\nk2:with \"quotes\" and \\\nno-separator\nk1:again\n");
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_TRUE(p.out.empty());
  CliResult c = consume("g", {"--format", "json"});
  ASSERT_EQ(c.code, 0) << c.err;
  const auto lines = c.out_lines();
  ASSERT_EQ(lines.size(), 4u) << c.out;
  std::vector<std::string> k1_values;
  int keyless = 0;
  for (const std::string& l : lines) {
    EXPECT_EQ(l.front(), '{');
    EXPECT_EQ(l.back(), '}');
    EXPECT_NE(field(l, "partition"), "<missing>");
    EXPECT_NE(field(l, "offset"), "<missing>");
    EXPECT_GT(std::stoll(field(l, "timestamp")), 1'000'000'000'000'000'000LL) << "nanoseconds since the epoch";
    EXPECT_NE(l.find("{\"name\":\"trace\",\"value\":\"abc\"}"), std::string::npos) << l;
    EXPECT_NE(l.find("{\"name\":\"kind\",\"value\":\"test\"}"), std::string::npos) << l;
    if (field(l, "key") == "k1") k1_values.push_back(field(l, "value"));
    if (field(l, "key") == "null") {
      ++keyless;
      EXPECT_EQ(field(l, "value"), "no-separator");
    }
    if (field(l, "key") == "k2") {
      EXPECT_EQ(field(l, "value"), "with \\\"quotes\\\" and \\\\");
    }
  }
  // One key, one partition, in order.
  EXPECT_EQ(k1_values, (std::vector<std::string>{"hello", "again"}));
  EXPECT_EQ(keyless, 1);
}

TEST_F(CliRoundTrip, NonUtf8BytesAreEscapedInJson) {
  ASSERT_EQ(cli({"produce", "t", "--key", "bin"}, "ok \xc3\xa9 \xff\xfe\x01 end\n").code, 0);
  CliResult c = consume("g", {"--format", "json"});
  ASSERT_EQ(c.code, 0);
  EXPECT_NE(c.out.find("\"value\":\"ok \xc3\xa9 \\u00ff\\u00fe\\u0001 end\""), std::string::npos) << c.out;
}

TEST_F(CliRoundTrip, ValueFormatPrintsOneValuePerLineInPartitionOrder) {
  std::string input;
  for (int i = 0; i < 50; ++i) input += "v" + std::to_string(i) + "\n";
  ASSERT_EQ(cli({"produce", "t", "--partition", "1"}, input).code, 0);
  CliResult c = consume("g");
  ASSERT_EQ(c.code, 0);
  EXPECT_EQ(c.out, input);
}

TEST_F(CliRoundTrip, GroupCommitsSoASecondRunSeesOnlyNewRecords) {
  ASSERT_EQ(cli({"produce", "t", "--key", "a"}, "1\n2\n3\n").code, 0);
  EXPECT_EQ(consume("g").out, "1\n2\n3\n");
  EXPECT_EQ(consume("g").out, "");
  ASSERT_EQ(cli({"produce", "t", "--key", "a"}, "4\n").code, 0);
  EXPECT_EQ(consume("g").out, "4\n");
  // Another group is independent and starts at the beginning.
  EXPECT_EQ(consume("other").out, "1\n2\n3\n4\n");
}

TEST_F(CliRoundTrip, MaxStopsAfterNRecordsAndCommitsOnlyThose) {
  ASSERT_EQ(cli({"produce", "t", "--key", "a"}, "1\n2\n3\n4\n5\n").code, 0);
  EXPECT_EQ(consume("g", {"--max", "2"}).out, "1\n2\n");
  EXPECT_EQ(consume("g", {"--max", "2"}).out, "3\n4\n");
  EXPECT_EQ(consume("g").out, "5\n");
}

TEST_F(CliRoundTrip, GroupSeekToBeginningReplays) {
  ASSERT_EQ(cli({"produce", "t", "--key-sep", "="}, "a=1\nb=2\nc=3\nd=4\n").code, 0);
  const std::string first = consume("g").out;
  ASSERT_EQ(consume("g").out, "");
  CliResult s = cli({"group", "seek", "g", "t", "--to", "beginning"});
  ASSERT_EQ(s.code, 0) << s.err;
  EXPECT_NE(s.out.find("partition 0 -> 0"), std::string::npos) << s.out;
  const std::string replay = consume("g").out;
  EXPECT_EQ(replay, first);
  EXPECT_EQ(replay.size(), std::string("1\n2\n3\n4\n").size());
}

TEST_F(CliRoundTrip, GroupSeekToOffsetAndEndOnOnePartition) {
  std::string input;
  for (int i = 0; i < 10; ++i) input += std::to_string(i) + "\n";
  ASSERT_EQ(cli({"produce", "t", "--partition", "2"}, input).code, 0);
  ASSERT_EQ(cli({"group", "seek", "g", "t", "--to", "offset:7", "--partition", "2"}).code, 0);
  EXPECT_EQ(consume("g").out, "7\n8\n9\n");
  ASSERT_EQ(cli({"group", "seek", "g", "t", "--to", "time:0"}).code, 0);
  EXPECT_EQ(consume("g").out, input);
  ASSERT_EQ(cli({"group", "seek", "g", "t", "--to", "end"}).code, 0);
  EXPECT_EQ(consume("g").out, "");
}

TEST_F(CliRoundTrip, ConsumeFromOverridesTheCommittedOffset) {
  ASSERT_EQ(cli({"produce", "t", "--partition", "0"}, "a\nb\nc\n").code, 0);
  ASSERT_EQ(consume("g").out, "a\nb\nc\n");
  EXPECT_EQ(consume("g", {"--from", "beginning"}).out, "a\nb\nc\n");
  EXPECT_EQ(consume("g", {"--from", "1"}).out, "b\nc\n");
  EXPECT_EQ(consume("g", {"--from", "@0"}).out, "a\nb\nc\n");
  ASSERT_EQ(cli({"produce", "t", "--partition", "0"}, "d\n").code, 0);
  EXPECT_EQ(consume("g", {"--from", "end"}).out, "");
}

TEST_F(CliRoundTrip, GroupDescribeShowsLag) {
  ASSERT_EQ(cli({"produce", "t", "--partition", "1"}, "a\nb\nc\n").code, 0);
  ASSERT_EQ(consume("g", {"--max", "1"}).code, 0);
  CliResult d = cli({"group", "describe", "g"});
  ASSERT_EQ(d.code, 0) << d.err;
  // topic partition committed end lso lag lag_bytes oldest_age; partition 1 is the first row of "t" with data
  std::vector<std::string> p1;
  std::istringstream lines(d.out);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("t ", 0) == 0 && line.find(" 1 ") != std::string::npos) {
      std::istringstream in(line);
      for (std::string w; in >> w;) p1.push_back(w);
    }
  ASSERT_EQ(p1.size(), 8u) << d.out;
  EXPECT_EQ(p1[1], "1");
  EXPECT_EQ(p1[2], "1") << "committed";
  EXPECT_EQ(p1[3], "3") << "end";
  EXPECT_EQ(p1[4], "3") << "last stable offset: no transaction open";
  EXPECT_EQ(p1[5], "2") << "lag records";
  EXPECT_GT(std::stoull(p1[6]), 0u) << "lag bytes";
  EXPECT_NE(p1[7], "-") << "oldest unconsumed age";
  CliResult l = cli({"group", "list"});
  EXPECT_EQ(l.out, "g\n");
}

TEST_F(CliRoundTrip, TopicDescribeListAndDelete) {
  ASSERT_EQ(cli({"produce", "t", "--partition", "0"}, "a\nb\n").code, 0);
  CliResult d = cli({"topic", "describe", "t", "--segments"});
  ASSERT_EQ(d.code, 0);
  EXPECT_NE(d.out.find("3 partitions"), std::string::npos) << d.out;
  // partition start end lso records segments bytes repaired
  const auto p0 = row(d.out, "0");
  ASSERT_EQ(p0.size(), 8u) << d.out;
  EXPECT_EQ(p0[2], "2") << "end";
  EXPECT_EQ(p0[3], "2") << "lso: nothing undecided";
  EXPECT_EQ(p0[4], "2") << "records";
  EXPECT_EQ(p0[5], "1") << "segments";
  EXPECT_GT(std::stoull(p0[6]), 0u) << "bytes";
  EXPECT_NE(d.out.find(".seg"), std::string::npos);
  EXPECT_EQ(cli({"topic", "list"}).out, "t\n");
  ASSERT_EQ(cli({"topic", "delete", "t"}).code, 0);
  EXPECT_EQ(cli({"topic", "list"}).out, "");
  EXPECT_EQ(cli({"topic", "describe", "t"}).code, 1);
}

TEST_F(CliRoundTrip, DumpShowsOffsetsAndPositions) {
  ASSERT_EQ(cli({"produce", "t", "--partition", "2", "--key", "kk"}, "aaaa\nbbbbbbbb\ncc\n").code, 0);
  CliResult d = cli({"dump", "t", "--partition", "2"});
  ASSERT_EQ(d.code, 0) << d.err;
  const auto lines = d.out_lines();
  ASSERT_EQ(lines.size(), 4u) << d.out;  // title + 3 records
  // offset position timestamp key_B value_B headers key
  EXPECT_EQ(row(d.out, "0"), (std::vector<std::string>{"0", "0", row(d.out, "0").at(2), "2", "4", "0", "\"kk\""}));
  const auto second = row(d.out, "1");
  ASSERT_EQ(second.size(), 7u);
  EXPECT_GT(std::stoull(second[1]), 0u) << "the second frame starts after the first";
  EXPECT_EQ(second[4], "8");
  CliResult from = cli({"dump", "t", "--partition", "2", "--from", "2", "--max", "5"});
  ASSERT_EQ(from.out_lines().size(), 2u) << from.out;
  EXPECT_EQ(row(from.out, "2").size(), 7u) << from.out;
}

TEST_F(CliRoundTrip, EmptyStdinProducesNothing) {
  CliResult p = cli({"produce", "t", "--verbose"});
  EXPECT_EQ(p.code, 0);
  EXPECT_NE(p.err.find("produced 0 records"), std::string::npos);
  EXPECT_EQ(consume("g").out, "");
}

TEST_F(CliRoundTrip, FollowPrintsNewRecordsAndCommitsOnInterrupt) {
  const std::string out_path = dir_.sub("follow.out");
  const std::string bus = dir_.path();
  const pid_t pid = test::fork_child([&] {
    const int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::execl(SLUICE_CLI_PATH, "sluice", "--dir", bus.c_str(), "consume", "t", "--group", "f", "--follow",
            static_cast<char*>(nullptr));
    return 127;
  });
  ASSERT_GT(pid, 0);
  ASSERT_EQ(cli({"produce", "t", "--partition", "0"}, "one\ntwo\n").code, 0);
  // Bounded wait for the follower to print both records.
  std::string seen;
  for (int i = 0; i < 1000 && seen != "one\ntwo\n"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::ifstream in(out_path);
    seen.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  EXPECT_EQ(seen, "one\ntwo\n");
  ::kill(pid, SIGINT);
  EXPECT_EQ(test::wait_child(pid, 10'000), 0);
  // What it printed was committed: the group has nothing left.
  EXPECT_EQ(consume("f").out, "");
}

}  // namespace
}  // namespace sluice
