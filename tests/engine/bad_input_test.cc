// Bad input to the API: invalid names, unknown topics, records that cannot
// fit, invalid options, duplicates, a full disk and a missing bus. Each is a
// clear error with the documented code, and nothing is left on disk.
#include <gtest/gtest.h>
#include <signal.h>
#include <sluice/sluice.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "segment_format.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr char kTopic[] = "t";

TopicOptions small_topic() {
  TopicOptions o;
  o.partitions = 2;
  o.segment_bytes = 64 << 10;
  return o;
}

// The code of a failed call; Errc{} (no code) on success.
template <class T>
Errc code_of(const std::expected<T, Error>& r) {
  return r ? Errc{} : r.error().code;
}

// Every path under `dir`, to prove a refused call created nothing.
std::set<std::string> snapshot(const std::string& dir) {
  std::set<std::string> paths;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) paths.insert(e.path().string());
  return paths;
}

const std::vector<std::string>& invalid_names() {
  static const std::vector<std::string> names = {
      "a/b", "..", ".", "", std::string(201, 'x'), "caf\xc3\xa9", "\xd1\x82\xd0\xb5\xd0\xbc\xd0\xb0",
      "with space", "tab\there", "new\nline", "/abs", "../escape", "a\\b", "star*", std::string("nul\0x", 5),
  };
  return names;
}

TEST(BadInput, InvalidTopicNamesAreRefusedBeforeTouchingTheFileSystem) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->create_topic(kTopic, small_topic()));
  const auto before = snapshot(dir.path());
  for (const std::string& name : invalid_names()) {
    SCOPED_TRACE("name '" + name + "'");
    auto created = bus->create_topic(name, small_topic());
    ASSERT_FALSE(created);
    EXPECT_EQ(created.error().code, Errc::kInvalidName) << created.error().to_string();
    EXPECT_EQ(code_of(validate_name(name, "topic")), Errc::kInvalidName);
    EXPECT_EQ(code_of(bus->describe_topic(name)), Errc::kInvalidName);
    EXPECT_EQ(code_of(bus->create_producer(name)), Errc::kInvalidName);
    EXPECT_EQ(code_of(bus->create_consumer(name, "g")), Errc::kInvalidName);
    EXPECT_EQ(code_of(bus->delete_topic(name)), Errc::kInvalidName);
    EXPECT_EQ(code_of(bus->seek_group("g", name, SeekTarget::beginning())), Errc::kInvalidName);
  }
  EXPECT_EQ(snapshot(dir.path()), before);
}

TEST(BadInput, InvalidGroupNamesAreRefusedBeforeTouchingTheFileSystem) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->create_topic(kTopic, small_topic()));
  const auto before = snapshot(dir.path());
  for (const std::string& name : invalid_names()) {
    SCOPED_TRACE("group '" + name + "'");
    if (!name.empty()) {  // an empty group name means "no group" to create_consumer
      auto c = bus->create_consumer(kTopic, name);
      ASSERT_FALSE(c);
      EXPECT_EQ(c.error().code, Errc::kInvalidName) << c.error().to_string();
    }
    EXPECT_EQ(code_of(bus->describe_group(name)), Errc::kInvalidName);
    EXPECT_EQ(code_of(bus->seek_group(name, kTopic, SeekTarget::end())), Errc::kInvalidName);
  }
  EXPECT_EQ(snapshot(dir.path()), before);
}

TEST(BadInput, NamesAtTheLimitsOfTheRuleAreAccepted) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  for (const std::string& name : {std::string(200, 'n'), std::string("a.b_c-D9"), std::string("...")}) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(bus->create_topic(name, small_topic()));
    auto c = bus->create_consumer(name, name);
    ASSERT_TRUE(c) << c.error().to_string();
  }
}

