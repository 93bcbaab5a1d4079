// The launch: stacks, signal discipline, clone3/clone, status decoding.

#include <aspawn/core/launch.hpp>
#include <aspawn/child/sys.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <linux/sched.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

extern "C" {
long aspawn_clone3(void* args, std::size_t size, int (*fn)(void*), void* arg);
long aspawn_clone(unsigned long flags, void* stack_top, int* pidfd,
                  int (*fn)(void*), void* arg);
int aspawn_child_main(void* arg);
}

extern char** environ;

namespace aspawn {

namespace {

error_code sys_error(long neg) {
  return error_code(static_cast<int>(-neg), boost::system::system_category());
}

std::size_t page_size() noexcept {
  static const std::size_t p = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return p;
}

std::size_t round_pages(std::size_t n) noexcept {
  std::size_t p = page_size();
  return (n + p - 1) / p * p;
}

long map_stack(std::size_t usable, stack_region& out) noexcept {
  std::size_t guard = page_size();
  std::size_t size = round_pages(usable) + guard;
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1,
                   0);
  if (p == MAP_FAILED)
    return -errno;
  if (::mprotect(p, guard, PROT_NONE) != 0) {
    long e = -errno;
    ::munmap(p, size);
    return e;
  }
  out.map = static_cast<std::byte*>(p);
  out.map_size = size;
  out.guard = guard;
  return 0;
}

std::atomic<int> method{static_cast<int>(clone_method::automatic)};

// CLONE_PIDFD_AUTOKILL (Linux 7.x, <linux/sched.h> of later systems): the
// child is killed when its clone pidfd is closed for good. It comes with
// CLONE_AUTOREAP (no exit signal, the kernel reaps) and needs CLONE_NNP or
// CAP_SYS_ADMIN.
constexpr std::uint64_t clone_autoreap = 1ull << 34;
constexpr std::uint64_t clone_nnp = 1ull << 35;
constexpr std::uint64_t clone_pidfd_autokill = 1ull << 36;
// 1 the kernel has it, -1 it has not (or it is not allowed), 0 not probed.
std::atomic<int> autokill_support{0};
std::atomic<bool> autokill_allowed{true};
// Set once the kernel refused it without CLONE_NNP (EPERM): launches
// without no_new_privs then go straight to PR_SET_PDEATHSIG.
std::atomic<bool> autokill_needs_nnp{false};
std::atomic<int> last_parent_death{
    static_cast<int>(parent_death_mechanism::unknown)};

// Bytes above the launch data that belong to the parent (never touched by
// the child): room for the status record the parent reads.
constexpr std::size_t parent_area = parent_area_size;
// Stack the child itself may use below the launch data.
constexpr std::size_t child_reserve = 32 * 1024;

std::mutex cred_mutex;
int cred_in_flight = 0;
int cred_saved_dumpable = 1;

void begin_credential_launch() noexcept {
  std::lock_guard lk(cred_mutex);
  if (cred_in_flight++ == 0)
    cred_saved_dumpable = ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
}

bool key_matches(const char* entry, const char* key) noexcept {
  // entry "K=V" against key "K"
  std::size_t i = 0;
  for (; key[i]; ++i)
    if (entry[i] != key[i])
      return false;
  return entry[i] == '=';
}

bool key_equal(const char* a, const char* b) noexcept {
  // two "K=V" entries with the same key
  std::size_t i = 0;
  for (; a[i] && a[i] != '='; ++i)
    if (a[i] != b[i])
      return false;
  return b[i] == '=' || (a[i] == '\0' && b[i] == '\0');
}

} // namespace

parent_death_mechanism kill_on_parent_death_mechanism() noexcept {
  return static_cast<parent_death_mechanism>(last_parent_death.load());
}

void allow_pidfd_autokill(bool allow) noexcept {
  autokill_allowed.store(allow);
}

void set_clone_method(clone_method m) noexcept {
  method.store(static_cast<int>(m));
}

