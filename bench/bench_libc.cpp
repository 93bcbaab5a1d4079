//
// bench/bench_libc.cpp
// ~~~~~~~~~~~~~~~~~~~~
//
// The C library's ways: posix_spawn, pidfd_spawn, vfork + execve,
// fork + execve.
//
// Each launch blocks the caller (posix_spawn and vfork until the child has
// exec'd, fork until the address space is copied). One at a time, the child
// is reaped with waitpid(pid); with N in flight, with waitpid(-1), which is the
// cheapest reaper there is (no other children exist during those runs).
// The sleepers of the "live children" measurement are plain unreaped
// children: a synchronous waitpid(pid) has no watcher whose cost could grow
// with them.
//
// pidfd_spawn (glibc 2.39) is posix_spawn returning a pidfd instead of a pid.
// It is looked up when the program starts, so the same binary measures it on
// any machine whose C library has it, whichever glibc it was built against;
// elsewhere the results list it as not available, with the reason. Its
// children are waited for the way a pidfd invites: one at a time by
// waitid(P_PIDFD) on that pidfd, with N in flight (and the sleepers) through
// an epoll set of pidfds.
//

#include "harness.hpp"
#include "ticker.hpp"

#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
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

// count launches, at most in_flight alive, reaped with waitpid(-1); with a
// log, each launch call is timed into it.
void run_batch_on(spawn_fn spawn, const char* who, const char* path, int count,
                  int in_flight, tick_log* log) {
  int launched = 0;
  int alive = 0;
  int bad_status = 0;
  int failures = 0;
  while (launched < count || alive > 0) {
    if (launched < count && alive < in_flight) {
      timed_call(log, [&] { return spawn(path); });
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
    run_batch_on(spawn, who, path, count, in_flight, nullptr);
  };

  // The launching thread blocks in every launch: the timer is served by a
  // thread of its own.
  s.run_batch_ticking = [spawn, who](const char* path, int count,
                                     int in_flight, tick_log& log) {
    sleeping_ticker t(log);
    run_batch_on(spawn, who, path, count, in_flight, &log);
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

// int pidfd_spawn(int* pidfd, const char* path,
//                 const posix_spawn_file_actions_t* file_actions,
//                 const posix_spawnattr_t* attrp, char* const argv[],
//                 char* const envp[]);
using pidfd_spawn_fn = int (*)(int*, const char*,
                               const posix_spawn_file_actions_t*,
                               const posix_spawnattr_t*, char* const[],
                               char* const[]);

// The symbol as glibc 2.39 introduced it (the version pins the signature
// above), or null.
pidfd_spawn_fn find_pidfd_spawn() noexcept {
  return reinterpret_cast<pidfd_spawn_fn>(
      ::dlvsym(RTLD_DEFAULT, "pidfd_spawn", "GLIBC_2.39"));
}

// The children of one pidfd_spawn session, each known only by its pidfd.
class pidfd_children {
public:
  explicit pidfd_children(pidfd_spawn_fn spawn) : spawn_(spawn) {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0)
      throw_errno(errno, "epoll_create1");
    kind_.reserve(4096);
  }
  pidfd_children(const pidfd_children&) = delete;
  pidfd_children& operator=(const pidfd_children&) = delete;
  ~pidfd_children() {
    // Whatever a failed measurement left running.
    for (std::size_t fd = 0; fd < kind_.size(); ++fd) {
      if (kind_[fd] == none)
        continue;
      const int pidfd = static_cast<int>(fd);
      kill_pidfd(pidfd);
      siginfo_t si{};
      ::waitid(P_PIDFD, static_cast<id_t>(pidfd), &si, WEXITED);
      ::close(pidfd);
    }
    ::close(epfd_);
  }

  // Starts `path`; blocks until the child has exec'd, as posix_spawn does.
  int spawn(const char* path) {
    char* argv[] = {const_cast<char*>(path), nullptr};
    int pidfd = -1;
    int rc = spawn_(&pidfd, path, nullptr, nullptr, argv, environ);
    if (rc != 0)
      throw_errno(rc, "pidfd_spawn");
    return pidfd;
  }

  // Reaps the child of `pidfd` (blocking until it exits) and closes the
  // pidfd; returns its waitpid-style status.
  static int reap(int pidfd) {
    siginfo_t si{};
    while (::waitid(P_PIDFD, static_cast<id_t>(pidfd), &si, WEXITED) != 0) {
      if (errno != EINTR) {
        int err = errno;
        ::close(pidfd);
        throw_errno(err, "waitid(P_PIDFD)");
      }
    }
    ::close(pidfd);
    return wait_status_of(si.si_code, si.si_status);
  }

  // Starts `path` and adds its pidfd to the epoll set.
  void start(const char* path, bool sleeper) {
    const int pidfd = spawn(path);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = pidfd;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, pidfd, &ev) != 0) {
      int err = errno;
      kill_pidfd(pidfd);
      reap(pidfd);
      throw_errno(err, "epoll_ctl(pidfd)");
    }
    if (kind_.size() <= static_cast<std::size_t>(pidfd))
      kind_.resize(static_cast<std::size_t>(pidfd) + 1, none);
    kind_[static_cast<std::size_t>(pidfd)] = sleeper ? asleep : working;
    ++(sleeper ? sleepers_ : workers_);
  }

  // Reaps the children one epoll_wait reports. Each pidfd leaves the epoll
  // set explicitly before it is closed: a close drops the registration only
  // with the last reference to the file, and a child still holds copies of
  // every descriptor for a moment after pidfd_spawn has returned (the kernel
  // lets the vfork parent go in exec's switch of address space, before it
  // closes the O_CLOEXEC descriptors). Without it, a stale event for a closed
  // or reused number comes back (waitid: EBADF). Returns the status of a
  // worker that did not exit with 0, or 0.
  int pump() {
    epoll_event evs[64];
    int n = ::epoll_wait(epfd_, evs, 64, -1);
    if (n < 0) {
      if (errno == EINTR)
        return 0;
      throw_errno(errno, "epoll_wait");
    }
    int bad = 0;
    for (int i = 0; i < n; ++i) {
      const int pidfd = evs[i].data.fd;
      ::epoll_ctl(epfd_, EPOLL_CTL_DEL, pidfd, nullptr);
      const bool sleeper = kind_[static_cast<std::size_t>(pidfd)] == asleep;
      kind_[static_cast<std::size_t>(pidfd)] = none;
      --(sleeper ? sleepers_ : workers_);
      int status = reap(pidfd);
      if (!sleeper && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        bad = status;
    }
    return bad;
  }

  void kill_sleepers() {
    for (std::size_t fd = 0; fd < kind_.size(); ++fd)
      if (kind_[fd] == asleep)
        kill_pidfd(static_cast<int>(fd));
  }

  int workers() const noexcept { return workers_; }
  int sleepers() const noexcept { return sleepers_; }

private:
  enum kind : unsigned char { none, working, asleep };

  pidfd_spawn_fn spawn_;
  int epfd_ = -1;
  std::vector<unsigned char> kind_; // by pidfd number
  int workers_ = 0;
  int sleepers_ = 0;
};

session make_pidfd_session(pidfd_spawn_fn spawn) {
  auto c = std::make_shared<pidfd_children>(spawn);
  session s;

  s.launch_one = [c](const char* path) {
    launch_sample r;
    std::int64_t t0 = now_ns();
    int pidfd = c->spawn(path);
    std::int64_t t1 = now_ns();
    int status = pidfd_children::reap(pidfd);
    std::int64_t t2 = now_ns();
    check_wait_status(status, "pidfd_spawn");
    r.call_ns = t1 - t0;
    r.total_ns = t2 - t0;
    return r;
  };

  s.run_batch = [c](const char* path, int count, int in_flight) {
    int launched = 0;
    int bad = 0;
    while (launched < count || c->workers() > 0) {
      if (launched < count && c->workers() < in_flight) {
        c->start(path, false);
        ++launched;
        continue;
      }
      if (int st = c->pump(); st != 0)
        bad = st;
    }
    if (bad != 0)
      check_wait_status(bad, "pidfd_spawn");
  };

  s.start_sleepers = [c](const char* path, int count) {
    for (int i = 0; i < count; ++i)
      c->start(path, true);
  };

  s.stop_sleepers = [c] {
    c->kill_sleepers();
    while (c->sleepers() > 0)
      c->pump();
  };
  return s;
}

} // namespace

void register_libc_contenders(registry& r) {
  r.add({"posix_spawn",
         "glibc posix_spawn (clone(CLONE_VM|CLONE_VFORK)), blocks until exec; "
         "waitpid",
         [] { return make_session(&spawn_posix, "posix_spawn"); }});
  if (pidfd_spawn_fn f = find_pidfd_spawn())
    r.add({"pidfd_spawn",
           "glibc pidfd_spawn (clone3(CLONE_VM|CLONE_VFORK|CLONE_PIDFD)), "
           "blocks until exec; waitid(P_PIDFD), epoll on the pidfds",
           [f] { return make_pidfd_session(f); }});
  else
    r.add_unavailable("pidfd_spawn",
                      std::string("glibc ") + ::gnu_get_libc_version() +
                          " has no pidfd_spawn (it came with glibc 2.39)");
  r.add({"vfork_exec", "vfork + execve, blocks until exec; waitpid",
         [] { return make_session(&spawn_vfork, "vfork_exec"); }});
  r.add({"fork_exec",
         "fork + execve (no error pipe), blocks for the page-table copy; "
         "waitpid",
         [] { return make_session(&spawn_fork, "fork_exec"); }, true});
}

} // namespace aspawn_bench
