// `sluice txn list|abort`: a transaction left open by a live holder shows as
// ongoing, holds the LSO in `sluice topic describe` and a read-committed reader, and `sluice txn abort` releases it
// and fences the holder.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <sstream>
#include <string>
#include <vector>

#include "cli_runner.h"
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
  ASSERT_EQ(r.size(), 12u) << l.out;
  EXPECT_EQ(r[3], "ongoing");
  EXPECT_EQ(r[4], "yes") << "its holder (this test) is alive";
  EXPECT_EQ(r[6], "1") << "one partition written";
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
  ASSERT_EQ(r.size(), 12u) << l.out;
  EXPECT_EQ(r[3], "ready");
  EXPECT_EQ(r[9], "1") << "aborted by another process";
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

}  // namespace
}  // namespace sluice