clone_method current_clone_method() noexcept {
  return static_cast<clone_method>(method.load());
}

void end_credential_launch() noexcept {
  std::lock_guard lk(cred_mutex);
  if (cred_in_flight > 0 && --cred_in_flight == 0 && cred_saved_dumpable > 0)
    ::prctl(PR_SET_DUMPABLE, cred_saved_dumpable, 0, 0, 0);
}

// ---- stack_cache ----------------------------------------------------------

stack_cache::stack_cache(std::size_t stack_size, std::size_t max_cached) noexcept
    : stack_size_(round_pages(std::max<std::size_t>(stack_size, 64 * 1024))),
      max_cached_(max_cached) {}

stack_cache::~stack_cache() { trim(); }

error_code stack_cache::acquire(std::size_t need, stack_region& out) {
  std::size_t standard;
  {
    std::lock_guard lk(mutex_);
    standard = stack_size_;
    if (need <= standard && !idle_.empty()) {
      out = idle_.back();
      idle_.pop_back();
      ++in_use_;
      return {};
    }
  }
  long r = map_stack(std::max(need, standard), out);
  if (r < 0)
    return sys_error(r);
  ++created_;
  ++in_use_;
  return {};
}

void stack_cache::release(stack_region r) noexcept {
  if (!r)
    return;
  --in_use_;
  {
    std::lock_guard lk(mutex_);
    if (r.usable() == stack_size_ && idle_.size() < max_cached_) {
      try {
        idle_.push_back(r);
        return;
      } catch (...) {
      }
    }
  }
  ::munmap(r.map, r.map_size);
}

void stack_cache::set_stack_size(std::size_t bytes) {
  std::vector<stack_region> drop;
  {
    std::lock_guard lk(mutex_);
    stack_size_ = round_pages(std::max<std::size_t>(bytes, 64 * 1024));
    drop.swap(idle_);
  }
  for (auto& r : drop)
    ::munmap(r.map, r.map_size);
}

std::size_t stack_cache::stack_size() const noexcept {
  std::lock_guard lk(mutex_);
  return stack_size_;
}

void stack_cache::set_max_cached(std::size_t n) {
  std::vector<stack_region> drop;
  {
    std::lock_guard lk(mutex_);
    max_cached_ = n;
    while (idle_.size() > n) {
      drop.push_back(idle_.back());
      idle_.pop_back();
    }
  }
  for (auto& r : drop)
    ::munmap(r.map, r.map_size);
}

std::size_t stack_cache::max_cached() const noexcept {
  std::lock_guard lk(mutex_);
  return max_cached_;
}

std::size_t stack_cache::cached() const noexcept {
  std::lock_guard lk(mutex_);
  return idle_.size();
}

void stack_cache::trim() noexcept {
  std::vector<stack_region> drop;
  {
    std::lock_guard lk(mutex_);
    drop.swap(idle_);
  }
  for (auto& r : drop)
    ::munmap(r.map, r.map_size);
}

// ---- launch ---------------------------------------------------------------

