// The code that runs in the child between clone and exec.
//
// This translation unit is compiled with -fno-stack-protector, -fno-builtin,
// -fno-tree-loop-distribute-patterns, without sanitizers and without
// profiling (see lib/meson.build), and a build check asserts that its object
// references no symbol from outside itself: the child shares the parent's
// memory and thread pointer, so it must not touch errno, the heap, locks, a
// lazily bound PLT slot, or the sanitizers' shadow state.

#include <aspawn/child/step.hpp>
#include <aspawn/child/sys.hpp>

#include <cerrno>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

namespace {

using namespace aspawn;
using namespace aspawn::detail;

#define ASPAWN_CHILD_INTERNAL                                                  \
  __attribute__((no_sanitize("address", "undefined", "thread"),                \
                 no_stack_protector))

ASPAWN_CHILD_INTERNAL inline const char* str_at(const std::byte* blob,
                                                std::uint32_t off) {
  return off == no_string ? nullptr
                          : reinterpret_cast<const char*>(blob + off);
}

ASPAWN_CHILD_INTERNAL inline const std::int32_t* ints_at(const std::byte* blob,
                                                         std::uint32_t off) {
  return reinterpret_cast<const std::int32_t*>(blob + off);
}

[[noreturn]] ASPAWN_CHILD_INTERNAL void fail(int status_fd, int index,
                                             step_kind kind, long err) {
  failure_record rec;
  rec.step = index;
  rec.err = static_cast<std::int32_t>(-err);
  rec.kind = static_cast<std::uint32_t>(kind);
  rec.magic = failure_magic;
  // One write of at most PIPE_BUF bytes is atomic. Nothing can be done if it
  // fails: the parent then sees a plain EOF and the exit status 127.
  long r;
  do {
    r = sys::write(status_fd, &rec, sizeof rec);
  } while (r == -EINTR);
  sys::exit_group(127);
}

ASPAWN_CHILD_INTERNAL bool in_sorted(const std::int32_t* keep, std::uint32_t n,
                                     int fd) {
  for (std::uint32_t i = 0; i < n; ++i) {
    if (keep[i] == fd)
      return true;
    if (keep[i] > fd)
      return false;
  }
  return false;
}

// close_range(flags) over [3, ~0] minus the sorted list `keep` and the fds
// `skip` names (-1: none). 0, or the first error.
ASPAWN_CHILD_INTERNAL long close_gaps(const std::int32_t* keep, std::uint32_t n,
                                      const int (&skip_fds)[2],
                                      unsigned flags) {
  unsigned skip[2] = {static_cast<unsigned>(skip_fds[0]),
                      static_cast<unsigned>(skip_fds[1])};
  if (skip[0] > skip[1]) {
    unsigned t = skip[0];
    skip[0] = skip[1];
    skip[1] = t;
  }
  // [from, to] inclusive, around the skipped fds
  auto gap = [&](unsigned from, unsigned to) -> long {
    if (from > to)
      return 0;
    for (unsigned k : skip) {
      if (static_cast<int>(k) < 0 || k < from || k > to)
        continue;
      if (k > from) {
        long r = sys::syscall3(SYS_close_range, from, k - 1, flags);
        if (r < 0)
          return r;
      }
      from = k + 1;
      if (from > to || from == 0)
        return 0;
    }
    return sys::syscall3(SYS_close_range, from, to, flags);
  };
  unsigned lo = 3;
  for (std::uint32_t i = 0; i < n; ++i) {
    unsigned k = static_cast<unsigned>(keep[i]);
    if (k < lo)
      continue;
    long r = gap(lo, k - 1);
    if (r < 0)
      return r;
    lo = k + 1;
  }
  return gap(lo, ~0u);
}

// Closes every fd >= 3 except the sorted list `keep`, the status pipe and
// the held executable; the last step before exec.
//
// Linux 5.11 and later: the fds are marked close-on-exec
// (CLOSE_RANGE_CLOEXEC), and exec closes them in one pass over the table's
// bitmap. Closing them here would walk every slot of the table and then
// leave exec its own pass: measured, most of what the child spends before
// exec beyond clone. The status pipe is close-on-exec already (it stays
// open for a failure report either way), so the default command makes one
// system call. Linux 5.9 and 5.10 refuse the flag (EINVAL): the fds are
// closed here.
ASPAWN_CHILD_INTERNAL long close_others(const std::int32_t* keep,
                                        std::uint32_t n, int status_fd,
                                        int exec_fd) {
  long r = close_gaps(keep, n, {exec_fd, -1}, CLOSE_RANGE_CLOEXEC);
  if (r == -EINVAL)
    r = close_gaps(keep, n, {status_fd, exec_fd}, 0);
  if (r == 0)
    return 0;
  if (r != -ENOSYS && r != -EPERM)
    return r;

  // Fallback for kernels without close_range: walk /proc/self/fd.
  long dfd = sys::openat(AT_FDCWD, "/proc/self/fd",
                         O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
  if (dfd >= 0) {
    alignas(8) char buf[1024];
    for (;;) {
      long got = sys::syscall3(SYS_getdents64, dfd, reinterpret_cast<long>(buf),
                               sizeof buf);
      if (got < 0) {
        sys::close(static_cast<int>(dfd));
        return got;
      }
      if (got == 0)
        break;
      for (long pos = 0; pos < got;) {
        // struct linux_dirent64 { u64 ino; s64 off; u16 reclen; u8 type;
        // char name[]; }
        unsigned reclen = static_cast<unsigned char>(buf[pos + 16]) |
                          static_cast<unsigned>(
                              static_cast<unsigned char>(buf[pos + 17]))
                              << 8;
        const char* name = buf + pos + 19;
        int fd = 0;
        bool digits = name[0] != '\0';
        for (const char* p = name; *p; ++p) {
          if (*p < '0' || *p > '9') {
            digits = false;
            break;
          }
          fd = fd * 10 + (*p - '0');
        }
        if (digits && fd >= 3 && fd != dfd && fd != status_fd &&
            fd != exec_fd && !in_sorted(keep, n, fd))
          sys::close(fd);
        pos += reclen;
      }
    }
    sys::close(static_cast<int>(dfd));
    return 0;
  }

  // No /proc either: close up to the fd limit.
  struct {
    unsigned long cur, max;
  } lim{};
  r = sys::syscall4(SYS_prlimit64, 0, RLIMIT_NOFILE, 0,
                    reinterpret_cast<long>(&lim));
  if (r < 0)
    return r;
  unsigned long top = lim.cur > 65536 ? 65536 : lim.cur;
  for (unsigned long fd = 3; fd < top; ++fd)
    if (static_cast<int>(fd) != status_fd && static_cast<int>(fd) != exec_fd &&
        !in_sorted(keep, n, static_cast<int>(fd)))
      sys::close(static_cast<int>(fd));
  return 0;
}

// Resets every caught signal to SIG_DFL, leaving ignored ones ignored; what
// CLONE_CLEAR_SIGHAND does on the clone3 path.
ASPAWN_CHILD_INTERNAL long reset_handlers() {
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP)
      continue;
    sys::kernel_sigaction old{};
    long r = sys::rt_sigaction(sig, nullptr, &old);
    if (r < 0)
      continue; // signal numbers the kernel does not accept
    if (old.handler == SIG_DFL || old.handler == SIG_IGN)
      continue;
    sys::kernel_sigaction dfl{};
    dfl.handler = SIG_DFL;
    r = sys::rt_sigaction(sig, &dfl, nullptr);
    if (r < 0)
      return r;
  }
  return 0;
}

