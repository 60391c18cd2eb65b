// In-process stress of the lock-free append and read paths, the suite that
// also runs under TSan: many threads, each with its own Producer, append to
// one partition with every append path while readers and committers run.
// Every record arrives exactly once and each thread's order is kept.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.h"

namespace sluice {
namespace {

#if defined(__SANITIZE_THREAD__)
constexpr uint32_t kPerThread = 6'000;
#else
constexpr uint32_t kPerThread = 50'000;
#endif
constexpr uint32_t kWriters = 4;
constexpr char kTopic[] = "t";
constexpr auto kDeadline = std::chrono::seconds(30);

struct Stamp {
  uint32_t writer;
  uint32_t sequence;
};

std::string encode(uint32_t writer, uint32_t sequence) {
  std::string v(sizeof(Stamp) + sequence % 23, static_cast<char>('A' + writer));
  const Stamp s{writer, sequence};
  std::memcpy(v.data(), &s, sizeof s);
  return v;
}

bool decode(std::string_view v, Stamp* s) {
  if (v.size() < sizeof *s) return false;
  std::memcpy(s, v.data(), sizeof *s);
  return v.size() == sizeof *s + s->sequence % 23;
}

TopicOptions topic_options() {
  TopicOptions o;
  o.partitions = 1;
  o.segment_bytes = 256 << 10;  // rolls often under load
  o.index_interval_bytes = 1024;
  return o;
}

// What one writer thread did: the offsets it aborted on purpose, and how
// many records it published.
struct WriterLog {
  std::vector<uint64_t> aborted;
  uint32_t published = 0;
  std::string failure;
};

// Appends kPerThread records with sequence numbers 0.., mixing single sends,
// batches of three, zero-copy claims, and (every 16th step) a claim that is
// aborted instead of committed.
void write_all(Producer& producer, uint32_t writer, WriterLog* log) {
  uint32_t seq = 0;
  for (uint32_t step = 0; seq < kPerThread; ++step) {
    switch (step % 4) {
      case 0: {
        SendResult r = producer.send(Message{"", encode(writer, seq)}, 0);
        if (!r.ok()) return void(log->failure = "send: " + producer.last_error().to_string());
        ++seq;
        ++log->published;
        break;
      }
      case 1: {
        if (seq + 3 > kPerThread) break;
        const std::string values[3] = {encode(writer, seq), encode(writer, seq + 1), encode(writer, seq + 2)};
        const Message batch[3] = {{"", values[0]}, {"", values[1]}, {"", values[2]}};
        SendResult r = producer.send_batch(batch, 0);
        if (!r.ok()) return void(log->failure = "batch: " + producer.last_error().to_string());
        seq += 3;
        log->published += 3;
        break;
      }
      default: {
        const bool abort = step % 16 == 3;
        const std::string v = abort ? std::string(8, 'x') : encode(writer, seq);
        Claim claim;
        ClaimSpec spec;
        spec.value_bytes = static_cast<uint32_t>(v.size());
        spec.partition = 0;
        if (producer.try_claim(spec, claim) != SendStatus::kOk)
          return void(log->failure = "claim: " + producer.last_error().to_string());
        std::memcpy(claim.value().data(), v.data(), v.size());
        if (abort) {
          log->aborted.push_back(claim.offset());
          claim.abort();
          break;
        }
        if (claim.commit() != SendStatus::kOk) return void(log->failure = "commit failed");
        ++seq;
        ++log->published;
        break;
      }
    }
  }
}

// Reads partition 0 until `expected` records arrived or the deadline,
// checking density against the aborted offsets later. Returns the offsets.
struct ReadLog {
  std::vector<uint64_t> offsets;
  std::string failure;
};

void read_all(Consumer& consumer, uint64_t expected, ReadLog* log) {
  std::vector<uint32_t> next_seq(kWriters, 0);
  std::vector<RecordView> out(128);
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (log->offsets.size() < expected && std::chrono::steady_clock::now() < deadline) {
    auto n = consumer.poll(out, 50'000'000);
    if (!n) return void(log->failure = n.error().to_string());
    for (size_t i = 0; i < *n; ++i) {
      Stamp s;
      if (!decode(out[i].value, &s) || s.writer >= kWriters)
        return void(log->failure = "undecodable record at offset " + std::to_string(out[i].offset));
      if (s.sequence != next_seq[s.writer])
        return void(log->failure = "writer " + std::to_string(s.writer) + ": got sequence " +
                                   std::to_string(s.sequence) + ", expected " + std::to_string(next_seq[s.writer]));
      ++next_seq[s.writer];
      if (!log->offsets.empty() && out[i].offset <= log->offsets.back())
        return void(log->failure = "offsets not increasing at " + std::to_string(out[i].offset));
      log->offsets.push_back(out[i].offset);
    }
  }
}

// Offsets are dense except exactly the aborted ones.
void expect_dense_but_aborted(const std::vector<uint64_t>& offsets, const std::vector<WriterLog>& logs) {
  std::set<uint64_t> aborted;
  for (const auto& l : logs) aborted.insert(l.aborted.begin(), l.aborted.end());
  uint64_t expect = 0;
  for (uint64_t o : offsets) {
    while (aborted.count(expect)) ++expect;
    ASSERT_EQ(o, expect) << "offset " << expect << " is missing but was not aborted";
    ++expect;
  }
}

TEST(ConcurrentAppend, ThreadsWithOwnProducersAppendToOnePartitionAndEveryRecordArrivesOnceInThreadOrder) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->create_topic(kTopic, topic_options()));
  auto consumer = bus->create_consumer(kTopic, "");
  ASSERT_TRUE(consumer);
  std::vector<Producer> producers;
  for (uint32_t w = 0; w < kWriters; ++w) {
    auto p = bus->create_producer(kTopic);
    ASSERT_TRUE(p);
    producers.push_back(std::move(*p));
  }
  std::vector<WriterLog> logs(kWriters);
  ReadLog read;
  std::thread reader([&] { read_all(*consumer, uint64_t{kWriters} * kPerThread, &read); });
  std::vector<std::thread> writers;
  for (uint32_t w = 0; w < kWriters; ++w) writers.emplace_back([&, w] { write_all(producers[w], w, &logs[w]); });
  for (auto& t : writers) t.join();
  reader.join();