error_code prepare_launch(const command& cmd, stack_cache& stacks,
                          launched& out) {
  out = launched{};
  if (cmd.error())
    return cmd.error();
  if (cmd.executable().empty())
    return errc::empty_command;

  const std::size_t blob_size = cmd.packed_size();
  if (blob_size > 128 * 1024) {
    long arg_max = ::sysconf(_SC_ARG_MAX);
    if (arg_max > 0 && blob_size > static_cast<std::size_t>(arg_max))
      return errc::arguments_too_large;
  }

  // The environment as of this launch: inherited entries are referenced in
  // place (glibc never frees environment strings), only the pointer array
  // is copied.
  char** const env = environ;
  std::size_t env_n = 0;
  if (env)
    while (env[env_n])
      ++env_n;

  const std::size_t argc = cmd.argc();
  const std::size_t need = parent_area + blob_size + (argc + 1) * sizeof(char*) +
                           (env_n + cmd.env_set_count() + 1) * sizeof(char*) +
                           sizeof(detail::child_args) + child_reserve + 64;
  stack_region stack;
  if (auto ec = stacks.acquire(need, stack))
    return ec;

  // Lay the launch data out from the top of the stack down.
  std::byte* top = stack.top() - parent_area;
  std::byte* blob = top - blob_size;
  cmd.pack_into(blob);
  detail::blob_header h;
  std::memcpy(&h, blob, sizeof h);
  auto* argv = reinterpret_cast<char**>(blob) - (argc + 1);
  const auto* argv_off = reinterpret_cast<const std::uint32_t*>(blob + h.argv);
  for (std::size_t i = 0; i < argc; ++i)
    argv[i] = reinterpret_cast<char*>(blob + argv_off[i]);
  argv[argc] = nullptr;

  // `low` tracks the lowest byte written so far: the child's stack pointer
  // starts below it.
  std::byte* low = reinterpret_cast<std::byte*>(argv);
  char** envp;
  const auto* set_off = reinterpret_cast<const std::uint32_t*>(blob + h.env);
  const auto* unset_off = reinterpret_cast<const std::uint32_t*>(blob + h.unset);
  if (h.env_mode == 0 && !env) {
    envp = argv + argc; // no environment: the argv terminator
  } else if (h.env_mode == 0) {
    // The environment as of this call: the pointer array is copied (the
    // program may set a variable before the child is cloned or execs,
    // which may move or free `environ`'s array; the strings stay).
    envp = argv - (env_n + 1);
    low = reinterpret_cast<std::byte*>(envp);
    std::memcpy(envp, env, env_n * sizeof(char*));
    envp[env_n] = nullptr;
  } else {
    std::size_t cap = h.env_count + (h.env_mode == 1 ? env_n : 0);
    envp = argv - (cap + 1);
    low = reinterpret_cast<std::byte*>(envp);
    std::size_t n = 0;
    if (h.env_mode == 1) {
      for (std::size_t i = 0; i < env_n; ++i) {
        const char* e = env[i];
        bool drop = false;
        for (std::uint32_t k = 0; k < h.unset_count && !drop; ++k)
          drop = key_matches(e, reinterpret_cast<const char*>(blob + unset_off[k]));
        for (std::uint32_t k = 0; k < h.env_count && !drop; ++k)
          drop = key_equal(reinterpret_cast<const char*>(blob + set_off[k]), e);
        if (!drop)
          envp[n++] = const_cast<char*>(e);
      }
    }
    for (std::uint32_t k = 0; k < h.env_count; ++k)
      envp[n++] = reinterpret_cast<char*>(blob + set_off[k]);
    envp[n] = nullptr;
  }
  auto* cargs = reinterpret_cast<detail::child_args*>(
      reinterpret_cast<std::uintptr_t>(low - sizeof(detail::child_args)) &
      ~std::uintptr_t{15});
  std::byte* sp = reinterpret_cast<std::byte*>(cargs);
  if (sp < stack.map + stack.guard + child_reserve / 2) {
    stacks.release(stack);
    return errc::arguments_too_large;
  }

  cargs->blob = blob;
  cargs->path = reinterpret_cast<const char*>(blob + h.exe);
  cargs->argv = argv;
  cargs->envp = envp;
  cargs->status_fd = -1;
  cargs->exec_fd = -1;
  for (int& fd : cargs->slot)
    fd = -1;
  // The child starts with the mask of the thread that asked for the
  // launch, whichever thread clones it.
  sys::rt_sigprocmask(SIG_BLOCK, nullptr, &cargs->parent_mask);

  out.stack = stack;
  out.args = cargs;
  out.cgroup_fd = cmd.cgroup_fd();
  out.wants_credentials = cmd.changes_credentials();
  return {};
}

