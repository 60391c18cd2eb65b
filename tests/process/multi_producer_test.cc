// Several producer processes appending to the same partitions at once, over
// a real shared mapping: every committed record appears exactly once, each
// producer's order is kept within a partition, offsets stay dense, and the
// writer lock keeps exclusive and shared producers apart across processes.
#include <gtest/gtest.h>
#include <sluice/sluice.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "process/process_helpers.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr uint32_t kProducers = 5;
constexpr uint32_t kPartitions = 2;
constexpr int kLoopsPerProducer = 8000;
constexpr char kTopic[] = "events";

// The value every producer writes: who wrote it, for which partition, and
// its place in that producer's sequence for the partition. A filler of
// varying length makes frames of different sizes collide.
struct Stamp {
  uint32_t producer;
  uint32_t partition;
  uint64_t sequence;
};

std::string encode(const Stamp& s) {
  std::string v(sizeof s + s.sequence % 41, static_cast<char>('a' + s.producer));
  std::memcpy(v.data(), &s, sizeof s);
  return v;
}

bool decode(std::string_view v, Stamp* s) {
  if (v.size() < sizeof *s) return false;
  std::memcpy(s, v.data(), sizeof *s);
  return v.size() == sizeof *s + s->sequence % 41;
}

TopicOptions topic_options() {
  TopicOptions o;
  o.partitions = kPartitions;
  o.segment_bytes = 64 << 10;  // small: the producers race across many rolls
  o.index_interval_bytes = 512;
  return o;
}

// Records one loop iteration of a producer adds; mode i % 4 (see producer_main).
uint64_t records_per_producer() {
  uint64_t n = kPartitions;  // the initial sends that take the writer locks
  for (int i = 0; i < kLoopsPerProducer; ++i) n += (i % 4 == 2) ? 3 : 1;
  return n;
}

