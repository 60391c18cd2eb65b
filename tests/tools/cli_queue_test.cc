// `sluice queue ...`: create, publish, receive (ack, nack, dead-letter),
// stats and bad input through the command line. Every receive returns on its
// own (a bounded --wait-ms); waiting for a retry polls up to a deadline.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <sstream>
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
using test::run_cli;
using test::run_cli_in;

using test::header;
using test::Json;
using test::parse_json;

using test::row;

// ---- the fixture ------------------------------------------------------------

class CliQueue : public test::CliBusTest {
 protected:
  void create(std::vector<std::string> args) {
    args.insert(args.begin(), {"queue", "create"});
    CliResult r = cli(args);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  void publish(const std::string& queue, const std::string& lines, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"queue", "publish", queue};
    args.insert(args.end(), extra.begin(), extra.end());
    CliResult r = cli(args, lines);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  // Receives without waiting (unless `extra` says otherwise); checks success.
  CliResult receive(const std::string& queue, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"queue", "receive", queue};
    args.insert(args.end(), extra.begin(), extra.end());
    CliResult r = cli(args);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(r.err.empty()) << r.err;
    return r;
  }
  Json stats(const std::string& queue) {
    CliResult r = cli({"queue", "stats", queue, "--format", "json"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out_lines().size(), 1u) << "one line of JSON: " << r.out;
    return parse_json(r.out);
  }
};

TEST_F(CliQueue, PublishedLinesAreReceivedInOrderAndAckedOnce) {
  create({"jobs"});
  CliResult l = cli({"queue", "list"});
  ASSERT_EQ(l.code, 0);
  EXPECT_EQ(l.out, "jobs\n");
  EXPECT_EQ(cli({"topic", "list"}).out, "") << "queues and topics are separate namespaces";

  publish("jobs", "a\nb\nc\n");
  EXPECT_EQ(receive("jobs", {"--max", "10"}).out, "a\nb\nc\n");
  EXPECT_EQ(receive("jobs", {"--max", "10"}).out, "") << "the first receive acked them";

  const Json s = stats("jobs");
  EXPECT_EQ(s["total"]["published"].u64(), 3u);
  EXPECT_EQ(s["total"]["received"].u64(), 3u);
  EXPECT_EQ(s["total"]["acked"].u64(), 3u);
  EXPECT_EQ(s["total"]["settled_below"].u64(), 3u);
  EXPECT_EQ(s["total"]["depth"].u64(), 0u);
  EXPECT_EQ(s["total"]["in_flight"].u64(), 0u) << "receive settles everything it printed";
}

TEST_F(CliQueue, MaxTakesThatManyAndTheRestStays) {
  create({"jobs"});
  publish("jobs", "1\n2\n3\n4\n5\n");
  EXPECT_EQ(receive("jobs").out, "1\n") << "one message by default";
  EXPECT_EQ(receive("jobs", {"--max", "2"}).out, "2\n3\n");
  EXPECT_EQ(receive("jobs", {"-n", "10"}).out, "4\n5\n");
  EXPECT_EQ(receive("jobs", {"-n", "10"}).out, "");
}

TEST_F(CliQueue, JsonCarriesPriorityOffsetAttemptTimestampAndHeaders) {
  create({"jobs"});
  publish("jobs", "with \"quotes\" and \\\nplain\n", {"--header", "trace=abc", "-H", "kind=test"});
  CliResult r = receive("jobs", {"--max", "2", "--format", "json"});
  const auto lines = r.out_lines();
  ASSERT_EQ(lines.size(), 2u) << r.out;
  for (size_t i = 0; i < lines.size(); ++i) {
    const Json m = parse_json(lines[i]);
    EXPECT_EQ(m["priority"].u64(), 0u);
    EXPECT_EQ(m["offset"].u64(), i);
    EXPECT_EQ(m["attempt"].u64(), 1u);
    EXPECT_GT(m["timestamp"].u64(), 1'000'000'000'000'000'000ull) << "nanoseconds since the epoch";
    ASSERT_EQ(m["headers"].items.size(), 2u) << lines[i];
    EXPECT_EQ(m["headers"].items[0]["name"].text, "trace");
    EXPECT_EQ(m["headers"].items[0]["value"].text, "abc");
    EXPECT_EQ(header(m, "kind"), "test");
  }
  EXPECT_EQ(parse_json(lines[0])["value"].text, "with \"quotes\" and \\");
  EXPECT_EQ(parse_json(lines[1])["value"].text, "plain");
}

TEST_F(CliQueue, HigherPrioritiesAreReceivedFirst) {
  create({"jobs", "--priorities", "3"});
  publish("jobs", "low-1\nlow-2\n", {"--priority", "0"});
  publish("jobs", "mid\n", {"--priority", "1"});
  publish("jobs", "high\n", {"--priority", "2"});
  EXPECT_EQ(receive("jobs", {"--max", "2"}).out, "high\nmid\n");
  CliResult r = receive("jobs", {"--max", "5", "--format", "json"});
  const auto lines = r.out_lines();
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_EQ(parse_json(lines[0])["value"].text, "low-1");
  EXPECT_EQ(parse_json(lines[1])["priority"].u64(), 0u);
  const Json s = stats("jobs");
  EXPECT_EQ(s["priorities"].u64(), 3u);
  ASSERT_EQ(s["levels"].items.size(), 3u);
  for (uint64_t p = 0; p < 3; ++p) EXPECT_EQ(s["levels"].items[p]["priority"].u64(), p);
  EXPECT_EQ(s["levels"].items[0]["published"].u64(), 2u);
  EXPECT_EQ(s["levels"].items[1]["published"].u64(), 1u);
  EXPECT_EQ(s["levels"].items[2]["acked"].u64(), 1u);
  EXPECT_EQ(s["total"]["acked"].u64(), 4u);
}

TEST_F(CliQueue, ANackedMessageComesBackAfterTheBackoff) {
  create({"jobs", "--base-delay-ms", "100", "--jitter-ms", "0", "--max-receives", "5"});
  publish("jobs", "x\n");
  EXPECT_EQ(receive("jobs", {"--nack"}).out, "x\n") << "a nacked message is still printed";
  // No receive has run since: the retry is still scheduled, whatever the time.
  Json s = stats("jobs");
  EXPECT_EQ(s["total"]["nacked"].u64(), 1u);
  EXPECT_EQ(s["total"]["acked"].u64(), 0u);
  EXPECT_EQ(s["total"]["delayed"].u64(), 1u);
  EXPECT_EQ(s["total"]["in_flight"].u64(), 0u);
  EXPECT_EQ(s["total"]["depth"].u64(), 1u);

  // It comes back once its 100 ms are up: poll with a bounded wait.
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (line.empty() && std::chrono::steady_clock::now() < deadline)
    line = receive("jobs", {"--wait-ms", "500", "--format", "json"}).out;
  ASSERT_FALSE(line.empty()) << "the nacked message never came back";
  const Json m = parse_json(line);
  EXPECT_EQ(m["value"].text, "x");
  EXPECT_EQ(m["attempt"].u64(), 2u);
  s = stats("jobs");
  EXPECT_EQ(s["total"]["received"].u64(), 2u);
  EXPECT_EQ(s["total"]["acked"].u64(), 1u);
  EXPECT_EQ(s["total"]["nacked"].u64(), 1u);
  EXPECT_EQ(s["total"]["depth"].u64(), 0u);
}

TEST_F(CliQueue, RejectAsDeadLettersWithTheErrorType) {
  create({"orders"});
  publish("orders", "bad\n", {"-H", "trace=t1"});
  EXPECT_EQ(receive("orders", {"--reject-as", "Bad"}).out, "bad\n");
  const Json s = stats("orders");
  EXPECT_EQ(s["dead_letter_queue"].text, "orders.dlq");
  EXPECT_EQ(s["total"]["dead_lettered"].u64(), 1u);
  EXPECT_EQ(s["total"]["depth"].u64(), 0u);
  EXPECT_EQ(receive("orders", {"--max", "10"}).out, "");

  EXPECT_EQ(cli({"queue", "list"}).out, "orders\norders.dlq\n") << "the dead-letter queue is made on first use";
  CliResult r = receive("orders.dlq", {"--format", "json"});
  ASSERT_EQ(r.out_lines().size(), 1u) << r.out;
  const Json dead = parse_json(r.out);
  EXPECT_EQ(dead["value"].text, "bad");
  EXPECT_EQ(header(dead, "sluice.dlq.error_type"), "Bad");
  EXPECT_EQ(header(dead, "sluice.dlq.source"), "queue:orders");
  EXPECT_EQ(header(dead, "sluice.dlq.source_offset"), "0");
  EXPECT_EQ(header(dead, "sluice.dlq.attempts"), "1");
  EXPECT_EQ(header(dead, "trace"), "t1") << "the original headers travel along";
  EXPECT_EQ(stats("orders.dlq")["dead_letter_queue"].kind, Json::Kind::kNull) << "a DLQ has no DLQ of its own";
}

TEST_F(CliQueue, ADroppingQueueCountsItsDeadLettersAndMakesNoDlq) {
  create({"jobs", "--dead-letter-queue", "-"});
  publish("jobs", "x\n");
  EXPECT_EQ(receive("jobs", {"--reject-as", "Whatever"}).out, "x\n");
  const Json s = stats("jobs");
  EXPECT_EQ(s["dead_letter_queue"].kind, Json::Kind::kNull);
  EXPECT_EQ(s["total"]["dead_lettered"].u64(), 1u);
  EXPECT_EQ(cli({"queue", "list"}).out, "jobs\n");
}

TEST_F(CliQueue, MaxReceivesDeadLettersOnTheLastNack) {
  create({"jobs", "--max-receives", "1", "--dead-letter-queue", "parked"});
  publish("jobs", "x\n");
  EXPECT_EQ(receive("jobs", {"--nack"}).out, "x\n");
  const Json s = stats("jobs");
  EXPECT_EQ(s["total"]["dead_lettered"].u64(), 1u);
  EXPECT_EQ(s["total"]["depth"].u64(), 0u);
  CliResult r = receive("parked", {"--format", "json"});
  EXPECT_EQ(header(parse_json(r.out), "sluice.dlq.error_type"), "MaxReceivesExceeded");
}

TEST_F(CliQueue, ADelayedMessageWaitsInItsSlot) {
  create({"jobs"});
  publish("jobs", "later\n", {"--delay-ms", "600000"});
  publish("jobs", "now\n");
  EXPECT_EQ(receive("jobs", {"--max", "10"}).out, "now\n");
  const Json s = stats("jobs");
  EXPECT_EQ(s["total"]["delayed"].u64(), 1u);
  EXPECT_EQ(s["total"]["acked"].u64(), 1u);
  // Depth is published minus the ack floor, and the floor waits for the
  // delayed message at offset 0.
  EXPECT_EQ(s["total"]["settled_below"].u64(), 0u);
  EXPECT_EQ(s["total"]["depth"].u64(), 2u);
}

TEST_F(CliQueue, StatsJsonAndTextAgree) {
  create({"jobs", "--priorities", "2"});
  publish("jobs", "a\nb\nc\n");
  EXPECT_EQ(receive("jobs").out, "a\n");

  const Json s = stats("jobs");
  ASSERT_EQ(s.kind, Json::Kind::kObject);
  EXPECT_EQ(s["queue"].text, "jobs");
  EXPECT_EQ(s["priorities"].u64(), 2u);
  EXPECT_EQ(s["dead_letter_queue"].text, "jobs.dlq");
  for (const char* f : {"published", "settled_below", "depth", "in_flight", "ready", "delayed", "received", "acked",
                        "nacked", "dead_lettered", "redelivered", "owner_deaths", "lease_lost",
                        "oldest_unsettled_age_ms"}) {
    EXPECT_EQ(s["total"][f].kind, Json::Kind::kNumber) << f;
    for (const Json& level : s["levels"].items) EXPECT_EQ(level[f].kind, Json::Kind::kNumber) << f;
  }
  const Json& t = s["total"];
  EXPECT_EQ(t["published"].u64(), 3u);
  EXPECT_EQ(t["settled_below"].u64(), 1u);
  EXPECT_EQ(t["depth"].u64(), 2u);
  EXPECT_EQ(t["received"].u64(), 1u);
  EXPECT_EQ(t["acked"].u64(), 1u);
  EXPECT_EQ(t["nacked"].u64(), 0u);
  EXPECT_EQ(t["in_flight"].u64(), 0u);
  EXPECT_EQ(s["levels"].items[0]["published"].u64(), 3u);
  EXPECT_EQ(s["levels"].items[1]["published"].u64(), 0u);

  CliResult text = cli({"queue", "stats", "jobs"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("dead-letter queue jobs.dlq"), std::string::npos) << text.out;
  EXPECT_EQ(row(text.out, "published"), (std::vector<std::string>{"published", "3", "0", "3"})) << text.out;
  EXPECT_EQ(row(text.out, "depth"), (std::vector<std::string>{"depth", "2", "0", "2"})) << text.out;
  EXPECT_EQ(row(text.out, "settled_below"), (std::vector<std::string>{"settled_below", "1", "0", "1"}));
  EXPECT_EQ(row(text.out, "oldest_unsettled_age_ms").size(), 4u) << text.out;
  CliResult describe = cli({"queue", "describe", "jobs"});
  ASSERT_EQ(describe.code, 0);
  EXPECT_EQ(row(describe.out, "published"), row(text.out, "published"));
  EXPECT_EQ(row(describe.out, "acked"), row(text.out, "acked"));
}

TEST_F(CliQueue, DeleteRemovesTheQueue) {
  create({"jobs"});
  publish("jobs", "x\n");
  CliResult d = cli({"queue", "delete", "jobs"});
  ASSERT_EQ(d.code, 0) << d.err;
  EXPECT_EQ(cli({"queue", "list"}).out, "");
  CliResult r = cli({"queue", "receive", "jobs"});
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "unknown queue jobs");
  create({"jobs"});  // the name is free again, and the queue empty
  EXPECT_EQ(receive("jobs").out, "");
}

TEST_F(CliQueue, UnknownQueueIsAnError) {
  for (auto args : std::vector<std::vector<std::string>>{{"queue", "stats", "nope"},
                                                         {"queue", "describe", "nope"},
                                                         {"queue", "receive", "nope"},
                                                         {"queue", "delete", "nope"}}) {
    CliResult r = cli(args);
    EXPECT_EQ(r.code, kExitError) << args[1];
    expect_one_error_line(r, "unknown queue nope");
    EXPECT_TRUE(r.out.empty());
  }
  CliResult r = cli({"queue", "publish", "nope"}, "x\n");
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "unknown queue nope");
}