error_code start_launch(launched& out) {
  auto* cargs = static_cast<detail::child_args*>(out.args);
  const stack_region stack = out.stack;
  std::byte* const sp = reinterpret_cast<std::byte*>(cargs);
  detail::blob_header h;
  std::memcpy(&h, cargs->blob, sizeof h);

  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0)
    return sys_error(-errno);

  // Pipes the command asked for: the child's end goes in its slot, the
  // parent's end to the caller.
  int child_end[3] = {-1, -1, -1};
  for (int i = 0; i < 3; ++i) {
    if (!(h.flags & (detail::flag_pipe_stdin << i)))
      continue;
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
      auto ec = sys_error(-errno);
      for (int k = 0; k < i; ++k)
        if (child_end[k] >= 0)
          ::close(child_end[k]);
      close_pipes(out);
      ::close(pipefd[0]);
      ::close(pipefd[1]);
      return ec;
    }
    child_end[i] = p[i == 0 ? 0 : 1];
    out.pipes[i] = p[i == 0 ? 1 : 0];
  }

  cargs->status_fd = pipefd[1];
  for (int i = 0; i < 3; ++i)
    cargs->slot[i] = child_end[i];

  const bool creds = out.wants_credentials;
  if (creds)
    begin_credential_launch();

  // Signal discipline: nothing may run a handler in the child before the
  // handlers are reset, and no cancellation may cut the parent short while
  // the child is being created.
  int old_cancel;
  ::pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old_cancel);
  sys::sigset all = ~sys::sigset{0};
  sys::sigset old_mask = 0;
  sys::rt_sigprocmask(SIG_SETMASK, &all, &old_mask);

  int pidfd = -1;
  long pid = -ENOSYS;
  bool autokilled = false;
  bool refused_without_nnp = false;
  cargs->autokill = 0;
  auto m = static_cast<clone_method>(method.load(std::memory_order_relaxed));
  const int cgroup_fd = out.cgroup_fd;
  if (cgroup_fd >= 0 && m == clone_method::legacy_clone)
    pid = -ENOTSUP; // only clone3 can place a child in a cgroup
  else if (m != clone_method::legacy_clone) {
    cargs->reset_handlers = 0;
    struct clone_args ca;
    std::memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_VM | CLONE_PIDFD | CLONE_CLEAR_SIGHAND;
    ca.pidfd = reinterpret_cast<std::uintptr_t>(&pidfd);
    ca.exit_signal = SIGCHLD;
    ca.stack = reinterpret_cast<std::uintptr_t>(stack.map + stack.guard);
    ca.stack_size = static_cast<std::uint64_t>(sp - (stack.map + stack.guard));
    std::size_t ca_size = CLONE_ARGS_SIZE_VER0;
    if (cgroup_fd >= 0) {
      ca.flags |= CLONE_INTO_CGROUP;
      ca.cgroup = static_cast<std::uint64_t>(cgroup_fd);
      ca_size = CLONE_ARGS_SIZE_VER2;
    }
    autokilled = false;
    if (h.flags & detail::flag_kill_on_parent_death) {
      const bool nnp = (h.flags & detail::flag_no_new_privs) != 0;
      const int known = autokill_support.load(std::memory_order_relaxed);
      if (autokill_allowed.load(std::memory_order_relaxed) && known >= 0 &&
          (nnp || !autokill_needs_nnp.load(std::memory_order_relaxed))) {
        struct clone_args ka = ca;
        ka.flags |= clone_autoreap | clone_pidfd_autokill | (nnp ? clone_nnp : 0);
        ka.exit_signal = 0; // required with CLONE_AUTOREAP
        cargs->autokill = 1;
        pid = aspawn_clone3(&ka, ca_size, aspawn_child_main, cargs);
        autokilled = pid >= 0;
        if (pid >= 0) {
          autokill_support.store(1, std::memory_order_relaxed);
        } else if (pid == -EINVAL && known == 0) {
          // A kernel without the flags (or without clone3 at all: the plain
          // attempt below finds out).
          autokill_support.store(-1, std::memory_order_relaxed);
        } else if (pid == -EPERM && !nnp) {
          refused_without_nnp = true;
        }
      }
    }
    if (!autokilled && (pid == -ENOSYS || pid == -EINVAL || pid == -EPERM)) {
      cargs->autokill = 0;
      pid = aspawn_clone3(&ca, ca_size, aspawn_child_main, cargs);
      if (pid >= 0 && refused_without_nnp)
        autokill_needs_nnp.store(true, std::memory_order_relaxed);
    }
    if (cgroup_fd >= 0) {
      // Errors are the cgroup's, or a kernel without CLONE_INTO_CGROUP;
      // they say nothing about clone3 itself.
      if (pid == -ENOSYS || pid == -E2BIG)
        pid = -ENOTSUP;
    } else if (m == clone_method::automatic) {
      if (pid == -ENOSYS || pid == -EINVAL || pid == -EPERM) {
        method.store(static_cast<int>(clone_method::legacy_clone));
        m = clone_method::legacy_clone;
      } else if (pid >= 0) {
        method.store(static_cast<int>(clone_method::clone3));
      }
    }
  }
  if (m == clone_method::legacy_clone && cgroup_fd < 0) {
    cargs->reset_handlers = 1;
    pid = aspawn_clone(CLONE_VM | CLONE_PIDFD | SIGCHLD, sp, &pidfd,
                       aspawn_child_main, cargs);
  }

  sys::rt_sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  ::pthread_setcancelstate(old_cancel, nullptr);

  // The child holds its own copies of the write end and of its pipe ends
  // until exec or exit.
  ::close(pipefd[1]);
  for (int fd : child_end)
    if (fd >= 0)
      ::close(fd);
  if (pid < 0) {
    ::close(pipefd[0]);
    close_pipes(out);
    if (creds)
      end_credential_launch();
    if (pid == -ENOTSUP)
      return errc::unsupported_by_kernel;
    return sys_error(pid);
  }
  if (h.flags & detail::flag_kill_on_parent_death)
    last_parent_death.store(
        static_cast<int>(autokilled ? parent_death_mechanism::pidfd_autokill
                                    : parent_death_mechanism::parent_death_signal),
        std::memory_order_relaxed);
  out.pid = static_cast<int>(pid);
  out.pidfd = pidfd;
  out.autoreaped = autokilled;
  out.status_fd = pipefd[0];
  out.credentials = creds;
  return {};
}

