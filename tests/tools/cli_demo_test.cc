// `sluice demo` end to end: real producer and consumer processes, a
// SIGKILLed writer, a replay, then a work queue with failing jobs and a
// SIGKILLed worker, then an exactly-once pipeline with a transformer
// SIGKILLed mid-transaction. Bounded by a 60 s timeout.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "support/test_support.h"

namespace sluice {
namespace {

TEST(CliDemo, RunsAllChecksAndExitsZero) {
  test::TempDir dir;
  // A smaller run than the default keeps the suite quick under sanitizers.
  test::CliResult r = test::run_cli_in(dir.sub("bus"), {"demo", "--records", "20000", "--rate", "20000"},
                                       test::with_timeout_ms(60'000));
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("all checks passed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("per-key order OK"), std::string::npos);
  const size_t repaired = r.out.find("claims repaired");
  ASSERT_NE(repaired, std::string::npos) << r.out;
  EXPECT_GE(std::stoi(r.out.substr(repaired + std::string("claims repaired").size())), 1) << r.out;
  EXPECT_NE(r.out.find("p99"), std::string::npos);
  // The work-queue act: retries, a SIGKILLed worker, dead letters, and every
  // job accounted for.
  EXPECT_NE(r.out.find("work queue demo-jobs: 2000 jobs"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("SIGKILLed holding 16 leases"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2000 published"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("depth 0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("after the SIGKILL (owner_deaths"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dead letters         25 in demo-jobs.dlq: 4 MaxReceivesExceeded, 21 PermanentError"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("\"source\":\"queue:demo-jobs\""), std::string::npos) << "one dead letter as JSON: " << r.out;
  EXPECT_NE(r.out.find("every job            acked or dead-lettered, OK: "), std::string::npos) << r.out;
  // The exactly-once act: a transformer killed with its transaction open,
  // restarted under its identity, one output per input, in key order, and
  // one message per input in queue outq.
  EXPECT_NE(r.out.find("exactly-once pipeline: in (4 partitions) -> 2 transformer processes -> out"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("transformer 1 SIGKILLed mid-transaction"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("out LSO held by the dead transaction"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("chaos-xform-1 epoch 2 fences epoch 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("exactly once         2000 inputs, 2000 outputs read committed: 0 duplicates, 0 missing, "
                       "per-key order OK"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("queue outq           2000 messages for 2000 inputs, each with its output: 0 duplicates, "
                       "0 missing"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(", 1 by another process (the killed one's)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("LSO held             "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("FAILED"), std::string::npos) << r.out;
  EXPECT_TRUE(std::filesystem::exists(dir.sub("bus/topics/demo.accounts"))) << "a given --dir is kept";
}

TEST(CliDemo, WithoutDirUsesAndRemovesATemporaryBus) {
  test::CliResult r =
      test::run_cli({"demo", "--records", "5000", "--rate", "0", "--jobs", "500"}, test::with_timeout_ms(60'000));
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const size_t at = r.out.find("bus ");
  ASSERT_NE(at, std::string::npos);
  const std::string dir = r.out.substr(at + 4, r.out.find(',', at) - at - 4);
  EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
  EXPECT_NE(r.out.find("work queue demo-jobs: 500 jobs"), std::string::npos) << r.out;
}

TEST(CliDemo, TheQueueAndPipelineActsCanBeSkippedAndBadCountsAreUsageErrors) {
  test::CliResult r = test::run_cli({"demo", "--records", "2000", "--jobs", "0", "--pipeline-records", "0"},
                                    test::with_timeout_ms(60'000));
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("work queue"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("exactly-once pipeline"), std::string::npos) << r.out;
  for (const char* workers : {"1", "17"}) {
    r = test::run_cli({"demo", "--queue-workers", workers});
    EXPECT_EQ(r.code, 2) << workers;
    EXPECT_NE(r.err.find("--queue-workers"), std::string::npos) << r.err;
  }
  for (const char* transformers : {"1", "5"}) {
    r = test::run_cli({"demo", "--transformers", transformers});
    EXPECT_EQ(r.code, 2) << transformers;
    EXPECT_NE(r.err.find("--transformers"), std::string::npos) << r.err;
  }
}

TEST(CliDemo, ThePipelineActRunsWithMoreTransformersAndAgainOnTheSameBus) {
  test::TempDir dir;
  const std::vector<std::string> args{"demo", "--records", "2000", "--jobs", "0", "--pipeline-records", "200",
                                      "--transformers", "3"};
  for (int run = 0; run < 2; ++run) {
    SCOPED_TRACE("run " + std::to_string(run));
    test::CliResult r = test::run_cli_in(dir.sub("bus"), args, test::with_timeout_ms(60'000));
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("-> 3 transformer processes -> out"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("transformer 2 SIGKILLed mid-transaction"), std::string::npos) << r.out;
    // The identity outlives a run: its epochs go on, its counters are this run's.
    EXPECT_NE(r.out.find(run == 0 ? "epoch 2 fences epoch 1" : "epoch 4 fences epoch 3"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("800 inputs, 800 outputs read committed: 0 duplicates, 0 missing"), std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find(", 1 by another process (the killed one's)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("all checks passed"), std::string::npos) << r.out;
  }
}

}  // namespace
}  // namespace sluice