TEST_F(CliQueue, InvalidNamesAreRefusedBeforeTouchingTheFileSystem) {
  for (const std::string& name : {std::string("a/b"), std::string(".."), std::string("sp ace")}) {
    for (auto args : std::vector<std::vector<std::string>>{{"queue", "create", name},
                                                           {"queue", "stats", name},
                                                           {"queue", "receive", name},
                                                           {"queue", "delete", name},
                                                           {"queue", "create", "ok", "--dead-letter-queue", name}}) {
      CliResult r = cli(args);
      EXPECT_EQ(r.code, kExitError) << args[1] << " " << name;
      expect_one_error_line(r, "invalid name");
    }
    CliResult r = cli({"queue", "publish", name}, "x\n");
    EXPECT_EQ(r.code, kExitError);
    expect_one_error_line(r, "invalid name");
  }
  EXPECT_EQ(cli({"queue", "list"}).out, "");
  EXPECT_FALSE(std::filesystem::exists(dir_.sub("queues/a")));
  EXPECT_FALSE(std::filesystem::exists(dir_.sub("queues/ok")));
}

TEST_F(CliQueue, BadCreateOptionsAreUsageErrors) {
  for (auto [option, value] : std::vector<std::pair<std::string, std::string>>{{"--priorities", "0"},
                                                                               {"--priorities", "11"},
                                                                               {"--priorities", "-1"},
                                                                               {"--window", "1000"},
                                                                               {"--window", "32"},
                                                                               {"--lease-ms", "0"},
                                                                               {"--max-receives", "0"},
                                                                               {"--max-receives", "256"},
                                                                               {"--base-delay-ms", "soon"},
                                                                               {"--max-delay-ms", "99999999999"},
                                                                               {"--multiplier", "0.5"},
                                                                               {"--multiplier", "nan"},
                                                                               {"--segment-bytes", "12parsecs"},
                                                                               {"--max-depth-bytes", "0"}}) {
    CliResult r = cli({"queue", "create", "q", option, value});
    EXPECT_EQ(r.code, kExitUsage) << option << " " << value;
    expect_one_error_line(r, option);
  }
  CliResult r = cli({"queue", "create", "q", "--dead-letter-queue", "q"});
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "its own dead-letter queue");
  EXPECT_EQ(cli({"queue", "list"}).out, "") << "nothing was created";

  create({"q", "--priorities", "10", "--window", "64", "--lease-ms", "5000", "--max-receives", "255",
          "--base-delay-ms", "0", "--multiplier", "1.5", "--max-delay-ms", "60000", "--jitter-ms", "0",
          "--segment-bytes", "1MiB", "--max-depth-bytes", "4MiB"});
  r = cli({"queue", "create", "q"});
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "already exists");
}