error_code launch(const command& cmd, stack_cache& stacks, launched& out) {
  if (auto ec = prepare_launch(cmd, stacks, out))
    return ec;
  if (auto ec = start_launch(out)) {
    stacks.release(out.stack);
    out = launched{};
    return ec;
  }
  return {};
}

error_code decode_status(const void* data, std::size_t size) noexcept {
  if (size == 0)
    return {};
  detail::failure_record rec;
  if (size != sizeof rec)
    return errc::protocol_error;
  std::memcpy(&rec, data, sizeof rec);
  if (rec.magic != detail::failure_magic ||
      rec.kind >= static_cast<std::uint32_t>(step_kind::count_))
    return errc::protocol_error;
  return make_child_error(rec.step, static_cast<step_kind>(rec.kind), rec.err);
}

namespace {

// struct pidfd_info of <linux/pidfd.h> (Linux 6.13; exit_code 6.15), its
// first published size.
struct pidfd_info_v0 {
  std::uint64_t mask;
  std::uint64_t cgroupid;
  std::uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid,
      fsgid;
  std::int32_t exit_code;
};
static_assert(sizeof(pidfd_info_v0) == 64);
constexpr unsigned long pidfd_get_info =
    (3ul << 30) | (sizeof(pidfd_info_v0) << 16) | (0xfful << 8) | 11;
constexpr std::uint64_t pidfd_info_exit = 1u << 3;

// The exit status of a child the kernel reaped itself.
int reap_autoreaped(int pidfd, bool block, int& status,
                    struct rusage* usage) noexcept {
  for (int round = 0;; ++round) {
    pollfd p{pidfd, POLLIN, 0};
    int n = ::poll(&p, 1, block ? -1 : 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n == 0)
      return 0;
    pidfd_info_v0 info;
    std::memset(&info, 0, sizeof info);
    info.mask = pidfd_info_exit;
    if (::ioctl(pidfd, pidfd_get_info, &info) != 0)
      return -errno; // nothing was copied out: the mask means nothing
    if (info.mask & pidfd_info_exit) {
      status = info.exit_code;
      if (usage)
        std::memset(usage, 0, sizeof *usage);
      return 1;
    }
    // Readable (exited) but not released by the kernel yet: normally a
    // matter of microseconds; longer only for a traced child, whose tracer
    // must collect it first. Yield a few times, then sleep between rounds
    // (a non-blocking call gives up and reports "not yet").
    if (round < 64) {
      ::sched_yield();
    } else if (!block) {
      return 0;
    } else {
      struct timespec ms{0, 1000000};
      ::nanosleep(&ms, nullptr);
    }
  }
}

} // namespace

