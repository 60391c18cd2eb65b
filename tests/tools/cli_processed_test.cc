// `sluice processed ...`: creating, listing, showing and deleting processed-id
// stores; finding the in-doubt ids a killed runner left and settling them by
// id or by key; bad command lines. Runners are real child processes using
// the library (one exits inside fn, one holds its id while the CLI looks).
#include <gtest/gtest.h>
#include <sluice/sluice.h>
#include <unistd.h>

#include <sstream>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "json_reader.h"
#include "process/process_helpers.h"
#include "support/test_support.h"

namespace sluice {
namespace {

using test::CliResult;
using test::expect_one_error_line;
using test::kExitError;
using test::kExitUsage;
using test::Json;
using test::parse_json;
using test::run_cli_in;

// The whitespace-separated words of the lines of `text` whose first word is `first`.
std::vector<std::vector<std::string>> rows(const std::string& text, const std::string& first) {
  std::vector<std::vector<std::string>> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream in(line);
    std::vector<std::string> words;
    for (std::string w; in >> w;) words.push_back(w);
    if (!words.empty() && words[0] == first) out.push_back(words);
  }
  return out;
}

class CliProcessed : public test::CliBusTest {
 protected:
  // A child process runs process_once(id) and exits inside fn: the id is
  // left PENDING by a dead process, i.e. in doubt.
  void leave_in_doubt(const std::string& store, const std::string& id) {
    const pid_t pid = test::fork_child([&] {
      auto bus = Bus::open(dir_.path());
      if (!bus) return 10;
      auto s = bus->open_processed_store(store);
      if (!s) return 11;
      (void)s->process_once(id, [] { ::_exit(0); });
      return 12;
    });
    ASSERT_GT(pid, 0);
    ASSERT_EQ(test::wait_child(pid, 10'000), 0) << "the runner did not die inside fn";
  }

};

TEST_F(CliProcessed, StoresAreCreatedListedShownAndDeleted) {
  ok({"processed", "create", "charges", "--capacity", "64", "--window-ms", "60000"});
  ok({"processed", "create", "emails"});
  CliResult dup = cli({"processed", "create", "charges"});
  EXPECT_EQ(dup.code, kExitError);
  expect_one_error_line(dup, "already exists");

  CliResult l = ok({"processed", "list"});
  EXPECT_EQ(rows(l.out, "charges"), (std::vector<std::vector<std::string>>{{"charges", "64", "60000", "0", "0", "0"}}));
  EXPECT_EQ(rows(l.out, "emails"),
            (std::vector<std::vector<std::string>>{{"emails", "131072", "3600000", "0", "0", "0"}}));
  EXPECT_EQ(ok({"processed", "list", "--in-doubt"}).out_lines().size(), 1u) << "the title only";

  CliResult s = ok({"processed", "show", "charges", "--format", "json"});
  const Json j = parse_json(s.out);
  EXPECT_EQ(j["capacity"].u64(), 64u);
  EXPECT_EQ(j["window_ms"].u64(), 60000u);
  EXPECT_EQ(j["ids"].items.size(), 0u);

  ok({"processed", "delete", "charges"});
  EXPECT_TRUE(rows(ok({"processed", "list"}).out, "charges").empty());
  CliResult gone = cli({"processed", "show", "charges"});
  EXPECT_EQ(gone.code, kExitError);
  expect_one_error_line(gone, "unknown processed store charges");
  EXPECT_EQ(cli({"processed", "delete", "charges"}).code, kExitError);
}

TEST_F(CliProcessed, AnInDoubtIdIsShownAndSettledByMarkDone) {
  ok({"processed", "create", "charges"});
  leave_in_doubt("charges", "order-17");
  {
    auto bus = Bus::open(dir_.path());
    ASSERT_TRUE(bus);
    auto s = bus->open_processed_store("charges");
    ASSERT_TRUE(s);
    ASSERT_EQ(*s->process_once("order-18", [] {}), ProcessOutcome::kRan);
  }
  CliResult l = ok({"processed", "list", "--in-doubt"});
  EXPECT_EQ(rows(l.out, "charges"), (std::vector<std::vector<std::string>>{{"charges", "131072", "3600000", "1", "0", "1"}}));

  CliResult show = ok({"processed", "show", "charges"});
  auto in_doubt = rows(show.out, "in-doubt");
  ASSERT_EQ(in_doubt.size(), 1u) << show.out;
  EXPECT_EQ(in_doubt[0].back(), "order-17");
  EXPECT_TRUE(rows(show.out, "done").empty()) << "done ids only with --all";
  EXPECT_EQ(rows(ok({"processed", "show", "charges", "--all"}).out, "done").size(), 1u);

  ok({"processed", "mark-done", "charges", "order-17"});
  EXPECT_TRUE(rows(ok({"processed", "show", "charges"}).out, "in-doubt").empty());
  const Json j = parse_json(ok({"processed", "show", "charges", "--all", "--format", "json"}).out);
  EXPECT_EQ(j["done"].u64(), 2u);
  EXPECT_EQ(j["in_doubt"].u64(), 0u);
  ASSERT_EQ(j["ids"].items.size(), 2u);

  auto bus = Bus::open(dir_.path());
  ASSERT_TRUE(bus);
  auto s = bus->open_processed_store("charges");
  ASSERT_TRUE(s);
  EXPECT_EQ(*s->process_once("order-17", [] { ADD_FAILURE() << "marked done: must not run"; }),
            ProcessOutcome::kAlreadyDone);
}

TEST_F(CliProcessed, ALongInDoubtIdIsForgottenByItsKey) {
  ok({"processed", "create", "charges"});
  const std::string id = "payment:" + std::string(80, '7');
  leave_in_doubt("charges", id);
  const Json j = parse_json(ok({"processed", "show", "charges", "--in-doubt", "--format", "json"}).out);
  ASSERT_EQ(j["ids"].items.size(), 1u);
  const Json& e = j["ids"].items[0];
  EXPECT_EQ(e["state"].text, "in-doubt");
  EXPECT_EQ(e["id"].text, id.substr(0, 46));
  EXPECT_EQ(e["id_bytes"].u64(), id.size());
  EXPECT_FALSE(e["id_complete"].boolean);
  CliResult text = ok({"processed", "show", "charges"});
  EXPECT_NE(text.out.find(id.substr(0, 46) + "...(88 bytes)"), std::string::npos) << text.out;

  ok({"processed", "forget", "charges", "--key", e["key"].text});
  EXPECT_TRUE(parse_json(ok({"processed", "show", "charges", "--format", "json"}).out)["ids"].items.empty());
  CliResult again = cli({"processed", "forget", "charges", "--key", e["key"].text});
  EXPECT_EQ(again.code, kExitError);
  expect_one_error_line(again, "nothing to forget");
}

TEST_F(CliProcessed, AnIdPendingInALiveProcessIsNotSettledByHand) {
  ok({"processed", "create", "charges"});
  test::Children children;
  test::Pipe inside, release;
  const pid_t child = children.spawn([&] {
    auto bus = Bus::open(dir_.path());
    if (!bus) return 10;
    auto s = bus->open_processed_store("charges");
    if (!s) return 11;
    auto r = s->process_once("order-1", [&] {
      const char byte = 'x';
      (void)test::write_all(inside.write_end(), &byte, 1);
      char go;
      (void)test::read_exact(release.read_end(), &go, 1, 20'000);
    });
    return r && *r == ProcessOutcome::kRan ? 0 : 12;
  });
  ASSERT_GT(child, 0);
  char byte = 0;
  ASSERT_TRUE(test::read_exact(inside.read_end(), &byte, 1, 10'000));
  EXPECT_EQ(rows(ok({"processed", "show", "charges"}).out, "pending").size(), 1u);
  for (const char* verb : {"mark-done", "forget"}) {
    CliResult r = cli({"processed", verb, "charges", "order-1"});
    EXPECT_EQ(r.code, kExitError) << verb;
    expect_one_error_line(r, "pending in a live process");
  }
  ASSERT_TRUE(test::write_all(release.write_end(), &byte, 1));
  EXPECT_EQ(children.wait(child, 10'000), 0);
  EXPECT_EQ(rows(ok({"processed", "show", "charges", "--all"}).out, "done").size(), 1u);
}

TEST_F(CliProcessed, BadCommandLinesAreRefused) {
  ok({"processed", "create", "charges"});
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string needle;
  };
  for (const Case& c : std::vector<Case>{
           {{"processed"}, kExitUsage, "a subcommand is required"},
           {{"processed", "mark-done", "charges"}, kExitUsage, "give an ID or --key"},
           {{"processed", "forget", "charges", "--key", "12ab"}, kExitUsage, "not 32 hex digits"},
           {{"processed", "create", "x", "--capacity", "12"}, kExitUsage, "multiple of 8"},
           {{"processed", "create", "x", "--window-ms", "0"}, kExitUsage, "--window-ms"},
           {{"processed", "show", "charges", "--format", "xml"}, kExitUsage, "--format"},
           {{"processed", "show", "charges", "--in-doubt", "--all"}, kExitUsage, "excludes"},
           {{"processed", "show", "bad/name"}, kExitError, "processed store name"},
           {{"processed", "show", "nope"}, kExitError, "unknown processed store nope"},
           {{"processed", "mark-done", "nope", "id"}, kExitError, "unknown processed store nope"},
       }) {
    CliResult r = cli(c.args);
    EXPECT_EQ(r.code, c.code) << c.args.back() << ": " << r.err;
    expect_one_error_line(r, c.needle);
  }
  for (const char* sub : {"create", "list", "show", "mark-done", "forget", "delete"}) {
    CliResult r = cli({"processed", sub, "--help"});
    EXPECT_EQ(r.code, 0) << sub;
    EXPECT_NE(r.out.find("Usage:"), std::string::npos) << sub;
  }
}

}  // namespace
}  // namespace sluice