TEST_F(CliQueue, BadPublishAndReceiveOptionsAreUsageErrors) {
  create({"jobs", "--priorities", "2"});
  for (const char* p : {"2", "10", "-1", "x"}) {
    CliResult r = cli({"queue", "publish", "jobs", "--priority", p}, "x\n");
    EXPECT_EQ(r.code, kExitUsage) << p;
    expect_one_error_line(r, "--priority");
  }
  // Refused even with nothing to publish.
  CliResult r = cli({"queue", "publish", "jobs", "--priority", "2"});
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "priorities 0-1");
  r = cli({"queue", "publish", "jobs", "--delay-ms", "9999999999"}, "x\n");
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "--delay-ms");
  r = cli({"queue", "publish", "jobs", "-H", "novalue"}, "x\n");
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "--header");
  r = cli({"queue", "publish", "jobs", "-H", "sluice.not_before=1"}, "x\n");
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "reserved");
  EXPECT_EQ(stats("jobs")["total"]["published"].u64(), 0u) << "nothing was published";

  publish("jobs", "x\n");
  for (auto args : std::vector<std::vector<std::string>>{{"--max", "0"},
                                                         {"--max", "many"},
                                                         {"--wait-ms", "-5"},
                                                         {"--format", "yaml"},
                                                         {"--nack", "--reject-as", "Bad"},
                                                         {"--reject-as", ""}}) {
    args.insert(args.begin(), {"queue", "receive", "jobs"});
    r = cli(args);
    EXPECT_EQ(r.code, kExitUsage) << args[3];
    expect_one_error_line(r, args[3] == "--nack" ? "--reject-as" : args[3]);
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  r = cli({"queue", "stats", "jobs", "--format", "yaml"});
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "--format");
  EXPECT_EQ(stats("jobs")["total"]["received"].u64(), 0u) << "no bad receive took the message";
  EXPECT_EQ(receive("jobs").out, "x\n");
}

