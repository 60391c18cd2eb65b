// The hot paths allocate nothing: after a warm-up (the first send maps the
// segment and takes the writer lock, the first poll positions the cursor),
// N = 10000 calls of Producer::send, send_batch, try_claim + commit and
// Consumer::try_poll perform zero heap allocations.
//
// Every replaceable global operator new/delete is replaced with a counting
// version, and so is the malloc family (malloc, calloc, realloc, memalign,
// aligned_alloc, posix_memalign; forwarded to glibc's __libc_* functions), so
// that a direct malloc (say, opendir() listing a directory) is caught too.
// The first allocation inside a measured window records its stack, printed
// when a test fails. Segments are 64 MiB, so no roll (which may allocate)
// happens inside a window.
#include <execinfo.h>
#include <gtest/gtest.h>
#include <sluice/sluice.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
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

// relaxed throughout: counters read by the same thread after the window, or
// by the test after joining nothing (every test here is single-threaded).
std::atomic<bool> g_counting{false};
std::atomic<uint64_t> g_news{0};
std::atomic<uint64_t> g_mallocs{0};
thread_local bool t_in_hook = false;
void* g_first_stack[48];
int g_first_depth = 0;

void note_allocation(std::atomic<uint64_t>& counter) {
  if (!g_counting.load(std::memory_order_relaxed) || t_in_hook) return;
  t_in_hook = true;
  if (counter.fetch_add(1, std::memory_order_relaxed) == 0 && g_news.load(std::memory_order_relaxed) +
                                                                     g_mallocs.load(std::memory_order_relaxed) == 1)
    g_first_depth = ::backtrace(g_first_stack, 48);
  t_in_hook = false;
}

void* counted_new(size_t n, size_t align, bool nothrow) {
  note_allocation(g_news);
  if (n == 0) n = 1;
  void* p = align > alignof(std::max_align_t) ? __libc_memalign(align, n) : __libc_malloc(n);
  if (p == nullptr && !nothrow) throw std::bad_alloc();
  return p;
}

}  // namespace

// Replaceable allocation functions ([new.delete]): all of them.
void* operator new(size_t n) { return counted_new(n, 0, false); }
void* operator new[](size_t n) { return counted_new(n, 0, false); }
void* operator new(size_t n, const std::nothrow_t&) noexcept { return counted_new(n, 0, true); }
void* operator new[](size_t n, const std::nothrow_t&) noexcept { return counted_new(n, 0, true); }
void* operator new(size_t n, std::align_val_t a) { return counted_new(n, static_cast<size_t>(a), false); }
void* operator new[](size_t n, std::align_val_t a) { return counted_new(n, static_cast<size_t>(a), false); }
void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_new(n, static_cast<size_t>(a), true);
}
void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_new(n, static_cast<size_t>(a), true);
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

