// Bad command lines: each must fail with exactly one `sluice: ...` line on
// stderr and the documented exit code, before touching the file system.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "cli_runner.h"
#include "support/test_support.h"

namespace sluice {
namespace {

using test::CliResult;
using test::expect_one_error_line;
using test::kExitError;
using test::kExitUsage;
using test::run_cli;
using test::run_cli_in;

TEST(CliUsage, HelpExitsZeroAndListsSubcommands) {
  CliResult r = run_cli({"--help"});
  EXPECT_EQ(r.code, 0);
  for (const char* sub :
       {"init", "topic", "produce", "consume", "group", "queue", "dlq", "processed", "txn", "verify", "dump", "bench", "demo"})
    EXPECT_NE(r.out.find(sub), std::string::npos) << sub;
  EXPECT_EQ(r.out.find("demo-worker"), std::string::npos) << "internal subcommand must stay hidden";
  EXPECT_TRUE(r.err.empty());
}

TEST(CliUsage, EverySubcommandHasHelp) {
  for (auto args : std::vector<std::vector<std::string>>{{"init", "--help"},
                                                         {"topic", "create", "--help"},
                                                         {"topic", "describe", "--help"},
                                                         {"produce", "--help"},
                                                         {"consume", "--help"},
                                                         {"group", "seek", "--help"},
                                                         {"verify", "--help"},
                                                         {"dump", "--help"},
                                                         {"demo", "--help"}}) {
    CliResult r = run_cli(args);
    EXPECT_EQ(r.code, 0) << args[0];
    EXPECT_NE(r.out.find("Usage:"), std::string::npos) << args[0];
  }
}

TEST(CliUsage, UnknownSubcommandIsAUsageError) {
  CliResult r = run_cli({"frobnicate"});
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "unknown subcommand 'frobnicate'");
}

TEST(CliUsage, MissingSubcommandIsAUsageError) {
  EXPECT_EQ(run_cli({}).code, kExitUsage);
  CliResult r = run_cli({"topic"});
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "topic");
}

TEST(CliUsage, MissingRequiredOptionIsAUsageError) {
  test::TempDir dir;
  CliResult r = run_cli_in(dir.path(), {"topic", "create", "orders"});
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "--partitions");
  r = run_cli_in(dir.path(), {"consume", "orders"});
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "--group");
}

TEST(CliUsage, BadNumbersAreRefused) {
  test::TempDir dir;
  ASSERT_EQ(run_cli_in(dir.path(), {"init"}).code, 0);
  for (const char* p : {"-1", "abc", "0", "99999999999"}) {
    CliResult r = run_cli_in(dir.path(), {"topic", "create", "t", "--partitions", p});
    EXPECT_NE(r.code, 0) << p;
    expect_one_error_line(r, "partitions");
  }
  CliResult r = run_cli_in(dir.path(), {"topic", "create", "t", "-p", "1", "--segment-bytes", "12parsecs"});
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "--segment-bytes");
  EXPECT_FALSE(std::filesystem::exists(dir.sub("topics/t")));
}

TEST(CliUsage, NoDirAndNoEnvironmentIsAnError) {
  CliResult r = run_cli({"topic", "list"});
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "SLUICE_DIR");
}

TEST(CliUsage, DirComesFromTheEnvironment) {
  test::TempDir dir;
  test::CliOptions env;
  env.sluice_dir_env = dir.path();
  ASSERT_EQ(run_cli({"init"}, env).code, 0);
  ASSERT_EQ(run_cli({"topic", "create", "from-env", "--partitions", "2"}, env).code, 0);
  CliResult r = run_cli({"topic", "list"}, env);
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "from-env\n");
}

TEST(CliUsage, DirMayFollowTheSubcommand) {
  test::TempDir dir;
  ASSERT_EQ(run_cli({"init", "--dir", dir.path()}).code, 0);
  EXPECT_EQ(run_cli({"topic", "list", "--dir", dir.path()}).code, 0);
}

TEST(CliUsage, DirWithoutABusIsNotCreated) {
  test::TempDir dir;
  CliResult r = run_cli_in(dir.sub("missing"), {"topic", "list"});
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "sluice init");
  EXPECT_FALSE(std::filesystem::exists(dir.sub("missing")));
}

