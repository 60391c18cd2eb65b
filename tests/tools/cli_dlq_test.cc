// `sluice dlq list|show|redrive|replay|purge` through the command line: dead
// letters made with `queue receive --reject-as` / `--nack` (and, where the
// CLI cannot make them, through the library), then listed, filtered, shown,
// moved back to their source and purged.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <chrono>
#include <cstdint>
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
using test::header;
using test::Json;
using test::parse_json;
using test::run_cli;
using test::run_cli_in;

class CliDlq : public test::CliBusTest {
 protected:
  // orders: "bad-0" and "bad-1" rejected as BadInput, "slow" dead-lettered by
  // max receives (1), "fine" acked. orders.dlq then holds, in this order:
  // 0 bad-0 (BadInput), 1 bad-1 (BadInput), 2 slow (MaxReceivesExceeded).
  void make_dead_letters() {
    ok({"queue", "create", "orders", "--max-receives", "1", "--priorities", "2"});
    ok({"queue", "publish", "orders", "-H", "trace=t0"}, "bad-0\nbad-1\n");
    ok({"queue", "receive", "orders", "--max", "2", "--reject-as", "BadInput"});
    ok({"queue", "publish", "orders", "--priority", "1", "-H", "trace=t2"}, "slow\n");
    ok({"queue", "receive", "orders", "--nack"});
    ok({"queue", "publish", "orders"}, "fine\n");
    ok({"queue", "receive", "orders"});
  }
  std::vector<Json> list_json(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"dlq", "list", "orders.dlq", "--format", "json"};
    args.insert(args.end(), extra.begin(), extra.end());
    CliResult r = ok(args);
    std::vector<Json> out;
    for (const std::string& line : r.out_lines()) out.push_back(parse_json(line));
    return out;
  }
  std::vector<std::string> values(const std::vector<Json>& letters) {
    std::vector<std::string> v;
    for (const Json& j : letters) v.push_back(j["value"].text);
    return v;
  }
  Json stats(const std::string& queue) {
    CliResult r = ok({"queue", "stats", queue, "--format", "json"});
    return parse_json(r.out);
  }
};

