// An exactly-once Worker's run() allocates nothing per message: N = 4096
// messages whose handler runs (ids from the message's place, then ids named
// by a header) and N whose id is already done, with a handler that asks for
// the id and captures more than std::function's small buffer holds, perform
// zero heap allocations (counted by alloc_counter.h).
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <string>
#include <vector>

#include "alloc_counter.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr int kMessages = 4096;

using test::AllocationWindow;

TEST(WorkerExactlyOnceNoAlloc, RunAllocatesNothingPerMessage) {
  AllocationWindow::warm_up_unwinder();
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  QueueOptions qo;
  qo.segment_bytes = 64u << 20;
  qo.max_depth_bytes = 256u << 20;
  ASSERT_TRUE(bus->create_queue("q", qo));
  auto store = bus->open_processed_store("ids");
  ASSERT_TRUE(store) << store.error().to_string();
  auto pub = bus->create_queue_publisher("q");
  ASSERT_TRUE(pub);
  uint64_t a = 0, b = 0, c = 0, d = 0;
  WorkerOptions o;
  o.guarantee = Guarantee::kExactlyOnce;
  o.processed = &*store;
  o.resolve = [&a, &b, &c, &d](std::string_view) { return a + b + c + d > 0; };
  auto worker = bus->create_worker("q", o);
  ASSERT_TRUE(worker) << worker.error().to_string();
  uint64_t id_bytes = 0;
  // As a handler that commits its effect with the id does, it asks for it.
  const Handler handler = [&a, &b, &c, &id_bytes, w = &*worker](const Delivery& m) {
    ++a, ++b, ++c;
    id_bytes += w->processed_id(m).size();
  };

  const std::string value(64, 'q');
  std::vector<std::string> ids;
  for (int i = 0; i < kMessages; ++i) ids.push_back("order-" + std::to_string(i) + "-a-typical-event-id");
  auto publish = [&](bool named) {
    for (int i = 0; i < kMessages; ++i) {
      const Header h[] = {{kHeaderProcessedId, ids[i]}};
      QueueMessage m;
      m.value = value;
      if (named) m.headers = h;
      ASSERT_TRUE(pub->publish(m).ok());
    }
  };
  auto run = [&] {
    auto n = worker->run(handler, {}, kMessages);
    ASSERT_TRUE(n) << n.error().to_string();
    ASSERT_EQ(*n, static_cast<uint64_t>(kMessages));
  };
  // Warm-up: maps, cursor, the sweeps' owner cache.
  QueueMessage warm;
  warm.value = value;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(pub->publish(warm).ok());
  ASSERT_EQ(*worker->run(handler, {}, 100), 100u);

  publish(false);
  {
    AllocationWindow placed;  // ids from the message's place; the handler runs
    run();
    EXPECT_NO_ALLOCATIONS(placed);
  }
  publish(true);
  {
    AllocationWindow named;  // ids from the header; the handler runs
    run();
    EXPECT_NO_ALLOCATIONS(named);
  }
  publish(true);
  {
    AllocationWindow done;  // the same ids again: acked without running
    run();
    EXPECT_NO_ALLOCATIONS(done);
  }
  EXPECT_EQ(a, 100u + 2 * kMessages);
  EXPECT_GT(id_bytes, 0u);
  EXPECT_EQ(worker->stats().already_done, static_cast<uint64_t>(kMessages));
  EXPECT_EQ(worker->stats().acked, 100u + 3 * kMessages);
}

}  // namespace
}  // namespace sluice
