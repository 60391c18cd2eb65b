// `sluice queue stats` per-worker table (docs/queues.md section 8): each
// command-line invocation that receives is a process with its own row, read
// after it has exited (not alive, its counts kept); a version-1 state file
// says it counts no workers.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "ipc/file_header.h"
#include "json_reader.h"
#include "queue_format.h"
#include "support/test_support.h"

namespace sluice {
namespace {

using test::CliResult;
using test::Json;
using test::parse_json;
using test::row;
using test::run_cli_in;

class CliQueueWorkers : public test::CliBusTest {
 protected:
  void SetUp() override {
    CliBusTest::SetUp();
    if (HasFatalFailure()) return;
    ok({"queue", "create", "jobs"});
    ok({"queue", "publish", "jobs"}, "a\nb\nc\n");
  }
  Json stats() {
    CliResult r = cli({"queue", "stats", "jobs", "--format", "json"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out_lines().size(), 1u) << "one line of JSON: " << r.out;
    return parse_json(r.out);
  }
};

TEST_F(CliQueueWorkers, AReceivingInvocationHasARowWithItsCountsAfterItExits) {
  const Json before = stats();
  ASSERT_EQ(before["workers"].kind, Json::Kind::kArray);
  EXPECT_TRUE(before["workers"].items.empty()) << "publishing makes no worker";

  CliResult r = cli({"queue", "receive", "jobs", "--max", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(r.out, "a\nb\n");

  const Json s = stats();
  ASSERT_EQ(s["workers"].items.size(), 1u) << "one process received";
  const Json& w = s["workers"].items[0];
  EXPECT_GT(w["pid"].u64(), 0u);
  EXPECT_EQ(w["alive"].kind, Json::Kind::kBool);
  EXPECT_FALSE(w["alive"].boolean) << "the invocation has exited";
  EXPECT_EQ(w["workers"].u64(), 0u) << "it closed its worker before exiting";
  EXPECT_EQ(w["received"].u64(), 2u);
  EXPECT_EQ(w["acked"].u64(), 2u);
  for (const char* f : {"registry_slot", "attached_unix_ms", "last_active_unix_ms", "nacked", "dead_lettered",
                        "lease_lost", "handler_errors", "already_done", "in_doubt", "breaker_opened", "breakers_open"})
    EXPECT_EQ(w[f].kind, Json::Kind::kNumber) << f;
  EXPECT_EQ(w["nacked"].u64(), 0u);
  EXPECT_GE(w["last_active_unix_ms"].u64(), w["attached_unix_ms"].u64());

  CliResult text = cli({"queue", "stats", "jobs"});
  ASSERT_EQ(text.code, 0) << text.err;
  const std::vector<std::string> header = row(text.out, "pid");
  ASSERT_GE(header.size(), 6u) << text.out;
  EXPECT_EQ(std::vector<std::string>(header.begin(), header.begin() + 6),
            (std::vector<std::string>{"pid", "alive", "workers", "received", "acked", "nacked"}));
  const std::vector<std::string> line = row(text.out, std::to_string(w["pid"].u64()));
  ASSERT_EQ(line.size(), header.size()) << text.out;
  EXPECT_EQ(std::vector<std::string>(line.begin(), line.begin() + 6),
            (std::vector<std::string>{std::to_string(w["pid"].u64()), "no", "0", "2", "2", "0"}));
}

// A queue made before per-worker stats (state file format version 1).
TEST_F(CliQueueWorkers, AVersionOneQueueSaysItCountsNoWorkersAndStillWorks) {
  const std::string path = dir_.path() + "/queues/jobs/state";
  {
    const int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0) << path;
    format::QueueParams p;
    ASSERT_EQ(::pread(fd, &p, sizeof p, ipc::kFileHeaderBytes), static_cast<ssize_t>(sizeof p));
    p.workers_offset = 0;
    p.worker_slots = 0;
    p.worker_slot_bytes = 0;
    const uint64_t bytes = format::queue_file_bytes_v1(p.priorities, p.window);
    std::vector<std::byte> header(ipc::kFileHeaderBytes + sizeof p);
    ipc::write_file_header(header.data(), ipc::FileKind::kQueueState,
                           static_cast<uint32_t>(format::kQueueLevelsOffset), bytes, &p, sizeof p, 1);
    ASSERT_EQ(::pwrite(fd, header.data(), header.size(), 0), static_cast<ssize_t>(header.size()));
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(bytes)), 0);
    ::close(fd);
  }
  CliResult r = cli({"queue", "receive", "jobs"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "a\n");
  const Json s = stats();
  EXPECT_EQ(s["workers"].kind, Json::Kind::kNull);
  EXPECT_EQ(s["total"]["acked"].u64(), 1u);
  CliResult text = cli({"queue", "stats", "jobs"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("workers: not counted"), std::string::npos) << text.out;
}

}  // namespace
}  // namespace sluice
