// Per-worker counters in the queue's state file (queue_format.h, the worker
// table; docs/queues.md section 8): shared by a process's Workers, read by
// any process, a dead owner's slot kept until its registry slot is reused,
// and version-1 state files (no table) still served.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sluice/sluice.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "ipc/file_header.h"
#include "queue_format.h"
#include "support/clocked_bus.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kSec = 1'000 * kMs;
constexpr int64_t kStartMs = 1'800'000'000'000;  // the manual clock's start, Unix ms

std::vector<std::byte> read_file(const std::string& path) {
  std::vector<std::byte> out;
  const int fd = ::open(path.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0) << path;
  if (fd < 0) return out;
  struct stat st {};
  ::fstat(fd, &st);
  out.resize(static_cast<size_t>(st.st_size));
  EXPECT_EQ(::pread(fd, out.data(), out.size(), 0), static_cast<ssize_t>(out.size()));
  ::close(fd);
  return out;
}

void write_file(const std::string& path, const std::vector<std::byte>& bytes) {
  const int fd = ::open(path.c_str(), O_RDWR | O_TRUNC);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

void write_at(const std::string& path, uint64_t at, const void* bytes, size_t n) {
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::pwrite(fd, bytes, n, static_cast<off_t>(at)), static_cast<ssize_t>(n));
  ::close(fd);
}

format::QueueParams params_of(const std::vector<std::byte>& file) {
  format::QueueParams p;
  std::memcpy(&p, file.data() + ipc::kFileHeaderBytes, sizeof p);
  return p;
}

// Rewrites the header of a state file with `p` and `version`, sealed with a
// valid checksum, keeping the first `bytes` bytes of the file.
void rewrite_state(const std::string& path, const format::QueueParams& p, uint32_t version, uint64_t bytes) {
  std::vector<std::byte> file = read_file(path);
  ASSERT_GE(file.size(), bytes);
  file.resize(bytes);
  std::memset(file.data(), 0, ipc::kFileHeaderBytes + sizeof p);
  ipc::write_file_header(file.data(), ipc::FileKind::kQueueState, static_cast<uint32_t>(format::kQueueLevelsOffset),
                         bytes, &p, sizeof p, version);
  write_file(path, file);
}

struct QueueWorkerStatsFixture : test::ClockedBusTest {
  void SetUp() override {
    clock.set_ns(kStartMs * kMs);
    ClockedBusTest::SetUp();
    if (HasFatalFailure()) return;
    QueueOptions o;
    o.segment_bytes = 1 << 20;
    o.max_depth_bytes = 4 << 20;
    o.window = 64;
    o.retry.max_receives = 5;
    o.retry.jitter_ns = 0;
    o.dead_letter_queue = "-";
    ASSERT_TRUE(bus->create_queue("jobs", o));
  }

  std::string state_path() const { return dir.path() + "/queues/jobs/state"; }

  void publish(int n, std::string_view processed_id = {}) {
    auto p = bus->create_queue_publisher("jobs");
    ASSERT_TRUE(p) << p.error().to_string();
    const Header h[] = {{kHeaderProcessedId, processed_id}};
    for (int i = 0; i < n; ++i) {
      QueueMessage m;
      m.value = "m";
      if (!processed_id.empty()) m.headers = h;
      ASSERT_TRUE(p->publish(m).ok()) << p->last_error().to_string();
    }
  }
  Worker worker(const WorkerOptions& o = {}) { return ClockedBusTest::worker("jobs", o); }
  QueueStats stats() {
    auto s = bus->queue_stats("jobs");
    EXPECT_TRUE(s) << s.error().to_string();
    return s ? *s : QueueStats{};
  }
  // The one worker row the test expects.
  QueueWorkerStats only_row() {
    const QueueStats s = stats();
    EXPECT_TRUE(s.tracks_workers);
    EXPECT_EQ(s.workers.size(), 1u);
    return s.workers.empty() ? QueueWorkerStats{} : s.workers[0];
  }
};

