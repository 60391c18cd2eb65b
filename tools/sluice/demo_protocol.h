// What the demo's processes agree on: the topic, the keys, the layout of a
// record's value, and the one-line reports workers send back on stdout.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::cli::demo {

inline constexpr std::string_view kTopic = "demo.accounts";
inline constexpr uint32_t kPartitions = 4;
inline constexpr uint32_t kAccounts = 64;      // keys account-0 .. account-63
inline constexpr uint32_t kMaxProducers = 16;  // producer ids 0 .. 15
// The orchestrator appends one record with this key to every partition once
// all producers are gone: a consumer that has read it everywhere has read
// everything (order within a partition is strict).
inline constexpr std::string_view kEndKey = "__end__";

// The work-queue act: jobs "job-<id>" on a queue, handled by competing
// worker processes that report each job they completed on a topic (key: the
// id) just before acking it. Dead letters go to kJobsQueue + ".dlq".
inline constexpr std::string_view kJobsQueue = "demo-jobs";
inline constexpr std::string_view kJobsDeadLetters = "demo-jobs.dlq";
inline constexpr std::string_view kJobsDone = "demo.jobs.done";
// How a job's handler fails: on its first attempt only (a retry succeeds),
// on every attempt (dead-lettered after max_receives), or permanently
// (dead-lettered at once).
inline bool job_fails_first_attempt(uint64_t id) { return id % 10 == 3; }
inline bool job_fails_always(uint64_t id) { return id % 500 == 250; }
inline bool job_fails_permanently(uint64_t id) { return id % 97 == 0; }
// "job-<id>"; returns -1 for anything else.
int64_t parse_job(std::string_view value) noexcept;

// "account-<n>"; returns -1 for any other key.
int parse_account(std::string_view key) noexcept;

// A record's value: "producer=<id> seq=<per-key sequence> sent_ns=<unix ns>".
// Writes into `buf` (at least 80 bytes) and returns the length used.
size_t format_value(char* buf, size_t size, uint32_t producer, uint64_t seq, int64_t sent_ns) noexcept;
struct DemoValue {
  uint32_t producer = 0;
  uint64_t seq = 0;
  int64_t sent_ns = 0;
};
bool parse_value(std::string_view value, DemoValue* out) noexcept;

// A worker's report: one line "<tag> k=v k=v ...", values without spaces.
class Report {
 public:
  explicit Report(std::string tag) : tag_(std::move(tag)) {}
  // Parses a line; its first word becomes the tag.
  static Report parse(std::string_view line);
  Report& set(const std::string& key, const std::string& value);
  Report& set(const std::string& key, int64_t value) { return set(key, std::to_string(value)); }
  Report& set(const std::string& key, uint64_t value) { return set(key, std::to_string(value)); }
  int64_t num(const std::string& key, int64_t fallback = 0) const;
  std::string text(const std::string& key) const;
  const std::string& tag() const { return tag_; }
  std::string line() const;  // with '\n'

 private:
  std::string tag_;
  std::map<std::string, std::string> fields_;
};

// The q-quantile (0..1) of `samples` (reordered in place); 0 if empty.
int64_t quantile(std::vector<int64_t>& samples, double q);
// "12.3us", "4.5ms": latency for people.
std::string format_ns(int64_t ns);

}  // namespace sluice::cli::demo
