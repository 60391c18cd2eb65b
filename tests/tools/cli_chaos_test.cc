// `sluice chaos`: a short run of each mode prints every invariant and exits
// 0; bad command lines are one-line usage errors; a directory holding
// something is refused before anything runs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "cli_runner.h"
#include "support/test_support.h"

namespace sluice {
namespace {

using test::CliResult;
using test::run_cli;
using test::expect_one_error_line;
using test::run_cli_in;

TEST(CliChaos, AShortExactlyOnceRunPrintsEveryInvariantAndExitsZero) {
  test::TempDir dir;
  CliResult r = run_cli_in(dir.sub("bus"), {"chaos", "--seconds", "1.5", "--seed", "7"}, test::with_timeout_ms(90'000));
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("sluice chaos: exactly-once, seed 7, 1.5 s"), std::string::npos) << r.out;
  for (const char* invariant : {"input log", "one output per input", "per-key order", "dense sequences", "queue outq",
                                "queue outq order", "group offsets", "nothing undecided", "verify", "tails",
                                "supervisor"}) {
    std::string line;
    for (const std::string& l : r.out_lines())
      if (l.rfind("  " + std::string(invariant) + " ", 0) == 0) line = l;
    EXPECT_NE(line.find(" OK: "), std::string::npos) << invariant << "\n" << r.out;
  }
  EXPECT_EQ(r.out.find("FAILED"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("all 11 invariants hold (exactly-once)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" 0 duplicates, 0 lost"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("inputs: 0 duplicates, 0 lost; "), std::string::npos) << "the outq summary\n" << r.out;
  EXPECT_TRUE(std::filesystem::exists(dir.sub("bus/topics/in"))) << "a given --dir is kept";
}

// 3 s: the input producer says "ready" before its first send, and in a
// clean-clone CI run under ASan (5e6983a) one killed right after it was
// still restarting when a 1.2 s run ended, with no input at all.
TEST(CliChaos, AtLeastOnceLosesNothingAndUsesATemporaryBus) {
  CliResult r = run_cli({"chaos", "--minutes", "0.05", "--mode", "at-least-once"}, test::with_timeout_ms(90'000));
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("all 8 invariants hold (at-least-once)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no input lost          OK"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("queue outq             OK"), std::string::npos) << r.out;
  const size_t at = r.out.find(", bus ");
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string bus = r.out.substr(at + 6, r.out.find('\n', at) - at - 6);
  EXPECT_FALSE(std::filesystem::exists(bus)) << bus << " is removed after a run that passed";
}

TEST(CliChaos, BadArgumentsAreUsageErrors) {
  for (const auto& args : std::vector<std::vector<std::string>>{{"chaos"},
                                                                {"chaos", "--minutes", "1", "--seconds", "5"},
                                                                {"chaos", "--seconds", "0"},
                                                                {"chaos", "--minutes", "-1"}}) {
    CliResult r = run_cli(args);
    EXPECT_EQ(r.code, test::kExitUsage) << args.size();
    expect_one_error_line(r, "chaos");
  }
  CliResult r = run_cli({"chaos", "--seconds", "1", "--mode", "sometimes"});
  EXPECT_EQ(r.code, test::kExitUsage);
  expect_one_error_line(r, "--mode");
  r = run_cli({"chaos", "--seconds", "1", "--rate", "0"});
  EXPECT_EQ(r.code, test::kExitUsage);
  expect_one_error_line(r, "--rate");
}

TEST(CliChaos, RefusesADirectoryThatHoldsSomething) {
  test::TempDir dir;
  std::ofstream(dir.sub("precious")) << "data";
  CliResult r = run_cli_in(dir.path(), {"chaos", "--seconds", "1"});
  EXPECT_EQ(r.code, test::kExitError);
  expect_one_error_line(r, "not empty");
  EXPECT_TRUE(std::filesystem::exists(dir.sub("precious")));
  EXPECT_FALSE(std::filesystem::exists(dir.sub("topics")));
}

TEST(CliChaos, HasHelpAndItsWorkerSubcommandStaysHidden) {
  CliResult r = run_cli({"chaos", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("--minutes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--mode"), std::string::npos) << r.out;
  r = run_cli({"--help"});
  EXPECT_NE(r.out.find("chaos"), std::string::npos);
  EXPECT_EQ(r.out.find("chaos-worker"), std::string::npos) << "internal subcommand must stay hidden";
}

}  // namespace
}  // namespace sluice
