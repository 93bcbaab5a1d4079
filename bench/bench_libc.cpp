//
// bench/bench_libc.cpp
// ~~~~~~~~~~~~~~~~~~~~
//
// The C library's ways: posix_spawn, vfork + execve, fork + execve.
//
// Each launch blocks the caller (posix_spawn and vfork until the child has
// exec'd, fork until the address space is copied). One at a time, the child
// is reaped with waitpid(pid); with N in flight, with waitpid(-1), which is the
// cheapest reaper there is (no other children exist during those runs).
// The sleepers of the "live children" measurement are plain unreaped
// children: a synchronous waitpid(pid) has no watcher whose cost could grow
// with them.
//

#include "harness.hpp"

#include <cerrno>
#include <memory>
#include <vector>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern "C" {
extern char** environ;
}

namespace aspawn_bench {
namespace {

using spawn_fn = pid_t (*)(const char* path);

pid_t spawn_posix(const char* path) {
  char* argv[] = {const_cast<char*>(path), nullptr};
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, path, nullptr, nullptr, argv, environ);
  if (rc != 0)
    throw_errno(rc, "posix_spawn");
  return pid;
}

// The child only calls execve and _exit, and reports a failed exec through
// memory it shares with the parent, which vfork suspends until then.
__attribute__((noinline)) pid_t spawn_vfork(const char* path) {
  char* argv[] = {const_cast<char*>(path), nullptr};
  volatile int child_errno = 0;
  pid_t pid = ::vfork();
  if (pid == 0) {
    ::execve(path, argv, environ);
    child_errno = errno;
    ::_exit(127);
  }
  if (pid < 0)
    throw_errno(errno, "vfork");
  if (child_errno != 0) {
    int st = 0;
    ::waitpid(pid, &st, 0);
    throw_errno(child_errno, "execve (vfork child)");
  }
  return pid;
}

// The plainest fork + exec: no error pipe, a failed exec shows up as exit
// status 127.
pid_t spawn_fork(const char* path) {
  char* argv[] = {const_cast<char*>(path), nullptr};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execve(path, argv, environ);
    ::_exit(127);
  }
  if (pid < 0)
    throw_errno(errno, "fork");
  return pid;
}

pid_t wait_any(int& status) {
  for (;;) {
    pid_t pid = ::waitpid(-1, &status, 0);
    if (pid >= 0)
      return pid;
    if (errno != EINTR)
      throw_errno(errno, "waitpid(-1)");
  }
}

void wait_pid(pid_t pid, int& status) {
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      throw_errno(errno, "waitpid");
}

session make_session(spawn_fn spawn, const char* who) {
  struct state {
    std::vector<pid_t> sleepers;
  };
  auto st = std::make_shared<state>();
  session s;

  s.launch_one = [spawn, who](const char* path) {
    launch_sample r;
    std::int64_t t0 = now_ns();
    pid_t pid = spawn(path);
    std::int64_t t1 = now_ns();
    int status = 0;
    wait_pid(pid, status);
    std::int64_t t2 = now_ns();
    check_wait_status(status, who);
    r.call_ns = t1 - t0;
    r.total_ns = t2 - t0;
    return r;
  };

  s.run_batch = [spawn, who](const char* path, int count, int in_flight) {
    int launched = 0;
    int alive = 0;
    int bad_status = 0;
    int failures = 0;
    while (launched < count || alive > 0) {
      if (launched < count && alive < in_flight) {
        spawn(path);
        ++launched;
        ++alive;
        continue;
      }
      int status = 0;
      wait_any(status);
      --alive;
      if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        bad_status = status;
        ++failures;
      }
    }
    if (failures != 0)
      check_wait_status(bad_status, who);
  };

  s.start_sleepers = [st, spawn](const char* path, int count) {
    st->sleepers.reserve(st->sleepers.size() + static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i)
      st->sleepers.push_back(spawn(path));
  };

  s.stop_sleepers = [st] {
    for (pid_t pid : st->sleepers)
      ::kill(pid, SIGKILL);
    for (pid_t pid : st->sleepers) {
      int status = 0;
      wait_pid(pid, status);
    }
    st->sleepers.clear();
  };
  return s;
}

} // namespace

void register_libc_contenders(registry& r) {
  r.add({"posix_spawn",
         "glibc posix_spawn (clone(CLONE_VM|CLONE_VFORK)), blocks until exec; "
         "waitpid",
         [] { return make_session(&spawn_posix, "posix_spawn"); }});
  r.add({"vfork_exec", "vfork + execve, blocks until exec; waitpid",
         [] { return make_session(&spawn_vfork, "vfork_exec"); }});
  r.add({"fork_exec",
         "fork + execve (no error pipe), blocks for the page-table copy; "
         "waitpid",
         [] { return make_session(&spawn_fork, "fork_exec"); }, true});
}

} // namespace aspawn_bench
