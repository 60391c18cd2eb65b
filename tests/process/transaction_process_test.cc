// Transactions under SIGKILL, with real processes: a holder killed inside
// its transaction holds read-committed readers only until one of them sees
// it dead (the last stable offset is released at once, not at a timeout);
// and a consume-transform-produce loop killed again and again, in and
// between transactions, leaves exactly one output per input, in order, with
// the group's offsets at the input's end.
#include <gtest/gtest.h>
#include <signal.h>
#include <sluice/sluice.h>

#include <chrono>
#include <map>
#include <random>
#include <string>

#include "process_helpers.h"

namespace sluice {
namespace {

TEST(TransactionProcess, AHolderKilledInsideItsTransactionIsAbortedByTheWaitingReader) {
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    TopicOptions t = test::small_topic();
    t.partitions = 2;
    ASSERT_TRUE(bus->create_topic("out", t));
  }
  test::Children children;
  test::Pipe sent;
  const pid_t holder = children.spawn([&] {
    auto bus = Bus::open(dir.path());
    if (!bus) return 10;
    auto tx = bus->create_transactional_producer("xform");
    if (!tx || !tx->begin()) return 11;
    auto p = tx->producer("out");
    if (!p) return 12;
    for (uint32_t i = 0; i < 20; ++i)
      if (!(*p)->send(Message{"", "in-flight"}, i % 2).ok()) return 13;
    const char b = 1;
    if (!test::write_all(sent.write_end(), &b, 1)) return 14;
    ::pause();  // killed here, the transaction open
    return 15;
  });
  char b;
  ASSERT_TRUE(test::read_exact(sent.read_end(), &b, 1, 30'000));
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  auto plain = bus->create_producer("out");
  ASSERT_TRUE(plain);
  for (uint32_t p = 0; p < 2; ++p) ASSERT_TRUE(plain->send(Message{"", "after"}, p).ok());
  ConsumerOptions o;
  o.auto_commit = false;
  auto reader = bus->create_consumer("out", "", o);
  ASSERT_TRUE(reader);
  std::vector<RecordView> out(64);
  auto n = reader->poll(out, 20'000'000);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 0u) << "held at the open transaction";
  ASSERT_EQ(children.kill(holder), 128 + SIGKILL);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> got;
  while (got.size() < 2 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5)) {
    n = reader->poll(out, 100'000'000);
    ASSERT_TRUE(n) << n.error().to_string();
    for (size_t k = 0; k < *n; ++k) got.emplace_back(out[k].value);
  }
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(got, (std::vector<std::string>{"after", "after"}));
  EXPECT_LT(waited, std::chrono::seconds(2)) << "released when the holder was seen dead, not at its 10 s timeout";
  std::printf("  the last stable offset moved %.1f ms after the SIGKILL\n",
              std::chrono::duration<double, std::milli>(waited).count());
}

constexpr uint32_t kInputs = 600;  // per partition
constexpr uint32_t kParts = 2;

// One transformer instance: reads `in` in group "xform" (read committed),
// and for each batch sends one output per input to `out` and commits the
// batch's offsets with it, in one transaction. Dies by SIGKILL after
// `kill_after` transactions, mid-transaction when `mid`.
int run_transformer(const std::string& dir, int kill_after, bool mid) {
  auto bus = Bus::open(dir);
  if (!bus) return 10;
  auto tx = bus->create_transactional_producer("xform");  // settles what a killed instance left
  if (!tx) return 11;
  ConsumerOptions co;
  co.auto_commit = false;
  co.wait = WaitStrategy::kBlock;
  auto in = bus->create_consumer("in", "xform", co);
  if (!in) return 12;
  auto out = tx->producer("out");
  if (!out) return 13;
  std::vector<RecordView> batch(37);
  for (int done = 0;; ++done) {
    auto n = in->poll(batch, 50'000'000);
    if (!n) return 14;
    if (*n == 0) return 0;  // input finished
    if (done == kill_after && !mid) ::raise(SIGKILL);
    if (!tx->begin()) return 15;
    std::map<uint32_t, uint64_t> next;
    for (size_t k = 0; k < *n; ++k) {
      const RecordView& r = batch[k];
      const std::string v = "out:" + std::string(r.value);
      if (!(*out)->send(Message{r.key, v}, r.partition).ok()) return 16;
      next[r.partition] = r.offset + 1;
      if (done == kill_after && mid && k == *n / 2) ::raise(SIGKILL);
    }
    for (const auto& [p, o] : next)
      if (!tx->add_offset("xform", "in", p, o)) return 17;
    if (auto ok = tx->commit(); !ok) return 18;
  }
}

TEST(TransactionProcess, ConsumeTransformProduceKilledAgainAndAgainLeavesExactlyOneOutputPerInput) {
  test::TempDir dir;
  {
    auto bus = Bus::open(dir.path());
    ASSERT_TRUE(bus);
    TopicOptions t = test::small_topic();
    t.partitions = kParts;
    ASSERT_TRUE(bus->create_topic("in", t));
    ASSERT_TRUE(bus->create_topic("out", t));
    auto p = bus->create_producer("in");
    ASSERT_TRUE(p);
    for (uint32_t i = 0; i < kInputs; ++i)
      for (uint32_t part = 0; part < kParts; ++part)
        ASSERT_TRUE(p->send(Message{"k" + std::to_string(part), std::to_string(part) + "-" + std::to_string(i)}, part).ok());
    ConsumerOptions co;
    auto g = bus->create_consumer("in", "xform", co);  // the group starts at the beginning
    ASSERT_TRUE(g);
  }
  test::Children children;
  std::mt19937 rng(4242);
  int kills = 0, rounds = 0;
  for (;;) {
    ASSERT_LT(++rounds, 200);
    const int kill_after = std::uniform_int_distribution<int>(0, 4)(rng);
    const bool mid = rng() % 2 == 0;
    const pid_t c = children.spawn([&] { return run_transformer(dir.path(), kill_after, mid); });
    const int code = children.wait(c, 60'000);
    if (code == 0) break;
    ASSERT_EQ(code, 128 + SIGKILL) << "transformer failed with exit " << code;
    ++kills;
  }
  EXPECT_GT(kills, 10);
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  for (uint32_t part = 0; part < kParts; ++part) {
    auto got = test::read_partition(*bus, "out", part);
    ASSERT_TRUE(got) << got.error().to_string();
    ASSERT_EQ(got->size(), kInputs) << "partition " << part << ": exactly one output per input";
    for (uint32_t i = 0; i < kInputs; ++i)
      ASSERT_EQ((*got)[i].value, "out:" + std::to_string(part) + "-" + std::to_string(i)) << "in input order";
  }
  auto d = bus->describe_group("xform");
  ASSERT_TRUE(d);
  for (const auto& p : d->partitions) EXPECT_EQ(p.committed, kInputs) << "the group's offset is at the input's end";
  std::printf("  %d rounds, %d SIGKILLs (in and between transactions)\n", rounds, kills);
}

}  // namespace
}  // namespace sluice