// ---- receipts: receive --no-ack, then ack|nack|reject by receipt ----------------

// "receipt\tvalue" lines of a --no-ack receive, split.
std::vector<std::pair<std::string, std::string>> receipts_of(const CliResult& r) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const std::string& line : r.out_lines()) {
    const size_t tab = line.find('\t');
    EXPECT_NE(tab, std::string::npos) << line;
    if (tab != std::string::npos) out.emplace_back(line.substr(0, tab), line.substr(tab + 1));
  }
  return out;
}

TEST_F(CliQueue, NoAckPrintsReceiptsAndLeavesTheLeasesForALaterAck) {
  create({"jobs", "--base-delay-ms", "0", "--jitter-ms", "0"});
  publish("jobs", "a\nb\nc\n");
  const auto got = receipts_of(receive("jobs", {"--no-ack", "--max", "2"}));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].second, "a");
  EXPECT_EQ(got[1].second, "b");
  EXPECT_EQ(got[0].first.rfind("0:0:", 0), 0u) << "priority:offset:lease " << got[0].first;
  EXPECT_EQ(got[1].first.rfind("0:1:", 0), 0u) << got[1].first;
  Json s = stats("jobs");
  EXPECT_EQ(s["total"]["in_flight"].u64(), 2u) << "the leases outlived the receiving process";
  EXPECT_EQ(s["total"]["acked"].u64(), 0u);
  EXPECT_EQ(receive("jobs", {"--max", "10"}).out, "c\n") << "leased messages are not offered to others";

  CliResult ack = cli({"queue", "ack", "jobs", got[0].first});
  EXPECT_EQ(ack.code, 0) << ack.err;
  EXPECT_TRUE(ack.out.empty() && ack.err.empty()) << ack.out << ack.err;
  CliResult nack = cli({"queue", "nack", "jobs", got[1].first});
  EXPECT_EQ(nack.code, 0) << nack.err;
  s = stats("jobs");
  EXPECT_EQ(s["total"]["acked"].u64(), 2u);  // a, and c by the plain receive
  EXPECT_EQ(s["total"]["nacked"].u64(), 1u);

  // The nacked one comes back (no backoff), on its second attempt.
  CliResult again = receive("jobs", {"--format", "json", "--wait-ms", "2000"});
  const Json m = parse_json(again.out);
  EXPECT_EQ(m["value"].text, "b");
  EXPECT_EQ(m["attempt"].u64(), 2u);
  EXPECT_FALSE(m.has("receipt")) << "only --no-ack prints receipts";

  // A settled lease cannot be settled again: one line, exit 1.
  CliResult twice = cli({"queue", "ack", "jobs", got[0].first});
  EXPECT_EQ(twice.code, kExitError);
  expect_one_error_line(twice, "lease");
  EXPECT_EQ(stats("jobs")["total"]["depth"].u64(), 0u);
}

