// The counting allocator of alloc_counter.h. Every replaceable global
// operator new/delete is replaced with a counting version, and so is the
// malloc family (malloc, calloc, realloc, memalign, aligned_alloc,
// posix_memalign; forwarded to glibc's __libc_* functions), so that a direct
// malloc (say, opendir() listing a directory) is caught too.
#include "alloc_counter.h"

#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

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

namespace sluice::test {

AllocationWindow::AllocationWindow() {
  g_news.store(0, std::memory_order_relaxed);
  g_mallocs.store(0, std::memory_order_relaxed);
  g_first_depth = 0;
  g_counting.store(true, std::memory_order_relaxed);
}
void AllocationWindow::stop() { g_counting.store(false, std::memory_order_relaxed); }
uint64_t AllocationWindow::news() const { return g_news.load(std::memory_order_relaxed); }
uint64_t AllocationWindow::mallocs() const { return g_mallocs.load(std::memory_order_relaxed); }
void AllocationWindow::print_first_stack() const {
  if (g_first_depth == 0) return;
  static const char kHead[] = "first allocation in the window came from:\n";
  (void)::write(2, kHead, sizeof kHead - 1);
  ::backtrace_symbols_fd(g_first_stack, g_first_depth, 2);
}

bool AllocationWindow::recorded_first_stack() const { return g_first_depth > 0; }
void AllocationWindow::warm_up_unwinder() {
  void* warm[4];
  (void)::backtrace(warm, 4);
}

}  // namespace sluice::test