TEST_F(QueueWorkerStatsFixture, TwoWorkersOfOneProcessShareItsSlotAndTheirCountsAdd) {
  EXPECT_TRUE(stats().workers.empty()) << "no worker yet";
  publish(4);
  Worker a = worker();
  clock.advance_ns(5 * kSec);
  std::optional<Worker> b = worker();
  QueueWorkerStats row = only_row();
  EXPECT_EQ(row.pid, static_cast<uint32_t>(::getpid()));
  EXPECT_TRUE(row.alive);
  EXPECT_EQ(row.workers, 2u);
  EXPECT_EQ(row.attached_unix_ms, kStartMs) << "the first worker's attach";

  Delivery d = take(a);
  ASSERT_TRUE(d.valid());
  ASSERT_TRUE(d.ack());
  d = take(*b);
  ASSERT_TRUE(d.valid());
  ASSERT_TRUE(d.nack(60 * kSec));
  d = take(*b);
  ASSERT_TRUE(d.valid());
  ASSERT_TRUE(d.reject(Failure{"Bad", "no", ""}));
  clock.advance_ns(3 * kSec);
  ASSERT_EQ(a.run([](const Delivery&) { throw TransientError("later"); }, {}, 1), 1u);

  row = only_row();
  EXPECT_EQ(row.received, 4u);
  EXPECT_EQ(row.acked, 1u);
  EXPECT_EQ(row.nacked, 2u);
  EXPECT_EQ(row.dead_lettered, 1u);
  EXPECT_EQ(row.handler_errors, 1u);
  EXPECT_EQ(row.lease_lost, 0u);
  EXPECT_EQ(row.last_active_unix_ms, kStartMs + 8'000);
  EXPECT_EQ(row.received, a.stats().received + b->stats().received) << "the slot sums its workers";
  EXPECT_EQ(row.nacked, a.stats().nacked + b->stats().nacked);

  b.reset();
  row = only_row();
  EXPECT_EQ(row.workers, 1u) << "a destroyed worker leaves the gauge, not its counts";
  EXPECT_EQ(row.received, 4u);
}

TEST_F(QueueWorkerStatsFixture, ALostLeaseAndAnOpenBreakerAreCounted) {
  publish(2);
  WorkerOptions o;
  o.lease_ns = 1 * kSec;
  o.breaker.failures = 1;
  o.breaker.cooldown_ns = 60 * kSec;
  Worker w = worker(o);
  Delivery d = take(w);
  ASSERT_TRUE(d.valid());
  clock.advance_ns(2 * kSec);
  Worker other = worker();
  Delivery again = take(other);  // the sweep returns the expired lease; `other` takes it
  ASSERT_TRUE(again.valid());
  EXPECT_EQ(d.ack().error().code, Errc::kLeaseLost);
  Delivery next = take(w);
  ASSERT_TRUE(next.valid());
  ASSERT_TRUE(next.nack());
  EXPECT_FALSE(take(w).valid()) << "the breaker is open";
  QueueWorkerStats row = only_row();
  EXPECT_EQ(row.lease_lost, 1u);
  EXPECT_EQ(row.breaker_opened, 1u);
  EXPECT_EQ(row.breakers_open, 1u);
  EXPECT_EQ(row.workers, 2u);
}

TEST_F(QueueWorkerStatsFixture, ExactlyOnceOutcomesAreCounted) {
  ProcessedStoreOptions po;
  po.window_ns = 3600 * kSec;
  po.capacity = 1024;
  auto store = bus->open_processed_store("effects", po);
  ASSERT_TRUE(store) << store.error().to_string();
  ASSERT_EQ(*store->process_once("order-1", [] {}), ProcessOutcome::kRan);
  publish(1, "order-1");
  WorkerOptions o;
  o.guarantee = Guarantee::kExactlyOnce;
  o.processed = &*store;
  Worker w = worker(o);
  int ran = 0;
  ASSERT_EQ(*w.run([&](const Delivery&) { ++ran; }, {}, 1), 1u);
  EXPECT_EQ(ran, 0);
  const QueueWorkerStats row = only_row();
  EXPECT_EQ(row.already_done, 1u);
  EXPECT_EQ(row.in_doubt, 0u);
  EXPECT_EQ(row.acked, 1u);
}

// The slot of an older owner of our registry slot (a generation before
// ours): shown with its counts, not alive, and reset when we make a worker.
TEST_F(QueueWorkerStatsFixture, AnOlderOwnersSlotIsShownDeadAndResetWhenItsRegistrySlotMakesAWorker) {
  publish(1);
  uint32_t slot = 0;
  {
    Worker w = worker();
    Delivery d = take(w);
    ASSERT_TRUE(d.valid());
    ASSERT_TRUE(d.ack());
    slot = only_row().registry_slot;
  }
  const uint64_t at = params_of(read_file(state_path())).workers_offset + uint64_t{slot} * sizeof(format::QueueWorkerSlot);
  uint64_t owner = 0;
  {
    const std::vector<std::byte> file = read_file(state_path());
    std::memcpy(&owner, file.data() + at + offsetof(format::QueueWorkerSlot, owner), sizeof owner);
  }
  ASSERT_EQ(owner & 0x3FF, slot);
  const uint64_t gen = owner >> 10;
  const uint64_t older = slot | ((gen % 63 + 1) << 10);  // another generation of the same registry slot
  const uint64_t received = 77;
  write_at(state_path(), at + offsetof(format::QueueWorkerSlot, owner), &older, sizeof older);
  write_at(state_path(), at + offsetof(format::QueueWorkerSlot, received), &received, sizeof received);

  QueueWorkerStats row = only_row();
  EXPECT_FALSE(row.alive) << "another generation of the registry slot is gone";
  EXPECT_EQ(row.received, 77u);
  EXPECT_EQ(row.acked, 1u) << "the last counts stay";

  clock.advance_ns(10 * kSec);
  Worker w = worker();
  row = only_row();
  EXPECT_TRUE(row.alive);
  EXPECT_EQ(row.received, 0u) << "reset for the new owner";
  EXPECT_EQ(row.acked, 0u);
  EXPECT_EQ(row.workers, 1u);
  EXPECT_EQ(row.attached_unix_ms, kStartMs + 10'000);
}

// A state file made before the worker table (format version 1) keeps its
// queue working; its stats list no workers.
TEST_F(QueueWorkerStatsFixture, AVersionOneStateFileIsServedWithoutWorkerStats) {
  const format::QueueParams current = params_of(read_file(state_path()));
  format::QueueParams v1 = current;
  v1.workers_offset = 0;
  v1.worker_slots = 0;
  v1.worker_slot_bytes = 0;
  const uint64_t v1_bytes = format::queue_file_bytes_v1(v1.priorities, v1.window);
  ASSERT_EQ(v1_bytes + 1024 * 128, format::queue_file_bytes(v1.priorities, v1.window));
  rewrite_state(state_path(), v1, 1, v1_bytes);

  publish(2);
  Worker w = worker();
  Delivery d = take(w);
  ASSERT_TRUE(d.valid());
  ASSERT_TRUE(d.ack());
  d = take(w);
  ASSERT_TRUE(d.valid());
  ASSERT_TRUE(d.nack(kSec));
  const QueueStats s = stats();
  EXPECT_FALSE(s.tracks_workers);
  EXPECT_TRUE(s.workers.empty());
  EXPECT_EQ(s.total().acked, 1u);
  EXPECT_EQ(s.total().nacked, 1u);
  EXPECT_EQ(w.stats().received, 2u);

  const std::vector<std::byte> file = read_file(state_path());
  EXPECT_EQ(file.size(), v1_bytes) << "never converted";
  ipc::FileHeader h;
  std::memcpy(&h, file.data(), sizeof h);
  EXPECT_EQ(h.format_version, 1u);
  EXPECT_EQ(ipc::format_versions(ipc::FileKind::kQueueState).current, 2u);
  EXPECT_EQ(ipc::format_versions(ipc::FileKind::kQueueState).oldest, 1u);
}

// A worker table that does not fit the file is refused, naming the file,
// even under a valid header checksum.
TEST_F(QueueWorkerStatsFixture, AWorkerTableOutsideTheFileIsRefusedNamingIt) {
  const format::QueueParams current = params_of(read_file(state_path()));
  const uint64_t bytes = format::queue_file_bytes(current.priorities, current.window);
  struct Bad {
    const char* what;
    format::QueueParams p;
  };
  std::vector<Bad> bad;
  bad.push_back({"too many slots", current});
  bad.back().p.worker_slots = 5000;
  bad.push_back({"past the end", current});
  bad.back().p.workers_offset = bytes - 64;
  bad.push_back({"over the group words", current});
  bad.back().p.workers_offset = format::kQueueSlotsOffset;
  bad.push_back({"another slot size", current});
  bad.back().p.worker_slot_bytes = 64;
  bad.push_back({"offset overflows", current});
  bad.back().p.workers_offset = UINT64_MAX - 63;
  for (const Bad& b : bad) {
    rewrite_state(state_path(), b.p, 2, bytes);
    auto w = bus->create_worker("jobs");
    ASSERT_FALSE(w) << b.what;
    EXPECT_EQ(w.error().code, Errc::kCorruption) << b.what;
    EXPECT_NE(w.error().message.find(state_path()), std::string::npos) << w.error().to_string();
    EXPECT_NE(w.error().message.find("worker table"), std::string::npos) << w.error().to_string();
    EXPECT_FALSE(bus->queue_stats("jobs")) << b.what;
  }
  rewrite_state(state_path(), current, 2, bytes);
  EXPECT_TRUE(bus->create_worker("jobs")) << "the good parameters again";
}

}  // namespace
}  // namespace sluice
