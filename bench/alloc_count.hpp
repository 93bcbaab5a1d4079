//
// bench/alloc_count.hpp
// ~~~~~~~~~~~~~~~~~~~~~
//
// Heap allocation counters (see alloc_count.cpp).
//

#ifndef ASPAWN_BENCH_ALLOC_COUNT_HPP
#define ASPAWN_BENCH_ALLOC_COUNT_HPP

#include <cstdint>

namespace aspawn_bench::alloc_count {

struct snapshot {
  /// Calls to malloc, calloc, realloc, memalign, aligned_alloc and
  /// posix_memalign, from any code in the process (operator new included).
  std::uint64_t mallocs = 0;
  /// Calls to the replaced global operator new (all of them also reach
  /// malloc or aligned_alloc, so they are part of `mallocs` too).
  std::uint64_t news = 0;
};

/// False when the build leaves malloc alone (under a sanitizer, whose
/// runtime owns malloc): nothing is counted then.
bool available() noexcept;

/// Starts counting from zero.
void start() noexcept;
/// Stops counting and returns the counts since start().
snapshot stop() noexcept;

} // namespace aspawn_bench::alloc_count

#endif // ASPAWN_BENCH_ALLOC_COUNT_HPP