ASPAWN_CHILD_INTERNAL long set_dispositions(sys::sigset set, bool ignore) {
  for (int sig = 1; sig <= 64; ++sig) {
    if (!(set & (sys::sigset{1} << (sig - 1))))
      continue;
    sys::kernel_sigaction act{};
    act.handler = ignore ? SIG_IGN : SIG_DFL;
    long r = sys::rt_sigaction(sig, &act, nullptr);
    if (r < 0)
      return r;
  }
  return 0;
}

ASPAWN_CHILD_INTERNAL long run_step(const step& s, const std::byte* blob,
                                    const child_args& args, long* dumpable) {
  switch (s.kind) {
  case step_kind::open: {
    long fd = sys::openat(AT_FDCWD, str_at(blob, s.str), s.b & ~O_CLOEXEC,
                          static_cast<unsigned>(s.c));
    if (fd < 0)
      return fd;
    if (fd != s.a) {
      long r = sys::dup3(static_cast<int>(fd), s.a, 0);
      sys::close(static_cast<int>(fd));
      if (r < 0)
        return r;
    }
    return 0;
  }
  case step_kind::dup:
    if (s.from_slot) // a per-launch pipe, kept above every named fd
      return sys::dup3(args.slot[s.a], s.b, 0);
    if (s.a == s.b) { // same fd: make it survive exec
      long fl = sys::fcntl(s.a, F_GETFD, 0);
      if (fl < 0)
        return fl;
      return sys::fcntl(s.a, F_SETFD, fl & ~FD_CLOEXEC);
    }
    return sys::dup3(s.a, s.b, s.c ? O_CLOEXEC : 0);
  case step_kind::close: {
    long r = sys::close(s.a);
    return r == -EBADF ? 0 : r; // closing a closed fd is what was asked
  }
  case step_kind::close_others:
    return close_others(ints_at(blob, s.str), s.len, args.status_fd,
                        args.exec_fd);
  case step_kind::chdir:
    return sys::chdir(str_at(blob, s.str));
  case step_kind::fchdir:
    return sys::fchdir(s.a);
  case step_kind::setsid:
    return sys::syscall0(SYS_setsid);
  case step_kind::setpgid:
    return sys::syscall2(SYS_setpgid, 0, s.a);
  case step_kind::tcsetpgrp: {
    // The child is in the background until this succeeds: SIGTTOU would stop
    // it, so it is blocked here (all signals are blocked until the mask is
    // restored before exec).
    // getpgid(0): aarch64 has no getpgrp system call.
    int pgrp = static_cast<int>(sys::syscall1(SYS_getpgid, 0));
    return sys::syscall3(SYS_ioctl, s.a, 0x5410 /* TIOCSPGRP */,
                         reinterpret_cast<long>(&pgrp));
  }
  case step_kind::signal_default:
    return set_dispositions(s.x, false);
  case step_kind::signal_ignore:
    return set_dispositions(s.x, true);
  case step_kind::setgroups:
    return sys::syscall2(SYS_setgroups, s.len,
                         reinterpret_cast<long>(ints_at(blob, s.str)));
  case step_kind::setresgid:
    return sys::syscall3(SYS_setresgid, s.a, s.b, s.c);
  case step_kind::setresuid:
    return sys::syscall3(SYS_setresuid, s.a, s.b, s.c);
  case step_kind::umask:
    sys::syscall1(SYS_umask, s.a);
    return 0;
  case step_kind::no_new_privs:
    return sys::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  case step_kind::prlimit: {
    struct {
      unsigned long cur, max;
    } lim{s.x, s.y};
    return sys::syscall4(SYS_prlimit64, 0, s.a, reinterpret_cast<long>(&lim),
                         0);
  }
  case step_kind::nice:
    return sys::syscall3(SYS_setpriority, PRIO_PROCESS, 0, s.a);
  case step_kind::affinity:
    return sys::syscall3(SYS_sched_setaffinity, 0, s.len * 8,
                         reinterpret_cast<long>(blob + s.str));
  case step_kind::pdeathsig: {
    if (s.c && args.autokill) // kill_on_parent_death: the kernel sees to it
      return 0;
    long r = sys::prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(s.a), 0,
                        0, 0);
    if (r < 0)
      return r;
    // The parent may have died before the signal was armed.
    if (sys::getppid() != s.b)
      return -ESRCH;
    return 0;
  }
  case step_kind::user_function: {
    auto fn = reinterpret_cast<child_function_type>(s.fn);
    long r = fn(const_cast<std::byte*>(blob) + s.str, s.len);
    return r > 0 ? 0 : r;
  }
  case step_kind::restore_dumpable:
    *dumpable = 1;
    return 0;
  default:
    return -EINVAL;
  }
}

} // namespace