TEST_F(CliQueue, NoAckJsonCarriesTheReceiptAndSeveralReceiptsSettleAtOnce) {
  create({"jobs"});
  publish("jobs", "x\ny\n");
  CliResult r = receive("jobs", {"--no-ack", "--max", "5", "--format", "json"});
  const auto lines = r.out_lines();
  ASSERT_EQ(lines.size(), 2u) << r.out;
  std::vector<std::string> receipts;
  for (const std::string& line : lines) {
    const Json m = parse_json(line);
    ASSERT_EQ(m["receipt"].kind, Json::Kind::kString) << line;
    EXPECT_EQ(m["receipt"].text.rfind("0:" + std::to_string(m["offset"].u64()) + ":", 0), 0u) << line;
    receipts.push_back(m["receipt"].text);
  }
  CliResult ack = cli({"queue", "ack", "jobs", receipts[0], receipts[1]});
  EXPECT_EQ(ack.code, 0) << ack.err;
  const Json s = stats("jobs");
  EXPECT_EQ(s["total"]["acked"].u64(), 2u);
  EXPECT_EQ(s["total"]["depth"].u64(), 0u);

  // One good and one settled receipt: the good one is settled, exit 1 says how many failed.
  publish("jobs", "z\n");
  const auto z = receipts_of(receive("jobs", {"--no-ack"}));
  ASSERT_EQ(z.size(), 1u);
  CliResult mixed = cli({"queue", "ack", "jobs", receipts[0], z[0].first});
  EXPECT_EQ(mixed.code, kExitError);
  expect_one_error_line(mixed, "1 of 2 receipts failed");
  EXPECT_EQ(stats("jobs")["total"]["acked"].u64(), 3u);
}

