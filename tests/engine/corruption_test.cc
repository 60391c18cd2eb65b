// Damaged files: a truncated tail, flipped bytes in the middle of a segment,
// damaged headers and files of another format version. Detection and
// recovery, never damaged bytes handed out as data. Every byte position comes
// from the format headers' constants.
#include <fcntl.h>
#include <sys/stat.h>
#include <gtest/gtest.h>
#include <sluice/sluice.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ipc/file_header.h"
#include "segment_format.h"
#include "support/test_support.h"
#include "topic_format.h"

namespace sluice {
namespace {

using format::kFrameHeaderBytes;
using format::kRecordHeaderBytes;

constexpr char kTopic[] = "t";
constexpr int kRecords = 100;
constexpr int kVictim = 50;  // the record whose bytes get damaged

std::string value_of(int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "value-%03d", i);
  return buf;
}
// Every record: no key, no headers, a value of this size, one per frame.
const uint32_t kValueBytes = static_cast<uint32_t>(value_of(0).size());
constexpr uint32_t frame_bytes(uint32_t value) {
  return kFrameHeaderBytes + format::align_up(format::record_bytes(0, 0, value));
}
// Data-region position of record i's frame.
uint64_t frame_position(int i) { return uint64_t{frame_bytes(kValueBytes)} * i; }

TopicOptions topic_options() {
  TopicOptions o;
  o.partitions = 1;
  o.segment_bytes = 64 << 10;
  o.index_interval_bytes = 256;
  return o;
}

// Creates the topic with kRecords records and returns its one segment's path.
std::string fill(const std::string& dir) {
  auto bus = Bus::open(dir);
  EXPECT_TRUE(bus);
  EXPECT_TRUE(bus->create_topic(kTopic, topic_options()));
  auto producer = bus->create_producer(kTopic);
  for (int i = 0; i < kRecords; ++i) EXPECT_TRUE(producer->send(Message{"", value_of(i)}, 0).ok());
  auto d = bus->describe_topic(kTopic);
  EXPECT_TRUE(d && d->partitions[0].segments.size() == 1);
  return d->partitions[0].segments[0].path;
}

ipc::FileHeader read_header(const std::string& path) {
  ipc::FileHeader h{};
  int fd = ::open(path.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0) << path;
  EXPECT_EQ(::pread(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
  ::close(fd);
  return h;
}

void write_at(const std::string& path, uint64_t at, const void* bytes, size_t n) {
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::pwrite(fd, bytes, n, static_cast<off_t>(at)), static_cast<ssize_t>(n));
  ::close(fd);
}

void flip_byte(const std::string& path, uint64_t at, unsigned char mask = 0x01) {
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path;
  unsigned char b;
  ASSERT_EQ(::pread(fd, &b, 1, static_cast<off_t>(at)), 1);
  b ^= mask;
  ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(at)), 1);
  ::close(fd);
}