TEST(CliUsage, InvalidNamesAreRefusedBeforeTouchingTheFileSystem) {
  test::TempDir dir;
  ASSERT_EQ(run_cli_in(dir.path(), {"init"}).code, 0);
  const std::string too_long(201, 'a');
  for (const std::string& name : {std::string("a/b"), std::string(".."), std::string(""), too_long,
                                  std::string("../escape"), std::string("sp ace")}) {
    CliResult r = run_cli_in(dir.path(), {"topic", "create", name, "--partitions", "1"});
    EXPECT_EQ(r.code, kExitError) << name;
    expect_one_error_line(r, "invalid name");
    r = run_cli_in(dir.path(), {"consume", "ok-topic", "--group", name});
    EXPECT_EQ(r.code, kExitError) << name;
    expect_one_error_line(r, "group name");
    r = run_cli_in(dir.path(), {"group", "describe", name});
    EXPECT_EQ(r.code, kExitError) << name;
    expect_one_error_line(r, "invalid name");
  }
  // Nothing was created anywhere: not in topics/, not beside the bus.
  EXPECT_TRUE(std::filesystem::is_empty(dir.sub("topics")));
  EXPECT_TRUE(std::filesystem::is_empty(dir.sub("groups")));
  EXPECT_FALSE(std::filesystem::exists(dir.sub("escape")));
  // Without a bus the name is still what is reported.
  CliResult r = run_cli_in(dir.sub("nobus"), {"topic", "create", "a/b", "--partitions", "1"});
  expect_one_error_line(r, "invalid name");
}

TEST(CliUsage, LongestValidNameIsAccepted) {
  test::TempDir dir;
  ASSERT_EQ(run_cli_in(dir.path(), {"init"}).code, 0);
  const std::string name(200, 'n');
  EXPECT_EQ(run_cli_in(dir.path(), {"topic", "create", name, "--partitions", "1"}).code, 0);
}

TEST(CliUsage, UnknownTopicIsAnError) {
  test::TempDir dir;
  ASSERT_EQ(run_cli_in(dir.path(), {"init"}).code, 0);
  for (auto args : std::vector<std::vector<std::string>>{{"topic", "describe", "nope"},
                                                         {"topic", "delete", "nope"},
                                                         {"consume", "nope", "--group", "g"},
                                                         {"dump", "nope", "--partition", "0"},
                                                         {"verify", "nope"},
                                                         {"group", "seek", "g", "nope", "--to", "beginning"}}) {
    CliResult r = run_cli_in(dir.path(), args);
    EXPECT_EQ(r.code, kExitError) << args[0];
    expect_one_error_line(r, "nope");
  }
  CliResult r = run_cli_in(dir.path(), {"produce", "nope"}, test::with_input("x\n"));
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "unknown topic nope");
}

TEST(CliUsage, UnknownGroupIsAnError) {
  test::TempDir dir;
  ASSERT_EQ(run_cli_in(dir.path(), {"init"}).code, 0);
  CliResult r = run_cli_in(dir.path(), {"group", "describe", "ghosts"});
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "ghosts");
}

TEST(CliUsage, BadSeekTargetIsAUsageError) {
  test::TempDir dir;
  ASSERT_EQ(run_cli_in(dir.path(), {"init"}).code, 0);
  ASSERT_EQ(run_cli_in(dir.path(), {"topic", "create", "t", "-p", "1"}).code, 0);
  for (const char* to : {"start", "offset:", "offset:-3", "time:soon"}) {
    CliResult r = run_cli_in(dir.path(), {"group", "seek", "g", "t", "--to", to});
    EXPECT_EQ(r.code, kExitUsage) << to;
    expect_one_error_line(r, "--to");
  }
  CliResult r = run_cli_in(dir.path(), {"consume", "t", "--group", "g", "--from", "yesterday"});
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "--from");
}

TEST(CliUsage, PartitionOutOfRangeIsRefused) {
  test::TempDir dir;
  ASSERT_EQ(run_cli_in(dir.path(), {"init"}).code, 0);
  ASSERT_EQ(run_cli_in(dir.path(), {"topic", "create", "t", "-p", "2"}).code, 0);
  CliResult r = run_cli_in(dir.path(), {"produce", "t", "--partition", "2"}, test::with_input("x\n"));
  EXPECT_NE(r.code, 0);
  expect_one_error_line(r, "partition");
  r = run_cli_in(dir.path(), {"group", "seek", "g", "t", "--to", "end", "--partition", "5"});
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "out of range");
}

TEST(CliUsage, DuplicateTopicIsAnError) {
  test::TempDir dir;
  ASSERT_EQ(run_cli_in(dir.path(), {"init"}).code, 0);
  ASSERT_EQ(run_cli_in(dir.path(), {"topic", "create", "t", "-p", "1"}).code, 0);
  CliResult r = run_cli_in(dir.path(), {"topic", "create", "t", "-p", "1"});
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "already exists");
}

}  // namespace
}  // namespace sluice