TEST_F(CliDlq, ListShowsEveryLetterWithItsMetadataAndChangesNothing) {
  make_dead_letters();
  const std::vector<Json> letters = list_json();
  ASSERT_EQ(letters.size(), 3u);
  EXPECT_EQ(values(letters), (std::vector<std::string>{"bad-0", "bad-1", "slow"}));
  const Json& bad = letters[1];
  EXPECT_EQ(bad["queue"].text, "orders.dlq");
  EXPECT_EQ(bad["offset"].u64(), 1u);
  EXPECT_EQ(bad["error_type"].text, "BadInput");
  EXPECT_EQ(bad["source"].text, "queue:orders");
  EXPECT_EQ(bad["source_partition"].u64(), 0u);
  EXPECT_EQ(bad["source_offset"].u64(), 1u);
  EXPECT_EQ(bad["attempts"].u64(), 1u);
  EXPECT_EQ(bad["pid"].kind, Json::Kind::kNumber);
  EXPECT_EQ(bad["worker"].kind, Json::Kind::kNumber);
  EXPECT_EQ(bad["consumer_group"].kind, Json::Kind::kNull);
  EXPECT_EQ(bad["group"].kind, Json::Kind::kNull);
  EXPECT_EQ(bad["failed_at"].text.size(), 24u) << "RFC 3339 with ms: " << bad["failed_at"].text;
  EXPECT_EQ(bad["stack_trace"].kind, Json::Kind::kString);
  ASSERT_EQ(bad["headers"].items.size(), 1u) << "only the original headers";
  EXPECT_EQ(header(bad, "trace"), "t0");
  EXPECT_EQ(letters[2]["error_type"].text, "MaxReceivesExceeded");
  EXPECT_EQ(letters[2]["source_partition"].u64(), 1u) << "the priority level it failed at";
  EXPECT_EQ(letters[2]["source_offset"].u64(), 0u);

  EXPECT_EQ(bad["state"].text, "waiting");
  EXPECT_EQ(bad["dlq_receives"].u64(), 0u);

  // Listed (and shown) again, more often than the DLQ's max_receives, 5: all
  // still there, in order, and listing only reads: the dead-letter queue's
  // counters and the letters' receive counts do not move.
  const Json before = stats("orders.dlq");
  for (int i = 0; i < 6; ++i) ASSERT_EQ(list_json().size(), 3u) << "listing " << i;
  ok({"dlq", "show", "orders.dlq", "1"});
  const Json s = stats("orders.dlq");
  EXPECT_EQ(s["total"]["received"].u64(), before["total"]["received"].u64()) << "listing receives nothing";
  EXPECT_EQ(s["total"]["nacked"].u64(), before["total"]["nacked"].u64()) << "listing releases nothing";
  EXPECT_EQ(s["total"]["received"].u64(), 0u);
  EXPECT_EQ(s["total"]["nacked"].u64(), 0u);
  EXPECT_EQ(s["total"]["depth"].u64(), 3u);
  EXPECT_EQ(s["total"]["in_flight"].u64(), 0u) << "a listing holds nothing";
  EXPECT_EQ(s["total"]["dead_lettered"].u64(), 0u) << "no listing dropped a letter";
  for (const Json& j : list_json()) EXPECT_EQ(j["dlq_receives"].u64(), 0u) << j["value"].text;
  CliResult text = ok({"dlq", "list", "orders.dlq"});
  const auto lines = text.out_lines();
  ASSERT_EQ(lines.size(), 5u) << text.out;
  EXPECT_EQ(lines[0].rfind("OFFSET", 0), 0u) << lines[0];
  EXPECT_NE(lines[1].find("queue:orders@0:0"), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("BadInput"), std::string::npos) << lines[1];
  EXPECT_NE(lines[3].find("MaxReceivesExceeded"), std::string::npos) << lines[3];
  EXPECT_EQ(lines[4], "3 dead letters");
  EXPECT_NE(lines[1].find("waiting"), std::string::npos) << lines[1];
}