// Replaces the state bits of record i's claim word (see segment_format.h).
void set_claim_state(const std::string& seg, uint64_t word_at, uint64_t state) {
  int fd = ::open(seg.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << seg;
  uint64_t w;
  ASSERT_EQ(::pread(fd, &w, sizeof w, static_cast<off_t>(word_at)), static_cast<ssize_t>(sizeof w));
  ASSERT_EQ(format::claim_state(w), format::kCommitted);
  w = (w & ~uint64_t{7}) | state;
  ASSERT_EQ(::pwrite(fd, &w, sizeof w, static_cast<off_t>(word_at)), static_cast<ssize_t>(sizeof w));
  ::close(fd);
}
constexpr uint64_t kNoSuchState = 7;  // above kEndOfSegment: no ClaimState has it

// Byte `at` of record i's frame, as a file offset.
uint64_t file_offset(const std::string& seg, int i, uint64_t at) {
  return read_header(seg).data_offset + frame_position(i) + at;
}

struct Read {
  std::vector<uint64_t> offsets;
  std::vector<std::string> values;
  std::vector<ConsumerEvent> events;
  std::optional<Error> error;
};

// Reads the partition from the start until it is idle or poll fails.
Read read_all(Bus& bus, bool skip_corrupt, int max_polls = 50) {
  Read r;
  ConsumerOptions o;
  o.skip_corrupt = skip_corrupt;
  o.on_event = [&](const ConsumerEvent& e) { r.events.push_back(e); };
  auto consumer = bus.create_consumer(kTopic, "", o);
  if (!consumer) {
    r.error = consumer.error();
    return r;
  }
  std::vector<RecordView> out(32);
  for (int polls = 0; polls < max_polls; ++polls) {
    auto n = consumer->poll(out, 20'000'000);
    if (!n) {
      r.error = n.error();
      return r;
    }
    if (*n == 0) break;
    for (size_t i = 0; i < *n; ++i) {
      r.offsets.push_back(out[i].offset);
      r.values.emplace_back(out[i].value);
    }
  }
  return r;
}

bool mentions(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

TEST(Corruption, FormatConstantsDescribeTheFramesTheProducerWrites) {
  test::TempDir dir;
  fill(dir.path());
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  ConsumerOptions o;
  auto consumer = bus->create_consumer(kTopic, "", o);
  std::vector<RecordView> out(kRecords);
  auto n = consumer->poll(out, 1'000'000'000);
  ASSERT_TRUE(n);
  ASSERT_EQ(*n, static_cast<size_t>(kRecords));
  for (int i = 0; i < kRecords; ++i) EXPECT_EQ(out[i].position, frame_position(i));
}

TEST(Corruption, TruncatedTailIsRestoredAndCutAtTheLastWholeRecord) {
  struct Cut {
    const char* where;
    uint64_t at;  // within record kVictim's frame
    bool torn;
  };
  const Cut cuts[] = {
      {"at a frame boundary", 0, false},
      {"inside the claim word", 4, true},
      {"inside the record header", kFrameHeaderBytes + offsetof(format::RecordHeader, timestamp_ns), true},
      {"inside the value", kFrameHeaderBytes + kRecordHeaderBytes + 3, true},
  };
  for (const Cut& cut : cuts) {
    SCOPED_TRACE(cut.where);
    test::TempDir dir;
    const std::string seg = fill(dir.path());  // every handle closed on return
    const ipc::FileHeader h = read_header(seg);
    ASSERT_EQ(::truncate(seg.c_str(), static_cast<off_t>(file_offset(seg, kVictim, cut.at))), 0);

    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus) << bus.error().to_string();
    const RecoveryReport& rec = bus->recovery();
    EXPECT_TRUE(rec.ran);
    EXPECT_EQ(rec.torn_frames, cut.torn ? 1u : 0u);
    bool noted = false;
    for (const auto& note : rec.notes) noted |= mentions(note, seg) && mentions(note, "truncated");
    EXPECT_TRUE(noted) << "no recovery note names the truncated segment";
    struct stat st;
    ASSERT_EQ(::stat(seg.c_str(), &st), 0);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), h.file_bytes) << "size not restored";

    Read r = read_all(*bus, false);
    ASSERT_FALSE(r.error) << r.error->to_string();
    ASSERT_EQ(r.offsets.size(), static_cast<size_t>(kVictim));
    for (int i = 0; i < kVictim; ++i) {
      EXPECT_EQ(r.offsets[i], static_cast<uint64_t>(i));
      EXPECT_EQ(r.values[i], value_of(i));
    }
    auto producer = bus->create_producer(kTopic);
    SendResult s = producer->send(Message{"", "after"}, 0);
    ASSERT_TRUE(s.ok()) << producer->last_error().to_string();
    EXPECT_EQ(s.offset, static_cast<uint64_t>(kVictim));
    auto v = bus->verify(kTopic);
    ASSERT_TRUE(v);
    EXPECT_TRUE(v->ok()) << v->issues.front().what;
    EXPECT_EQ(v->records, kVictim + 1u);
  }
}

// A byte flipped in record kVictim, somewhere its checksum or chaining
// covers: reported, never returned, and the records after it survive.
struct Flip {
  const char* where;
  uint64_t at;  // within the frame
};
const Flip kFlips[] = {
    {"in the value", kFrameHeaderBytes + kRecordHeaderBytes + 2},
    {"in the timestamp", kFrameHeaderBytes + offsetof(format::RecordHeader, timestamp_ns) + 1},
    {"in the checksum", kFrameHeaderBytes + offsetof(format::RecordHeader, checksum)},
    {"in the frame's base offset", offsetof(format::FrameHeader, base_offset)},
};

TEST(Corruption, FlippedByteInTheMiddleIsAnErrorAndItsRecordIsNeverReturned) {
  for (const Flip& flip : kFlips) {
    SCOPED_TRACE(flip.where);
    test::TempDir dir;
    const std::string seg = fill(dir.path());
    flip_byte(seg, file_offset(seg, kVictim, flip.at));
    auto bus = Bus::open(dir.path());  // recovers: the damage is not a torn tail
    ASSERT_TRUE(bus);
    EXPECT_EQ(bus->recovery().torn_frames, 0u);
    Read r = read_all(*bus, false);
    ASSERT_TRUE(r.error) << "the damaged record was not reported";
    EXPECT_EQ(r.error->code, Errc::kCorruption);
    EXPECT_TRUE(mentions(r.error->message, seg)) << r.error->message;
    ASSERT_EQ(r.offsets.size(), static_cast<size_t>(kVictim)) << "records before the damage are readable";
    for (int i = 0; i < kVictim; ++i) EXPECT_EQ(r.values[i], value_of(i));
  }
}

