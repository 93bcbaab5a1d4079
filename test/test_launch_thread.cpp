// The pool's launch thread: which launches it takes, the signal mask its
// children start with, its queue (cancellation, shutdown, fork), leaks.
#include "common.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <dirent.h>
#include <fstream>
#include <memory>
#include <optional>
#include <sched.h>
#include <signal.h>
#include <string>
#include <sys/resource.h>
#include <thread>
#include <vector>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/read.hpp>

using aspawn::command;
using aspawn::error_code;
using test::asio::io_context;
namespace asio = test::asio;

namespace {

// The threads of this process named `name` (/proc/self/task/*/comm).
std::vector<int> threads_named(const std::string& name) {
  std::vector<int> out;
  DIR* d = ::opendir("/proc/self/task");
  REQUIRE(d != nullptr);
  while (dirent* ent = ::readdir(d)) {
    if (ent->d_name[0] == '.')
      continue;
    std::ifstream in(std::string("/proc/self/task/") + ent->d_name + "/comm");
    std::string comm;
    std::getline(in, comm);
    if (comm == name)
      out.push_back(std::stoi(ent->d_name));
  }
  ::closedir(d);
  return out;
}

// Waits (up to 10 s) for `pred`.
template <typename Pred> bool eventually(Pred pred) {
  for (int i = 0; i < 10000; ++i) {
    if (pred())
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

// The state a test starts from, to check that it leaves nothing behind.
struct no_leaks {
  std::set<int> fds = test::open_fds();
  void check() const {
    CHECK(test::open_fds() == fds);
    CHECK_FALSE(test::has_children());
  }
};

// The wait status of the child `pid`, which must exit within 30 s (it is
// killed otherwise, and the test fails).
int wait_with_timeout(pid_t pid) {
  int status = 0;
  for (int i = 0; i < 3000; ++i) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    REQUIRE(r >= 0);
    if (r == pid)
      return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  FAIL("the fork child did not exit within 30 s");
  return status;
}

// Nothing queued, watched or lent out.
void check_idle(const aspawn::stack_pool& pool) {
  CHECK(pool.queued() == 0);
  CHECK(pool.watching() == 0);
  CHECK(pool.in_use() == 0);
}

// Outcomes of a batch of launches.
struct batch {
  std::vector<std::optional<error_code>> results;
  std::size_t calls = 0; // handler invocations, all launches together
  explicit batch(std::size_t n) : results(n) {}
  auto handler(std::size_t i) {
    return [this, i](error_code ec, aspawn::process p) {
      ++calls;
      results[i] = ec;
      error_code ignored; // in a fork child, the parent's children
      if (!ec)
        p.wait(ignored);
    };
  }
  std::size_t count(error_code want) const {
    std::size_t n = 0;
    for (auto& r : results)
      n += r && *r == want;
    return n;
  }
  std::size_t done() const {
    std::size_t n = 0;
    for (auto& r : results)
      n += r.has_value();
    return n;
  }
};

// Starts `n` launches of `cmd` at once on `ctx`, each with a slot of `sigs`
// (when given).
void start_batch(io_context& ctx, const command& cmd, batch& b,
                 std::vector<asio::cancellation_signal>* sigs = nullptr) {
  for (std::size_t i = 0; i < b.results.size(); ++i) {
    if (sigs)
      aspawn::async_spawn(
          ctx, cmd, asio::bind_cancellation_slot((*sigs)[i].slot(), b.handler(i)));
    else
      aspawn::async_spawn(ctx, cmd, b.handler(i));
  }
}

// `n` launches of a quick child started at once on a context of their own,
// each with a cancellation signal.
struct cancellable_batch {
  io_context ctx;
  aspawn::stack_pool& pool = aspawn::stack_pool::of(ctx);
  batch b;
  std::vector<asio::cancellation_signal> sigs;
  explicit cancellable_batch(std::size_t n) : b(n), sigs(n) {
    start_batch(ctx, test::helper_cmd({"exit", "0"}), b, &sigs);
  }
  // Every launch completed, run or aborted, and the pool is idle.
  void check_completed() const {
    CHECK(b.done() == b.results.size());
    CHECK(b.count(error_code{}) + b.count(asio::error::operation_aborted) ==
          b.results.size());
    check_idle(pool);
  }
};

} // namespace

TEST_CASE("launches are cloned on the pool's launch thread; the child starts "
          "with the caller's signal mask",
          "[launch-thread]") {
  REQUIRE(threads_named("aspawn-launch").empty());
  no_leaks before;
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  REQUIRE(::pthread_sigmask(SIG_BLOCK, &usr1, &old) == 0);
  std::string out;
  {
    io_context ctx;
    auto& pool = aspawn::stack_pool::of(ctx);
    CHECK(pool.launch_thread());
    command cmd = test::helper_cmd({"status"});
    cmd.stdout_(aspawn::redirect::pipe());
    REQUIRE_FALSE(cmd.binds_calling_thread());
    error_code result = asio::error::fault;
    std::optional<aspawn::process> proc;
    aspawn::async_spawn(ctx, cmd, [&](error_code ec, aspawn::process p) {
      result = ec;
      proc.emplace(std::move(p));
    });
    // The call only prepared the launch: the stack is taken, nothing cloned
    // or watched by this thread.
    CHECK(pool.in_use() == 1);
    ctx.run();
    REQUIRE_FALSE(result);
    auto pipe = proc->take_stdout_pipe();
    error_code ec;
    asio::read(pipe, asio::dynamic_buffer(out), ec);
    CHECK(ec == asio::error::eof);
    CHECK(proc->wait() == 0);

    auto tids = threads_named("aspawn-launch");
    REQUIRE(tids.size() == 1);
    std::ifstream in("/proc/self/task/" + std::to_string(tids[0]) + "/status");
    std::string status((std::istreambuf_iterator<char>(in)),
                       std::istreambuf_iterator<char>());
    auto blocked = test::hex(test::field(status, "SigBlk"));
    for (int sig : {SIGINT, SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM, SIGPIPE})
      CHECK((blocked & test::sigbit(sig)) != 0);
    // All but the one glibc's setuid() family sends to every thread and
    // waits for (SIGSETXID, 33): blocked there, a setuid() anywhere in the
    // program would never return. One with the thread alive returns.
    CHECK((blocked & test::sigbit(33)) == 0);
    auto returned = std::make_shared<std::atomic<int>>(-2);
    std::thread([returned] { returned->store(::setresuid(-1, -1, -1)); })
        .detach();
    CHECK(eventually([&] { return returned->load() != -2; }));
    CHECK(returned->load() == 0);
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  // The child's mask is the caller's, not the launch thread's.
  CHECK(test::hex(test::field(out, "SigBlk")) == test::sigbit(SIGUSR1));
  // The thread goes with its context.
  CHECK(threads_named("aspawn-launch").empty());
  before.check();
}

TEST_CASE("commands tied to the calling thread are cloned inside the call",
          "[launch-thread]") {
  test::pipe_pair p;
  CHECK_FALSE(test::helper_cmd({"exit", "0"}).binds_calling_thread());
  CHECK_FALSE(test::helper_cmd({"exit", "0"})
                  .stdout_(aspawn::redirect::pipe())
                  .stdin_(aspawn::redirect::null())
                  .chdir("/")
                  .new_session()
                  .binds_calling_thread());
  CHECK(test::helper_cmd({"exit", "0"})
            .stdout_(aspawn::redirect::from_fd(p.wr))
            .binds_calling_thread());
  CHECK(test::helper_cmd({"exit", "0"}).map_fd(5, p.wr).binds_calling_thread());
  CHECK(test::helper_cmd({"exit", "0"}).chdir_fd(p.rd).binds_calling_thread());
  CHECK(test::helper_cmd({"exit", "0"}).inherit_fd(p.rd).binds_calling_thread());
  CHECK(test::helper_cmd({"exit", "0"}).foreground(p.rd).binds_calling_thread());
  CHECK(test::helper_cmd({"exit", "0"})
            .parent_death_signal(SIGTERM)
            .binds_calling_thread());
  CHECK(test::helper_cmd({"exit", "0"})
            .kill_on_parent_death()
            .binds_calling_thread());
  CHECK(test::helper_cmd({"exit", "0"})
            .child_function(test::block_on_fd, &p.rd, sizeof p.rd)
            .binds_calling_thread());

  // Inline: watched by the pool as soon as the call returns.
  no_leaks before;
  {
    io_context ctx;
    auto& pool = aspawn::stack_pool::of(ctx);
    command cmd = test::helper_cmd({"exit", "3"});
    cmd.stdout_(aspawn::redirect::from_fd(p.wr));
    int code = -1;
    aspawn::async_execute(ctx, cmd, [&](error_code, int c) { code = c; });
    CHECK(pool.watching() == 1);
    CHECK(pool.queued() == 0);
    ctx.run();
    CHECK(code == 3);

    // And with the launch thread turned off, any command.
    pool.set_launch_thread(false);
    aspawn::async_execute(ctx, test::helper_cmd({"exit", "4"}),
                          [&](error_code, int c) { code = c; });
    CHECK(pool.watching() == 1);
    ctx.restart();
    ctx.run();
    CHECK(code == 4);
  }
  before.check();
}

TEST_CASE("many launches queued at once all complete, and nothing is left",
          "[launch-thread]") {
  no_leaks before;
  {
    io_context ctx;
    auto& pool = aspawn::stack_pool::of(ctx);
    batch b(100);
    start_batch(ctx, test::helper_cmd({"exit", "0"}), b);
    CHECK(pool.in_use() == 100); // prepared, stacks taken
    ctx.run();
    CHECK(b.count(error_code{}) == 100);
    check_idle(pool);
  }
  before.check();
}

TEST_CASE("a failing step of a launch the thread started is reported, and "
          "the child reaped",
          "[launch-thread]") {
  no_leaks before;
  command cmd = test::helper_cmd({"exit", "0"});
  cmd.chdir("/nonexistent/aspawn-launch-thread");
  REQUIRE_FALSE(cmd.binds_calling_thread());
  test::expect_step_failure(cmd, aspawn::step_kind::chdir, ENOENT);
  // And a launch that fails before any child exists (no such program).
  {
    io_context ctx;
    error_code result;
    aspawn::async_spawn(ctx, command("/nonexistent/aspawn-program"),
                        [&](error_code ec, aspawn::process) { result = ec; });
    ctx.run();
    CHECK(result);
    CHECK(aspawn::stack_pool::of(ctx).in_use() == 0);
  }
  before.check();
}

TEST_CASE("launches cancelled while queued complete with operation_aborted "
          "and start no child",
          "[launch-thread]") {
  no_leaks before;
  // Preparing a launch takes microseconds, cloning one a hundred or more:
  // most of a batch is still queued when the call that made it returns. A
  // slow preparation (under a sanitizer) can let the thread keep up, so the
  // batch is tried again until one found launches queued.
  bool saw_queued = false;
  for (int attempt = 0; attempt < 5 && !saw_queued; ++attempt) {
    constexpr std::size_t n = 64;
    cancellable_batch cb(n);
    saw_queued = cb.pool.queued() > 0;
    for (std::size_t i = n / 2; i < n; ++i)
      cb.sigs[i].emit(asio::cancellation_type::terminal);
    cb.ctx.run();
    // The first half ran; the second half was aborted, either while queued
    // or (the ones the thread had taken) by killing its child, unless that
    // child had exec'd already.
    cb.check_completed();
    if (saw_queued)
      CHECK(cb.b.count(asio::error::operation_aborted) >= 1);
    for (std::size_t i = 0; i < n / 2; ++i)
      CHECK(cb.b.results[i] == error_code{});
  }
  CHECK(saw_queued);
  before.check();
}

TEST_CASE("cancellations that meet launches at every stage of the launch "
          "thread's work complete each launch once and leave nothing",
          "[launch-thread]") {
  no_leaks before;
  // Cancellations spread over the time the thread takes to clone the
  // batch: some find their launch queued, some being cloned, some watched,
  // some done. The request and the thread meet without a lock.
  for (int round = 0; round < 3; ++round) {
    constexpr std::size_t n = 96;
    cancellable_batch cb(n);
    std::vector<std::unique_ptr<asio::steady_timer>> timers;
    for (std::size_t i = 0; i < n; ++i) {
      timers.push_back(std::make_unique<asio::steady_timer>(
          cb.ctx, std::chrono::microseconds(37 * static_cast<long>(i))));
      timers.back()->async_wait([&cb, i](error_code) {
        if (!cb.b.results[i])
          cb.sigs[i].emit(asio::cancellation_type::terminal);
      });
    }
    cb.ctx.run();
    CHECK(cb.b.calls == n);
    cb.check_completed();
  }
  before.check();
}

TEST_CASE("destroying the io_context with launches queued abandons them "
          "unstarted and leaves nothing behind",
          "[launch-thread]") {
  no_leaks before;
  const auto t0 = std::chrono::steady_clock::now();
  std::size_t queued_then = 0;
  // Tried again should the thread have kept up with the batch (see above).
  for (int attempt = 0; attempt < 5 && queued_then == 0; ++attempt) {
    io_context ctx;
    auto& pool = aspawn::stack_pool::of(ctx);
    batch b(64);
    start_batch(ctx, test::helper_cmd({"sleep", "30"}), b);
    queued_then = pool.queued();
    // ctx goes without running: its children (if any yet) are killed and
    // reaped, the queued launches dropped.
  }
  CHECK(queued_then > 0);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20));
  CHECK(threads_named("aspawn-launch").empty());
  before.check();
}

TEST_CASE("after fork(), the child's copies of queued launches complete with "
          "operation_aborted; the parent's run",
          "[launch-thread][fork]") {
  no_leaks before;
  {
    io_context ctx;
    auto& pool = aspawn::stack_pool::of(ctx);
    constexpr std::size_t n = 64;
    batch b(n);
    start_batch(ctx, test::helper_cmd({"exit", "0"}), b);
    ctx.notify_fork(asio::execution_context::fork_prepare);
    const std::size_t queued_at_fork = pool.queued();
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // No Catch macros here: report through the exit status.
      ctx.notify_fork(asio::execution_context::fork_child);
      int status = pool.queued() == 0 ? 0 : 10;
      // Run until the aborted ones have completed (the others are the
      // parent's children, which this process cannot wait for).
      while (b.count(asio::error::operation_aborted) < queued_at_fork &&
             ctx.run_one_for(std::chrono::seconds(5)) > 0) {
      }
      if (b.count(asio::error::operation_aborted) != queued_at_fork)
        status = 11;
      // Launches made in the child clone inline: no thread starts here.
      int code = -1;
      ctx.restart(); // the loop above may have run out of work
      const std::size_t watched_before = pool.watching();
      aspawn::async_execute(ctx, test::helper_cmd({"exit", "7"}),
                            [&](error_code, int c) { code = c; });
      if (pool.watching() != watched_before + 1 || pool.queued() != 0)
        status = 12;
      while (code < 0 && ctx.run_one_for(std::chrono::seconds(5)) > 0) {
      }
      if (code != 7)
        status = 13;
      ::_exit(status);
    }
    ctx.notify_fork(asio::execution_context::fork_parent);
    int status = wait_with_timeout(pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(queued_at_fork > 0);
    ctx.run();
    CHECK(b.count(error_code{}) == n);
    check_idle(pool);
  }
  before.check();
}

TEST_CASE("a fork child destroys a pool whose launch thread waited in the "
          "parent",
          "[launch-thread][fork]") {
  std::optional<io_context> ctx(std::in_place);
  int code = -1;
  aspawn::async_execute(*ctx, test::helper_cmd({"exit", "5"}),
                        [&](error_code, int c) { code = c; });
  ctx->run();
  REQUIRE(code == 5);
  // The launch thread now waits for work.
  REQUIRE(threads_named("aspawn-launch").size() == 1);
  ctx->notify_fork(asio::execution_context::fork_prepare);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ctx->notify_fork(asio::execution_context::fork_child);
    ctx.reset(); // must not wait for the parent's thread
    ::_exit(0);
  }
  ctx->notify_fork(asio::execution_context::fork_parent);
  int status = wait_with_timeout(pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The parent's thread goes on.
  ctx->restart();
  aspawn::async_execute(*ctx, test::helper_cmd({"exit", "6"}),
                        [&](error_code, int c) { code = c; });
  ctx->run();
  CHECK(code == 6);
}

namespace {

// What a child launched on a launch thread printed, or what went wrong.
struct child_output {
  std::string out;
  error_code ec;
  int code = -1;
};

// `cmd` launched on `ctx`'s launch thread (stdout piped, so that the command
// stays off the calling thread). No Catch macros: it runs on threads of the
// test's own.
child_output output_via_launch_thread(io_context& ctx, command cmd) {
  cmd.stdout_(aspawn::redirect::pipe());
  child_output r;
  if (cmd.binds_calling_thread()) {
    r.ec = asio::error::invalid_argument;
    return r;
  }
  std::optional<aspawn::process> proc;
  aspawn::async_spawn(ctx, cmd, [&](error_code ec, aspawn::process p) {
    r.ec = ec;
    proc.emplace(std::move(p));
  });
  ctx.restart();
  ctx.run();
  if (r.ec)
    return r;
  auto pipe = proc->take_stdout_pipe();
  error_code ec;
  asio::read(pipe, asio::dynamic_buffer(r.out), ec);
  r.code = proc->wait(r.ec);
  return r;
}

// On a thread of its own whose scheduling policy is `policy` and nice value
// `nice`: what two children launched on a new context's launch thread
// report of their scheduling, the second after the thread has slept.
std::vector<child_output> sched_of_children(int policy, int nice) {
  std::vector<child_output> outs;
  std::thread([&] {
    const sched_param zero{};
    child_output failed;
    if (::sched_setscheduler(0, policy, &zero) != 0 ||
        ::setpriority(PRIO_PROCESS, 0, nice) != 0) {
      failed.ec = error_code(errno, boost::system::system_category());
      outs.push_back(failed);
      return;
    }
    io_context ctx;
    for (int i = 0; i < 2; ++i) {
      outs.push_back(output_via_launch_thread(ctx, test::helper_cmd({"sched"})));
      // The launch thread sleeps (as SCHED_BATCH, if it started as
      // SCHED_OTHER) before the next launch wakes it.
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }).join();
  return outs;
}

} // namespace

TEST_CASE("children of the launch thread keep the scheduling policy and nice "
          "value of the thread that started it, though it sleeps as "
          "SCHED_BATCH",
          "[launch-thread]") {
  no_leaks before;
  errno = 0;
  const int parent_nice = ::getpriority(PRIO_PROCESS, 0);
  REQUIRE(errno == 0);
  const int nice = std::min(parent_nice + 3, 19); // raising it needs no privilege
  auto expect = [&](int policy) {
    const auto outs = sched_of_children(policy, nice);
    REQUIRE(outs.size() == 2);
    for (const auto& r : outs) {
      INFO("launch: " << r.ec.message());
      CHECK_FALSE(r.ec);
      CHECK(r.code == 0);
      CHECK(r.out == "policy=" + std::to_string(policy) +
                         " nice=" + std::to_string(nice) + "\n");
    }
  };
  expect(SCHED_OTHER);
  // One that started as SCHED_BATCH stays so, children included.
  expect(SCHED_BATCH);
  before.check();
}
