// Fault injection: exhausted resource limits, contexts destroyed under
// running launches, stopped children, and foreign process management in the
// same program (fork, SIGCHLD handlers, waitpid(-1)).
//
// Every test is driven by events (pipe reads, waitid, completion counts),
// never by sleeping.
#include "common.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <grp.h>
#include <sys/prctl.h>
#include <sys/resource.h>

using aspawn::command;
using aspawn::error_code;
using test::asio::io_context;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FAULTS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||    \
    __has_feature(memory_sanitizer)
#define FAULTS_SANITIZED 1
#endif
#endif

namespace {

namespace asio = boost::asio;

error_code sys_err(int e) {
  return error_code(e, boost::system::system_category());
}

// ---- running a scenario in a forked child ----------------------------------
//
// Scenarios that change process-wide credentials or limits run in a forked
// copy of the test process, which reports through its exit status (0: pass,
// skip_status: not possible here, anything else: failure) and a message
// written to a pipe. Catch2 macros must not be used there.

constexpr int skip_status = 77;

struct fork_outcome {
  int status = -1; // exit status, or 128 + signal
  std::string message;
};

// The child side writes its message here.
int report_fd = -1;

void report(const std::string& s) {
  if (report_fd < 0)
    return;
  std::string line = s + "\n";
  const char* p = line.data();
  std::size_t n = line.size();
  while (n > 0) {
    ssize_t w = ::write(report_fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

fork_outcome run_forked(const std::function<int()>& body) {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(p[0]);
    report_fd = p[1];
    int rc = 70;
    try {
      rc = body();
    } catch (const std::exception& e) {
      report(std::string("exception: ") + e.what());
    } catch (...) {
      report("unknown exception");
    }
    ::_exit(rc);
  }
  ::close(p[1]);
  fork_outcome out;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n > 0) {
      out.message.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    break;
  }
  ::close(p[0]);
  int st = 0;
  pid_t r;
  do
    r = ::waitpid(pid, &st, 0);
  while (r < 0 && errno == EINTR);
  REQUIRE(r == pid);
  out.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return out;
}

// The open fds, without Catch2 (usable in a forked child).
std::set<int> fds_now() {
  return test::proc::open_fds().value_or(std::set<int>{-1});
}

std::string fd_list(const std::set<int>& fds) {
  std::string s;
  for (int fd : fds)
    s += (s.empty() ? "" : " ") + std::to_string(fd);
  return "{" + s + "}";
}

std::string describe(const error_code& ec) {
  return ec.category().name() + std::string(":") + std::to_string(ec.value()) +
         " (" + ec.message() + ")";
}

// One launch of `cmd` on `ctx`, then a wait: the launch error and the exit
// code (or -1). Runs the context until both are done.
struct launch_result {
  error_code ec;
  int code = -1;
  bool done = false;
};

launch_result execute(io_context& ctx, const command& cmd) {
  launch_result r;
  aspawn::async_execute(ctx, cmd, [&](error_code ec, int c) {
    r.ec = ec;
    r.code = c;
    r.done = true;
  });
  ctx.restart();
  ctx.run();
  return r;
}

// Tasks (threads included: RLIMIT_NPROC counts tasks) whose real uid is
// `uid`, as seen in /proc.
long count_tasks_of(uid_t uid) {
  long count = 0;
  DIR* d = ::opendir("/proc");
  if (!d)
    return -1;
  while (auto* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    std::string tdir = std::string("/proc/") + e->d_name + "/task";
    DIR* t = ::opendir(tdir.c_str());
    if (!t)
      continue;
    while (auto* te = ::readdir(t)) {
      if (te->d_name[0] < '0' || te->d_name[0] > '9')
        continue;
      std::string path = tdir + "/" + te->d_name + "/status";
      FILE* f = std::fopen(path.c_str(), "re");
      if (!f)
        continue;
      char line[256];
      while (std::fgets(line, sizeof line, f))
        if (std::strncmp(line, "Uid:", 4) == 0) {
          if (static_cast<uid_t>(std::strtoul(line + 4, nullptr, 10)) == uid)
            ++count;
          break;
        }
      std::fclose(f);
    }
    ::closedir(t);
  }
  ::closedir(d);
  return count;
}

// Whether a plain fork is refused now (the limit is enforced).
bool fork_refused() {
  pid_t p = ::fork();
  if (p == 0)
    ::_exit(0);
  if (p > 0) {
    int st;
    ::waitpid(p, &st, 0);
    return false;
  }
  return errno == EAGAIN;
}

#if !defined(FAULTS_SANITIZED)
// VmSize of this process, in bytes.
std::size_t vm_size() {
  FILE* f = std::fopen("/proc/self/status", "re");
  if (!f)
    return 0;
  char line[256];
  std::size_t kb = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, "VmSize:", 7) == 0) {
      kb = std::strtoull(line + 7, nullptr, 10);
      break;
    }
  std::fclose(f);
  return kb * 1024;
}
#endif