TEST(Corruption, SkipCorruptSkipsTheDamagedRecordWithAnEventAndVerifyReportsIt) {
  for (const Flip& flip : kFlips) {
    SCOPED_TRACE(flip.where);
    test::TempDir dir;
    const std::string seg = fill(dir.path());
    flip_byte(seg, file_offset(seg, kVictim, flip.at));
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    Read r = read_all(*bus, true);
    ASSERT_FALSE(r.error) << r.error->to_string();
    ASSERT_EQ(r.offsets.size(), kRecords - 1u);
    for (size_t k = 0; k < r.offsets.size(); ++k) {
      const int i = static_cast<int>(k) < kVictim ? static_cast<int>(k) : static_cast<int>(k) + 1;
      EXPECT_EQ(r.offsets[k], static_cast<uint64_t>(i));
      EXPECT_EQ(r.values[k], value_of(i));
    }
    ASSERT_EQ(r.events.size(), 1u);
    EXPECT_EQ(r.events[0].kind, ConsumerEvent::Kind::kCorruption);
    EXPECT_EQ(r.events[0].from_offset, static_cast<uint64_t>(kVictim));
    EXPECT_EQ(r.events[0].to_offset, kVictim + 1u);
    EXPECT_TRUE(mentions(r.events[0].message, seg)) << r.events[0].message;

    auto v = bus->verify(kTopic);
    ASSERT_TRUE(v);
    ASSERT_EQ(v->issues.size(), 1u);
    EXPECT_EQ(v->issues[0].segment, seg);
    EXPECT_EQ(v->issues[0].offset, static_cast<uint64_t>(kVictim));
    EXPECT_EQ(v->issues[0].position, frame_position(kVictim));
    EXPECT_EQ(v->records, kRecords - 1u);
  }
}

// The claim word of a frame in the middle gets an invalid state: a reader
// cannot step over it and resynchronises at the next index slot.
TEST(Corruption, DamagedFrameWordInTheMiddleIsSkippedToTheNextIndexedFrame) {
  test::TempDir dir;
  const std::string seg = fill(dir.path());
  auto bus = Bus::open(dir.path());  // stays attached: no recovery below
  ASSERT_TRUE(bus);
  set_claim_state(seg, file_offset(seg, kVictim, offsetof(format::FrameHeader, claim)), kNoSuchState);
  Read strict = read_all(*bus, false);
  ASSERT_TRUE(strict.error);
  EXPECT_EQ(strict.error->code, Errc::kCorruption);
  EXPECT_EQ(strict.offsets.size(), static_cast<size_t>(kVictim));

  Read r = read_all(*bus, true);
  ASSERT_FALSE(r.error) << r.error->to_string();
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].kind, ConsumerEvent::Kind::kCorruption);
  EXPECT_EQ(r.events[0].from_offset, static_cast<uint64_t>(kVictim));
  ASSERT_GT(r.offsets.size(), static_cast<size_t>(kVictim));
  EXPECT_EQ(r.offsets.back(), kRecords - 1u);
  for (size_t k = 1; k < r.offsets.size(); ++k) ASSERT_GT(r.offsets[k], r.offsets[k - 1]);
  for (size_t k = 0; k < r.offsets.size(); ++k) {
    EXPECT_NE(r.offsets[k], static_cast<uint64_t>(kVictim));
    EXPECT_EQ(r.values[k], value_of(static_cast<int>(r.offsets[k])));
  }
  // The reader resumes at the frame covering the next index slot.
  const uint64_t interval = topic_options().index_interval_bytes;
  const uint64_t resume = (frame_position(kVictim) / interval + 1) * interval / frame_bytes(kValueBytes);
  EXPECT_EQ(r.events[0].to_offset, resume);
  EXPECT_EQ(r.offsets.size(), kVictim + (kRecords - resume));
  auto v = bus->verify(kTopic);
  ASSERT_TRUE(v);
  ASSERT_FALSE(v->ok());
  EXPECT_EQ(v->issues[0].position, frame_position(kVictim));
  EXPECT_TRUE(mentions(v->issues[0].what, "frame word")) << v->issues[0].what;
}

