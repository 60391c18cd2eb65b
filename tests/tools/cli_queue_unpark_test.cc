// `sluice queue unpark` and the parking lot's stats through the command line;
// messages are parked through the library (the CLI has no worker to park
// from), on the real clock, due at once.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "json_reader.h"
#include "support/test_support.h"

namespace sluice {
namespace {

using test::CliResult;
using test::expect_one_error_line;
using test::kExitError;
using test::kExitUsage;
using test::run_cli_in;

class CliUnpark : public test::CliBusTest {
 protected:
  // Publishes `values` to orders with the CLI and parks each through the
  // library, due now.
  void park_all(const std::string& values, size_t n) {
    ok({"queue", "publish", "orders", "-H", "trace=t1"}, values);
    auto bus = Bus::open(dir_.path());
    ASSERT_TRUE(bus) << bus.error().to_string();
    auto w = bus->create_worker("orders");
    ASSERT_TRUE(w) << w.error().to_string();
    for (size_t i = 0; i < n; ++i) {
      Delivery d[1];
      auto got = w->receive(d, 0);
      ASSERT_TRUE(got && *got == 1);
      ASSERT_TRUE(w->park(d[0], 0, "downstream outage"));
    }
  }
};

TEST_F(CliUnpark, MovesDueMessagesBackToTheirSource) {
  ok({"queue", "create", "orders"});
  park_all("a\nb\nc\n", 3);
  CliResult s = ok({"queue", "stats", "orders.parking"});
  EXPECT_NE(s.out.find("parking lot: 3 parked"), std::string::npos) << s.out;
  test::Json js = test::parse_json(ok({"queue", "stats", "orders.parking", "--format", "json"}).out);
  EXPECT_EQ(js["parked"].u64(), 3u);

  CliResult r = ok({"queue", "unpark", "orders.parking", "--max", "2"});
  EXPECT_EQ(r.out, "unparked 2 messages from orders.parking\n");
  r = ok({"queue", "unpark", "orders.parking", "--rate", "1000", "--format", "json"});
  test::Json j = test::parse_json(r.out);
  EXPECT_EQ(j["moved"].u64(), 1u);
  EXPECT_FALSE(j["outside_window"].boolean);

  CliResult got = ok({"queue", "receive", "orders", "--max", "3", "--format", "json"});
  const auto lines = got.out_lines();
  ASSERT_EQ(lines.size(), 3u) << got.out;
  test::Json first = test::parse_json(lines[0]);
  EXPECT_EQ(first["value"].text, "a");
  EXPECT_EQ(test::header(first, "trace"), "t1");
  EXPECT_EQ(test::header(first, "sluice.parked.count"), "1");
  EXPECT_EQ(test::header(first, "sluice.parked.from"), "<missing>");
}

TEST_F(CliUnpark, OutsideItsWindowMovesNothing) {
  ok({"queue", "create", "orders"});
  park_all("a\n", 1);
  // A one-hour window starting two hours from now (UTC).
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const long minute = static_cast<long>(std::chrono::duration_cast<std::chrono::minutes>(now).count() % 1440);
  const long start = (minute + 120) % 1440, end = (minute + 180) % 1440;
  char window[16];
  std::snprintf(window, sizeof window, "%02ld:%02ld-%02ld:%02ld", start / 60, start % 60, end / 60, end % 60);
  CliResult r = ok({"queue", "unpark", "orders.parking", "--window", window});
  EXPECT_NE(r.out.find("outside the window"), std::string::npos) << r.out;
  EXPECT_EQ(test::parse_json(ok({"queue", "stats", "orders.parking", "--format", "json"}).out)["parked"].u64(), 1u);
}

TEST_F(CliUnpark, RefusesBadInputInOneLine) {
  CliResult r = cli({"queue", "unpark", "nope.parking"});
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "nope.parking");
  r = cli({"queue", "unpark", "orders.parking", "--window", "25:00-01:00"});
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "--window");
  r = cli({"queue", "unpark", "orders.parking", "--rate", "fast"});
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "--rate");
  r = cli({"queue", "unpark", "orders.parking", "--to", "orders.parking"});
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "--to");
}

}  // namespace
}  // namespace sluice
