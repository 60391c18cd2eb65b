// Transactions racing read-committed readers in one process (TSan too): a
// holder commits and aborts transactions over two partitions while readers
// poll; readers never see a record of an aborted transaction, and in the end
// every committed record exactly once.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.h"

namespace sluice {
namespace {

#if defined(__SANITIZE_THREAD__)
constexpr int kTransactions = 300;
#else
constexpr int kTransactions = 3000;
#endif

bool aborted(int k) { return k % 3 == 0; }

TEST(TransactionThreads, ReadersRacingCommitsAndAbortsSeeCommittedRecordsOnlyAndAllOfThem) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  TopicOptions t;
  t.partitions = 2;
  t.segment_bytes = 256 << 10;
  ASSERT_TRUE(bus->create_topic("t", t));
  std::atomic<bool> done{false};
  std::atomic<bool> bad{false};
  std::vector<std::thread> readers;
  std::vector<std::map<int, int>> seen(2);
  for (int r = 0; r < 2; ++r)
    readers.emplace_back([&, r] {
      ConsumerOptions o;
      o.auto_commit = false;
      o.wait = WaitStrategy::kSpinYield;
      auto c = bus->create_consumer("t", "", o);
      if (!c) return bad.store(true);
      std::vector<RecordView> out(64);
      for (;;) {
        // acquire: after the holder finished, one more poll sees everything.
        const bool last = done.load(std::memory_order_acquire);
        auto n = c->poll(out, 1'000'000);
        if (!n) return bad.store(true);
        for (size_t k = 0; k < *n; ++k) {
          const int txn = std::stoi(std::string(out[k].value));
          if (aborted(txn)) bad.store(true);
          ++seen[r][txn];
        }
        if (last && *n == 0) return;
      }
    });
  auto tx = bus->create_transactional_producer("holder");
  ASSERT_TRUE(tx);
  Producer* p = *tx->producer("t");
  for (int k = 0; k < kTransactions; ++k) {
    ASSERT_TRUE(tx->begin());
    const std::string v = std::to_string(k);
    ASSERT_TRUE(p->send(Message{"", v}, 0).ok());
    ASSERT_TRUE(p->send(Message{"", v}, 1).ok());
    if (aborted(k))
      ASSERT_TRUE(tx->abort());
    else
      ASSERT_TRUE(tx->commit());
  }
  done.store(true, std::memory_order_release);
  for (auto& r : readers) r.join();
  EXPECT_FALSE(bad.load()) << "a reader saw an aborted record or failed";
  for (int r = 0; r < 2; ++r) {
    int committed = 0;
    for (int k = 0; k < kTransactions; ++k) {
      if (aborted(k)) continue;
      ++committed;
      EXPECT_EQ(seen[r][k], 2) << "reader " << r << " transaction " << k << ": both records, once each";
    }
    EXPECT_EQ(seen[r].size(), static_cast<size_t>(committed));
  }
}

}  // namespace
}  // namespace sluice