struct clone_method_guard {
  explicit clone_method_guard(aspawn::clone_method m) {
    aspawn::set_clone_method(m);
  }
  ~clone_method_guard() {
    aspawn::set_clone_method(aspawn::clone_method::automatic);
  }
};

const char* method_name(aspawn::clone_method m) {
  return m == aspawn::clone_method::clone3 ? "clone3" : "clone";
}

} // namespace

// ---- RLIMIT_NPROC -----------------------------------------------------------

TEST_CASE("with RLIMIT_NPROC exhausted a launch fails with EAGAIN and leaves "
          "nothing; raising the limit makes launches work again",
          "[faults][limits]") {
  auto method = GENERATE(aspawn::clone_method::clone3,
                         aspawn::clone_method::legacy_clone);
  INFO("clone method " << method_name(method));
  clone_method_guard mg(method);
  auto out = run_forked([] {
    // Root bypasses RLIMIT_NPROC: become an unprivileged user first.
    if (::geteuid() == 0) {
      if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
          ::setresuid(65534, 65534, 65534) != 0) {
        report(std::string("cannot drop privileges: ") + std::strerror(errno));
        return skip_status;
      }
      ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    }
    io_context ctx;
    auto& pool = aspawn::stack_pool::of(ctx);
    command cmd("/bin/true");
    cmd.prepare();
#if defined(__SANITIZE_THREAD__)
    // ThreadSanitizer keeps the parent's threads on its books in this fork
    // child (Asio's system_context threads of earlier tests, say), and
    // glibc hands their stacks to the next thread made here: TSan takes the
    // launch thread for one of them. Launch inline under TSan.
    pool.set_launch_thread(false);
#endif
    // Warm up before the limit: the reactor's descriptors, a pooled stack and
    // the pool's launch thread exist from now on.
    if (auto w = execute(ctx, cmd); w.ec || w.code != 0) {
      report("warm-up launch failed: " + describe(w.ec));
      return 18;
    }

    struct rlimit old{};
    ::getrlimit(RLIMIT_NPROC, &old);
    long tasks = count_tasks_of(::getuid());
    // The tightest limit that is exhausted: the tasks this uid has now. If
    // /proc shows tasks the kernel counts elsewhere, fall back to 1 (this
    // process alone reaches it).
    bool enforced = false;
    for (long lim : {tasks, 1L}) {
      if (lim < 1)
        continue;
      struct rlimit l{static_cast<rlim_t>(lim), old.rlim_max};
      if (old.rlim_max != RLIM_INFINITY &&
          l.rlim_cur > static_cast<rlim_t>(old.rlim_max))
        l.rlim_cur = old.rlim_max;
      if (::setrlimit(RLIMIT_NPROC, &l) != 0)
        continue;
      if (fork_refused()) {
        enforced = true;
        report("RLIMIT_NPROC set to " + std::to_string(lim) + " (" +
               std::to_string(tasks) + " tasks of uid " +
               std::to_string(::getuid()) + ")");
        break;
      }
    }
    if (!enforced) {
      report("RLIMIT_NPROC is not enforced for this process (capabilities?)");
      return skip_status;
    }

    auto before = fds_now();
    auto r = execute(ctx, cmd);
    if (!r.done) {
      report("the launch never completed");
      return 10;
    }
    if (r.ec != sys_err(EAGAIN)) {
      report("expected EAGAIN, got " + describe(r.ec));
      return 11;
    }
    if (auto now = fds_now(); now != before) {
      report("descriptors leaked by the failed launch: " + fd_list(before) +
             " before, " + fd_list(now) + " after");
      return 12;
    }
    if (pool.in_use() != 0) {
      report("a stack is still lent out after the failed launch");
      return 13;
    }
    if (test::has_children()) {
      report("a child is left after the failed launch");
      return 14;
    }

    // Raise the limit again: launches work.
    if (::setrlimit(RLIMIT_NPROC, &old) != 0) {
      report(std::string("cannot restore RLIMIT_NPROC: ") + std::strerror(errno));
      return 15;
    }
    for (int i = 0; i < 3; ++i) {
      r = execute(ctx, cmd);
      if (r.ec || r.code != 0) {
        report("launch after raising the limit: " + describe(r.ec) +
               " code " + std::to_string(r.code));
        return 16;
      }
    }
    if (fds_now() != before || pool.in_use() != 0 || test::has_children()) {
      report("something left behind after the later launches");
      return 17;
    }
    return 0;
  });
  INFO(out.message);
  if (out.status == skip_status) {
    WARN("RLIMIT_NPROC test skipped: " << out.message);
    return;
  }
  CHECK(out.status == 0);
}