// Topic names may start with '.', so the bus's own hidden entries under
// topics/ (unfinished creations, deletions) must not be confused with them.
TEST(BadInput, TopicNamesStartingWithADotAreOrdinaryTopicsThatSurviveRecovery) {
  test::TempDir dir;
  const std::vector<std::string> names = {".hidden", ".tmp-orders", ".deleted-x"};
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    for (const auto& n : names) {
      ASSERT_TRUE(bus->create_topic(n, small_topic())) << n;
      auto p = bus->create_producer(n);
      ASSERT_TRUE(p->send(Message{"", "kept"}, 0).ok());
    }
    auto listed = bus->list_topics();
    ASSERT_TRUE(listed);
    for (const auto& n : names)
      EXPECT_NE(std::find(listed->begin(), listed->end(), n), listed->end()) << n << " is not listed";
  }
  auto bus = Bus::open(dir.path());  // alone: recovers
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->recovery().ran);
  for (const auto& n : names) {
    auto d = bus->describe_topic(n);
    ASSERT_TRUE(d) << n << ": " << d.error().to_string();
    EXPECT_EQ(d->partitions[0].end_offset, 1u) << n;
  }
}

TEST(BadInput, UnknownTopicIsNotFound) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  const auto before = snapshot(dir.path());
  EXPECT_EQ(code_of(bus->describe_topic("nope")), Errc::kNotFound);
  EXPECT_EQ(code_of(bus->create_producer("nope")), Errc::kNotFound);
  EXPECT_EQ(code_of(bus->create_consumer("nope", "g")), Errc::kNotFound);
  EXPECT_EQ(code_of(bus->create_consumer("nope", "")), Errc::kNotFound);
  EXPECT_EQ(code_of(bus->delete_topic("nope")), Errc::kNotFound);
  EXPECT_EQ(code_of(bus->seek_group("g", "nope", SeekTarget::end())), Errc::kNotFound);
  EXPECT_EQ(code_of(bus->verify("nope")), Errc::kNotFound);
  EXPECT_EQ(code_of(bus->describe_group("nobody")), Errc::kNotFound);
  auto c = bus->create_producer("nope");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("nope"), std::string::npos) << c.error().message;
  EXPECT_EQ(snapshot(dir.path()), before);
}

TEST(BadInput, RecordLargerThanASegmentIsTooLargeAndTheLargestThatFitsIsAccepted) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  const TopicOptions o = small_topic();
  ASSERT_TRUE(bus->create_topic(kTopic, o));
  auto producer = bus->create_producer(kTopic);
  ASSERT_TRUE(producer);
  // One frame holding one record with no key and no headers.
  const uint32_t largest = o.segment_bytes - format::kFrameHeaderBytes - format::kRecordHeaderBytes;
  static_assert(format::kFrameAlign == 8);
  ASSERT_EQ(largest % format::kFrameAlign, 0u);

  const std::string too_big(largest + 1, 'x');
  SendResult r = producer->send(Message{"", too_big}, 0);
  EXPECT_EQ(r.status, SendStatus::kTooLarge);
  EXPECT_EQ(producer->last_error().code, Errc::kTooLarge);
  EXPECT_EQ(producer->send(Message{"", std::string(2 * o.segment_bytes, 'x')}, 1).status, SendStatus::kTooLarge);
  // A key counts too.
  EXPECT_EQ(producer->send(Message{"k", std::string(largest, 'x')}, 0).status, SendStatus::kTooLarge);
  // A batch whose records fit one by one but not together.
  const std::string half(largest / 2 + 64, 'h');
  const Message batch[] = {{"", half}, {"", half}};
  EXPECT_EQ(producer->send_batch(batch, 0).status, SendStatus::kTooLarge);
  Claim claim;
  ClaimSpec spec;
  spec.value_bytes = largest + 1;
  spec.partition = 0;
  EXPECT_EQ(producer->try_claim(spec, claim), SendStatus::kTooLarge);
  EXPECT_FALSE(claim.active());

  // Nothing was appended; the largest record that fits goes in whole.
  const std::string fits(largest, 'f');
  r = producer->send(Message{"", fits}, 0);
  ASSERT_TRUE(r.ok()) << producer->last_error().to_string();
  EXPECT_EQ(r.offset, 0u);
  ASSERT_TRUE(producer->send(Message{"", "small"}, 0).ok());
  auto consumer = bus->create_consumer(kTopic, "", ConsumerOptions{});
  std::vector<RecordView> out(4);
  size_t got = 0;
  std::string first;
  for (int i = 0; i < 10 && got < 2; ++i) {
    auto n = consumer->poll(out, 100'000'000);
    ASSERT_TRUE(n);
    for (size_t k = 0; k < *n; ++k, ++got) {
      if (got == 0) {
        first = std::string(out[k].value);
      } else {
        EXPECT_EQ(out[k].value, "small");
      }
    }
  }
  EXPECT_EQ(got, 2u);
  EXPECT_EQ(first, fits);
}