int reap(int pidfd, int pid, bool block, int& status, struct rusage* usage,
         bool autoreaped) noexcept {
  if (autoreaped)
    return reap_autoreaped(pidfd, block, status, usage);
  static std::atomic<bool> no_p_pidfd{false};
  siginfo_t info;
  for (;;) {
    std::memset(&info, 0, sizeof info);
    int options = WEXITED | (block ? 0 : WNOHANG);
    long r;
    if (!no_p_pidfd.load(std::memory_order_relaxed)) {
      r = sys::syscall5(SYS_waitid, 3 /* P_PIDFD */, pidfd,
                        reinterpret_cast<long>(&info), options,
                        reinterpret_cast<long>(usage));
      if (r == -EINVAL) { // before Linux 5.4
        no_p_pidfd.store(true);
        continue;
      }
    } else {
      r = sys::syscall5(SYS_waitid, P_PID, pid, reinterpret_cast<long>(&info),
                        options, reinterpret_cast<long>(usage));
    }
    if (r == -EINTR)
      continue;
    if (r == -EAGAIN && block) {
      // A non-blocking pidfd (Asio sets O_NONBLOCK) makes waitid(P_PIDFD)
      // refuse to block (Linux 5.10+): wait for readiness instead.
      pollfd p{pidfd, POLLIN, 0};
      ::poll(&p, 1, -1);
      continue;
    }
    if (r == -EAGAIN)
      return 0;
    if (r < 0)
      return static_cast<int>(r);
    break;
  }
  if (info.si_pid == 0)
    return 0;
  switch (info.si_code) {
  case CLD_EXITED:
    status = (info.si_status & 0xff) << 8;
    break;
  case CLD_KILLED:
    status = info.si_status & 0x7f;
    break;
  case CLD_DUMPED:
    status = (info.si_status & 0x7f) | 0x80;
    break;
  default:
    return 0;
  }
  return 1;
}

int send_signal(int pidfd, int sig) noexcept {
  return static_cast<int>(
      sys::syscall4(SYS_pidfd_send_signal, pidfd, sig, 0, 0));
}

namespace {
std::atomic<int> group_method{static_cast<int>(group_signal_method::automatic)};
// 0 unknown, 1 the kernel has PIDFD_SIGNAL_PROCESS_GROUP, -1 it has not.
std::atomic<int> pidfd_group_support{0};
constexpr unsigned pidfd_signal_process_group = 1u << 2;
} // namespace

void set_group_signal_method(group_signal_method m) noexcept {
  group_method.store(static_cast<int>(m));
}