// ---- RLIMIT_NOFILE ----------------------------------------------------------

namespace {

// Lowers RLIMIT_NOFILE just above the open descriptors and fills every free
// number below it with copies of /dev/null, then frees exactly the numbers
// asked for. Everything is undone on destruction.
struct fd_exhaustion {
  struct rlimit old{};
  int limit = -1;
  std::vector<int> fillers;

  explicit fd_exhaustion(int headroom = 16) {
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
    int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    REQUIRE(null_fd >= 0);
    fillers.push_back(null_fd);
    auto fds = test::open_fds();
    limit = *fds.rbegin() + 1 + headroom;
    struct rlimit l{static_cast<rlim_t>(limit), old.rlim_max};
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &l) == 0);
    for (;;) {
      int fd = ::fcntl(null_fd, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) {
        REQUIRE(errno == EMFILE);
        break;
      }
      fillers.push_back(fd);
    }
  }

  // Frees the given descriptor numbers (each must be a filler).
  void release(std::initializer_list<int> numbers) {
    for (int n : numbers) {
      auto it = std::find(fillers.begin(), fillers.end(), n);
      REQUIRE(it != fillers.end());
      ::close(n);
      fillers.erase(it);
    }
  }

  ~fd_exhaustion() {
    for (int fd : fillers)
      ::close(fd);
    ::setrlimit(RLIMIT_NOFILE, &old);
  }
};

} // namespace

TEST_CASE("with RLIMIT_NOFILE exhausted, each descriptor the launch needs "
          "fails with a clear EMFILE and nothing leaks",
          "[faults][limits][fds]") {
  auto method = GENERATE(aspawn::clone_method::clone3,
                         aspawn::clone_method::legacy_clone);
  INFO("clone method " << method_name(method));
  clone_method_guard mg(method);

  io_context ctx;
  auto& pool = aspawn::stack_pool::of(ctx);
  command plain("/bin/true");
  plain.prepare();
  // Warm up: the reactor's descriptors and a pooled stack exist from now on.
  {
    auto r = execute(ctx, plain);
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.code == 0);
  }
  const auto before = test::open_fds();

  auto expect_clean = [&] {
    CHECK(pool.in_use() == 0);
    CHECK_FALSE(test::has_children());
  };

  SECTION("no descriptor free: the status pipe (pipe2) fails") {
    launch_result r;
    {
      fd_exhaustion ex;
      r = execute(ctx, plain);
    }
    INFO(describe(r.ec));
    CHECK(r.ec == sys_err(EMFILE));
    expect_clean();
  }
  SECTION("one descriptor free: the status pipe needs two") {
    launch_result r;
    {
      fd_exhaustion ex;
      ex.release({ex.limit - 1});
      r = execute(ctx, plain);
    }
    INFO(describe(r.ec));
    CHECK(r.ec == sys_err(EMFILE));
    expect_clean();
  }
  SECTION("two descriptors free: the pidfd of clone fails") {
    launch_result r;
    {
      fd_exhaustion ex;
      ex.release({ex.limit - 2, ex.limit - 1});
      r = execute(ctx, plain);
    }
    INFO(describe(r.ec));
    CHECK(r.ec == sys_err(EMFILE));
    expect_clean();
  }
  SECTION("three descriptors free: the launch succeeds") {
    launch_result r;
    {
      fd_exhaustion ex;
      ex.release({ex.limit - 3, ex.limit - 2, ex.limit - 1});
      r = execute(ctx, plain);
    }
    CHECK_FALSE(r.ec);
    CHECK(r.code == 0);
    expect_clean();
  }
  SECTION("in the child: the status pipe cannot move above a mapped target") {
    // Free: L-6, L-5 (the pipe) and L-4 (the pidfd; free in the child). The
    // target L-3 puts its scratch copy at L-2, so the pipe's write end (L-5)
    // must move above L-2, where everything is taken.
    launch_result r;
    {
      fd_exhaustion ex;
      const int L = ex.limit;
      ex.release({L - 6, L - 5, L - 4});
      command cmd = test::helper_cmd({"exit", "0"});
      cmd.map_fd(L - 3, 0);
      r = execute(ctx, cmd);
    }
    INFO(describe(r.ec));
    CHECK(r.ec.category() == aspawn::child_category());
    CHECK(aspawn::child_errno(r.ec) == EMFILE);
    CHECK(aspawn::failed_step_kind(r.ec) == aspawn::step_kind::dup);
    CHECK(r.ec == boost::system::errc::too_many_files_open);
    expect_clean();
  }
  SECTION("in the child: an open step finds no free descriptor") {
    // Free: L-5, L-4 (the pipe) and L-2 (the pidfd; free in the child). The
    // target L-5 puts its scratch copy at L-4, the write end moves to L-2,
    // and the scratch copy takes L-4: opening /dev/null for stdout finds no
    // number left.
    launch_result r;
    {
      fd_exhaustion ex;
      const int L = ex.limit;
      ex.release({L - 5, L - 4, L - 2});
      command cmd = test::helper_cmd({"exit", "0"});
      cmd.stdout_(aspawn::redirect::null()).map_fd(L - 5, 0);
      r = execute(ctx, cmd);
    }
    INFO(describe(r.ec));
    CHECK(r.ec.category() == aspawn::child_category());
    CHECK(aspawn::child_errno(r.ec) == EMFILE);
    CHECK(aspawn::failed_step_kind(r.ec) == aspawn::step_kind::open);
    CHECK(r.ec == boost::system::errc::too_many_files_open);
    expect_clean();
  }

  CHECK(test::open_fds() == before);
  // And launches work again at the normal limit.
  auto r = execute(ctx, plain);
  CHECK_FALSE(r.ec);
  CHECK(r.code == 0);
  CHECK(test::open_fds() == before);
}

