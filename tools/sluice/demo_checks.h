// The demo's expectations: each act checks what it showed, prints a line
// for each that failed, and the demo exits non-zero if any did.
#pragma once

#include <cstdio>
#include <string>

namespace sluice::cli::demo {

struct Checks {
  int failed = 0;
  void expect(bool ok, const std::string& what) {
    if (!ok) {
      ++failed;
      std::printf("  CHECK FAILED: %s\n", what.c_str());
    }
  }
};

}  // namespace sluice::cli::demo
