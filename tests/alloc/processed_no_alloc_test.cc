// process_once allocates nothing: N = 4096 calls that run fn (new ids) and
// N that find their id done, with an fn capturing more than std::function's
// small buffer holds, and N calls of state(), perform zero heap allocations
// (counted by alloc_counter.h).
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <string>
#include <vector>

#include "alloc_counter.h"
#include "support/test_support.h"

namespace sluice {
namespace {

constexpr int kCalls = 4096;  // 16384 buckets hold them with no bucket near full

using test::AllocationWindow;

TEST(ProcessedNoAlloc, ProcessOnceAndStateAllocateNothing) {
  test::TempDir dir;
  auto bus = Bus::open(dir.path());
  ASSERT_TRUE(bus);
  auto store = bus->open_processed_store("ids");
  ASSERT_TRUE(store) << store.error().to_string();
  std::vector<std::string> ids;
  for (int i = 0; i < kCalls + 1; ++i) ids.push_back("order-" + std::to_string(i) + "-a-typical-event-id");
  uint64_t a = 0, b = 0, c = 0, d = 0;
  auto fn = [&] { ++a, ++b, ++c, ++d; };  // 32 bytes of captures: std::function would allocate
  ASSERT_EQ(*store->process_once(ids[kCalls], fn), ProcessOutcome::kRan);  // warm-up

  {
    AllocationWindow ran;  // calls that run fn
    for (int i = 0; i < kCalls; ++i)
      if (store->process_once(ids[i], fn) != ProcessOutcome::kRan) ADD_FAILURE() << ids[i];
    EXPECT_NO_ALLOCATIONS(ran);
  }
  {
    AllocationWindow done;  // calls that find the id done
    for (int i = 0; i < kCalls; ++i)
      if (store->process_once(ids[i], fn) != ProcessOutcome::kAlreadyDone) ADD_FAILURE() << ids[i];
    EXPECT_NO_ALLOCATIONS(done);
  }
  {
    AllocationWindow state;
    for (int i = 0; i < kCalls; ++i)
      if (store->state(ids[i]) != ProcessedState::kDone) ADD_FAILURE() << ids[i];
    EXPECT_NO_ALLOCATIONS(state);
  }
  EXPECT_EQ(a, static_cast<uint64_t>(kCalls) + 1);
}

}  // namespace
}  // namespace sluice
