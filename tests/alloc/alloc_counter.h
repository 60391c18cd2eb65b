// Counting every heap allocation of the process, for the tests that prove
// hot paths allocate nothing (alloc_counter.cc replaces every global
// operator new/delete and the malloc family; link it into one executable).
// The first allocation inside a measured window records its stack, printed
// when a test fails.
#pragma once

#include <cstdint>

#include <gtest/gtest.h>

namespace sluice::test {

// Counts allocations between construction and stop(). One at a time.
class AllocationWindow {
 public:
  AllocationWindow();
  ~AllocationWindow() { stop(); }
  void stop();
  uint64_t news() const;
  uint64_t mallocs() const;
  // Prints where the first allocation came from (mangled; c++filt reads it).
  void print_first_stack() const;
  bool recorded_first_stack() const;
  // Loads the unwinder now, not inside a window (its first use allocates).
  static void warm_up_unwinder();
};

}  // namespace sluice::test

#define EXPECT_NO_ALLOCATIONS(window)                                                     \
  do {                                                                                    \
    (window).stop();                                                                      \
    EXPECT_EQ((window).news(), 0u) << "operator new calls in the window";                 \
    EXPECT_EQ((window).mallocs(), 0u) << "malloc-family calls in the window";             \
    if ((window).news() + (window).mallocs() != 0) (window).print_first_stack();          \
  } while (0)