TEST_F(CliDlq, ListAndShowSeeLettersLeasedByOthers) {
  make_dead_letters();
  auto bus = Bus::open(dir_.path());
  ASSERT_TRUE(bus) << bus.error().to_string();
  auto worker = bus->create_worker("orders.dlq");
  ASSERT_TRUE(worker) << worker.error().to_string();
  Delivery d;
  ASSERT_EQ(worker->receive(std::span(&d, 1), 1'000'000'000).value_or(0), 1u);
  ASSERT_EQ(d.value(), "bad-0");
  const Json before = stats("orders.dlq");
  EXPECT_EQ(before["total"]["in_flight"].u64(), 1u);

  const std::vector<Json> letters = list_json();
  ASSERT_EQ(values(letters), (std::vector<std::string>{"bad-0", "bad-1", "slow"})) << "the leased one too";
  EXPECT_EQ(letters[0]["state"].text, "in_flight");
  EXPECT_EQ(letters[0]["dlq_receives"].u64(), 1u);
  EXPECT_EQ(letters[1]["state"].text, "waiting");
  const Json shown = parse_json(ok({"dlq", "show", "orders.dlq", "0"}).out);
  EXPECT_EQ(shown["value"].text, "bad-0");
  EXPECT_EQ(shown["state"].text, "in_flight");
  const auto lines = ok({"dlq", "list", "orders.dlq"}).out_lines();
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_NE(lines[1].find("in_flight"), std::string::npos) << lines[1];
  EXPECT_EQ(lines[4], "3 dead letters; 1 of them leased by a worker now (in_flight)");

  const Json after = stats("orders.dlq");
  EXPECT_EQ(after["total"]["received"].u64(), before["total"]["received"].u64());
  EXPECT_EQ(after["total"]["nacked"].u64(), before["total"]["nacked"].u64());
  EXPECT_EQ(after["total"]["in_flight"].u64(), 1u);
  ASSERT_TRUE(d.ack());
}

TEST_F(CliDlq, FiltersSelectByErrorTypeSourceAndTime) {
  make_dead_letters();
  EXPECT_EQ(values(list_json({"--error-type", "BadInput"})), (std::vector<std::string>{"bad-0", "bad-1"}));
  EXPECT_EQ(values(list_json({"--error-type", "MaxReceivesExceeded"})), (std::vector<std::string>{"slow"}));
  EXPECT_TRUE(list_json({"--error-type", "badinput"}).empty()) << "exact match";
  EXPECT_EQ(list_json({"--source", "queue:orders"}).size(), 3u);
  EXPECT_EQ(list_json({"--source", "orders"}).size(), 3u) << "a bare name matches queue: and topic:";
  EXPECT_TRUE(list_json({"--source", "topic:orders"}).empty());
  EXPECT_TRUE(list_json({"--source", "other"}).empty());
  EXPECT_EQ(values(list_json({"--max", "2"})), (std::vector<std::string>{"bad-0", "bad-1"}));

  const Json first = list_json()[0];
  const std::string at = first["failed_at"].text;
  EXPECT_EQ(list_json({"--since", at}).size(), 3u) << "--since is inclusive";
  EXPECT_EQ(list_json({"--since", "2000-01-01"}).size(), 3u);
  EXPECT_EQ(list_json({"--until", "2000-01-01T00:00:00Z"}).size(), 0u);
  EXPECT_EQ(list_json({"--since", "4000000000000"}).size(), 0u) << "Unix ms far ahead";
  EXPECT_EQ(list_json({"--until", "4000000000000"}).size(), 3u);
  EXPECT_EQ(list_json({"--since", "2000-01-01T01:00:00+01:00", "--until", "2999-12-31T23:59:59.999-05:00"}).size(), 3u);
  CliResult text = ok({"dlq", "list", "orders.dlq", "--error-type", "BadInput"});
  EXPECT_EQ(text.out_lines().back(), "2 dead letters matched, of 3 seen");
}

TEST_F(CliDlq, ShowPrintsOneLetter) {
  make_dead_letters();
  CliResult r = ok({"dlq", "show", "orders.dlq", "2"});
  ASSERT_EQ(r.out_lines().size(), 1u) << r.out;
  const Json j = parse_json(r.out);
  EXPECT_EQ(j["value"].text, "slow");
  EXPECT_EQ(j["offset"].u64(), 2u);
  EXPECT_EQ(j["error_type"].text, "MaxReceivesExceeded");
  EXPECT_EQ(j["attempts"].u64(), 1u);
  EXPECT_EQ(header(j, "trace"), "t2");
  for (const char* f : {"error_message", "stack_trace", "failed_at", "source", "source_partition", "source_offset",
                        "attempts", "worker", "pid", "consumer_group", "group", "value", "headers", "timestamp"})
    EXPECT_TRUE(j.has(f)) << f;

  CliResult missing = cli({"dlq", "show", "orders.dlq", "7"});
  EXPECT_EQ(missing.code, kExitError);
  expect_one_error_line(missing, "no dead letter at offset 7");
  CliResult other_level = cli({"dlq", "show", "orders.dlq", "2", "--priority", "3"});
  EXPECT_EQ(other_level.code, kExitError);
  expect_one_error_line(other_level, "no dead letter at offset 2 of orders.dlq priority 3");
  EXPECT_EQ(list_json().size(), 3u);
}

TEST_F(CliDlq, RedriveMovesLettersBackToTheirSourceWithTheirHeaders) {
  make_dead_letters();
  CliResult r = ok({"dlq", "redrive", "orders.dlq", "--error-type", "BadInput"});
  EXPECT_EQ(r.out, "redrove 2 dead letters from orders.dlq: 2 to orders\n");
  EXPECT_EQ(values(list_json()), (std::vector<std::string>{"slow"})) << "the others stay";

  CliResult back = ok({"queue", "receive", "orders", "--max", "10", "--format", "json", "--nack"});
  const auto lines = back.out_lines();
  ASSERT_EQ(lines.size(), 2u) << back.out;
  for (size_t i = 0; i < 2; ++i) {
    const Json m = parse_json(lines[i]);
    EXPECT_EQ(m["value"].text, "bad-" + std::to_string(i));
    EXPECT_EQ(m["attempt"].u64(), 1u) << "a fresh message";
    EXPECT_EQ(m["priority"].u64(), 0u);
    ASSERT_EQ(m["headers"].items.size(), 1u) << lines[i];
    EXPECT_EQ(header(m, "trace"), "t0") << "the original headers, no sluice.dlq.*";
  }
  // They failed again (max receives 1): dead letters again, with new source offsets.
  const std::vector<Json> again = list_json();
  ASSERT_EQ(again.size(), 3u);
  EXPECT_EQ(values(again), (std::vector<std::string>{"slow", "bad-0", "bad-1"}));
  EXPECT_EQ(again[1]["source_offset"].u64(), 3u);

  // Replay: everything, each to its source level (slow failed at priority 1).
  r = ok({"dlq", "replay", "orders.dlq"});
  EXPECT_EQ(r.out, "redrove 3 dead letters from orders.dlq: 3 to orders\n");
  EXPECT_TRUE(list_json().empty());
  EXPECT_EQ(stats("orders.dlq")["total"]["depth"].u64(), 0u);
  CliResult all = ok({"queue", "receive", "orders", "--max", "10", "--format", "json"});
  ASSERT_EQ(all.out_lines().size(), 3u) << all.out;
  const Json top = parse_json(all.out_lines()[0]);
  EXPECT_EQ(top["value"].text, "slow");
  EXPECT_EQ(top["priority"].u64(), 1u);
}

TEST_F(CliDlq, RedriveToAnotherQueueWithMaxAndRate) {
  make_dead_letters();
  ok({"queue", "create", "parking"});
  CliResult r = ok({"dlq", "redrive", "orders.dlq", "--to", "parking", "--max", "1"});
  EXPECT_EQ(r.out, "redrove 1 dead letter from orders.dlq: 1 to parking\n");
  EXPECT_EQ(ok({"queue", "receive", "parking", "--max", "10"}).out, "bad-0\n");

  const auto start = std::chrono::steady_clock::now();
  r = ok({"dlq", "redrive", "orders.dlq", "--to", "parking", "--rate", "10"});
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.out.rfind("redrove 2 dead letters from orders.dlq: 2 to parking (", 0), 0u) << r.out;
  EXPECT_GE(took, std::chrono::milliseconds(100)) << "two letters at 10/s: one interval of 100 ms";
  // The slow one failed at priority 1; parking has one level: priority 0.
  EXPECT_EQ(ok({"queue", "receive", "parking", "--max", "10"}).out, "bad-1\nslow\n");
  EXPECT_TRUE(list_json().empty());

  r = ok({"dlq", "redrive", "orders.dlq"});
  EXPECT_EQ(r.out, "redrove 0 dead letters from orders.dlq\n");
}

TEST_F(CliDlq, RedriveToAMissingQueueLeavesTheLetters) {
  make_dead_letters();
  CliResult r = cli({"dlq", "redrive", "orders.dlq", "--to", "nowhere"});
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "3 dead letter(s) left in place: ");
  EXPECT_NE(r.err.find("unknown queue nowhere"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "redrove 0 dead letters from orders.dlq\n");
  EXPECT_EQ(list_json().size(), 3u);
  ok({"queue", "delete", "orders"});
  r = cli({"dlq", "replay", "orders.dlq"});
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "unknown queue orders");
  EXPECT_EQ(list_json().size(), 3u);
}

