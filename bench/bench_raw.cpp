//
// bench/bench_raw.cpp
// ~~~~~~~~~~~~~~~~~~~
//
// The aspawn technique written out as a plain C-style loop, without the
// library: the floor the library's own overhead is measured against.
//
// Launch (the timed call):
//   * take a stack from a pool of mmap'd stacks, each with a PROT_NONE guard
//     page below it;
//   * pipe2(O_CLOEXEC) for the status pipe;
//   * block all signals, glibc clone(CLONE_VM | CLONE_PIDFD | SIGCHLD) onto
//     that stack, restore the mask;
//   * close the write end, add the read end and the pidfd to an epoll set.
// The parent never waits for the child inside the launch.
//
// Child: restore the signal mask, execve; on failure write errno to the
// status pipe and _exit(127). The child shares the parent's memory and
// thread pointer, so it touches nothing but its own stack and the arguments
// placed at the top of it (a failed execve does write the shared errno, which
// only matters on that error path).
//
// Completion, driven by epoll_wait:
//   * status pipe EOF: the child has exec'd (or died), so it no longer uses
//     the stack, which goes back to the pool; 4 bytes instead of EOF would be
//     the errno of a failed exec;
//   * pidfd readable: waitid(P_PIDFD, WEXITED) reaps it.
// A child is done when both have happened.
//

#include "harness.hpp"
#include "ticker.hpp"

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

extern "C" {
extern char** environ;
}

namespace aspawn_bench {
namespace {

constexpr std::size_t stack_size = 64 * 1024;
constexpr std::size_t guard_size = 4096;

struct child_args {
  const char* path;
  char* argv[2];
  char** envp;
  int status_fd;
  sigset_t mask;
};

int child_main(void* p) {
  auto* a = static_cast<child_args*>(p);
  ::pthread_sigmask(SIG_SETMASK, &a->mask, nullptr);
  ::execve(a->path, a->argv, a->envp);
  int err = errno;
  [[maybe_unused]] ssize_t n = ::write(a->status_fd, &err, sizeof err);
  ::_exit(127);
}

class stack_pool {
public:
  stack_pool() {
    free_.reserve(4096);
    all_.reserve(4096);
  }
  stack_pool(const stack_pool&) = delete;
  stack_pool& operator=(const stack_pool&) = delete;
  ~stack_pool() {
    for (void* base : all_)
      ::munmap(base, guard_size + stack_size);
  }

  // Returns the lowest address of the usable stack area.
  char* acquire() {
    if (!free_.empty()) {
      char* s = free_.back();
      free_.pop_back();
      return s;
    }
    void* base = ::mmap(nullptr, guard_size + stack_size,
                        PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (base == MAP_FAILED)
      throw_errno(errno, "mmap(stack)");
    if (::mprotect(base, guard_size, PROT_NONE) != 0)
      throw_errno(errno, "mprotect(guard)");
    all_.push_back(base);
    return static_cast<char*>(base) + guard_size;
  }

  void release(char* s) { free_.push_back(s); }

private:
  std::vector<char*> free_;
  std::vector<void*> all_;
};

struct slot {
  int index = 0;
  int pidfd = -1;
  int status_fd = -1;
  char* stack = nullptr;
  bool reaped = false;
  bool sleeper = false;
  bool keep = false; // launch_one releases it itself
  int child_errno = 0;
  int exit_code_kind = 0; // si_code of the reaped child
  int exit_status = 0;

  bool done() const noexcept { return reaped && status_fd < 0; }
};

class raw_launcher {
public:
  raw_launcher() {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0)
      throw_errno(errno, "epoll_create1");
    slots_.reserve(4096);
    free_slots_.reserve(4096);
  }
  raw_launcher(const raw_launcher&) = delete;
  raw_launcher& operator=(const raw_launcher&) = delete;
  ~raw_launcher() {
    for (auto& s : slots_) {
      if (s->status_fd >= 0)
        ::close(s->status_fd);
      if (s->pidfd >= 0) {
        kill_pidfd(s->pidfd);
        siginfo_t si{};
        ::waitid(P_PIDFD, static_cast<id_t>(s->pidfd), &si, WEXITED);
        ::close(s->pidfd);
      }
    }
    ::close(epfd_);
  }

