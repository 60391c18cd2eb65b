// The PREPARED claim state (segment format version 2, docs/exactly-once.md):
// a transaction's frame that is written but not decided. Until transactions
// write it, these tests make it by rewriting a committed frame's word in the
// file (the bus maps it shared, so every mapping sees the change), then
// check what every walker does with it: readers by isolation, writers,
// verify and recovery; and that version-1 segments are still read.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sluice/sluice.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "ipc/file_header.h"
#include "segment_format.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr const char* kTopic = "t";
constexpr int kRecords = 5;

class PreparedFrame : public ::testing::Test {
 protected:
  void SetUp() override {
    open_bus();
    TopicOptions t;
    t.partitions = 1;
    t.segment_bytes = 64 << 10;
    ASSERT_TRUE(bus_->create_topic(kTopic, t));
    auto p = bus_->create_producer(kTopic);
    ASSERT_TRUE(p);
    for (int i = 0; i < kRecords; ++i) ASSERT_TRUE(p->send(Message{"", "v" + std::to_string(i)}).ok());
    auto d = bus_->describe_topic(kTopic);
    ASSERT_TRUE(d);
    seg_ = d->partitions[0].segments.at(0).path;
  }

  // A manual clock: a reader waiting at a PREPARED frame asks its producer
  // slot about it once a millisecond of bus time has passed, and the frames
  // made here belong to no transaction, so that check would abort them.
  void open_bus() {
    BusOptions o;
    o.clock = &clock_;
    auto b = Bus::open(dir_.path(), o);
    ASSERT_TRUE(b) << b.error().to_string();
    bus_.emplace(std::move(*b));
  }