int send_group_signal(int pidfd, int pid, int sig, bool autoreaped) noexcept {
  if (sig < 0 || sig > 64 || pid <= 0)
    return -EINVAL;
  // The pid, and so its group id, must still be the child's: an unreaped
  // child (running or a zombie) pins them; one reaped elsewhere does not.
  if (!autoreaped) {
    siginfo_t info;
    std::memset(&info, 0, sizeof info);
    long r = sys::syscall5(SYS_waitid, 3 /* P_PIDFD */, pidfd,
                           reinterpret_cast<long>(&info),
                           WEXITED | WNOHANG | WNOWAIT, 0);
    if (r == -EINVAL) // before Linux 5.4
      r = sys::syscall5(SYS_waitid, P_PID, pid, reinterpret_cast<long>(&info),
                        WEXITED | WNOHANG | WNOWAIT, 0);
    if (r < 0)
      return static_cast<int>(r); // -ECHILD: reaped by someone else
  } else {
    // Reaped by the kernel as soon as it exits: it must still be running.
    long r = sys::syscall4(SYS_pidfd_send_signal, pidfd, 0, 0, 0);
    if (r < 0)
      return static_cast<int>(r);
  }
  long pgid = sys::syscall1(SYS_getpgid, pid);
  if (pgid < 0)
    return static_cast<int>(pgid);
  if (pgid == ::getpgrp())
    return -EDEADLK;
  // Through the pidfd when the child leads its group: the kernel signals the
  // group named by the child's pid, with no race at all.
  if (pgid == pid &&
      static_cast<group_signal_method>(group_method.load()) ==
          group_signal_method::automatic &&
      pidfd_group_support.load(std::memory_order_relaxed) >= 0) {
    long r = sys::syscall4(SYS_pidfd_send_signal, pidfd, sig, 0,
                           pidfd_signal_process_group);
    if (r == 0) {
      pidfd_group_support.store(1, std::memory_order_relaxed);
      return 0;
    }
    if (r == -EINVAL && pidfd_group_support.load() == 0) {
      // EINVAL for a valid signal: a kernel without the flag.
      pidfd_group_support.store(-1, std::memory_order_relaxed);
    } else if (r != -ESRCH) {
      return static_cast<int>(r);
    }
    // ESRCH: the leader has exited (a zombie, not reaped); the rest of its
    // group may live on, and its group id is still reserved.
  }
  if (::kill(static_cast<pid_t>(-pgid), sig) != 0)
    return -errno;
  return 0;
}

void close_pipes(launched& l) noexcept {
  for (int& fd : l.pipes)
    if (fd >= 0) {
      ::close(fd);
      fd = -1;
    }
}

long read_status(int status_fd, std::byte* buf, std::size_t cap) noexcept {
  std::size_t got = 0;
  std::byte scratch[64];
  for (;;) {
    std::byte* dst = buf ? buf + got : scratch;
    std::size_t room = buf ? cap - got : sizeof scratch;
    long n = ::read(status_fd, dst, room);
    if (n > 0) {
      if (buf) {
        got += static_cast<std::size_t>(n);
        if (got >= cap)
          return static_cast<long>(got);
      }
      continue;
    }
    if (n == 0)
      return static_cast<long>(got);
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN) {
      pollfd p{status_fd, POLLIN, 0};
      ::poll(&p, 1, -1);
      continue;
    }
    return -errno;
  }
}

void abandon_launch(launched& l, stack_cache& stacks) noexcept {
  close_pipes(l);
  if (l.pidfd >= 0)
    send_signal(l.pidfd, SIGKILL);
  if (l.status_fd >= 0) {
    // On a read error there is no knowing when the child leaves its stack:
    // the stack stays mapped.
    if (read_status(l.status_fd, nullptr, 0) < 0)
      l.stack = stack_region{};
    ::close(l.status_fd);
    l.status_fd = -1;
  }
  if (l.stack) {
    stacks.release(l.stack);
    l.stack = stack_region{};
  }
  if (l.credentials) {
    end_credential_launch();
    l.credentials = false;
  }
  if (l.pidfd >= 0) {
    int status;
    reap(l.pidfd, l.pid, true, status, nullptr, l.autoreaped);
    ::close(l.pidfd);
    l.pidfd = -1;
  }
}

} // namespace aspawn
