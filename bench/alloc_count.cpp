//
// bench/alloc_count.cpp
// ~~~~~~~~~~~~~~~~~~~~~
//
// Counts heap allocations of the whole process.
//
// The executable defines malloc, calloc, realloc, free, memalign,
// aligned_alloc and posix_memalign itself. Being in the main program, these
// definitions take precedence over glibc's for every library in the process
// (Boost, libstdc++, glibc's own internal callers that go through the PLT),
// and forward to glibc's allocator through its exported __libc_* entry
// points. The global operator new is replaced too, so that allocations made
// through it can be told apart.
//
// Counting is off unless start() was called: when off, a hook costs one
// relaxed atomic load. Allocations made by a vfork- or CLONE_VM-child land in
// the shared counters; those made by a fork child (a copy) are not seen.
//
// With ASPAWN_BENCH_NO_ALLOC_HOOK (set by bench/meson.build under a
// sanitizer, whose runtime owns malloc) nothing is replaced and available()
// is false.
//

#include "alloc_count.hpp"

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <new>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}

namespace aspawn_bench::alloc_count {
namespace {

std::atomic<bool> counting{false};
std::atomic<std::uint64_t> mallocs{0};
std::atomic<std::uint64_t> news{0};

inline void count_malloc() noexcept {
  if (counting.load(std::memory_order_relaxed))
    mallocs.fetch_add(1, std::memory_order_relaxed);
}

inline void count_new() noexcept {
  if (counting.load(std::memory_order_relaxed))
    news.fetch_add(1, std::memory_order_relaxed);
}

} // namespace

bool available() noexcept {
#if defined(ASPAWN_BENCH_NO_ALLOC_HOOK)
  return false;
#else
  return true;
#endif
}

void start() noexcept {
  mallocs.store(0, std::memory_order_relaxed);
  news.store(0, std::memory_order_relaxed);
  counting.store(true, std::memory_order_seq_cst);
}

snapshot stop() noexcept {
  counting.store(false, std::memory_order_seq_cst);
  return {mallocs.load(std::memory_order_relaxed),
          news.load(std::memory_order_relaxed)};
}

} // namespace aspawn_bench::alloc_count

#if !defined(ASPAWN_BENCH_NO_ALLOC_HOOK)

using aspawn_bench::alloc_count::count_malloc;
using aspawn_bench::alloc_count::count_new;

extern "C" {

void* malloc(std::size_t n) {
  count_malloc();
  return __libc_malloc(n);
}

void* calloc(std::size_t n, std::size_t size) {
  count_malloc();
  return __libc_calloc(n, size);
}

void* realloc(void* p, std::size_t n) {
  count_malloc();
  return __libc_realloc(p, n);
}

void free(void* p) { __libc_free(p); }

void* memalign(std::size_t alignment, std::size_t n) {
  count_malloc();
  return __libc_memalign(alignment, n);
}

void* aligned_alloc(std::size_t alignment, std::size_t n) {
  count_malloc();
  return __libc_memalign(alignment, n);
}

int posix_memalign(void** out, std::size_t alignment, std::size_t n) {
  if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0)
    return EINVAL;
  count_malloc();
  void* p = __libc_memalign(alignment, n);
  if (p == nullptr)
    return ENOMEM;
  *out = p;
  return 0;
}

} // extern "C"

// libstdc++'s array and nothrow forms call these two.
void* operator new(std::size_t n) {
  count_new();
  for (;;) {
    if (void* p = std::malloc(n != 0 ? n : 1))
      return p;
    std::new_handler h = std::get_new_handler();
    if (h == nullptr)
      throw std::bad_alloc();
    h();
  }
}

void* operator new(std::size_t n, std::align_val_t al) {
  count_new();
  std::size_t a = static_cast<std::size_t>(al);
  if (a < sizeof(void*))
    a = sizeof(void*);
  for (;;) {
    void* p = nullptr;
    if (::posix_memalign(&p, a, n != 0 ? n : 1) == 0)
      return p;
    std::new_handler h = std::get_new_handler();
    if (h == nullptr)
      throw std::bad_alloc();
    h();
  }
}

void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}

#endif // !ASPAWN_BENCH_NO_ALLOC_HOOK