// The malloc family, interposed for the whole process.
extern "C" {
void* malloc(size_t n) {
  note_allocation(g_mallocs);
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) {
  note_allocation(g_mallocs);
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) {
  note_allocation(g_mallocs);
  return __libc_realloc(p, n);
}
void* memalign(size_t align, size_t n) {
  note_allocation(g_mallocs);
  return __libc_memalign(align, n);
}
void* aligned_alloc(size_t align, size_t n) {
  note_allocation(g_mallocs);
  return __libc_memalign(align, n);
}
int posix_memalign(void** out, size_t align, size_t n) {
  note_allocation(g_mallocs);
  void* p = __libc_memalign(align, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
void free(void* p) { __libc_free(p); }
}

namespace sluice {
namespace {

constexpr int kCalls = 10000;
constexpr uint32_t kValueBytes = 64;

// Counts allocations between construction and stop().
class AllocationWindow {
 public:
  AllocationWindow() {
    g_news.store(0, std::memory_order_relaxed);
    g_mallocs.store(0, std::memory_order_relaxed);
    g_first_depth = 0;
    g_counting.store(true, std::memory_order_relaxed);
  }
  ~AllocationWindow() { stop(); }
  void stop() { g_counting.store(false, std::memory_order_relaxed); }
  uint64_t news() const { return g_news.load(std::memory_order_relaxed); }
  uint64_t mallocs() const { return g_mallocs.load(std::memory_order_relaxed); }
  // Prints where the first allocation came from (mangled; c++filt reads it).
  void print_first_stack() const {
    if (g_first_depth == 0) return;
    static const char kHead[] = "first allocation in the window came from:\n";
    (void)::write(2, kHead, sizeof kHead - 1);
    ::backtrace_symbols_fd(g_first_stack, g_first_depth, 2);
  }
};

#define EXPECT_NO_ALLOCATIONS(window)                                                          \
  do {                                                                                         \
    (window).stop();                                                                           \
    EXPECT_EQ((window).news(), 0u) << "operator new calls in " << kCalls << " calls";          \
    EXPECT_EQ((window).mallocs(), 0u) << "malloc-family calls in " << kCalls << " calls";      \
    if ((window).news() + (window).mallocs() != 0) (window).print_first_stack();               \
  } while (0)

// The counters are not vacuous: they see both kinds of allocation.
TEST(AllocationCounter, SeesOperatorNewAndMalloc) {
  static void* volatile sink;
  AllocationWindow w;
  sink = ::operator new(32);  // a direct call: never elided, unlike a new-expression
  ::operator delete(sink);
  sink = std::malloc(32);     // escapes through the volatile: not elided
  std::free(sink);
  w.stop();
  EXPECT_EQ(w.news(), 1u);
  EXPECT_EQ(w.mallocs(), 1u);
  EXPECT_GT(g_first_depth, 0);  // the stack of the first one was recorded
}

class NoAlloc : public ::testing::Test {
 protected:
  void SetUp() override {
    void* warm[4];
    (void)::backtrace(warm, 4);  // loads the unwinder now, not inside a window
    auto bus = Bus::open(dir_.path());
    ASSERT_TRUE(bus) << bus.error().to_string();
    bus_.emplace(std::move(*bus));
    TopicOptions t;
    t.partitions = 1;
    t.segment_bytes = 64u << 20;
    ASSERT_TRUE(bus_->create_topic("t", t));
  }

  Producer producer(bool exclusive = false) {
    ProducerOptions o;
    o.exclusive = exclusive;
    auto p = bus_->create_producer("t", o);
    EXPECT_TRUE(p) << p.error().to_string();
    return std::move(*p);
  }

  test::TempDir dir_;
  std::optional<Bus> bus_;
  const std::string value_ = std::string(kValueBytes, 'a');
};

TEST_F(NoAlloc, SendAllocatesNothingPerRecord) {
  Producer p = producer();
  ASSERT_TRUE(p.send(Message{{}, value_}).ok());  // warm-up: maps the segment
  AllocationWindow w;
  for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(p.send(Message{{}, value_}).ok());
  EXPECT_NO_ALLOCATIONS(w);
}

TEST_F(NoAlloc, SendWithKeyAndHeadersAllocatesNothingPerRecord) {
  Producer p = producer();
  const Header headers[] = {{"trace", "0123456789abcdef"}, {"type", "order"}};
  ASSERT_TRUE(p.send(Message{"key-1", value_, headers}).ok());
  AllocationWindow w;
  for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(p.send(Message{"key-1", value_, headers}).ok());
  EXPECT_NO_ALLOCATIONS(w);
}

TEST_F(NoAlloc, ExclusiveSendAllocatesNothingPerRecord) {
  Producer p = producer(true);
  ASSERT_TRUE(p.send(Message{{}, value_}).ok());
  AllocationWindow w;
  for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(p.send(Message{{}, value_}).ok());
  EXPECT_NO_ALLOCATIONS(w);
}

TEST_F(NoAlloc, IdempotentSendAndSendSequencedAllocateNothingPerRecord) {
  ProducerOptions o;
  o.idempotent = true;
  o.producer_name = "ingest";
  for (bool exclusive : {false, true}) {
    o.exclusive = exclusive;
    auto p = bus_->create_producer("t", o);  // fences the previous round's instance
    ASSERT_TRUE(p) << p.error().to_string();
    ASSERT_TRUE(p->send(Message{{}, value_}).ok());  // warm-up: the takeover walk
    AllocationWindow w;
    for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(p->send(Message{{}, value_}).ok());
    uint32_t next = *p->next_sequence(0);
    for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(p->send_sequenced(Message{{}, value_}, next++, 0).ok());
    EXPECT_NO_ALLOCATIONS(w);
  }
}

TEST_F(NoAlloc, SendBatchAllocatesNothingPerBatch) {
  Producer p = producer();
  std::array<Message, 16> batch;
  for (Message& m : batch) m.value = value_;
  ASSERT_TRUE(p.send_batch(batch).ok());
  AllocationWindow w;
  for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(p.send_batch(batch).ok());
  EXPECT_NO_ALLOCATIONS(w);
}

TEST_F(NoAlloc, ClaimAndCommitAllocateNothingPerRecord) {
  Producer p = producer();
  ClaimSpec spec;
  spec.value_bytes = kValueBytes;
  Claim claim;
  ASSERT_EQ(p.try_claim(spec, claim), SendStatus::kOk);
  ASSERT_EQ(claim.commit(), SendStatus::kOk);
  AllocationWindow w;
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_EQ(p.try_claim(spec, claim), SendStatus::kOk);
    std::memcpy(claim.value().data(), value_.data(), kValueBytes);
    ASSERT_EQ(claim.commit(), SendStatus::kOk);
  }
  EXPECT_NO_ALLOCATIONS(w);
}

// Fills the topic with warm-up + kCalls records (allocating as it likes),
// then reads them one per try_poll.
void expect_polls_allocate_nothing(Bus& bus, Producer& p, const std::string& value, std::string_view group,
                                   ConsumerOptions options) {
  for (int i = 0; i < kCalls + 1; ++i) ASSERT_TRUE(p.send(Message{{}, value}).ok());
  auto c = bus.create_consumer("t", group, options);
  ASSERT_TRUE(c) << c.error().to_string();
  std::array<RecordView, 1> out;
  auto n = c->try_poll(out);  // warm-up: positions the cursor
  ASSERT_TRUE(n && *n == 1);
  uint64_t got = 0, empty = 0;
  AllocationWindow w;
  for (int i = 0; i < kCalls; ++i) {
    n = c->try_poll(out);
    ASSERT_TRUE(n);
    got += *n;
  }
  for (int i = 0; i < kCalls; ++i) {  // at the end: empty polls
    n = c->try_poll(out);
    ASSERT_TRUE(n);
    empty += *n == 0;
  }
  EXPECT_NO_ALLOCATIONS(w);
  EXPECT_EQ(got, static_cast<uint64_t>(kCalls));
  EXPECT_EQ(empty, static_cast<uint64_t>(kCalls));
}

TEST_F(NoAlloc, TryPollAllocatesNothingPerRecordOrWhenEmpty) {
  Producer p = producer();
  ConsumerOptions o;
  o.wait = WaitStrategy::kBusySpin;
  expect_polls_allocate_nothing(*bus_, p, value_, "", o);
}

TEST_F(NoAlloc, PollWithATimeoutAllocatesNothingWhenRecordsAreReady) {
  Producer p = producer();
  for (int i = 0; i < kCalls + 1; ++i) ASSERT_TRUE(p.send(Message{{}, value_}).ok());
  ConsumerOptions o;
  o.wait = WaitStrategy::kBlock;
  auto c = bus_->create_consumer("t", "", o);
  ASSERT_TRUE(c) << c.error().to_string();
  std::array<RecordView, 1> out;
  ASSERT_TRUE(c->poll(out, 1'000'000));
  uint64_t got = 0;
  AllocationWindow w;
  for (int i = 0; i < kCalls; ++i) {
    auto n = c->poll(out, 1'000'000);
    ASSERT_TRUE(n);
    got += *n;
  }
  EXPECT_NO_ALLOCATIONS(w);
  EXPECT_EQ(got, static_cast<uint64_t>(kCalls));
}

TEST_F(NoAlloc, TryPollInAGroupWithAutoCommitAllocatesNothing) {
  Producer p = producer();
  ConsumerOptions o;
  o.wait = WaitStrategy::kBusySpin;
  o.auto_commit = true;
  o.auto_commit_interval_ns = 0;  // commit on every poll: the commit path is measured too
  expect_polls_allocate_nothing(*bus_, p, value_, "g", o);
}

}  // namespace
}  // namespace sluice

// The queue's publish -> receive -> ack path: after a warm-up (maps, cursor,
// the sweeps' owner cache), 10000 rounds of publish, receive and ack
// allocate nothing. Sweeps run inside the window (the system clock moves),
// and so does the floor's commit.
namespace sluice {
namespace {

TEST_F(NoAlloc, QueuePublishReceiveAndAckAllocateNothingPerMessage) {
  QueueOptions o;
  o.segment_bytes = 64u << 20;
  o.max_depth_bytes = 256u << 20;
  ASSERT_TRUE(bus_->create_queue("q", o));
  auto pub = bus_->create_queue_publisher("q");
  auto worker = bus_->create_worker("q");
  ASSERT_TRUE(pub && worker);
  const std::string value(kValueBytes, 'q');
  const Header headers[] = {{"type", "job"}};
  QueueMessage m;
  m.value = value;
  m.headers = headers;
  std::array<Delivery, 4> d;
  for (int i = 0; i < 100; ++i) {  // warm-up
    ASSERT_TRUE(pub->publish(m).ok());
    auto n = worker->receive(d, 0);
    ASSERT_TRUE(n && *n == 1);
    ASSERT_TRUE(d[0].ack());
  }
  AllocationWindow w;
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(pub->publish(m).ok());
    auto n = worker->receive(d, 0);
    ASSERT_TRUE(n && *n == 1);
    ASSERT_TRUE(d[0].ack());
  }
  EXPECT_NO_ALLOCATIONS(w);
}

}  // namespace
}  // namespace sluice