// ---- RLIMIT_AS --------------------------------------------------------------

TEST_CASE("with RLIMIT_AS too low for a new stack a launch fails with ENOMEM "
          "and leaves nothing",
          "[faults][limits][memory]") {
#if defined(FAULTS_SANITIZED)
  WARN("skipped: sanitizers reserve more address space than any low "
       "RLIMIT_AS allows");
  return;
#else
  auto out = run_forked([] {
    io_context ctx;
    auto& pool = aspawn::stack_pool::of(ctx);
    command cmd("/bin/true");
    cmd.prepare();
    // Warm up so that the launch itself allocates nothing new (the handler
    // memory is recycled), then unmap the pooled stack.
    auto r = execute(ctx, cmd);
    if (r.ec || r.code != 0) {
      report("warm-up launch failed: " + describe(r.ec));
      return 20;
    }
    pool.trim();
    if (pool.cached() != 0 || pool.in_use() != 0) {
      report("the pool still holds a stack after trim()");
      return 21;
    }
    auto before = fds_now();
    const std::size_t created = pool.created();

    struct rlimit old{};
    ::getrlimit(RLIMIT_AS, &old);
    // Room for small allocations, not for a stack (256 KiB and a guard).
    std::size_t vm = vm_size();
    if (vm == 0) {
      report("cannot read VmSize");
      return skip_status;
    }
    struct rlimit l{static_cast<rlim_t>(vm + 64 * 1024), old.rlim_max};
    if (::setrlimit(RLIMIT_AS, &l) != 0) {
      report(std::string("cannot lower RLIMIT_AS: ") + std::strerror(errno));
      return skip_status;
    }
    r = execute(ctx, cmd);
    ::setrlimit(RLIMIT_AS, &old);
    if (r.ec != sys_err(ENOMEM)) {
      report("expected ENOMEM, got " + describe(r.ec));
      return 22;
    }
    if (pool.created() != created || pool.in_use() != 0) {
      report("the pool counts a stack that could not be mapped");
      return 23;
    }
    if (fds_now() != before) {
      report("descriptors leaked by the failed launch");
      return 24;
    }
    if (test::has_children()) {
      report("a child is left after the failed launch");
      return 25;
    }
    r = execute(ctx, cmd);
    if (r.ec || r.code != 0) {
      report("launch after restoring RLIMIT_AS: " + describe(r.ec));
      return 26;
    }
    if (fds_now() != before || pool.in_use() != 0) {
      report("something left behind after the later launch");
      return 27;
    }
    return 0;
  });
  INFO(out.message);
  if (out.status == skip_status) {
    WARN("RLIMIT_AS test skipped: " << out.message);
    return;
  }
  CHECK(out.status == 0);
#endif
}

