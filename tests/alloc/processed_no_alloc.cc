// process_once allocates nothing: N = 4096 calls that run fn (new ids) and
// N that find their id done, with an fn capturing more than std::function's
// small buffer holds, and N calls of state(), perform zero heap allocations.
//
// Its own executable (tests/CMakeLists.txt): it replaces the global
// operator new/delete and the malloc family with counting versions, as
// no_alloc_test.cc does for the log's hot paths, whose counters are private
// to that file.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "support/test_support.h"

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);
}

namespace {

// relaxed: set and read by the one test thread.
std::atomic<bool> g_counting{false};
std::atomic<uint64_t> g_allocations{0};

void note() {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
}
void* counted(size_t n, size_t align, bool nothrow) {
  note();
  if (n == 0) n = 1;
  void* p = align > alignof(std::max_align_t) ? __libc_memalign(align, n) : __libc_malloc(n);
  if (p == nullptr && !nothrow) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(size_t n) { return counted(n, 0, false); }
void* operator new[](size_t n) { return counted(n, 0, false); }
void* operator new(size_t n, const std::nothrow_t&) noexcept { return counted(n, 0, true); }
void* operator new[](size_t n, const std::nothrow_t&) noexcept { return counted(n, 0, true); }
void* operator new(size_t n, std::align_val_t a) { return counted(n, static_cast<size_t>(a), false); }
void* operator new[](size_t n, std::align_val_t a) { return counted(n, static_cast<size_t>(a), false); }
void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted(n, static_cast<size_t>(a), true);
}
void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted(n, static_cast<size_t>(a), true);
}
void operator delete(void* p) noexcept { __libc_free(p); }
void operator delete[](void* p) noexcept { __libc_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete(void* p, size_t) noexcept { __libc_free(p); }
void operator delete[](void* p, size_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { __libc_free(p); }

extern "C" {
void* malloc(size_t n) {
  note();
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) {
  note();
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) {
  note();
  return __libc_realloc(p, n);
}
void* memalign(size_t align, size_t n) {
  note();
  return __libc_memalign(align, n);
}
void* aligned_alloc(size_t align, size_t n) {
  note();
  return __libc_memalign(align, n);
}
int posix_memalign(void** out, size_t align, size_t n) {
  note();
  void* p = __libc_memalign(align, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
void free(void* p) { __libc_free(p); }
}

namespace sluice {
namespace {

constexpr int kCalls = 4096;  // 16384 buckets hold them with no bucket near full

// Counts allocations while it lives.
struct Window {
  Window() {
    g_allocations.store(0, std::memory_order_relaxed);
    g_counting.store(true, std::memory_order_relaxed);
  }
  uint64_t stop() {
    g_counting.store(false, std::memory_order_relaxed);
    return g_allocations.load(std::memory_order_relaxed);
  }
};

TEST(ProcessedNoAlloc, CountersSeeAllocations) {
  static void* volatile sink;
  Window w;
  sink = ::operator new(32);
  ::operator delete(sink);
  sink = std::malloc(32);
  std::free(sink);
  EXPECT_EQ(w.stop(), 2u);
}

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

  Window ran;
  for (int i = 0; i < kCalls; ++i)
    if (store->process_once(ids[i], fn) != ProcessOutcome::kRan) ADD_FAILURE() << ids[i];
  EXPECT_EQ(ran.stop(), 0u) << "allocations in " << kCalls << " calls that ran fn";

  Window done;
  for (int i = 0; i < kCalls; ++i)
    if (store->process_once(ids[i], fn) != ProcessOutcome::kAlreadyDone) ADD_FAILURE() << ids[i];
  EXPECT_EQ(done.stop(), 0u) << "allocations in " << kCalls << " calls that found the id done";

  Window state;
  for (int i = 0; i < kCalls; ++i)
    if (store->state(ids[i]) != ProcessedState::kDone) ADD_FAILURE() << ids[i];
  EXPECT_EQ(state.stop(), 0u) << "allocations in " << kCalls << " calls of state()";
  EXPECT_EQ(a, static_cast<uint64_t>(kCalls) + 1);
}

}  // namespace
}  // namespace sluice