// Recovery cuts a torn tail, but a damaged frame followed by valid ones (as
// the index shows) is not a tail: the committed records after it stay.
TEST(Corruption, RecoveryKeepsValidRecordsAfterADamagedFrameWordInTheMiddle) {
  test::TempDir dir;
  const std::string seg = fill(dir.path());
  set_claim_state(seg, file_offset(seg, kVictim, offsetof(format::FrameHeader, claim)), kNoSuchState);
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  EXPECT_TRUE(bus->recovery().ran);
  Read r = read_all(*bus, true);
  ASSERT_FALSE(r.error) << r.error->to_string();
  ASSERT_FALSE(r.offsets.empty());
  EXPECT_EQ(r.offsets.back(), kRecords - 1u) << "recovery destroyed committed records after the damage";
  auto d = bus->describe_topic(kTopic);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->partitions[0].end_offset, static_cast<uint64_t>(kRecords));
}

// Runs `body` in a child with a time bound: a hang is a failure, not a stuck
// test run. Codes: 0 ok; others explained by `what`.
int bounded(const std::function<int()>& body, int timeout_ms = 3'000) {
  return test::wait_child(test::fork_child(body), timeout_ms);
}

// What a consumer of a topic with a bad file reports: 0 when it is an Error
// with `code` naming `path` (from create_consumer or poll), 1 data handed
// out, 2 another code, 3 the file is not named, 4 no error at all.
int consumer_reports(const std::string& dir, Errc code, const std::string& path) {
  auto check = [&](const Error& e) { return e.code != code ? 2 : mentions(e.message, path) ? 0 : 3; };
  auto bus = Bus::open(dir);
  if (!bus) return check(bus.error());
  auto consumer = bus->create_consumer(kTopic, "");
  if (!consumer) return check(consumer.error());
  std::vector<RecordView> out(8);
  for (int i = 0; i < 5; ++i) {
    auto n = consumer->poll(out, 10'000'000);
    if (!n) return check(n.error());
    if (*n > 0) return 1;
  }
  return 4;
}

// The same for a producer's send (kError with last_error).
int producer_reports(const std::string& dir, Errc code, const std::string& path) {
  auto check = [&](const Error& e) { return e.code != code ? 2 : mentions(e.message, path) ? 0 : 3; };
  auto bus = Bus::open(dir);
  if (!bus) return check(bus.error());
  auto producer = bus->create_producer(kTopic);
  if (!producer) return check(producer.error());
  SendResult r = producer->send(Message{"", "x"}, 0);
  if (r.ok()) return 4;
  return check(producer->last_error());
}

const char* explain(int code) {
  switch (code) {
    case -1: return "hung (killed after the time bound)";
    case 0: return "ok";
    case 1: return "records were handed out";
    case 2: return "an error with another code";
    case 3: return "an error that does not name the file";
    case 4: return "no error";
  }
  return "crashed or failed";
}

// Damages the file header of `path` and checks every way in reports it.
void expect_bad_segment_reported(const std::string& dir, const std::string& seg, Errc code) {
  {
    auto bus = Bus::open(dir);
    if (!bus) {
      EXPECT_EQ(bus.error().code, code);
      EXPECT_TRUE(mentions(bus.error().message, seg)) << bus.error().message;
    } else {
      bool noted = false;
      for (const auto& n : bus->recovery().notes) noted |= mentions(n, seg);
      EXPECT_TRUE(noted) << "recovery says nothing about " << seg;
      auto v = bus->verify(kTopic);
      if (v) {
        ASSERT_FALSE(v->ok());
        EXPECT_EQ(v->issues[0].segment, seg);
        EXPECT_TRUE(mentions(v->issues[0].what, std::string(errc_name(code)))) << v->issues[0].what;
      } else {
        EXPECT_EQ(v.error().code, code);
        EXPECT_TRUE(mentions(v.error().message, seg));
      }
    }
  }
  const int c = bounded([&] { return consumer_reports(dir, code, seg); });
  EXPECT_EQ(c, 0) << "consumer: " << explain(c);
  const int p = bounded([&] { return producer_reports(dir, code, seg); });
  EXPECT_EQ(p, 0) << "producer: " << explain(p);
}

TEST(Corruption, DamagedSegmentHeaderIsAClearErrorNamingTheFile) {
  test::TempDir dir;
  const std::string seg = fill(dir.path());
  flip_byte(seg, ipc::kFileHeaderBytes + offsetof(format::SegmentParams, data_bytes) + 1);
  expect_bad_segment_reported(dir.path(), seg, Errc::kCorruption);
}