TEST(BadInput, OtherInvalidSendsAreErrorsNotCrashes) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->create_topic(kTopic, small_topic()));
  auto producer = bus->create_producer(kTopic);
  ASSERT_TRUE(producer);
  EXPECT_EQ(producer->send(Message{"", "x"}, 2).status, SendStatus::kError);  // 2 partitions
  EXPECT_EQ(producer->last_error().code, Errc::kInvalidArgument);
  EXPECT_EQ(producer->send_batch({}, 0).status, SendStatus::kError);
  EXPECT_EQ(producer->last_error().code, Errc::kInvalidArgument);
  ConsumerOptions co;
  co.partitions = {5};
  EXPECT_EQ(code_of(bus->create_consumer(kTopic, "g", co)), Errc::kInvalidArgument);
  EXPECT_EQ(code_of(bus->seek_group("g", kTopic, SeekTarget::end(), 9)), Errc::kInvalidArgument);
  auto consumer = bus->create_consumer(kTopic, "");
  ASSERT_TRUE(consumer);
  EXPECT_EQ(code_of(consumer->commit(0, 1, true)), Errc::kInvalidArgument);  // no group
}

TEST(BadInput, InvalidTopicOptionsAreRefusedAndCreateNothing) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  const auto before = snapshot(dir.path());
  struct Case {
    const char* what;
    void (*change)(TopicOptions&);
  };
  const Case cases[] = {
      {"no partitions", [](TopicOptions& o) { o.partitions = 0; }},
      {"too many partitions", [](TopicOptions& o) { o.partitions = 1'000'000; }},
      {"segment below 64 KiB", [](TopicOptions& o) { o.segment_bytes = 32 << 10; }},
      {"segment above 1 GiB", [](TopicOptions& o) { o.segment_bytes = (1u << 30) + 4096; }},
      {"segment not a page multiple", [](TopicOptions& o) { o.segment_bytes = (64 << 10) + 100; }},
      {"index interval below 256", [](TopicOptions& o) { o.index_interval_bytes = 64; }},
      {"index interval above the segment", [](TopicOptions& o) { o.index_interval_bytes = 128 << 10; }},
      {"index interval not a multiple of 8", [](TopicOptions& o) { o.index_interval_bytes = 1001; }},
      {"back-pressure without a window",
       [](TopicOptions& o) { o.retention_mode = RetentionMode::kBackPressure; }},
      {"back-pressure window below a segment",
       [](TopicOptions& o) {
         o.retention_mode = RetentionMode::kBackPressure;
         o.retention_bytes = 4096;
       }},
      {"zero claim timeout", [](TopicOptions& o) { o.claim_timeout_ns = 0; }},
      {"negative claim timeout", [](TopicOptions& o) { o.claim_timeout_ns = -5; }},
      {"unknown retention mode", [](TopicOptions& o) { o.retention_mode = static_cast<RetentionMode>(9); }},
      {"unknown reset policy", [](TopicOptions& o) { o.auto_offset_reset = static_cast<OffsetReset>(9); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    TopicOptions o = small_topic();
    c.change(o);
    auto r = bus->create_topic(kTopic, o);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument) << r.error().to_string();
  }
  EXPECT_EQ(snapshot(dir.path()), before);
}