  for (uint32_t w = 0; w < kWriters; ++w) {
    EXPECT_EQ(logs[w].failure, "") << "writer " << w;
    EXPECT_EQ(logs[w].published, kPerThread);
  }
  ASSERT_EQ(read.failure, "");
  EXPECT_EQ(read.offsets.size(), uint64_t{kWriters} * kPerThread);
  expect_dense_but_aborted(read.offsets, logs);
  auto v = bus->verify(kTopic);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok()) << v->issues.front().what;
  EXPECT_EQ(v->records, uint64_t{kWriters} * kPerThread);
  EXPECT_GT(v->segments, 1u);
  auto d = bus->describe_topic(kTopic);
  EXPECT_EQ(d->partitions[0].repaired_claims, 0u) << "a live writer's claim was repaired";
}

// Each thread opens its own Bus handle (its own liveness slot): claims of
// other live handles in the same process must never be taken for dead.
TEST(ConcurrentAppend, ThreadsWithSeparateBusHandlesAppendAndReadConcurrently) {
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    ASSERT_TRUE(bus->create_topic(kTopic, topic_options()));
  }
  std::vector<WriterLog> logs(kWriters);
  ReadLog read;
  std::atomic<int> ready{0};
  std::thread reader([&] {
    auto bus = Bus::open(dir.path());
    if (!bus) return void(read.failure = bus.error().to_string());
    auto consumer = bus->create_consumer(kTopic, "");
    if (!consumer) return void(read.failure = consumer.error().to_string());
    ready.fetch_add(1);
    read_all(*consumer, uint64_t{kWriters} * kPerThread, &read);
  });
  std::vector<std::thread> writers;
  for (uint32_t w = 0; w < kWriters; ++w)
    writers.emplace_back([&, w] {
      auto bus = Bus::open(dir.path());
      if (!bus) return void(logs[w].failure = bus.error().to_string());
      auto producer = bus->create_producer(kTopic);
      if (!producer) return void(logs[w].failure = producer.error().to_string());
      write_all(*producer, w, &logs[w]);
    });
  for (auto& t : writers) t.join();
  reader.join();
  for (uint32_t w = 0; w < kWriters; ++w) EXPECT_EQ(logs[w].failure, "") << "writer " << w;
  ASSERT_EQ(read.failure, "");
  EXPECT_EQ(read.offsets.size(), uint64_t{kWriters} * kPerThread);
  expect_dense_but_aborted(read.offsets, logs);
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  EXPECT_EQ(bus->describe_topic(kTopic)->partitions[0].repaired_claims, 0u);
}