  slot* launch(const char* path, bool sleeper, bool keep) {
    slot* s = take_slot();
    s->sleeper = sleeper;
    s->keep = keep;
    s->stack = stacks_.acquire();

    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
      int err = errno;
      stacks_.release(s->stack);
      give_back(s);
      throw_errno(err, "pipe2");
    }

    // The arguments live at the top of the child's stack, which stays
    // untouched by the parent until the status pipe reports EOF.
    std::uintptr_t top =
        reinterpret_cast<std::uintptr_t>(s->stack) + stack_size;
    top = (top - sizeof(child_args)) & ~std::uintptr_t{63};
    auto* a = reinterpret_cast<child_args*>(top);
    a->path = path;
    a->argv[0] = const_cast<char*>(path);
    a->argv[1] = nullptr;
    a->envp = environ;
    a->status_fd = p[1];

    sigset_t all;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &a->mask);
    int pidfd = -1;
    int tid = ::clone(&child_main, a, CLONE_VM | CLONE_PIDFD | SIGCHLD, a,
                      &pidfd, nullptr, nullptr);
    int clone_errno = errno;
    ::pthread_sigmask(SIG_SETMASK, &a->mask, nullptr);
    ::close(p[1]);
    if (tid < 0) {
      ::close(p[0]);
      stacks_.release(s->stack);
      give_back(s);
      throw_errno(clone_errno, "clone");
    }

    s->pidfd = pidfd;
    s->status_fd = p[0];
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = static_cast<std::uint64_t>(s->index) << 1;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, p[0], &ev) != 0)
      throw_errno(errno, "epoll_ctl(status pipe)");
    ev.data.u64 |= 1;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, pidfd, &ev) != 0)
      throw_errno(errno, "epoll_ctl(pidfd)");
    ++live_;
    if (sleeper)
      ++live_sleepers_;
    return s;
  }

  // Serves `t` from pump() (the responsiveness phase) until detach_timer().
  void attach_timer(timerfd_ticker* t) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = timer_tag;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, t->fd(), &ev) != 0)
      throw_errno(errno, "epoll_ctl(timerfd)");
    timer_ = t;
  }

  void detach_timer() noexcept {
    if (timer_ != nullptr)
      ::epoll_ctl(epfd_, EPOLL_CTL_DEL, timer_->fd(), nullptr);
    timer_ = nullptr;
  }

  // Handles one epoll_wait's worth of events.
  void pump() {
    epoll_event evs[64];
    int n = ::epoll_wait(epfd_, evs, 64, -1);
    if (n < 0) {
      if (errno == EINTR)
        return;
      throw_errno(errno, "epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      std::uint64_t d = evs[i].data.u64;
      if (d == timer_tag) {
        if (timer_ != nullptr)
          timer_->on_readable();
        continue;
      }
      slot* s = slots_[static_cast<std::size_t>(d >> 1)].get();
      if ((d & 1) == 0)
        on_status_pipe(s);
      else
        on_pidfd(s);
      if (s->done())
        finish(s);
    }
  }

  void release(slot* s) { give_back(s); }

  void kill_sleepers() {
    for (auto& s : slots_)
      if (s->sleeper && s->pidfd >= 0)
        kill_pidfd(s->pidfd);
  }

  int live_sleepers() const noexcept { return live_sleepers_; }
  int completed() const noexcept { return completed_; }
  void reset_completed() noexcept { completed_ = 0; }

  // Throws if a non-sleeper child failed since the last call.
  void check_failures() {
    if (failures_ == 0)
      return;
    failures_ = 0;
    throw std::runtime_error("raw_clone: " + last_failure_);
  }

private:
  void on_status_pipe(slot* s) {
    int err = 0;
    ssize_t r = ::read(s->status_fd, &err, sizeof err);
    if (r < 0 && errno == EINTR)
      return;
    if (r > 0) { // exec failed; EOF follows when the child exits
      s->child_errno = err;
      return;
    }
    // Deregister explicitly: a child that has not exec'd yet holds a copy of
    // this descriptor, and epoll drops a registration only on the last close
    // of the file, so a plain close would leave it reporting stale events.
    ::epoll_ctl(epfd_, EPOLL_CTL_DEL, s->status_fd, nullptr);
    ::close(s->status_fd);
    s->status_fd = -1;
    stacks_.release(s->stack);
    s->stack = nullptr;
  }

  void on_pidfd(slot* s) {
    siginfo_t si{};
    if (::waitid(P_PIDFD, static_cast<id_t>(s->pidfd), &si, WEXITED) != 0) {
      if (errno == EINTR)
        return;
      throw_errno(errno, "waitid(P_PIDFD)");
    }
    s->exit_code_kind = si.si_code;
    s->exit_status = si.si_status;
    ::epoll_ctl(epfd_, EPOLL_CTL_DEL, s->pidfd, nullptr); // see on_status_pipe
    ::close(s->pidfd);
    s->pidfd = -1;
    s->reaped = true;
  }

  void finish(slot* s) {
    --live_;
    if (s->sleeper) {
      --live_sleepers_;
      give_back(s);
      return;
    }
    ++completed_;
    if (s->child_errno != 0 || s->exit_code_kind != CLD_EXITED || s->exit_status != 0) {
      ++failures_;
      last_failure_ = s->child_errno != 0
                          ? "exec failed with errno " +
                                std::to_string(s->child_errno)
                          : "child ended with si_code " +
                                std::to_string(s->exit_code_kind) + ", status " +
                                std::to_string(s->exit_status);
    }
    if (!s->keep)
      give_back(s);
  }

  slot* take_slot() {
    if (free_slots_.empty()) {
      slots_.push_back(std::make_unique<slot>());
      slots_.back()->index = static_cast<int>(slots_.size() - 1);
      free_slots_.push_back(slots_.back().get());
    }
    slot* s = free_slots_.back();
    free_slots_.pop_back();
    const int index = s->index;
    *s = slot{};
    s->index = index;
    return s;
  }

  void give_back(slot* s) { free_slots_.push_back(s); }

  static constexpr std::uint64_t timer_tag = ~std::uint64_t{0};

  int epfd_ = -1;
  timerfd_ticker* timer_ = nullptr;
  stack_pool stacks_;
  std::vector<std::unique_ptr<slot>> slots_;
  std::vector<slot*> free_slots_;
  int live_ = 0;
  int live_sleepers_ = 0;
  int completed_ = 0;
  int failures_ = 0;
  std::string last_failure_;
};