TEST(BadInput, CreatingATopicTwiceIsAlreadyExistsAndKeepsTheFirst) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->create_topic(kTopic, small_topic()));
  auto p = bus->create_producer(kTopic);
  ASSERT_TRUE(p->send(Message{"", "first"}, 0).ok());
  TopicOptions other = small_topic();
  other.partitions = 7;
  auto again = bus->create_topic(kTopic, other);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::kAlreadyExists);
  auto second_handle = Bus::open(dir.path());
  ASSERT_TRUE(second_handle);
  EXPECT_EQ(code_of(second_handle->create_topic(kTopic, small_topic())), Errc::kAlreadyExists);
  auto d = bus->describe_topic(kTopic);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->partitions.size(), 2u);
  EXPECT_EQ(d->partitions[0].end_offset, 1u);
}

TEST(BadInput, MissingBusDirectoryWithoutCreateIsNotFoundAndCreatesNothing) {
  test::TempDir dir;
  const std::string missing = dir.sub("no-such-bus");
  BusOptions o;
  o.create_if_missing = false;
  auto bus = Bus::open(missing, o);
  ASSERT_FALSE(bus);
  EXPECT_EQ(bus.error().code, Errc::kNotFound);
  EXPECT_NE(bus.error().message.find(missing), std::string::npos) << bus.error().message;
  EXPECT_FALSE(std::filesystem::exists(missing));
  auto empty = Bus::open("");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, Errc::kInvalidArgument);
}

// Lowers this (child) process's file size limit; writes past it fail with
// EFBIG instead of raising SIGXFSZ.
void limit_file_size(rlim_t bytes) {
  ::signal(SIGXFSZ, SIG_IGN);
  rlimit lim;
  ::getrlimit(RLIMIT_FSIZE, &lim);
  lim.rlim_cur = bytes;
  ::setrlimit(RLIMIT_FSIZE, &lim);
}

bool has_temp_files(const std::string& dir) {
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.find(".tmp") != std::string::npos) return true;
  }
  return false;
}

TEST(BadInput, FullDiskWhenASegmentIsCreatedIsANoSpaceErrorNotASignal) {
  test::TempDir dir;
  const int code = test::wait_child(test::fork_child([&] {
                                      auto bus = Bus::open(dir.path());
                                      if (!bus) return 10;
                                      limit_file_size(1 << 20);
                                      TopicOptions o;
                                      o.segment_bytes = 64 << 20;  // far beyond the limit
                                      if (!bus->create_topic(kTopic, o)) return 11;
                                      auto producer = bus->create_producer(kTopic);
                                      if (!producer) return 12;
                                      SendResult r = producer->send(Message{"", "x"}, 0);
                                      if (r.status != SendStatus::kError) return 13;
                                      if (producer->last_error().code != Errc::kNoSpace) return 14;
                                      // A failed creation leaves no file behind.
                                      if (has_temp_files(dir.path())) return 15;
                                      auto d = bus->describe_topic(kTopic);
                                      if (!d || !d->partitions[0].segments.empty()) return 16;
                                      return 0;
                                    }),
                                    20'000);
  EXPECT_EQ(code, 0) << (code > 128 ? "killed by a signal" : "see the exit codes in the test body");
}

TEST(BadInput, FullDiskWhenATopicIsCreatedIsANoSpaceErrorAndLeavesNoTopic) {
  test::TempDir dir;
  const int code = test::wait_child(test::fork_child([&] {
                                      auto bus = Bus::open(dir.path());
                                      if (!bus) return 10;
                                      limit_file_size(1024);  // below one control file
                                      auto r = bus->create_topic(kTopic, TopicOptions{});
                                      if (r) return 11;
                                      if (r.error().code != Errc::kNoSpace) return 12;
                                      if (has_temp_files(dir.path())) return 13;
                                      auto listed = bus->list_topics();
                                      if (!listed || !listed->empty()) return 14;
                                      if (std::filesystem::exists(dir.path() + "/topics/" + kTopic)) return 15;
                                      return 0;
                                    }),
                                    20'000);
  EXPECT_EQ(code, 0) << (code > 128 ? "killed by a signal" : "see the exit codes in the test body");
}

}  // namespace
}  // namespace sluice