// An exclusive writer (plain stores, no claim CAS) and readers in other
// threads; groups commit concurrently and independently.
TEST(ConcurrentAppend, ExclusiveWriterAndCommittingGroupsRunConcurrently) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  TopicOptions o = topic_options();
  o.partitions = 2;
  ASSERT_TRUE(bus->create_topic(kTopic, o));
  constexpr uint64_t kTotal = 2 * kPerThread;  // per partition
  std::string failure;
  std::mutex mu;
  auto fail = [&](std::string f) {
    std::lock_guard lock(mu);
    if (failure.empty()) failure = std::move(f);
  };
  std::vector<std::thread> threads;
  for (uint32_t p = 0; p < 2; ++p)
    threads.emplace_back([&, p] {
      ProducerOptions po;
      po.exclusive = true;
      auto producer = bus->create_producer(kTopic, po);
      if (!producer) return fail(producer.error().to_string());
      for (uint64_t i = 0; i < kTotal; ++i) {
        SendResult r = producer->send(Message{"", std::to_string(i)}, p);
        if (!r.ok() || r.offset != i) return fail("exclusive send " + std::to_string(i));
      }
    });
  for (const char* group : {"a", "b"})
    threads.emplace_back([&, group] {
      ConsumerOptions co;
      co.auto_commit = false;
      auto consumer = bus->create_consumer(kTopic, group, co);
      if (!consumer) return fail(consumer.error().to_string());
      uint64_t next[2] = {0, 0};
      std::vector<RecordView> out(64);
      const auto deadline = std::chrono::steady_clock::now() + kDeadline;
      while ((next[0] < kTotal || next[1] < kTotal) && std::chrono::steady_clock::now() < deadline) {
        auto n = consumer->poll(out, 50'000'000);
        if (!n) return fail(n.error().to_string());
        for (size_t i = 0; i < *n; ++i) {
          uint64_t& want = next[out[i].partition];
          if (out[i].offset != want || out[i].value != std::to_string(want))
            return fail(std::string("group ") + group + ": wrong record at " + std::to_string(out[i].offset));
          ++want;
        }
        if (*n > 0 && !consumer->commit_sync()) return fail("commit");
      }
      if (next[0] != kTotal || next[1] != kTotal) fail(std::string("group ") + group + " stopped early");
    });
  // Admin reads of the groups' lag while they commit.
  threads.emplace_back([&] {
    for (int i = 0; i < 200; ++i) {
      for (const char* group : {"a", "b"}) {
        auto d = bus->describe_group(group);
        if (!d) continue;  // not created yet
        for (const auto& p : d->partitions)
          if (p.committed != kNoOffset && p.committed > kTotal) return fail("committed offset out of range");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failure, "");
  for (const char* group : {"a", "b"}) {
    auto d = bus->describe_group(group);
    ASSERT_TRUE(d);
    for (const auto& p : d->partitions) {
      EXPECT_EQ(p.committed, kTotal) << group << " partition " << p.partition;
      EXPECT_EQ(p.lag_records, 0u);
    }
  }
}

}  // namespace
}  // namespace sluice
