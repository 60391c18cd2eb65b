#include "xxh3_wide.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>
#if defined(__x86_64__)
#define XXH_DISPATCH_DISABLE_REPLACE  // name the dispatching functions explicitly
#include <xxh_x86dispatch.h>
#endif

namespace sluice {
namespace {
#if defined(__x86_64__)
constexpr auto kSeeded = &XXH3_64bits_withSeed_dispatch;
constexpr auto kUpdate = &XXH3_64bits_update_dispatch;
#else  // no dispatch: the library's own build
constexpr auto kSeeded = &XXH3_64bits_withSeed;
constexpr auto kUpdate = &XXH3_64bits_update;
#endif
}  // namespace

uint64_t xxh3_wide(const void* p, size_t n, uint64_t seed) noexcept { return kSeeded(p, n, seed); }

uint64_t xxh3_wide(const void* a, size_t na, const void* b, size_t nb, uint64_t seed) noexcept {
  XXH3_state_t state;
  XXH3_64bits_reset_withSeed(&state, seed);
  kUpdate(&state, a, na);
  kUpdate(&state, b, nb);
  return XXH3_64bits_digest(&state);
}

}  // namespace sluice