// ---- io_context destroyed under launches and children ------------------------

namespace {

// An io_context whose services can be shut down before they are destroyed,
// to look at the stack pool in between.
struct report_gate {
  int report_fd;
  int gate_fd;
};

// Writes the child's pid to `report_fd`, then blocks reading `gate_fd`.
ASPAWN_CHILD_FN int report_then_block(void* data, std::size_t) {
  auto* d = static_cast<report_gate*>(data);
  int pid = static_cast<int>(aspawn::sys::getpid());
  long r;
  do
    r = aspawn::sys::write(d->report_fd, &pid, sizeof pid);
  while (r == -EINTR);
  char c;
  do
    r = aspawn::sys::read(d->gate_fd, &c, 1);
  while (r == -EINTR);
  return 0;
}

// Writes the child's pid to the fd in `data`, then stops itself.
ASPAWN_CHILD_FN int report_then_stop(void* data, std::size_t) {
  int fd = *static_cast<int*>(data);
  int pid = static_cast<int>(aspawn::sys::getpid());
  long r;
  do
    r = aspawn::sys::write(fd, &pid, sizeof pid);
  while (r == -EINTR);
  aspawn::sys::kill(pid, SIGSTOP);
  return 0;
}

int read_pid(int fd) {
  int pid = -1;
  ssize_t n;
  do
    n = ::read(fd, &pid, sizeof pid);
  while (n < 0 && errno == EINTR);
  REQUIRE(n == static_cast<ssize_t>(sizeof pid));
  return pid;
}

bool pid_gone(int pid) { return ::kill(pid, 0) == -1 && errno == ESRCH; }

// Kills and reaps what a failed check left behind.
void reap_leftovers(const std::vector<int>& pids) {
  for (int pid : pids) {
    if (pid_gone(pid))
      continue;
    ::kill(pid, SIGKILL);
    int st;
    ::waitpid(pid, &st, 0);
  }
}

} // namespace

TEST_CASE("destroying the io_context while a launch is in flight kills and "
          "reaps the child before its stack goes back",
          "[faults][lifetime]") {
  const auto before = test::open_fds();
  std::vector<int> pids;
  {
    test::pipe_pair gate, reports;
    report_gate data{reports.wr, gate.rd};
    command cmd = test::helper_cmd({"exit", "0"});
    cmd.child_function(report_then_block, &data, sizeof data);
    cmd.prepare();

    auto ctx = std::make_unique<test::inspectable_context>();
    auto& pool = aspawn::stack_pool::of(*ctx);
    int completions = 0;
    constexpr int n = 3;
    for (int i = 0; i < n; ++i)
      aspawn::async_spawn(*ctx, cmd,
                          [&](error_code, aspawn::process) { ++completions; });
    for (int i = 0; i < n; ++i)
      pids.push_back(read_pid(reports.rd)); // each child is in its function
    ctx->poll();
    CHECK(completions == 0);
    CHECK(pool.in_use() == n);
    for (int pid : pids)
      CHECK(::kill(pid, 0) == 0);

    // Shut the services down (this abandons the launches) but do not
    // destroy them yet: the pool can still be looked at.
    ctx->shutdown();
    CHECK(completions == 0);
    for (int pid : pids)
      CHECK(pid_gone(pid)); // killed and reaped, not even a zombie
    CHECK_FALSE(test::has_children());
    // Every stack is back in the pool and still mapped: none was unmapped
    // during the shutdown, and the pool's destruction, which unmaps them,
    // comes after every child is gone.
    CHECK(pool.in_use() == 0);
    CHECK(pool.cached() == pool.created());
    ctx.reset();
  }
  CHECK_FALSE(test::has_children());
  CHECK(test::open_fds() == before);
  reap_leftovers(pids);
}

