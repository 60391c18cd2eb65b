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
#include "support/test_support.h"

namespace sluice {
namespace {

using test::CliResult;
using test::run_cli;
using test::run_cli_in;

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

// ---- a small, strict JSON reader: enough to check what the CLI prints -------

struct Json {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = Kind::kNull;
  bool boolean = false;
  std::string text;  // a number's digits, or a string's decoded bytes (\u00XX as one byte)
  std::vector<Json> items;
  std::map<std::string, Json> fields;

  const Json& operator[](const std::string& name) const {
    static const Json missing;
    auto it = fields.find(name);
    return it == fields.end() ? missing : it->second;
  }
  bool has(const std::string& name) const { return fields.count(name) != 0; }
  uint64_t u64() const { return kind == Kind::kNumber ? std::stoull(text) : UINT64_MAX; }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& s) : s_(s) {}
  // The whole input must be one value (surrounding whitespace allowed).
  bool parse(Json* out) {
    if (!value(out)) return false;
    space();
    return at_ == s_.size();
  }

 private:
  void space() {
    while (at_ < s_.size() && (s_[at_] == ' ' || s_[at_] == '\n' || s_[at_] == '\t' || s_[at_] == '\r')) ++at_;
  }
  bool literal(const char* word) {
    const std::string w(word);
    if (s_.compare(at_, w.size(), w) != 0) return false;
    at_ += w.size();
    return true;
  }
  bool string(std::string* out) {
    if (at_ >= s_.size() || s_[at_] != '"') return false;
    for (++at_; at_ < s_.size(); ++at_) {
      const char c = s_[at_];
      if (c == '"') {
        ++at_;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        *out += c;
        continue;
      }
      if (++at_ >= s_.size()) return false;
      switch (s_[at_]) {
        case '"': *out += '"'; break;
        case '\\': *out += '\\'; break;
        case '/': *out += '/'; break;
        case 'b': *out += '\b'; break;
        case 'f': *out += '\f'; break;
        case 'n': *out += '\n'; break;
        case 'r': *out += '\r'; break;
        case 't': *out += '\t'; break;
        case 'u': {
          if (at_ + 4 >= s_.size()) return false;
          const unsigned long code = std::stoul(s_.substr(at_ + 1, 4), nullptr, 16);
          if (code > 0xFF) return false;  // the CLI escapes only control and stray bytes
          *out += static_cast<char>(code);
          at_ += 4;
          break;
        }
        default: return false;
      }
    }
    return false;
  }
  bool value(Json* out) {
    space();
    if (at_ >= s_.size()) return false;
    const char c = s_[at_];
    if (c == '{') {
      out->kind = Json::Kind::kObject;
      ++at_;
      space();
      if (at_ < s_.size() && s_[at_] == '}') return ++at_, true;
      for (;;) {
        space();
        std::string name;
        if (!string(&name)) return false;
        space();
        if (at_ >= s_.size() || s_[at_++] != ':') return false;
        if (out->fields.count(name)) return false;  // duplicate field
        if (!value(&out->fields[name])) return false;
        space();
        if (at_ >= s_.size()) return false;
        if (s_[at_] == '}') return ++at_, true;
        if (s_[at_++] != ',') return false;
      }
    }
    if (c == '[') {
      out->kind = Json::Kind::kArray;
      ++at_;
      space();
      if (at_ < s_.size() && s_[at_] == ']') return ++at_, true;
      for (;;) {
        out->items.emplace_back();
        if (!value(&out->items.back())) return false;
        space();
        if (at_ >= s_.size()) return false;
        if (s_[at_] == ']') return ++at_, true;
        if (s_[at_++] != ',') return false;
      }
    }
    if (c == '"') {
      out->kind = Json::Kind::kString;
      return string(&out->text);
    }
    if (literal("null")) return true;
    if (literal("true") || literal("false")) {
      out->kind = Json::Kind::kBool;
      out->boolean = s_[at_ - 1] == 'e' && s_[at_ - 2] == 'u';
      return true;
    }
    // Numbers: the CLI prints integers only.
    const size_t start = at_;
    if (at_ < s_.size() && s_[at_] == '-') ++at_;
    while (at_ < s_.size() && s_[at_] >= '0' && s_[at_] <= '9') ++at_;
    if (at_ == start || (at_ == start + 1 && s_[start] == '-')) return false;
    out->kind = Json::Kind::kNumber;
    out->text = s_.substr(start, at_ - start);
    return true;
  }

  const std::string& s_;
  size_t at_ = 0;
};

// Parses one line of JSON; fails the test if it is not.
Json parse_json(const std::string& line) {
  Json j;
  EXPECT_TRUE(JsonParser(line).parse(&j)) << "not JSON: " << line;
  return j;
}

// The value of header `name` in a received message's "headers" array.
std::string header(const Json& message, const std::string& name) {
  for (const Json& h : message["headers"].items)
    if (h["name"].text == name) return h["value"].text;
  return "<missing>";
}

void expect_one_error_line(const CliResult& r, const std::string& needle) {
  const auto lines = r.err_lines();
  ASSERT_EQ(lines.size(), 1u) << "stderr: " << r.err;
  EXPECT_EQ(lines[0].rfind("sluice: ", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find(needle), std::string::npos) << lines[0];
}

// The whitespace-separated words of the line of `text` that starts with
// `first` (as a word), or {} if none does.
std::vector<std::string> row(const std::string& text, const std::string& first) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream in(line);
    std::vector<std::string> words;
    for (std::string w; in >> w;) words.push_back(w);
    if (!words.empty() && words[0] == first) return words;
  }
  return {};
}

// ---- the fixture ------------------------------------------------------------

class CliQueue : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(run_cli_in(dir_.path(), {"init"}).code, 0); }

  CliResult cli(std::vector<std::string> args, std::string input = "") {
    return run_cli_in(dir_.path(), std::move(args), test::with_input(std::move(input)));
  }
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
  test::TempDir dir_;
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

TEST(CliQueueUsage, EveryQueueSubcommandHasHelp) {
  CliResult top = run_cli({"--help"});
  EXPECT_EQ(top.code, 0);
  EXPECT_NE(top.out.find("queue"), std::string::npos);
  for (const char* sub : {"create", "list", "describe", "stats", "publish", "receive", "delete"}) {
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