// A producer process: takes the writer lock of every partition with one
// send each, reports ready, waits for "go", then appends with every append
// path (explicit partition, keyed, batch, zero-copy claim). Exit 0 on success.
int producer_main(const std::string& dir, uint32_t id, int ready_fd, int go_fd) {
  auto bus = Bus::open(dir);
  if (!bus) return 10;
  auto producer = bus->create_producer(kTopic);
  if (!producer) return 11;
  std::array<uint64_t, kPartitions> next_seq{};
  std::array<uint64_t, kPartitions> last_offset;
  last_offset.fill(UINT64_MAX);
  // Offsets a producer gets back in one partition must grow.
  auto acked = [&](uint32_t p, uint64_t offset) {
    const bool ok = last_offset[p] == UINT64_MAX || offset > last_offset[p];
    last_offset[p] = offset;
    return ok;
  };
  for (uint32_t p = 0; p < kPartitions; ++p) {
    SendResult r = producer->send(Message{"", encode({id, p, next_seq[p]++})}, p);
    if (!r.ok() || !acked(p, r.offset)) return 12;
  }
  char c = 'r';
  if (!test::write_all(ready_fd, &c, 1)) return 13;
  if (!test::read_exact(go_fd, &c, 1, 30'000)) return 14;
  for (int i = 0; i < kLoopsPerProducer; ++i) {
    const uint32_t explicit_p = static_cast<uint32_t>(i) % kPartitions;
    switch (i % 4) {
      case 0: {
        SendResult r = producer->send(Message{"", encode({id, explicit_p, next_seq[explicit_p]++})}, explicit_p);
        if (!r.ok() || r.partition != explicit_p || !acked(explicit_p, r.offset)) return 20;
        break;
      }
      case 1: {
        const std::string key = "producer-" + std::to_string(id) + "-key-" + std::to_string(i % 7);
        const uint32_t p = producer->partition_for_key(key);
        SendResult r = producer->send(Message{key, encode({id, p, next_seq[p]++})});
        if (!r.ok() || r.partition != p || !acked(p, r.offset)) return 21;
        break;
      }
      case 2: {
        std::string values[3];
        Message batch[3];
        for (int k = 0; k < 3; ++k) {
          values[k] = encode({id, explicit_p, next_seq[explicit_p]++});
          batch[k] = Message{"", values[k]};
        }
        SendResult r = producer->send_batch(batch, explicit_p);
        if (!r.ok() || !acked(explicit_p, r.offset)) return 22;
        last_offset[explicit_p] = r.offset + 2;
        break;
      }
      case 3: {
        const std::string v = encode({id, explicit_p, next_seq[explicit_p]++});
        Claim claim;
        ClaimSpec spec;
        spec.value_bytes = static_cast<uint32_t>(v.size());
        spec.partition = explicit_p;
        if (producer->try_claim(spec, claim) != SendStatus::kOk) return 23;
        std::memcpy(claim.value().data(), v.data(), v.size());
        const uint64_t offset = claim.offset();
        if (claim.commit() != SendStatus::kOk || !acked(explicit_p, offset)) return 24;
        break;
      }
    }
  }
  return 0;
}

TEST(MultiProcessAppend, EveryRecordOfConcurrentProducerProcessesAppearsOnceInProducerOrder) {
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus) << bus.error().to_string();
    ASSERT_TRUE(bus->create_topic(kTopic, topic_options()));
  }
  test::Pipe ready, go;
  test::Children children;
  for (uint32_t id = 0; id < kProducers; ++id)
    children.spawn([&, id] { return producer_main(dir.path(), id, ready.write_end(), go.read_end()); });
  const std::vector<pid_t> producers = children.pids();

  // The consumer reads while the producers append, from its own process.
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus) << bus.error().to_string();
  auto consumer = bus->create_consumer(kTopic, "");
  ASSERT_TRUE(consumer) << consumer.error().to_string();
  for (uint32_t i = 0; i < kProducers; ++i) {
    char c;
    ASSERT_TRUE(test::read_exact(ready.read_end(), &c, 1, 30'000)) << "a producer died before it was ready";
  }

  // While shared producers hold both partitions, an exclusive one is refused.
  {
    ProducerOptions exclusive;
    exclusive.exclusive = true;
    auto lone = bus->create_producer(kTopic, exclusive);
    ASSERT_TRUE(lone);
    for (uint32_t p = 0; p < kPartitions; ++p) {
      SendResult r = lone->send(Message{"", "must not land"}, p);
      EXPECT_EQ(r.status, SendStatus::kBusy) << "partition " << p;
      EXPECT_EQ(lone->last_error().code, Errc::kBusy);
    }
  }

  const std::string go_bytes(kProducers, 'g');
  ASSERT_TRUE(test::write_all(go.write_end(), go_bytes.data(), go_bytes.size()));

  const uint64_t expected_total = kProducers * records_per_producer();
  std::array<uint64_t, kPartitions> next_offset{};
  std::map<std::pair<uint32_t, uint32_t>, uint64_t> next_seq;  // (producer, partition) -> sequence
  uint64_t total = 0;
  std::vector<RecordView> out(256);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
  while (total < expected_total && std::chrono::steady_clock::now() < deadline) {
    auto n = consumer->poll(out, 100'000'000);
    ASSERT_TRUE(n) << n.error().to_string();
    for (size_t i = 0; i < *n; ++i) {
      const RecordView& r = out[i];
      ASSERT_LT(r.partition, kPartitions);
      // Dense: every offset of the partition, in order, none skipped.
      ASSERT_EQ(r.offset, next_offset[r.partition]) << "partition " << r.partition;
      ++next_offset[r.partition];
      Stamp s;
      ASSERT_TRUE(decode(r.value, &s)) << "offset " << r.offset;
      ASSERT_LT(s.producer, kProducers);
      ASSERT_EQ(s.partition, r.partition) << "record landed in another partition";
      uint64_t& want = next_seq[{s.producer, s.partition}];
      ASSERT_EQ(s.sequence, want) << "producer " << s.producer << " partition " << s.partition
                                  << ": order broken or record lost/duplicated";
      ++want;
      ++total;
    }
  }
  for (pid_t c : producers) EXPECT_EQ(children.wait(c, 30'000), 0);
  EXPECT_EQ(total, expected_total);

  // Nothing more than what the producers acknowledged.
  auto extra = consumer->poll(out, 10'000'000);
  ASSERT_TRUE(extra);
  EXPECT_EQ(*extra, 0u);
  auto d = bus->describe_topic(kTopic);
  ASSERT_TRUE(d);
  for (uint32_t p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(d->partitions[p].end_offset, next_offset[p]);
    EXPECT_EQ(d->partitions[p].repaired_claims, 0u);
    EXPECT_GT(d->partitions[p].segments.size(), 2u) << "the test should cross segment rolls";
  }
  uint64_t per_producer = 0;
  for (auto& [key, n] : next_seq) per_producer += n;
  EXPECT_EQ(per_producer, expected_total);
  auto v = bus->verify(kTopic);
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_TRUE(v->ok()) << v->issues.front().what;
  EXPECT_EQ(v->records, expected_total);
}

TEST(MultiProcessAppend, ExclusiveProducerProcessShutsOutSharedProducersUntilItExits) {
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    ASSERT_TRUE(bus->create_topic(kTopic, topic_options()));
  }
  test::Pipe ready, go;
  test::Children children;
  pid_t owner = children.spawn([&] {
    auto bus = Bus::open(dir.path());
    if (!bus) return 10;
    ProducerOptions o;
    o.exclusive = true;
    auto producer = bus->create_producer(kTopic, o);
    if (!producer) return 11;
    for (int i = 0; i < 100; ++i)
      if (!producer->send(Message{"", "exclusive-" + std::to_string(i)}, 0).ok()) return 12;
    char c = 'r';
    if (!test::write_all(ready.write_end(), &c, 1)) return 13;
    if (!test::read_exact(go.read_end(), &c, 1, 30'000)) return 14;
    for (int i = 100; i < 200; ++i)
      if (!producer->send(Message{"", "exclusive-" + std::to_string(i)}, 0).ok()) return 15;
    return 0;
  });
  char c;
  ASSERT_TRUE(test::read_exact(ready.read_end(), &c, 1, 30'000));
  // Another process, a shared producer: refused on the exclusive partition,
  // free on the other one.
  pid_t shared = children.spawn([&] {
    auto bus = Bus::open(dir.path());
    if (!bus) return 10;
    auto producer = bus->create_producer(kTopic);
    if (!producer) return 11;
    if (producer->send(Message{"", "shared"}, 0).status != SendStatus::kBusy) return 12;
    if (producer->last_error().code != Errc::kBusy) return 13;
    if (!producer->send(Message{"", "shared"}, 1).ok()) return 14;
    return 0;
  });
  EXPECT_EQ(children.wait(shared, 20'000), 0);
  ASSERT_TRUE(test::write_all(go.write_end(), "g", 1));
  EXPECT_EQ(children.wait(owner, 20'000), 0);

  // The exclusive writer has gone: shared producers may append again, after
  // its records.
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  auto producer = bus->create_producer(kTopic);
  ASSERT_TRUE(producer);
  SendResult r = producer->send(Message{"", "shared-after"}, 0);
  ASSERT_TRUE(r.ok()) << producer->last_error().to_string();
  EXPECT_EQ(r.offset, 200u);
  ConsumerOptions only_p0;
  only_p0.partitions = {0};
  auto consumer = bus->create_consumer(kTopic, "", only_p0);
  ASSERT_TRUE(consumer);
  std::vector<RecordView> out(64);
  uint64_t seen = 0;
  for (int polls = 0; polls < 100 && seen < 201; ++polls) {
    auto n = consumer->poll(out, 100'000'000);
    ASSERT_TRUE(n) << n.error().to_string();
    for (size_t i = 0; i < *n; ++i, ++seen) {
      EXPECT_EQ(out[i].offset, seen);
      EXPECT_EQ(out[i].value, seen < 200 ? "exclusive-" + std::to_string(seen) : "shared-after");
    }
  }
  EXPECT_EQ(seen, 201u);
}

}  // namespace
}  // namespace sluice