TEST_CASE("destroying the io_context while children run and are waited for "
          "leaves no zombie",
          "[faults][lifetime]") {
  const auto before = test::open_fds();
  std::vector<int> pids;
  {
    test::pipe_pair gate, reports;
    report_gate data{reports.wr, gate.rd};
    command running = test::helper_cmd({"pause"});
    running.prepare();
    command blocked = test::helper_cmd({"exit", "0"});
    blocked.child_function(report_then_block, &data, sizeof data);

    auto ctx = std::make_unique<io_context>();
    constexpr int n = 6;
    int spawned = 0, waits_done = 0;
    for (int i = 0; i < n; ++i)
      aspawn::async_spawn(*ctx, running, [&](error_code ec, aspawn::process p) {
        REQUIRE_FALSE(ec);
        pids.push_back(p.id());
        ++spawned;
        // The process lives as long as its pending wait.
        auto holder = std::make_shared<aspawn::process>(std::move(p));
        holder->async_wait([&, holder](error_code, int) { ++waits_done; });
      });
    while (spawned < n)
      ctx->run_one();
    // And one launch still in flight.
    aspawn::async_spawn(*ctx, blocked, [&](error_code, aspawn::process) {});
    pids.push_back(read_pid(reports.rd));
    ctx->poll();
    CHECK(waits_done == 0);
    for (int pid : pids)
      CHECK(::kill(pid, 0) == 0);

    ctx.reset(); // the pending waits and the launch are destroyed unfinished
    CHECK(waits_done == 0);
  }
  for (int pid : pids) {
    INFO("pid " << pid);
    CHECK(pid_gone(pid)); // not even a zombie
  }
  CHECK_FALSE(test::has_children());
  CHECK(test::open_fds() == before);
  reap_leftovers(pids); // so that a failure here does not spill into others
}

// ---- a child stopped before exec ----------------------------------------------

TEST_CASE("a child stopped before exec keeps its stack until it resumes",
          "[faults][lifetime][stacks]") {
  test::pipe_pair reports;
  command cmd = test::helper_cmd({"exit", "4"});
  cmd.child_function(report_then_stop, &reports.wr, sizeof reports.wr);
  command other("/bin/true");
  other.prepare();

  io_context ctx;
  auto& pool = aspawn::stack_pool::of(ctx);
  aspawn::process proc(ctx);
  error_code spawn_ec;
  bool spawned = false;
  aspawn::async_spawn(ctx, cmd, [&](error_code ec, aspawn::process p) {
    spawn_ec = ec;
    spawned = true;
    proc = std::move(p);
  });
  int pid = read_pid(reports.rd);
  siginfo_t info{};
  int r;
  do
    r = ::waitid(P_PID, static_cast<id_t>(pid), &info, WSTOPPED);
  while (r < 0 && errno == EINTR);
  REQUIRE(r == 0);
  REQUIRE(info.si_code == CLD_STOPPED);

  ctx.poll();
  CHECK_FALSE(spawned);
  CHECK(pool.in_use() == 1);
  CHECK(pool.created() == 1);

  // Other launches meanwhile get other stacks.
  for (int i = 0; i < 3; ++i) {
    bool done = false;
    aspawn::async_execute(ctx, other, [&](error_code ec, int code) {
      CHECK_FALSE(ec);
      CHECK(code == 0);
      done = true;
    });
    while (!done)
      ctx.run_one();
  }
  CHECK_FALSE(spawned);
  CHECK(pool.in_use() == 1);  // still lent to the stopped child
  CHECK(pool.created() == 2); // the stopped child's stack was never reused
  CHECK(pool.cached() == 1);

  REQUIRE(::kill(pid, SIGCONT) == 0);
  while (!spawned)
    ctx.run_one();
  REQUIRE_FALSE(spawn_ec);
  CHECK(proc.id() == pid);
  CHECK(pool.in_use() == 0);
  CHECK(pool.cached() == 2);
  int code = -1;
  bool waited = false;
  ctx.restart(); // it ran out of work when the launch completed
  proc.async_wait([&](error_code ec, int c) {
    CHECK_FALSE(ec);
    code = c;
    waited = true;
  });
  while (!waited)
    ctx.run_one();
  CHECK(code == 4);
  CHECK_FALSE(test::has_children());
}

// ---- other process management in the same program -----------------------------

namespace {

// Launches `total` commands chosen by `pick(i)`, keeping `window` in flight,
// and waits for each; `check(i, ec, code)` judges every outcome. Runs `ctx`
// until all are done.
void launch_many(io_context& ctx, int total, int window,
                 const std::function<const command&(int)>& pick,
                 const std::function<void(int, error_code, int)>& check) {
  int started = 0, finished = 0;
  std::function<void()> start_one = [&] {
    int i = started++;
    aspawn::async_execute(ctx, pick(i), [&, i](error_code ec, int code) {
      check(i, ec, code);
      ++finished;
      if (started < total)
        start_one();
    });
  };
  for (int w = 0; w < window && started < total; ++w)
    start_one();
  ctx.restart();
  ctx.run();
  REQUIRE(finished == total);
}

} // namespace

