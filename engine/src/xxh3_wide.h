// XXH3-64 of large inputs through libxxhash's runtime dispatch, which picks
// AVX2 or AVX-512 where the CPU has them. record_codec.h inlines XXH3 for
// the small records most frames hold, and an inlined XXH3 is built for the
// baseline x86-64 (SSE2): 216 ns per 4 KiB on the machines sluice is
// measured on, against 99 ns through the dispatch. Same values either way:
// XXH3 is defined independently of the vector width.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sluice {

// Inputs from this size on are worth the call (below it the inline hash,
// with its short-input paths, is as fast).
inline constexpr size_t kWideHashBytes = 1024;

// XXH3-64 with `seed` of [p, p + n).
uint64_t xxh3_wide(const void* p, size_t n, uint64_t seed) noexcept;
// XXH3-64 with `seed` of the concatenation of [a, a + na) and [b, b + nb),
// b the large part.
uint64_t xxh3_wide(const void* a, size_t na, const void* b, size_t nb, uint64_t seed) noexcept;

}  // namespace sluice
