//
// aspawn/child/sys.hpp
// ~~~~~~~~~~~~~~~~~~~~
//
// The raw system call layer.
//
// Overview
// --------
// Every function here is one Linux system call made with inline assembly. It
// never touches `errno`, never calls into libc, never allocates and never
// takes a lock. Results follow the kernel's convention: a non-negative value
// on success, `-errno` on failure.
//
// These are the only functions a user child function (see
// `command::child_function`) may call: the child shares its memory and its
// thread pointer with a parent thread that keeps running, so anything that
// writes shared state (errno, malloc arenas, stdio buffers, locks) would race
// with the parent.
//
// Every function is `inline` and forced inline so that no call goes through a
// PLT slot that could be bound lazily in the child.
//
// Supported architectures: x86-64 and aarch64.
//
// Layer child/: child-safe code, the only code that may run in the child
// between clone and exec (raw system calls, the launch image). It uses
// no other layer of aspawn, no Boost, no libc call.
//

#ifndef ASPAWN_CHILD_SYS_HPP
#define ASPAWN_CHILD_SYS_HPP

#include <cstddef>
#include <cstdint>

#include <sys/syscall.h>

/// Marks a function that runs in a child between clone and exec.
/**
 * Such a function is excluded from sanitizer instrumentation and from the
 * stack protector: it runs on a foreign stack in a process that shares the
 * parent's memory, where the sanitizers' shadow bookkeeping and the parent
 * thread's canary would both be wrong.
 */
#if defined(__clang__)
#define ASPAWN_CHILD_FN                                                        \
  __attribute__((no_sanitize("address", "undefined", "thread", "memory"),      \
                 no_stack_protector, noinline))
#else
#define ASPAWN_CHILD_FN                                                        \
  __attribute__((no_sanitize("address", "undefined", "thread"),                \
                 no_stack_protector, noinline))
#endif

#define ASPAWN_SYS_INLINE inline __attribute__((always_inline))

namespace aspawn::sys {

#if defined(__x86_64__)

ASPAWN_SYS_INLINE long syscall0(long n) noexcept {
  long ret;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(n) : "rcx", "r11", "memory");
  return ret;
}

ASPAWN_SYS_INLINE long syscall1(long n, long a) noexcept {
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a)
                   : "rcx", "r11", "memory");
  return ret;
}

ASPAWN_SYS_INLINE long syscall2(long n, long a, long b) noexcept {
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b)
                   : "rcx", "r11", "memory");
  return ret;
}

ASPAWN_SYS_INLINE long syscall3(long n, long a, long b, long c) noexcept {
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c)
                   : "rcx", "r11", "memory");
  return ret;
}

ASPAWN_SYS_INLINE long syscall4(long n, long a, long b, long c,
                                long d) noexcept {
  long ret;
  register long r10 __asm__("r10") = d;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                   : "rcx", "r11", "memory");
  return ret;
}

ASPAWN_SYS_INLINE long syscall5(long n, long a, long b, long c, long d,
                                long e) noexcept {
  long ret;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                   : "rcx", "r11", "memory");
  return ret;
}

ASPAWN_SYS_INLINE long syscall6(long n, long a, long b, long c, long d, long e,
                                long f) noexcept {
  long ret;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8),
                     "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}

#elif defined(__aarch64__)

#define ASPAWN_SYS_AARCH64_BODY(...)                                           \
  __asm__ volatile("svc #0" : "=r"(x0) : __VA_ARGS__ : "memory", "cc")

ASPAWN_SYS_INLINE long syscall0(long n) noexcept {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0");
  ASPAWN_SYS_AARCH64_BODY("r"(x8));
  return x0;
}

ASPAWN_SYS_INLINE long syscall1(long n, long a) noexcept {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8) : "memory", "cc");
  return x0;
}

ASPAWN_SYS_INLINE long syscall2(long n, long a, long b) noexcept {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1) : "memory", "cc");
  return x0;
}

ASPAWN_SYS_INLINE long syscall3(long n, long a, long b, long c) noexcept {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  __asm__ volatile("svc #0"
                   : "+r"(x0)
                   : "r"(x8), "r"(x1), "r"(x2)
                   : "memory", "cc");
  return x0;
}

ASPAWN_SYS_INLINE long syscall4(long n, long a, long b, long c,
                                long d) noexcept {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  __asm__ volatile("svc #0"
                   : "+r"(x0)
                   : "r"(x8), "r"(x1), "r"(x2), "r"(x3)
                   : "memory", "cc");
  return x0;
}