  uint64_t pread_u64(uint64_t at) const {
    const int fd = ::open(seg_.c_str(), O_RDONLY);
    EXPECT_GE(fd, 0);
    uint64_t v = 0;
    EXPECT_EQ(::pread(fd, &v, sizeof v, static_cast<off_t>(at)), static_cast<ssize_t>(sizeof v));
    ::close(fd);
    return v;
  }
  void pwrite_bytes(uint64_t at, const void* bytes, size_t n) const {
    const int fd = ::open(seg_.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, bytes, n, static_cast<off_t>(at)), static_cast<ssize_t>(n));
    ::close(fd);
  }

  // File offset of frame i's claim word (one record per frame here).
  uint64_t word_at(int i) const {
    ipc::FileHeader h{};
    const int fd = ::open(seg_.c_str(), O_RDONLY);
    EXPECT_EQ(::pread(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
    ::close(fd);
    uint64_t at = h.data_offset;
    for (int k = 0; k < i; ++k) at += format::claim_length(pread_u64(at));
    return at;
  }
  format::ClaimState state_of(int i) const { return format::claim_state(pread_u64(word_at(i))); }
  void set_state(int i, format::ClaimState s) const {
    const uint64_t at = word_at(i);
    const uint64_t w = format::with_state(pread_u64(at), s);
    pwrite_bytes(at, &w, sizeof w);
  }

  Consumer consumer(Isolation isolation) {
    ConsumerOptions o;
    o.isolation = isolation;
    o.auto_commit = false;
    auto c = bus_->create_consumer(kTopic, "", o);
    EXPECT_TRUE(c) << c.error().to_string();
    return std::move(*c);
  }

  // Offsets a few non-blocking polls return (a pending frame returns none).
  static std::vector<uint64_t> drain(Consumer& c) {
    std::vector<uint64_t> got;
    std::vector<RecordView> out(16);
    for (int polls = 0; polls < 4; ++polls) {
      auto n = c.try_poll(out);
      EXPECT_TRUE(n) << n.error().to_string();
      if (!n) break;
      for (size_t k = 0; k < *n; ++k) got.push_back(out[k].offset);
    }
    return got;
  }

  test::TempDir dir_;
  ManualClock clock_;
  std::optional<Bus> bus_;
  std::string seg_;
};

TEST_F(PreparedFrame, ReadCommittedStopsAtItAndReadUncommittedReadsThrough) {
  set_state(2, format::kPrepared);
  Consumer committed = consumer(Isolation::kReadCommitted);
  Consumer uncommitted = consumer(Isolation::kReadUncommitted);
  EXPECT_EQ(drain(committed), (std::vector<uint64_t>{0, 1}));
  EXPECT_EQ(drain(uncommitted), (std::vector<uint64_t>{0, 1, 2, 3, 4}));
  // The decision: the reader that waited goes on from the frame.
  set_state(2, format::kCommitted);
  EXPECT_EQ(drain(committed), (std::vector<uint64_t>{2, 3, 4}));
}

TEST_F(PreparedFrame, AnAbortedDecisionIsSkippedByReadCommittedReaders) {
  set_state(1, format::kPrepared);
  Consumer committed = consumer(Isolation::kReadCommitted);
  EXPECT_EQ(drain(committed), (std::vector<uint64_t>{0}));
  set_state(1, format::kAborted);
  EXPECT_EQ(drain(committed), (std::vector<uint64_t>{2, 3, 4}));
}

TEST_F(PreparedFrame, WritersStepOverItAndVerifyChecksItsRecordsWithoutCountingThem) {
  set_state(kRecords - 1, format::kPrepared);
  auto p = bus_->create_producer(kTopic);
  ASSERT_TRUE(p);
  const SendResult r = p->send(Message{"", "after"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.offset, static_cast<uint64_t>(kRecords));
  auto v = bus_->verify(kTopic);
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_TRUE(v->ok()) << v->issues.at(0).what;
  EXPECT_EQ(v->frames, kRecords + 1u);
  EXPECT_EQ(v->prepared_frames, 1u);
  EXPECT_EQ(v->records, static_cast<uint64_t>(kRecords));
  // A damaged record in a prepared frame is found like any other.
  const uint64_t last_byte = word_at(kRecords - 1) + format::kFrameHeaderBytes + format::kRecordHeaderBytes;
  const uint64_t before = pread_u64(last_byte);
  const uint64_t flipped = before ^ 1;
  pwrite_bytes(last_byte, &flipped, sizeof flipped);
  v = bus_->verify(kTopic);
  ASSERT_TRUE(v);
  EXPECT_FALSE(v->ok());
}

TEST_F(PreparedFrame, RecoveryLeavesItForItsTransactionToDecide) {
  set_state(3, format::kPrepared);
  bus_.reset();
  open_bus();  // alone: recovery runs, and aborts dead writers' CLAIMED frames only
  EXPECT_EQ(state_of(3), format::kPrepared);
  Consumer committed = consumer(Isolation::kReadCommitted);
  EXPECT_EQ(drain(committed), (std::vector<uint64_t>{0, 1, 2}));
}

TEST_F(PreparedFrame, AVersionOneSegmentIsReadAsItIs) {
  ASSERT_GE(ipc::format_versions(ipc::FileKind::kSegment).current, 2u);
  bus_.reset();
  // Rewrite the header as a version-1 build made it: same layout, version 1.
  ipc::FileHeader h{};
  format::SegmentParams params{};
  {
    const int fd = ::open(seg_.c_str(), O_RDONLY);
    ASSERT_EQ(::pread(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
    ASSERT_EQ(::pread(fd, &params, sizeof params, ipc::kFileHeaderBytes), static_cast<ssize_t>(sizeof params));
    ::close(fd);
  }
  ASSERT_EQ(h.format_version, ipc::format_versions(ipc::FileKind::kSegment).current);
  std::vector<std::byte> header(ipc::kFileHeaderBytes + sizeof params);
  ipc::write_file_header(header.data(), ipc::FileKind::kSegment, h.data_offset, h.file_bytes, &params,
                         sizeof params, 1);
  pwrite_bytes(0, header.data(), header.size());
  open_bus();
  Consumer c = consumer(Isolation::kReadCommitted);
  EXPECT_EQ(drain(c), (std::vector<uint64_t>{0, 1, 2, 3, 4}));
  auto v = bus_->verify(kTopic);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok());
}

}  // namespace
}  // namespace sluice