// Entry point called by the clone trampoline on the child stack.
extern "C" ASPAWN_CHILD_INTERNAL __attribute__((used)) int
aspawn_child_main(void* raw) {
  const auto& args = *static_cast<const child_args*>(raw);
  const std::byte* blob = args.blob;
  const blob_header& h = *reinterpret_cast<const blob_header*>(blob);
  const step* steps = reinterpret_cast<const step*>(blob + h.steps);

  int status_fd = args.status_fd;
  // Keep the status pipe above every fd the steps name, so that a dup2 onto
  // its number cannot clobber it.
  if (status_fd <= static_cast<int>(h.max_fd)) {
    long moved = sys::fcntl(status_fd, F_DUPFD_CLOEXEC,
                            static_cast<long>(h.max_fd) + 1);
    if (moved < 0) // e.g. a named fd at the RLIMIT_NOFILE limit: report it
      fail(status_fd, -1, step_kind::dup, moved);
    sys::close(status_fd);
    status_fd = static_cast<int>(moved);
  }
  // The held executable likewise.
  int exec_fd = h.exec_fd;
  if (exec_fd >= 0 && exec_fd <= static_cast<int>(h.max_fd)) {
    long moved = sys::fcntl(exec_fd, F_DUPFD_CLOEXEC,
                            static_cast<long>(h.max_fd) + 1);
    if (moved < 0)
      fail(status_fd, -1, step_kind::dup, moved);
    exec_fd = static_cast<int>(moved);
  }
  child_args local = args;
  local.status_fd = status_fd;
  local.exec_fd = exec_fd;
  // And the child's ends of per-launch pipes (close-on-exec, like their
  // copies).
  for (int& fd : local.slot) {
    if (fd < 0 || fd > static_cast<int>(h.max_fd))
      continue;
    long moved =
        sys::fcntl(fd, F_DUPFD_CLOEXEC, static_cast<long>(h.max_fd) + 1);
    if (moved < 0)
      fail(status_fd, -1, step_kind::dup, moved);
    // The old number may be one a step names (as a descriptor the parent
    // does not have open): it must not find the pipe there.
    sys::close(fd);
    fd = static_cast<int>(moved);
  }

  if (args.reset_handlers) {
    long r = reset_handlers();
    if (r < 0)
      fail(status_fd, -1, step_kind::reset_signals, r);
  }

  long dumpable = 0;
  for (std::uint32_t i = 0; i < h.step_count; ++i) {
    long r = run_step(steps[i], blob, local, &dumpable);
    if (r < 0)
      fail(status_fd, static_cast<int>(i), steps[i].kind, r);
  }

  sys::sigset mask = (h.flags & flag_sigmask) ? h.sigmask : args.parent_mask;
  sys::rt_sigprocmask(SIG_SETMASK, &mask, nullptr);

  long r = -ENOSYS;
  if (exec_fd >= 0)
    r = sys::syscall5(SYS_execveat, exec_fd, reinterpret_cast<long>(""),
                      reinterpret_cast<long>(args.argv),
                      reinterpret_cast<long>(args.envp), AT_EMPTY_PATH);
  // No execveat (before 3.19), or a file that became a script: by path.
  if (exec_fd < 0 || r == -ENOSYS || r == -ENOENT)
    r = sys::syscall3(SYS_execve, reinterpret_cast<long>(args.path),
                      reinterpret_cast<long>(args.argv),
                      reinterpret_cast<long>(args.envp));
  // Exec failed: block signals again so a restored handler-free mask cannot
  // let a signal interrupt the report.
  sys::sigset all = ~sys::sigset{0};
  sys::rt_sigprocmask(SIG_SETMASK, &all, nullptr);
  fail(status_fd, static_cast<int>(h.step_count), step_kind::exec, r);
}