TEST_CASE("another thread forking in a loop does not disturb launches",
          "[faults][fork]") {
  const auto before = test::open_fds();
  auto ctx_ptr = std::make_unique<io_context>();
  auto& ctx = *ctx_ptr;
  command ok = test::helper_cmd({"exit", "3"});
  ok.prepare();
  command missing("/nonexistent/aspawn-faults");
  missing.prepare();

  std::atomic<bool> stop{false};
  std::atomic<int> forks{0};
  std::thread forker([&] {
    while (!stop.load()) {
      pid_t p = ::fork();
      if (p == 0)
        ::_exit(0);
      if (p > 0) {
        int st;
        while (::waitpid(p, &st, 0) < 0 && errno == EINTR) {
        }
        ++forks;
      }
    }
  });
  while (forks.load() == 0) // the forker is running before launches start
    std::this_thread::yield();

  int good = 0, failed = 0;
  launch_many(
      ctx, 300, 8, [&](int i) -> const command& { return i % 5 ? ok : missing; },
      [&](int i, error_code ec, int code) {
        if (i % 5) {
          if (!ec && code == 3)
            ++good;
        } else if (aspawn::child_errno(ec) == ENOENT) {
          ++failed;
        }
      });
  stop = true;
  forker.join();
  INFO("forks: " << forks.load());
  CHECK(good == 240);
  CHECK(failed == 60);
  CHECK(forks.load() > 0);
  CHECK(aspawn::stack_pool::of(ctx).in_use() == 0);
  CHECK_FALSE(test::has_children());
  ctx_ptr.reset();
  CHECK(test::open_fds() == before);
}

namespace {

void do_nothing(int) {}

struct sigchld_guard {
  struct sigaction old{};
  explicit sigchld_guard(const struct sigaction& sa) {
    REQUIRE(::sigaction(SIGCHLD, &sa, &old) == 0);
  }
  ~sigchld_guard() { ::sigaction(SIGCHLD, &old, nullptr); }
};

} // namespace

TEST_CASE("an application SIGCHLD handler does not disturb launches and waits",
          "[faults][signals]") {
  struct sigaction sa{};
  sa.sa_handler = do_nothing;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigchld_guard guard(sa);

  io_context ctx;
  std::vector<command> cmds;
  for (int c = 0; c < 5; ++c) {
    cmds.push_back(test::helper_cmd({"exit", std::to_string(c).c_str()}));
    cmds.back().prepare();
  }
  int right = 0;
  launch_many(
      ctx, 200, 16, [&](int i) -> const command& { return cmds[i % 5]; },
      [&](int i, error_code ec, int code) {
        if (!ec && code == i % 5)
          ++right;
      });
  CHECK(right == 200);

  // The blocking wait too, with SIGCHLD arriving while it waits.
  for (int i = 0; i < 20; ++i) {
    aspawn::process p(ctx);
    bool spawned = false;
    aspawn::async_spawn(ctx, cmds[2], [&](error_code ec, aspawn::process q) {
      REQUIRE_FALSE(ec);
      p = std::move(q);
      spawned = true;
    });
    ctx.restart();
    while (!spawned)
      ctx.run_one();
    CHECK(p.wait() == 2);
  }
  CHECK_FALSE(test::has_children());
}

TEST_CASE("with SIGCHLD ignored (children reaped by the kernel) waits report "
          "status_unavailable instead of hanging",
          "[faults][signals]") {
  struct sigaction sa{};
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  sigchld_guard guard(sa);

  io_context ctx;
  command ok = test::helper_cmd({"exit", "0"});
  ok.prepare();
  command missing("/nonexistent/aspawn-faults");
  int unavailable = 0, launch_failed = 0, other = 0;
  launch_many(
      ctx, 60, 8, [&](int i) -> const command& { return i % 3 ? ok : missing; },
      [&](int i, error_code ec, int) {
        if (i % 3 && ec == aspawn::errc::status_unavailable)
          ++unavailable;
        else if (i % 3 == 0 && aspawn::child_errno(ec) == ENOENT)
          ++launch_failed;
        else
          ++other;
      });
  CHECK(unavailable == 40);
  CHECK(launch_failed == 20);
  CHECK(other == 0);
  CHECK(aspawn::stack_pool::of(ctx).in_use() == 0);
}

