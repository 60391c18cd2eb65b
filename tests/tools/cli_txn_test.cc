// `sluice txn list|abort`: a transaction left open by a live holder shows as
// ongoing, holds the LSO in `sluice topic describe` and a read-committed reader, and `sluice txn abort` releases it
// and fences the holder. `sluice topic describe` and `group describe` name the
// transaction holding a partition's LSO (held-by), in text and JSON.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <sstream>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "json_reader.h"
#include "support/test_support.h"

namespace sluice {
namespace {

using test::CliResult;
using test::run_cli_in;

using test::row;

TEST(CliTxn, ListShowsAnOpenTransactionAndAbortReleasesItAndFencesTheHolder) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->create_topic("t", TopicOptions{}));
  EXPECT_EQ(run_cli_in(dir.path(), {"txn", "list"}).out_lines().size(), 1u) << "a header, no identity yet";
  auto tx = bus->create_transactional_producer("xform");
  ASSERT_TRUE(tx);
  ASSERT_TRUE(tx->begin());
  ASSERT_TRUE((*tx->producer("t"))->send(Message{"", "held"}, 0).ok());
  CliResult l = run_cli_in(dir.path(), {"txn", "list"});
  ASSERT_EQ(l.code, 0) << l.err;
  auto r = row(l.out, "xform");
  ASSERT_EQ(r.size(), 13u) << l.out;
  EXPECT_EQ(r[3], "ongoing");
  EXPECT_EQ(r[4], "yes") << "its holder (this test) is alive";
  EXPECT_EQ(r[6], "1") << "one partition written";
  EXPECT_EQ(r[12], "t/0") << "the LSO it holds";
  auto plain = bus->create_producer("t");
  ASSERT_TRUE(plain);
  ASSERT_TRUE(plain->send(Message{"", "after"}, 0).ok());
  // partition start end lso ...: the open transaction holds the LSO at its record.
  auto p0 = row(run_cli_in(dir.path(), {"topic", "describe", "t"}).out, "0");
  ASSERT_GE(p0.size(), 4u);
  EXPECT_EQ(p0[2], "2") << "end";
  EXPECT_EQ(p0[3], "0") << "lso";

  CliResult a = run_cli_in(dir.path(), {"txn", "abort", "xform"});
  ASSERT_EQ(a.code, 0) << a.err;
  l = run_cli_in(dir.path(), {"txn", "list"});
  r = row(l.out, "xform");
  ASSERT_EQ(r.size(), 13u) << l.out;
  EXPECT_EQ(r[3], "ready");
  EXPECT_EQ(r[9], "1") << "aborted by another process";
  EXPECT_EQ(r[12], "-") << "holds nothing";
  EXPECT_EQ(tx->commit().error().code, Errc::kAborted);
  p0 = row(run_cli_in(dir.path(), {"topic", "describe", "t"}).out, "0");
  ASSERT_GE(p0.size(), 4u);
  EXPECT_EQ(p0[3], "2") << "lso = end once aborted";

  CliResult again = run_cli_in(dir.path(), {"txn", "abort", "xform"});
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.err.find("no transaction open"), std::string::npos) << again.err;
  EXPECT_EQ(run_cli_in(dir.path(), {"txn", "abort", "nobody"}).code, 1);
  EXPECT_EQ(run_cli_in(dir.path(), {"txn", "abort", "a/b"}).code, 1);
}

// The lines of `text` that parse as JSON objects, parsed.
std::vector<test::Json> json_lines(const std::string& text) {
  std::vector<test::Json> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) out.push_back(test::parse_json(line));
  return out;
}