ASPAWN_SYS_INLINE long syscall5(long n, long a, long b, long c, long d,
                                long e) noexcept {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  register long x4 __asm__("x4") = e;
  __asm__ volatile("svc #0"
                   : "+r"(x0)
                   : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4)
                   : "memory", "cc");
  return x0;
}

ASPAWN_SYS_INLINE long syscall6(long n, long a, long b, long c, long d, long e,
                                long f) noexcept {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  register long x4 __asm__("x4") = e;
  register long x5 __asm__("x5") = f;
  __asm__ volatile("svc #0"
                   : "+r"(x0)
                   : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                   : "memory", "cc");
  return x0;
}

#undef ASPAWN_SYS_AARCH64_BODY

#else
#error "aspawn: unsupported architecture (x86-64 and aarch64 are supported)"
#endif

/// The kernel's signal set: one bit per signal, signal N at bit N-1.
using sigset = std::uint64_t;

/// The kernel's `struct sigaction` layout (not glibc's).
struct kernel_sigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)(); // present on x86-64 and aarch64 (SA_RESTORER)
  sigset mask;
};

// Convenience wrappers. Arguments are the kernel's, results are -errno.

ASPAWN_SYS_INLINE long read(int fd, void* buf, std::size_t n) noexcept {
  return syscall3(SYS_read, fd, reinterpret_cast<long>(buf),
                  static_cast<long>(n));
}

ASPAWN_SYS_INLINE long write(int fd, const void* buf, std::size_t n) noexcept {
  return syscall3(SYS_write, fd, reinterpret_cast<long>(buf),
                  static_cast<long>(n));
}

ASPAWN_SYS_INLINE long close(int fd) noexcept {
  return syscall1(SYS_close, fd);
}

ASPAWN_SYS_INLINE long openat(int dirfd, const char* path, int flags,
                              unsigned mode) noexcept {
  return syscall4(SYS_openat, dirfd, reinterpret_cast<long>(path), flags,
                  static_cast<long>(mode));
}

ASPAWN_SYS_INLINE long dup3(int oldfd, int newfd, int flags) noexcept {
  return syscall3(SYS_dup3, oldfd, newfd, flags);
}

ASPAWN_SYS_INLINE long fcntl(int fd, int cmd, long arg) noexcept {
  return syscall3(SYS_fcntl, fd, cmd, arg);
}

ASPAWN_SYS_INLINE long chdir(const char* path) noexcept {
  return syscall1(SYS_chdir, reinterpret_cast<long>(path));
}

ASPAWN_SYS_INLINE long fchdir(int fd) noexcept {
  return syscall1(SYS_fchdir, fd);
}

ASPAWN_SYS_INLINE long getpid() noexcept { return syscall0(SYS_getpid); }

ASPAWN_SYS_INLINE long getppid() noexcept { return syscall0(SYS_getppid); }

ASPAWN_SYS_INLINE long kill(int pid, int sig) noexcept {
  return syscall2(SYS_kill, pid, sig);
}

ASPAWN_SYS_INLINE long rt_sigprocmask(int how, const sigset* set,
                                      sigset* old) noexcept {
  return syscall4(SYS_rt_sigprocmask, how, reinterpret_cast<long>(set),
                  reinterpret_cast<long>(old), sizeof(sigset));
}

ASPAWN_SYS_INLINE long rt_sigaction(int sig, const kernel_sigaction* act,
                                    kernel_sigaction* old) noexcept {
  return syscall4(SYS_rt_sigaction, sig, reinterpret_cast<long>(act),
                  reinterpret_cast<long>(old), sizeof(sigset));
}

ASPAWN_SYS_INLINE long prctl(int option, unsigned long a2, unsigned long a3,
                             unsigned long a4, unsigned long a5) noexcept {
  return syscall5(SYS_prctl, option, static_cast<long>(a2),
                  static_cast<long>(a3), static_cast<long>(a4),
                  static_cast<long>(a5));
}

ASPAWN_SYS_INLINE long nanosleep_ns(long ns) noexcept {
  struct {
    long sec, nsec;
  } ts{ns / 1000000000L, ns % 1000000000L};
  return syscall2(SYS_nanosleep, reinterpret_cast<long>(&ts), 0);
}

[[noreturn]] ASPAWN_SYS_INLINE void exit_group(int status) noexcept {
  for (;;)
    syscall1(SYS_exit_group, status);
}

} // namespace aspawn::sys

#endif // ASPAWN_CHILD_SYS_HPP