// count launches, at most in_flight alive; with a log, each launch call is
// timed into it.
void run_batch_on(raw_launcher& l, const char* path, int count, int in_flight,
                  tick_log* log) {
  l.reset_completed();
  int launched = 0;
  while (l.completed() < count) {
    while (launched < count && launched - l.completed() < in_flight) {
      timed_call(log, [&] { return l.launch(path, false, false); });
      ++launched;
    }
    l.pump();
  }
  l.check_failures();
}

session make_session() {
  auto l = std::make_shared<raw_launcher>();
  session s;

  s.launch_one = [l](const char* path) {
    launch_sample r;
    std::int64_t t0 = now_ns();
    slot* c = l->launch(path, false, true);
    std::int64_t t1 = now_ns();
    while (!c->done())
      l->pump();
    std::int64_t t2 = now_ns();
    l->release(c);
    l->check_failures();
    r.call_ns = t1 - t0;
    r.total_ns = t2 - t0;
    return r;
  };

  s.run_batch = [l](const char* path, int count, int in_flight) {
    run_batch_on(*l, path, count, in_flight, nullptr);
  };

  s.run_batch_ticking = [l](const char* path, int count, int in_flight,
                            tick_log& log) {
    timerfd_ticker t(log);
    l->attach_timer(&t);
    struct detach {
      raw_launcher& l;
      ~detach() { l.detach_timer(); }
    } d{*l};
    run_batch_on(*l, path, count, in_flight, &log);
  };

  s.start_sleepers = [l](const char* path, int count) {
    for (int i = 0; i < count; ++i)
      l->launch(path, true, false);
  };

  s.stop_sleepers = [l] {
    l->kill_sleepers();
    while (l->live_sleepers() > 0)
      l->pump();
  };
  return s;
}

} // namespace

void register_raw_contenders(registry& r) {
  r.add({"raw_clone",
         "plain loop of the aspawn technique: glibc clone(CLONE_VM|CLONE_PIDFD) "
         "on pooled stacks, CLOEXEC status pipe, epoll + waitid(P_PIDFD)",
         [] { return make_session(); }});
}

} // namespace aspawn_bench