TEST_F(CliDlq, PurgeRemovesMatchingLettersOrAll) {
  make_dead_letters();
  CliResult r = ok({"dlq", "purge", "orders.dlq", "--error-type", "MaxReceivesExceeded"});
  EXPECT_EQ(r.out, "purged 1 dead letter from orders.dlq\n");
  EXPECT_EQ(values(list_json()), (std::vector<std::string>{"bad-0", "bad-1"}));
  r = ok({"dlq", "purge", "orders.dlq"});
  EXPECT_EQ(r.out, "purged 2 dead letters from orders.dlq\n");
  EXPECT_TRUE(list_json().empty());
  EXPECT_EQ(stats("orders.dlq")["total"]["depth"].u64(), 0u);
  EXPECT_EQ(stats("orders")["total"]["dead_lettered"].u64(), 3u) << "the source queue is untouched";
}

TEST_F(CliDlq, WorkQueuesAndUnknownQueuesAreRefused) {
  make_dead_letters();
  for (auto args : std::vector<std::vector<std::string>>{{"dlq", "list", "orders"},
                                                         {"dlq", "show", "orders", "0"},
                                                         {"dlq", "redrive", "orders"},
                                                         {"dlq", "replay", "orders"},
                                                         {"dlq", "purge", "orders"},
                                                         {"dlq", "purge", "orders", "--source", "x"}}) {
    CliResult r = cli(args);
    EXPECT_EQ(r.code, kExitError) << args[1];
    expect_one_error_line(r, "orders is not a dead-letter queue: its dead letters go to orders.dlq");
  }
  EXPECT_EQ(stats("orders")["total"]["published"].u64(), 4u);
  CliResult r = cli({"dlq", "list", "nope.dlq"});
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "unknown queue nope.dlq");
}