TEST_F(CliQueue, AnExpiredReceiptIsALostLease) {
  create({"jobs"});
  publish("jobs", "x\n");
  const auto got = receipts_of(receive("jobs", {"--no-ack", "--lease-ms", "50"}));
  ASSERT_EQ(got.size(), 1u);
  // After 50 ms the message is offered again (the lease is detached: only
  // its deadline ends it, not this process's exit).
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (line.empty() && std::chrono::steady_clock::now() < deadline)
    line = receive("jobs", {"--no-ack", "--wait-ms", "500", "--format", "json"}).out;
  ASSERT_FALSE(line.empty()) << "the expired lease never came back";
  const Json m = parse_json(line);
  EXPECT_EQ(m["attempt"].u64(), 2u);
  CliResult late = cli({"queue", "ack", "jobs", got[0].first});
  EXPECT_EQ(late.code, kExitError);
  expect_one_error_line(late, "lease lost");
  CliResult ok = cli({"queue", "ack", "jobs", m["receipt"].text});
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_EQ(stats("jobs")["total"]["depth"].u64(), 0u);
}

TEST_F(CliQueue, RejectByReceiptDeadLettersWithTypeAndMessage) {
  create({"orders"});
  publish("orders", "bad\n", {"-H", "trace=t9"});
  const auto got = receipts_of(receive("orders", {"--no-ack"}));
  ASSERT_EQ(got.size(), 1u);
  CliResult r = cli({"queue", "reject", "orders", got[0].first, "--type", "BadInput", "--message", "no total"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(stats("orders")["total"]["dead_lettered"].u64(), 1u);
  const Json dead = parse_json(receive("orders.dlq", {"--format", "json"}).out);
  EXPECT_EQ(dead["value"].text, "bad");
  EXPECT_EQ(header(dead, "sluice.dlq.error_type"), "BadInput");
  EXPECT_EQ(header(dead, "sluice.dlq.error_message"), "no total");
  EXPECT_EQ(header(dead, "trace"), "t9");
}

TEST_F(CliQueue, PurgeRemovesEverythingLeasedOrNot) {
  create({"jobs"});
  publish("jobs", "1\n2\n3\n4\n5\n");
  const auto held = receipts_of(receive("jobs", {"--no-ack"}));
  ASSERT_EQ(held.size(), 1u);
  CliResult r = cli({"queue", "purge", "jobs"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "purged 5 messages from jobs\n");
  const Json s = stats("jobs");
  EXPECT_EQ(s["total"]["depth"].u64(), 0u);
  EXPECT_EQ(s["total"]["in_flight"].u64(), 0u);
  EXPECT_EQ(receive("jobs", {"--max", "10"}).out, "");
  CliResult ack = cli({"queue", "ack", "jobs", held[0].first});
  EXPECT_EQ(ack.code, kExitError) << "a purged lease is lost";
  expect_one_error_line(ack, "lease");
  r = cli({"queue", "purge", "jobs"});
  EXPECT_EQ(r.out, "purged 0 messages from jobs\n");
  publish("jobs", "after\n");
  EXPECT_EQ(receive("jobs").out, "after\n") << "the queue works on after a purge";
}

TEST_F(CliQueue, BadReceiptCommandsAreUsageErrors) {
  create({"jobs"});
  publish("jobs", "x\n");
  for (auto args : std::vector<std::vector<std::string>>{{"queue", "receive", "jobs", "--lease-ms", "100"},
                                                         {"queue", "receive", "jobs", "--no-ack", "--nack"},
                                                         {"queue", "receive", "jobs", "--no-ack", "--reject-as", "X"},
                                                         {"queue", "receive", "jobs", "--no-ack", "--lease-ms", "0"},
                                                         {"queue", "ack", "jobs", "nonsense"},
                                                         {"queue", "ack", "jobs", "0:1"},
                                                         {"queue", "nack", "jobs", "-1:0:ab"},
                                                         {"queue", "ack", "jobs", "0:0:0x1f"},
                                                         {"queue", "ack", "jobs"},
                                                         {"queue", "reject", "jobs", "0:0:1"},
                                                         {"queue", "reject", "jobs", "0:0:1", "--type", ""}}) {
    CliResult r = cli(args);
    EXPECT_EQ(r.code, kExitUsage) << args[1] << " " << args.back();
    EXPECT_EQ(r.err_lines().size(), 1u) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  EXPECT_EQ(stats("jobs")["total"]["received"].u64(), 0u) << "no bad command took the message";
  CliResult r = cli({"queue", "ack", "nope", "0:0:1"});
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "unknown queue nope");
  r = cli({"queue", "purge", "nope"});
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "unknown queue nope");
  r = cli({"queue", "ack", "jobs", "0:0:1"});
  EXPECT_EQ(r.code, kExitError) << "a well-formed receipt of no lease";
  expect_one_error_line(r, "lease");
  // A real lease word with an offset past the log's end (65536 shares the
  // slot of offset 0): still one line that says what is wrong.
  const auto got = receipts_of(receive("jobs", {"--no-ack"}));
  ASSERT_EQ(got.size(), 1u);
  const std::string word = got[0].first.substr(got[0].first.rfind(':') + 1);
  r = cli({"queue", "ack", "jobs", "0:65536:" + word});
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "no message of the queue is leased there");
  EXPECT_EQ(cli({"queue", "ack", "jobs", got[0].first}).code, 0);
}

TEST(CliQueueUsage, EveryQueueSubcommandHasHelp) {
  CliResult top = run_cli({"--help"});
  EXPECT_EQ(top.code, 0);
  EXPECT_NE(top.out.find("queue"), std::string::npos);
  for (const char* sub :
       {"create", "list", "describe", "stats", "publish", "receive", "ack", "nack", "reject", "purge", "delete"}) {
    CliResult r = run_cli({"queue", sub, "--help"});
    EXPECT_EQ(r.code, 0) << sub;
    EXPECT_NE(r.out.find("Usage: sluice queue " + std::string(sub)), std::string::npos) << r.out;
    EXPECT_TRUE(r.err.empty()) << r.err;
  }
  CliResult r = run_cli({"queue"});
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "queue: a subcommand is required");
}

}  // namespace
}  // namespace sluice