TEST(Corruption, SegmentOfAnotherFormatVersionIsAVersionMismatchNamingTheFile) {
  test::TempDir dir;
  const std::string seg = fill(dir.path());
  const uint32_t other = ipc::format_versions(ipc::FileKind::kSegment).current + 1;
  write_at(seg, offsetof(ipc::FileHeader, format_version), &other, sizeof other);
  expect_bad_segment_reported(dir.path(), seg, Errc::kVersionMismatch);
}

// Damages a small control file and checks that the topic's operations fail
// with `code`, naming it.
void expect_topic_unusable(const std::string& dir, const std::string& path, Errc code) {
  auto bus = Bus::open(dir);
  ASSERT_TRUE(bus) << bus.error().to_string();
  bool noted = false;
  for (const auto& n : bus->recovery().notes) noted |= mentions(n, path);
  EXPECT_TRUE(noted) << "recovery says nothing about " << path;
  auto expect_error = [&](const Error& e, const char* op) {
    EXPECT_EQ(e.code, code) << op << ": " << e.to_string();
    EXPECT_TRUE(mentions(e.message, path)) << op << ": " << e.message;
  };
  auto d = bus->describe_topic(kTopic);
  ASSERT_FALSE(d);
  expect_error(d.error(), "describe_topic");
  auto p = bus->create_producer(kTopic);
  ASSERT_FALSE(p);
  expect_error(p.error(), "create_producer");
  auto c = bus->create_consumer(kTopic, "g");
  ASSERT_FALSE(c);
  expect_error(c.error(), "create_consumer");
  auto v = bus->verify(kTopic);
  ASSERT_FALSE(v);
  expect_error(v.error(), "verify");
}

TEST(Corruption, DamagedTopicFileHeaderIsAClearErrorNamingTheFile) {
  test::TempDir dir;
  fill(dir.path());
  const std::string path = dir.path() + "/topics/" + kTopic + "/topic";
  flip_byte(path, ipc::kFileHeaderBytes + offsetof(format::TopicParams, segment_bytes) + 2);
  expect_topic_unusable(dir.path(), path, Errc::kCorruption);
}

TEST(Corruption, DamagedPartitionStateHeaderIsAClearErrorNamingTheFile) {
  test::TempDir dir;
  fill(dir.path());
  const std::string path = dir.path() + "/topics/" + kTopic + "/0/state";
  flip_byte(path, offsetof(ipc::FileHeader, data_offset));
  expect_topic_unusable(dir.path(), path, Errc::kCorruption);
}

TEST(Corruption, TopicFileOfAnotherFormatVersionIsAVersionMismatch) {
  test::TempDir dir;
  fill(dir.path());
  const std::string path = dir.path() + "/topics/" + kTopic + "/topic";
  const uint32_t other = ipc::format_versions(ipc::FileKind::kTopic).current + 7;
  write_at(path, offsetof(ipc::FileHeader, format_version), &other, sizeof other);
  expect_topic_unusable(dir.path(), path, Errc::kVersionMismatch);
}

TEST(Corruption, BusOfAnotherFormatVersionIsRefusedAtOpen) {
  test::TempDir dir;
  fill(dir.path());
  const std::string path = dir.path() + "/bus.meta";
  const uint32_t other = ipc::format_versions(ipc::FileKind::kBus).current + 1;
  write_at(path, offsetof(ipc::FileHeader, format_version), &other, sizeof other);
  auto bus = Bus::open(dir.path());
  ASSERT_FALSE(bus);
  EXPECT_EQ(bus.error().code, Errc::kVersionMismatch);
  EXPECT_TRUE(mentions(bus.error().message, path)) << bus.error().message;
}

TEST(Corruption, GroupOffsetsOfAnotherFormatVersionAreAVersionMismatch) {
  test::TempDir dir;
  fill(dir.path());
  {
    auto bus = Bus::open(dir.path());
    auto c = bus->create_consumer(kTopic, "g");
    ASSERT_TRUE(c);
  }
  const std::string path = dir.path() + "/groups/g/" + kTopic + ".offsets";
  const uint32_t other = ipc::format_versions(ipc::FileKind::kGroupOffsets).current + 1;
  write_at(path, offsetof(ipc::FileHeader, format_version), &other, sizeof other);
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  auto c = bus->create_consumer(kTopic, "g");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::kVersionMismatch);
  EXPECT_TRUE(mentions(c.error().message, path)) << c.error().message;
  auto d = bus->describe_group("g");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, Errc::kVersionMismatch);
}

}  // namespace
}  // namespace sluice
