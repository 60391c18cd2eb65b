// `sluice bench`: a tiny run of the exactly-once workload finishes and
// reports every system it promises, in the table and in JSON. Behaviour only:
// no figure is asserted (benchmarks prove performance, tests do not).
#include <gtest/gtest.h>

#include <string>

#include "cli_runner.h"
#include "support/test_support.h"

namespace sluice {
namespace {

using test::CliOptions;
using test::CliResult;
using test::run_cli;

TEST(CliBench, ATinyEosRunReportsEveryProducerKindAsThroughputAndRoundTrips) {
  test::TempDir dir;
  CliOptions o;
  o.timeout_ms = 120'000;  // two spinning processes on two cores, under sanitizers too
  CliResult r = run_cli({"bench", "--workload", "eos", "--samples", "200", "--warmup", "20", "--messages", "20000",
                         "--json", "--dir", dir.path()},
                        o);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* system : {"sluice/shared", "sluice/exclusive", "sluice/idempotent-shared",
                             "sluice/idempotent-exclusive", "sluice/txn-1", "sluice/txn-10", "sluice/txn-100"}) {
    const std::string json_row = std::string("{\"system\": \"") + system + "\", \"value_bytes\": 64, \"ok\": true";
    size_t first = r.out.find(json_row);
    ASSERT_NE(first, std::string::npos) << system << " is missing or failed:\n" << r.out;
    EXPECT_NE(r.out.find(json_row, first + 1), std::string::npos)
        << system << ": expected a round-trip row and a throughput row";
    EXPECT_NE(r.err.find(system), std::string::npos) << "the table on stderr lacks " << system;
  }
  for (const char* ratio : {"pingpong p50, 64 B, sluice/txn-100 / plain shared",
                            "throughput, 64 B, sluice/txn-100 / plain shared",
                            "pingpong p50, 64 B, sluice/idempotent-exclusive / plain"})
    EXPECT_NE(r.err.find(ratio), std::string::npos) << ratio;
}

TEST(CliBench, SystemsCanNameOneLogWriterMode) {
  test::TempDir dir;
  CliOptions o;
  o.timeout_ms = 120'000;
  CliResult r = run_cli({"bench", "--workload", "throughput", "--sizes", "64", "--messages", "20000", "--systems",
                         "sluice/shared", "--json", "--dir", dir.path()},
                        o);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("{\"system\": \"sluice/shared\", \"value_bytes\": 64, \"ok\": true"), std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("sluice/exclusive"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("\"system\": \"ring"), std::string::npos) << "no baseline was asked for:\n" << r.out;
}

TEST(CliBench, AnUnknownWorkloadIsAUsageError) {
  CliResult r = run_cli({"bench", "--workload", "fastest"});
  EXPECT_EQ(r.code, test::kExitUsage);
  test::expect_one_error_line(r, "--workload");
}

}  // namespace
}  // namespace sluice