TEST_F(CliDlq, BadOptionsAreUsageErrors) {
  make_dead_letters();
  for (auto args : std::vector<std::vector<std::string>>{{"dlq", "list", "orders.dlq", "--format", "yaml"},
                                                         {"dlq", "list", "orders.dlq", "--since", "yesterday"},
                                                         {"dlq", "list", "orders.dlq", "--since", "2026-02-30"},
                                                         {"dlq", "list", "orders.dlq", "--until", "2026-01-01T10:00"},
                                                         {"dlq", "list", "orders.dlq", "--since", "5", "--until", "5"},
                                                         {"dlq", "list", "orders.dlq", "--max", "0"},
                                                         {"dlq", "show", "orders.dlq", "x"},
                                                         {"dlq", "show", "orders.dlq"},
                                                         {"dlq", "redrive", "orders.dlq", "--rate", "-1"},
                                                         {"dlq", "redrive", "orders.dlq", "--to", "orders.dlq"},
                                                         {"dlq", "replay", "orders.dlq", "--error-type", "X"},
                                                         {"dlq", "purge", "orders.dlq", "--until", "never"}}) {
    CliResult r = cli(args);
    EXPECT_EQ(r.code, kExitUsage) << args[1] << " " << args.back();
    EXPECT_EQ(r.err_lines().size(), 1u) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  CliResult r = cli({"dlq", "list", "a/b"});
  EXPECT_EQ(r.code, kExitError);
  expect_one_error_line(r, "invalid name");
  EXPECT_EQ(list_json().size(), 3u) << "nothing moved";
}

// What the CLI cannot produce itself: a dead letter of a FIFO group, and a
// stream consumer's dead letter (source topic:T, consumer group G).
TEST_F(CliDlq, RedriveRestoresTheGroupAndSendsStreamLettersToTheGroupsRetryQueue) {
  auto bus = Bus::open(dir_.path());
  ASSERT_TRUE(bus) << bus.error().to_string();
  ASSERT_TRUE(bus->create_queue("fifo"));
  {
    auto publisher = bus->create_queue_publisher("fifo");
    ASSERT_TRUE(publisher);
    QueueMessage m;
    m.value = "g-1";
    m.group = "customer-7";
    ASSERT_TRUE(publisher->publish(m).ok());
    auto worker = bus->create_worker("fifo");
    ASSERT_TRUE(worker);
    Delivery d;
    ASSERT_EQ(worker->receive(std::span(&d, 1), 1'000'000'000).value_or(0), 1u);
    ASSERT_TRUE(d.reject(Failure{"Bad", "no", ""}));
  }
  std::vector<Json> letters;
  for (const std::string& line : ok({"dlq", "list", "fifo.dlq", "--format", "json"}).out_lines())
    letters.push_back(parse_json(line));
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0]["group"].text, "customer-7");
  EXPECT_TRUE(letters[0]["headers"].items.empty()) << "the group is metadata, not an original header";
  EXPECT_EQ(ok({"dlq", "redrive", "fifo.dlq"}).out, "redrove 1 dead letter from fifo.dlq: 1 to fifo\n");
  {
    auto worker = bus->create_worker("fifo");
    ASSERT_TRUE(worker);
    Delivery d;
    ASSERT_EQ(worker->receive(std::span(&d, 1), 1'000'000'000).value_or(0), 1u);
    EXPECT_EQ(d.value(), "g-1");
    EXPECT_EQ(d.headers().find("sluice.group"), "customer-7") << "a live FIFO group again";
    ASSERT_TRUE(d.ack());
  }

  // A stream consumer's dead letter, written as RetryingConsumer writes it.
  QueueOptions dropping;
  dropping.dead_letter_queue = "-";  // like a dead-letter queue: no DLQ of its own
  ASSERT_TRUE(bus->create_queue("clicks.dlq", dropping));
  ASSERT_TRUE(bus->create_queue("clicks.billing.retry"));
  {
    auto dlq = bus->create_queue_publisher("clicks.dlq");
    ASSERT_TRUE(dlq);
    const std::vector<Header> stream = {{"sluice.stream.topic", "clicks"},
                                        {"sluice.stream.partition", "2"},
                                        {"sluice.stream.offset", "40"},
                                        {"sluice.stream.timestamp", "1"},
                                        {"sluice.stream.key", "k"}};
    DeadLetter with_group{{"TransientError", "down", ""}, "topic:clicks", 2, 40, 3, "billing"};
    ASSERT_TRUE(dlq->publish_dead_letter("v1", stream, with_group).ok());
    DeadLetter without{{"TransientError", "down", ""}, "topic:clicks", 2, 41, 3, ""};
    ASSERT_TRUE(dlq->publish_dead_letter("v2", stream, without).ok());
  }
  CliResult r = ok({"dlq", "replay", "clicks.dlq"});
  EXPECT_EQ(r.out,
            "redrove 1 dead letter from clicks.dlq: 1 to clicks.billing.retry; 1 left in place: from topic clicks "
            "without a consumer group (use --to)\n");
  {
    auto worker = bus->create_worker("clicks.billing.retry");
    ASSERT_TRUE(worker);
    Delivery d;
    ASSERT_EQ(worker->receive(std::span(&d, 1), 1'000'000'000).value_or(0), 1u);
    EXPECT_EQ(d.value(), "v1");
    EXPECT_EQ(d.headers().find("sluice.stream.offset"), "40") << "the stream source travels for the retry";
    EXPECT_EQ(d.headers().find("sluice.dlq.source"), "");
    ASSERT_TRUE(d.ack());
  }
  std::vector<Json> left;
  for (const std::string& line : ok({"dlq", "list", "clicks.dlq", "--format", "json"}).out_lines())
    left.push_back(parse_json(line));
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0]["value"].text, "v2");
  EXPECT_EQ(left[0]["source"].text, "topic:clicks");
}

TEST(CliDlqUsage, EveryDlqSubcommandHasHelp) {
  for (const char* sub : {"list", "show", "redrive", "replay", "purge"}) {
    CliResult r = run_cli({"dlq", sub, "--help"});
    EXPECT_EQ(r.code, 0) << sub;
    EXPECT_NE(r.out.find("Usage: sluice dlq " + std::string(sub)), std::string::npos) << r.out;
  }
  CliResult r = run_cli({"dlq"});
  EXPECT_EQ(r.code, kExitUsage);
  expect_one_error_line(r, "dlq: a subcommand is required");
}

}  // namespace
}  // namespace sluice