TEST_CASE("a rogue thread reaping with waitpid(-1) never makes a wait hang",
          "[faults][coexistence]") {
  const auto before = test::open_fds();
  auto ctx_ptr = std::make_unique<io_context>();
  auto& ctx = *ctx_ptr;
  command ok = test::helper_cmd({"exit", "6"});
  ok.prepare();
  command missing("/nonexistent/aspawn-faults");
  missing.prepare();

  std::atomic<bool> stop{false};
  std::atomic<int> stolen{0};
  std::thread rogue([&] {
    while (!stop.load()) {
      int st;
      pid_t p = ::waitpid(-1, &st, 0);
      if (p > 0)
        ++stolen;
      else if (errno == ECHILD)
        std::this_thread::yield();
    }
  });

  int success = 0, unavailable = 0, launch_failed = 0, other = 0;
  launch_many(
      ctx, 300, 8, [&](int i) -> const command& { return i % 4 ? ok : missing; },
      [&](int i, error_code ec, int code) {
        if (i % 4 == 0) {
          if (aspawn::child_errno(ec) == ENOENT)
            ++launch_failed;
          else
            ++other;
        } else if (!ec && code == 6) {
          ++success;
        } else if (ec == aspawn::errc::status_unavailable) {
          ++unavailable;
        } else {
          ++other;
        }
      });
  stop = true;
  // A child of our own that exits wakes the rogue if it is blocked.
  pid_t wake = ::fork();
  if (wake == 0)
    ::_exit(0);
  REQUIRE(wake > 0);
  rogue.join();
  {
    int st;
    ::waitpid(wake, &st, 0); // unless the rogue reaped it
  }
  INFO("stolen by the rogue thread: " << stolen.load() << ", waits that saw it: "
                                      << unavailable);
  CHECK(success + unavailable == 225);
  CHECK(launch_failed == 75);
  CHECK(other == 0);
  CHECK(aspawn::stack_pool::of(ctx).in_use() == 0);
  CHECK_FALSE(test::has_children());
  ctx_ptr.reset();
  CHECK(test::open_fds() == before);
}

// ---- pid reuse ------------------------------------------------------------------

namespace {

// Makes the next process created in this pid namespace get pid `last + 1`
// (needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE).
bool set_last_pid(int last) {
  int fd = ::open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  std::string s = std::to_string(last);
  bool ok = ::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size());
  ::close(fd);
  return ok;
}

} // namespace

TEST_CASE("a signal for a child reaped elsewhere never reaches the process "
          "that reuses its pid",
          "[faults][signals][pid-reuse]") {
  io_context ctx;
  aspawn::process p(ctx);
  bool spawned = false;
  aspawn::async_spawn(ctx, test::helper_cmd({"exit", "0"}),
                      [&](error_code ec, aspawn::process q) {
                        REQUIRE_FALSE(ec);
                        p = std::move(q);
                        spawned = true;
                      });
  while (!spawned)
    ctx.run_one();
  const int pid = p.id();
  // Reaped behind the library's back: the pid is free for anyone now.
  int st;
  REQUIRE(::waitpid(pid, &st, 0) == pid);

  // A new process with the same pid, which waits for a byte on a pipe.
  test::pipe_pair gate;
  pid_t reuse = -1;
  for (int attempt = 0; attempt < 20 && reuse != pid; ++attempt) {
    if (!set_last_pid(pid - 1))
      break;
    pid_t c = ::fork();
    REQUIRE(c >= 0);
    if (c == 0) {
      ::close(gate.wr);
      char b;
      ssize_t n;
      do
        n = ::read(gate.rd, &b, 1);
      while (n < 0 && errno == EINTR);
      ::_exit(n == 1 ? 0 : 3);
    }
    if (c == pid) {
      reuse = c;
    } else { // another process took the pid first
      ::kill(c, SIGKILL);
      ::waitpid(c, &st, 0);
    }
  }
  if (reuse != pid) {
    WARN("cannot make a process reuse pid " << pid
                                            << " (ns_last_pid not writable)");
    return;
  }

  // Every way of signalling the old child reaches no one.
  error_code ec;
  p.signal(SIGKILL, ec);
  CHECK_FALSE(ec);
  p.request_exit(ec);
  CHECK_FALSE(ec);
  p.interrupt(ec);
  CHECK_FALSE(ec);
  error_code wait_ec;
  bool waited = false;
  p.async_wait([&](error_code e, int) {
    wait_ec = e;
    waited = true;
  });
  ctx.restart();
  while (!waited)
    ctx.run_one();
  CHECK(wait_ec == aspawn::errc::status_unavailable);

  // The process with the recycled pid was never signalled: it exits 0 when
  // released.
  REQUIRE(::write(gate.wr, "x", 1) == 1);
  REQUIRE(::waitpid(reuse, &st, 0) == reuse);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
  CHECK_FALSE(test::has_children());
}