TEST(CliTxn, DescribeNamesTheTransactionHoldingAPartitionsStableOffsetInTextAndJson) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  TopicOptions o;
  o.partitions = 2;
  ASSERT_TRUE(bus->create_topic("t", o));
  ASSERT_TRUE(bus->seek_group("g", "t", SeekTarget::beginning()));
  auto tx = bus->create_transactional_producer("payments-1");
  ASSERT_TRUE(tx);
  ASSERT_TRUE(tx->begin());
  ASSERT_TRUE((*tx->producer("t"))->send(Message{"", "held"}, 0).ok());  // t/0 offset 0
  auto plain = bus->create_producer("t");
  ASSERT_TRUE(plain);
  ASSERT_TRUE(plain->send(Message{"", "after"}, 0).ok());
  ASSERT_TRUE(plain->send(Message{"", "free"}, 1).ok());
  const std::string pid = std::to_string(tx->producer_id());
  const std::string epoch = std::to_string(tx->producer_epoch());

  // held-by t/0 txn payments-1 pid P epoch E ongoing AGE alive [lag_stable N]
  CliResult t = run_cli_in(dir.path(), {"topic", "describe", "t"});
  ASSERT_EQ(t.code, 0) << t.err;
  auto h = row(t.out, "held-by");
  ASSERT_EQ(h.size(), 11u) << t.out;
  EXPECT_EQ(h[1], "t/0");
  EXPECT_EQ(h[3], "payments-1");
  EXPECT_EQ(h[5], pid);
  EXPECT_EQ(h[7], epoch);
  EXPECT_EQ(h[8], "ongoing");
  EXPECT_NE(h[9].find_first_of("0123456789"), std::string::npos) << "how long it has held";
  EXPECT_EQ(h[10], "alive");
  EXPECT_EQ(t.out.find("held-by t/1"), std::string::npos) << "partition 1 is not held: " << t.out;
  CliResult g = run_cli_in(dir.path(), {"group", "describe", "g"});
  ASSERT_EQ(g.code, 0) << g.err;
  h = row(g.out, "held-by");
  ASSERT_EQ(h.size(), 13u) << g.out;
  EXPECT_EQ(h[3], "payments-1");
  EXPECT_EQ(h[11], "lag_stable");
  EXPECT_EQ(h[12], "0") << "nothing a read-committed member can read yet";

  CliResult tj = run_cli_in(dir.path(), {"topic", "describe", "t", "--format", "json"});
  ASSERT_EQ(tj.code, 0) << tj.err;
  auto parts = json_lines(tj.out);
  ASSERT_EQ(parts.size(), 2u) << tj.out;
  EXPECT_EQ(parts[0]["stable_offset"].u64(), 0u);
  EXPECT_EQ(parts[0]["end_offset"].u64(), 2u);
  const test::Json& by = parts[0]["held_by"];
  EXPECT_EQ(by["name"].text, "payments-1");
  EXPECT_EQ(by["pid"].u64(), tx->producer_id());
  EXPECT_EQ(by["epoch"].u64(), tx->producer_epoch());
  EXPECT_EQ(by["state"].text, "ongoing");
  EXPECT_TRUE(by["alive"].boolean);
  EXPECT_TRUE(by.has("held_ns"));
  EXPECT_EQ(parts[1]["held_by"].kind, test::Json::Kind::kNull);
  EXPECT_EQ(parts[1]["stable_offset"].u64(), 1u);
  CliResult gj = run_cli_in(dir.path(), {"group", "describe", "g", "--format", "json"});
  ASSERT_EQ(gj.code, 0) << gj.err;
  auto lags = json_lines(gj.out);
  ASSERT_EQ(lags.size(), 2u) << gj.out;
  EXPECT_EQ(lags[0]["group"].text, "g");
  EXPECT_EQ(lags[0]["lag_records"].u64(), 2u);
  EXPECT_EQ(lags[0]["lag_stable_records"].u64(), 0u);
  EXPECT_EQ(lags[0]["held_by"]["name"].text, "payments-1");
  EXPECT_EQ(lags[1]["lag_stable_records"].u64(), 1u);
  EXPECT_EQ(lags[1]["held_by"].kind, test::Json::Kind::kNull);

  ASSERT_TRUE(tx->commit());
  t = run_cli_in(dir.path(), {"topic", "describe", "t"});
  EXPECT_TRUE(row(t.out, "held-by").empty()) << t.out;
  lags = json_lines(run_cli_in(dir.path(), {"group", "describe", "g", "--format", "json"}).out);
  ASSERT_EQ(lags.size(), 2u);
  EXPECT_EQ(lags[0]["held_by"].kind, test::Json::Kind::kNull);
  EXPECT_EQ(lags[0]["lag_stable_records"].u64(), 2u);
  for (auto args : std::vector<std::vector<std::string>>{{"topic", "describe", "t", "--format", "xml"},
                                                         {"group", "describe", "g", "--format", "xml"}}) {
    CliResult bad = run_cli_in(dir.path(), args);
    EXPECT_EQ(bad.code, test::kExitUsage) << args[0];
    test::expect_one_error_line(bad, "--format");
  }
}

}  // namespace
}  // namespace sluice
