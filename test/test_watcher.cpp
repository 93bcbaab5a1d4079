// The pool's status-pipe watcher, and the descriptor path it falls back to.
#include "common.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/require.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_future.hpp>

using aspawn::command;
using aspawn::error_code;
using test::asio::io_context;
namespace asio = test::asio;

namespace {

// A launch whose child blocks in its child function until a byte comes
// through `gate`, then execs the helper, which exits with 6.
struct gated {
  test::pipe_pair gate;
  command cmd = test::helper_cmd({"exit", "6"});
  gated() {
    cmd.inherit_fd(gate.rd).child_function(test::block_on_fd, &gate.rd,
                                           sizeof gate.rd);
  }
  // Lets the child go on. (Closing the gate would not: the child holds a
  // copy of the write end while it runs its function.)
  void open() { REQUIRE(::write(gate.wr, "x", 1) == 1); }
};

// A completion handler too large for a launch stack's parent area.
struct big_handler {
  std::array<char, 2048> ballast{};
  error_code* result;
  bool* ran;
  void operator()(error_code ec, aspawn::process p) {
    *result = ec;
    *ran = true;
    if (p.is_open()) {
      error_code ignored;
      p.terminate(ignored);
    }
  }
};

// Waits (up to 10 s) until the pool's launch thread has cloned every
// launch handed to it: they are all watched then.
void wait_until_cloned(const aspawn::stack_pool& pool) {
  for (int i = 0; i < 10000 && pool.queued() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(pool.queued() == 0);
}

} // namespace

TEST_CASE("launches from an io_context are watched by its pool, not by a "
          "descriptor each",
          "[watcher]") {
  io_context ctx;
  auto& pool = aspawn::stack_pool::of(ctx);
  gated g;
  error_code result = asio::error::fault;
  int code = -1;
  aspawn::async_spawn(ctx, g.cmd, [&](error_code ec, aspawn::process p) {
    result = ec;
    if (!ec)
      code = p.wait();
  });
  ctx.poll();
  CHECK(code == -1);
  CHECK(pool.in_use() == 1);
  CHECK(pool.watching() == 1);
  g.open();
  ctx.run();
  CHECK_FALSE(result);
  CHECK(code == 6);
  CHECK(pool.watching() == 0);
  CHECK(pool.in_use() == 0);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a coroutine's launch is watched by the pool", "[watcher]") {
  io_context ctx;
  auto& pool = aspawn::stack_pool::of(ctx);
  gated g;
  std::size_t watched_while_pending = 0;
  error_code result = asio::error::fault;
  int code = -1;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        auto [ec, p] = co_await aspawn::async_spawn(
            ctx, g.cmd, asio::as_tuple(asio::use_awaitable));
        result = ec;
        if (!ec)
          code = co_await p.async_wait(asio::use_awaitable);
      },
      asio::detached);
  // Runs after the coroutine has initiated the launch; the child waits for
  // the gate.
  asio::post(ctx, [&] {
    watched_while_pending = pool.watching();
    g.open();
  });
  ctx.run();
  CHECK(watched_while_pending == 1);
  CHECK_FALSE(result);
  CHECK(code == 6);
  CHECK(pool.watching() == 0);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a handler too large for the stack's parent area is watched by a "
          "descriptor of its own",
          "[watcher]") {
  auto before = test::open_fds();
  {
    test::inspectable_context ctx;
    auto& pool = aspawn::stack_pool::of(ctx);

    SECTION("success") {
      error_code result = asio::error::fault;
      bool ran = false;
      aspawn::async_spawn(ctx, test::helper_cmd({"exit", "0"}),
                          big_handler{{}, &result, &ran});
      CHECK(pool.watching() == 0);
      ctx.run();
      CHECK(ran);
      CHECK_FALSE(result);
    }
    SECTION("a pending launch") {
      gated g;
      error_code result = asio::error::fault;
      bool ran = false;
      aspawn::async_spawn(ctx, g.cmd, big_handler{{}, &result, &ran});
      ctx.poll();
      CHECK(pool.in_use() == 1);
      CHECK(pool.watching() == 0);
      g.open();
      ctx.run();
      CHECK(ran);
      CHECK_FALSE(result);
    }
    SECTION("a failing step") {
      error_code result;
      bool ran = false;
      aspawn::async_spawn(ctx, command("/nonexistent/aspawn-test"),
                          big_handler{{}, &result, &ran});
      CHECK(pool.watching() == 0);
      ctx.run();
      CHECK(ran);
      CHECK(aspawn::child_errno(result) == ENOENT);
    }
    SECTION("cancelled") {
      gated g;
      asio::cancellation_signal sig;
      error_code result;
      bool ran = false;
      aspawn::async_spawn(
          ctx, g.cmd,
          asio::bind_cancellation_slot(sig.slot(),
                                       big_handler{{}, &result, &ran}));
      ctx.poll();
      CHECK(pool.watching() == 0);
      sig.emit(asio::cancellation_type::terminal);
      ctx.run();
      CHECK(ran);
      CHECK(result == asio::error::operation_aborted);
    }
    SECTION("abandoned by the context's shutdown") {
      gated g;
      error_code result;
      bool ran = false;
      aspawn::async_spawn(ctx, g.cmd, big_handler{{}, &result, &ran});
      ctx.poll();
      CHECK(pool.in_use() == 1);
      ctx.shutdown();
      CHECK_FALSE(ran);
      CHECK(pool.in_use() == 0);
    }
    CHECK(pool.in_use() == 0);
  }
  CHECK_FALSE(test::has_children());
  CHECK(test::open_fds() == before);
}

TEST_CASE("a launch cancelled while the pool watches it kills and reaps the "
          "child; a cancellation after it completed changes nothing",
          "[watcher][cancel]") {
  io_context ctx;
  auto& pool = aspawn::stack_pool::of(ctx);
  asio::cancellation_signal sig;

  gated g;
  error_code first;
  aspawn::async_spawn(ctx, g.cmd,
                      asio::bind_cancellation_slot(
                          sig.slot(), [&](error_code ec, aspawn::process p) {
                            first = ec;
                            CHECK_FALSE(p.is_open());
                          }));
  ctx.poll();
  CHECK(pool.watching() == 1);
  sig.emit(asio::cancellation_type::terminal);
  ctx.run();
  CHECK(first == asio::error::operation_aborted);
  CHECK(pool.in_use() == 0);
  CHECK_FALSE(test::has_children());

  // The same slot, reused by a launch that completes: the handler the first
  // launch installed is gone with it.
  ctx.restart();
  error_code second = asio::error::fault;
  int code = -1;
  aspawn::async_spawn(ctx, test::helper_cmd({"exit", "4"}),
                      asio::bind_cancellation_slot(
                          sig.slot(), [&](error_code ec, aspawn::process p) {
                            second = ec;
                            if (!ec)
                              code = p.wait();
                          }));
  ctx.run();
  CHECK_FALSE(second);
  CHECK(code == 4);
  sig.emit(asio::cancellation_type::terminal); // nobody listens: no effect
  CHECK_FALSE(test::has_children());
}

TEST_CASE("the pool's watcher keeps no work on the context", "[watcher]") {
  io_context ctx;
  // The first launch sets the watcher up; its executor tracks work, which
  // the watcher must not keep: run() returns once the launches are done.
  int code = -1;
  {
    auto tracked = asio::require(ctx.get_executor(),
                                 asio::execution::outstanding_work.tracked);
    aspawn::async_execute(tracked, test::helper_cmd({"exit", "5"}),
                          [&](error_code, int c) { code = c; });
  }
  ctx.run();
  CHECK(code == 5);
  CHECK(ctx.stopped());

  // Later launches from other executors of the context use the same watcher.
  ctx.restart();
  auto strand = asio::make_strand(ctx);
  std::vector<int> codes;
  for (int i = 0; i < 3; ++i)
    aspawn::async_execute(strand, test::helper_cmd({"exit", std::to_string(i)}),
                          [&](error_code, int c) {
                            CHECK(strand.running_in_this_thread());
                            codes.push_back(c);
                          });
  ctx.run();
  std::sort(codes.begin(), codes.end());
  CHECK(codes == std::vector<int>{0, 1, 2});
}

TEST_CASE("more launches in flight than one batch of the watcher's events",
          "[watcher]") {
  io_context ctx;
  auto& pool = aspawn::stack_pool::of(ctx);
  command cmd = test::helper_cmd({"exit", "0"});
  cmd.prepare();
  constexpr int n = 200; // the watcher collects up to 64 events at a time
  int ok = 0;
  for (int i = 0; i < n; ++i)
    aspawn::async_execute(ctx, cmd, [&](error_code ec, int c) {
      if (!ec && c == 0)
        ++ok;
    });
  wait_until_cloned(pool);
  CHECK(pool.watching() == static_cast<std::size_t>(n));
  ctx.run();
  CHECK(ok == n);
  CHECK(pool.watching() == 0);
  CHECK(pool.in_use() == 0);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("use_future launches from another thread are watched by the pool",
          "[watcher]") {
  io_context ctx;
  auto work = asio::make_work_guard(ctx);
  std::thread runner([&] { ctx.run(); });
  std::vector<std::future<int>> results;
  for (int i = 0; i < 20; ++i)
    results.push_back(aspawn::async_execute(
        ctx, test::helper_cmd({"exit", std::to_string(i % 7)}),
        asio::use_future));
  for (int i = 0; i < 20; ++i)
    CHECK(results[static_cast<std::size_t>(i)].get() == i % 7);
  work.reset();
  runner.join();
  CHECK_FALSE(test::has_children());
}

TEST_CASE("the watcher never runs in a strand, even one the first launch's "
          "type-erased executor wrapped",
          "[watcher]") {
  io_context ctx;
  auto strand = asio::make_strand(ctx);
  // The first launch sets the watcher up from a strand behind an
  // any_io_executor, as a coroutine on a strand would pass it.
  int first = -1;
  aspawn::async_execute(asio::any_io_executor(strand),
                        test::helper_cmd({"exit", "1"}),
                        [&](error_code, int c) { first = c; });
  wait_until_cloned(aspawn::stack_pool::of(ctx));
  CHECK(aspawn::stack_pool::of(ctx).watching() == 1); // it fits the stack
  ctx.run();
  REQUIRE(first == 1);
  ctx.restart();

  // Now the strand is kept busy until a launch from the plain executor has
  // completed: that takes a watcher outside the strand.
  auto work = asio::make_work_guard(ctx);
  std::thread runner([&] { ctx.run(); });
  std::promise<int> launched;
  auto done = launched.get_future();
  std::promise<bool> strand_freed;
  asio::post(strand, [&] {
    strand_freed.set_value(done.wait_for(std::chrono::seconds(20)) ==
                           std::future_status::ready);
  });
  aspawn::async_execute(ctx, test::helper_cmd({"exit", "2"}),
                        [&](error_code, int c) { launched.set_value(c); });
  // This thread runs the context too, until the launch is done: whichever
  // thread the strand holds, the other one is free.
  while (done.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
    ctx.run_one_for(std::chrono::milliseconds(10));
  bool in_time = strand_freed.get_future().get();
  work.reset();
  ctx.run();
  runner.join();
  CHECK(in_time);
  CHECK(done.get() == 2);
}

TEST_CASE("a completion handler that throws loses no other launch",
          "[watcher]") {
  io_context ctx;
  auto& pool = aspawn::stack_pool::of(ctx);
  auto strand = asio::make_strand(ctx);
  command cmd = test::helper_cmd({"exit", "0"});
  int completed = 0;
  for (int i = 0; i < 3; ++i)
    aspawn::async_execute(asio::any_io_executor(strand), cmd,
                          [&](error_code, int) {
                            if (++completed == 1)
                              throw std::runtime_error("handler failed");
                          });
  bool thrown = false;
  for (;;) {
    try {
      ctx.run();
      break;
    } catch (const std::runtime_error&) {
      thrown = true;
      ctx.restart();
    }
  }
  CHECK(thrown);
  CHECK(completed == 3);
  CHECK(pool.watching() == 0);
  CHECK(pool.in_use() == 0);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a launch completes in the event loop pass that sees its pipe",
          "[watcher]") {
  io_context ctx;
  int code = -1;
  bool spawned = false;
  aspawn::async_spawn(ctx, test::helper_cmd({"exit", "4"}),
                      [&](error_code ec, aspawn::process p) {
                        spawned = true;
                        if (!ec)
                          code = p.wait();
                      });
  wait_until_cloned(aspawn::stack_pool::of(ctx));
  REQUIRE(aspawn::stack_pool::of(ctx).watching() == 1);
  // One handler: the watcher's wakeup, which resumes the launch and runs
  // its completion there, on the executor it was started from.
  CHECK(ctx.run_one() == 1);
  CHECK(spawned);
  CHECK(code == 4);
  ctx.run();
  CHECK_FALSE(test::has_children());
}

TEST_CASE("launches completing in one wakeup of the watcher are all "
          "resumed when the first handler throws",
          "[watcher]") {
  io_context ctx;
  auto& pool = aspawn::stack_pool::of(ctx);
  std::vector<std::unique_ptr<gated>> gates;
  std::vector<aspawn::process> children;
  int completed = 0;
  for (int i = 0; i < 3; ++i) {
    gates.push_back(std::make_unique<gated>());
    aspawn::async_spawn(ctx, gates.back()->cmd,
                        [&](error_code ec, aspawn::process p) {
                          CHECK_FALSE(ec);
                          children.push_back(std::move(p));
                          if (++completed == 1)
                            throw std::runtime_error("handler failed");
                        });
  }
  REQUIRE(pool.watching() == 3);
  // All three children exec before the context runs again: their pipes
  // report together, in one wakeup (the first launch dispatched, and the
  // two after it posted once its handler has thrown).
  for (auto& g : gates)
    g->open();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  int thrown = 0;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (completed < 3 && std::chrono::steady_clock::now() < deadline) {
    try {
      ctx.run_for(std::chrono::milliseconds(100));
    } catch (const std::runtime_error&) {
      ++thrown;
    }
    if (ctx.stopped())
      ctx.restart();
  }
  CHECK(thrown == 1);
  CHECK(completed == 3);
  CHECK(pool.watching() == 0);
  CHECK(pool.in_use() == 0);
  for (auto& c : children)
    CHECK(c.wait() == 6);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a handler bound to another io_context keeps that context running "
          "while the pool watches the launch",
          "[watcher]") {
  io_context launching, handling;
  gated g;
  int code = -1;
  bool in_handling = false;
  aspawn::async_execute(launching, g.cmd,
                        asio::bind_executor(handling, [&](error_code, int c) {
                          code = c;
                          in_handling =
                              handling.get_executor().running_in_this_thread();
                        }));
  CHECK(aspawn::stack_pool::of(launching).watching() == 1);
  std::thread runner([&] { launching.run(); });
  // The gate opens a moment after `handling` starts running: with no work
  // held on it, run() would return at once.
  std::thread opener([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    g.open();
  });
  handling.run();
  opener.join();
  runner.join();
  CHECK(code == 6);
  CHECK(in_handling);
}

TEST_CASE("after fork(), the child watches the pending launches in an epoll "
          "instance of its own and the parent's are untouched",
          "[watcher][fork]") {
  io_context ctx;
  auto& pool = aspawn::stack_pool::of(ctx);
  gated g;
  int code = -1;
  aspawn::async_execute(ctx, g.cmd, [&](error_code, int c) { code = c; });
  REQUIRE(pool.watching() == 1);

  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // No Catch macros here: report through the exit status.
    ctx.notify_fork(asio::execution_context::fork_child);
    int status = pool.watching() == 1 ? 0 : 10;
    int child_code = -1;
    ctx.restart();
    aspawn::async_execute(ctx, test::helper_cmd({"exit", "7"}),
                          [&](error_code, int c) { child_code = c; });
    // The parent's launch stays pending here (its gate is shut).
    while (child_code < 0 && ctx.run_one() > 0) {
    }
    if (child_code != 7)
      status = 11;
    ::_exit(status);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  // The child's epoll instance took none of the parent's events.
  CHECK(pool.watching() == 1);
  g.open();
  ctx.run();
  CHECK(code == 6);
  CHECK_FALSE(test::has_children());
}

namespace {

// The epoll instances of this process that have `fd` registered (from
// /proc/self/fdinfo: one "tfd:" line per registration).
std::set<int> epolls_listing(int fd) {
  std::set<int> out;
  for (int ep : test::open_fds()) {
    std::ifstream in("/proc/self/fdinfo/" + std::to_string(ep));
    std::string line;
    while (std::getline(in, line)) {
      int tfd = -1;
      if (std::sscanf(line.c_str(), "tfd: %d", &tfd) == 1 && tfd == fd)
        out.insert(ep);
    }
  }
  return out;
}

// The outcome of one exit wait.
// An allocator that counts what it allocates.
template <typename T> struct counting {
  using value_type = T;
  std::size_t* count;
  template <typename U> counting(const counting<U>& o) : count(o.count) {}
  explicit counting(std::size_t* c) : count(c) {}
  T* allocate(std::size_t n) {
    ++*count;
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, std::size_t n) { std::allocator<T>().deallocate(p, n); }
  template <typename U> bool operator==(const counting<U>& o) const {
    return count == o.count;
  }
};

struct exit_outcome {
  error_code result = asio::error::fault;
  int code = -1;
  bool done = false;
  auto handler() {
    return [this](error_code ec, int c) {
      result = ec;
      code = c;
      done = true;
    };
  }
};

// A child that runs until it is signalled; the launch is done when this
// returns.
aspawn::process pausing_child(io_context& ctx) {
  std::optional<aspawn::process> out;
  aspawn::async_spawn(ctx, test::helper_cmd({"pause"}),
                      [&](error_code ec, aspawn::process p) {
                        REQUIRE_FALSE(ec);
                        out.emplace(std::move(p));
                      });
  while (!out)
    ctx.run_one();
  ctx.restart();
  return std::move(*out);
}

} // namespace

TEST_CASE("a process's exit wait is held by the pool's watcher, with no "
          "descriptor of its own",
          "[watcher][process]") {
  io_context ctx;
  auto& pool = aspawn::stack_pool::of(ctx);
  auto p = pausing_child(ctx);
  const auto fds_before = test::open_fds();
  // Between waits the pidfd is a plain descriptor: no reactor knows it.
  CHECK(epolls_listing(p.native_handle()).empty());
  exit_outcome out;
  p.async_wait(out.handler());
  ctx.poll();
  CHECK_FALSE(out.done);
  // A descriptor of its own would be a duplicate of the pidfd.
  CHECK(test::open_fds() == fds_before);
  // Registered once, in the pool's instance: the one that is itself
  // registered with the reactor's.
  auto holders = epolls_listing(p.native_handle());
  REQUIRE(holders.size() == 1);
  CHECK(epolls_listing(*holders.begin()).size() == 1);
  CHECK(pool.watching() == 0); // exit waits are not launches
  p.signal(SIGTERM);
  ctx.run();
  CHECK_FALSE(out.result);
  CHECK(out.code == SIGTERM);
  CHECK(test::open_fds() == fds_before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("an exit wait cancelled off the watcher can be waited on again",
          "[watcher][process][cancel]") {
  io_context ctx;
  auto p = pausing_child(ctx);
  for (int round = 0; round < 3; ++round) {
    asio::cancellation_signal sig;
    exit_outcome cancelled;
    p.async_wait(asio::bind_cancellation_slot(sig.slot(), cancelled.handler()));
    ctx.poll();
    REQUIRE_FALSE(cancelled.done);
    sig.emit(asio::cancellation_type::terminal);
    // run() returns: the watcher keeps no wait pending once nothing is left
    // to watch.
    ctx.run();
    ctx.restart();
    CHECK(cancelled.done);
    CHECK(cancelled.result == asio::error::operation_aborted);
    CHECK(p.running());
  }
  exit_outcome out;
  p.async_wait(out.handler());
  ctx.poll();
  p.signal(SIGKILL);
  ctx.run();
  CHECK_FALSE(out.result);
  CHECK(out.code == SIGKILL);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a second exit wait after the watcher has fired re-arms the pidfd",
          "[watcher][process]") {
  io_context ctx;
  auto p = pausing_child(ctx);
  // Someone else reaps the child: the pidfd reads as exited, but the wait
  // finds no status. The pidfd stays registered, disabled, after the first
  // wait; the second re-arms it.
  p.signal(SIGKILL);
  siginfo_t info{};
  REQUIRE(::waitid(P_PID, static_cast<id_t>(p.id()), &info, WEXITED) == 0);
  const auto fds_before = test::open_fds();
  for (int round = 0; round < 2; ++round) {
    exit_outcome out;
    p.async_wait(out.handler());
    ctx.run();
    ctx.restart();
    CHECK(out.done);
    CHECK(out.result == aspawn::errc::status_unavailable);
  }
  CHECK(test::open_fds() == fds_before);
}

TEST_CASE("destroying a process while its exit wait is pending ends the "
          "wait with operation_aborted and leaves no child",
          "[watcher][process][lifetime]") {
  io_context ctx;
  auto p = std::make_unique<aspawn::process>(pausing_child(ctx));
  exit_outcome out;
  p->async_wait(out.handler());
  ctx.poll();
  REQUIRE_FALSE(out.done);
  p.reset(); // kills the child and hands it to the reaper
  ctx.run();
  CHECK(out.done);
  CHECK(out.result == asio::error::operation_aborted);
  CHECK_FALSE(test::has_children());
  CHECK(asio::use_service<aspawn::detail::reaper>(ctx).pending() == 0);
}

TEST_CASE("moving a process ends its pending exit wait; the new object "
          "waits",
          "[watcher][process][lifetime]") {
  io_context ctx;
  auto p = pausing_child(ctx);
  exit_outcome first;
  p.async_wait(first.handler());
  ctx.poll();
  aspawn::process q(std::move(p));
  ctx.run();
  ctx.restart();
  CHECK(first.done);
  CHECK(first.result == asio::error::operation_aborted);
  CHECK(q.running());
  exit_outcome second;
  q.async_wait(second.handler());
  ctx.poll();
  q.signal(SIGKILL);
  ctx.run();
  CHECK_FALSE(second.result);
  CHECK(second.code == SIGKILL);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("destroying the io_context with an exit wait pending destroys the "
          "wait and reaps the child",
          "[watcher][process][lifetime]") {
  bool ran = false;
  {
    test::inspectable_context ctx;
    auto p = std::make_unique<aspawn::process>(pausing_child(ctx));
    p->async_wait([&](error_code, int) { ran = true; });
    ctx.poll();
    ctx.shutdown(); // the pending wait is destroyed, its handler never runs
    p.reset();
  }
  CHECK_FALSE(ran);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("an exit wait on an executor the pool does not watch uses a "
          "descriptor of its own",
          "[watcher][process]") {
  asio::thread_pool tp(1);
  aspawn::basic_process<asio::thread_pool::executor_type> p(
      tp.get_executor(), test::helper(), {"exit", "5"});
  auto code = p.async_wait(asio::use_future);
  CHECK(code.get() == 5);
  CHECK(aspawn::stack_pool::of(tp).watching() == 0);
  tp.join();
  CHECK_FALSE(test::has_children());
}

TEST_CASE("moving a process ends a pending exit wait held by a descriptor "
          "of its own",
          "[watcher][process][lifetime]") {
  asio::thread_pool tp(1);
  aspawn::basic_process<asio::thread_pool::executor_type> p(
      tp.get_executor(), test::helper(), {"pause"});
  std::promise<std::pair<error_code, int>> first;
  p.async_wait([&](error_code ec, int code) { first.set_value({ec, code}); });
  // The wait is pending once the descriptor is made: a duplicate of the
  // pidfd. Moving the object ends it and closes the duplicate.
  auto q = std::move(p);
  auto [ec, code] = first.get_future().get();
  CHECK(ec == asio::error::operation_aborted);
  CHECK(code == -1);
  CHECK(q.running());
  // The object is not thread-safe: signalled before the wait, which the
  // pool's thread carries on.
  q.signal(SIGKILL);
  auto second = q.async_wait(asio::use_future);
  CHECK(second.get() == SIGKILL);
  tp.join();
  CHECK_FALSE(test::has_children());
}

TEST_CASE("two exit waits on one process at once both complete",
          "[watcher][process]") {
  io_context ctx;
  auto p = pausing_child(ctx);
  const auto fds_before = test::open_fds();
  SECTION("both see the exit") {
    exit_outcome first;
    bool second_done = false;
    aspawn::exit_status second_status;
    p.async_wait(first.handler());
    p.async_wait_status([&](error_code ec, aspawn::exit_status st) {
      CHECK_FALSE(ec);
      second_status = st;
      second_done = true;
    });
    ctx.poll();
    REQUIRE_FALSE(first.done);
    REQUIRE_FALSE(second_done);
    p.signal(SIGKILL);
    ctx.run();
    CHECK_FALSE(first.result);
    CHECK(first.code == SIGKILL);
    REQUIRE(second_done);
    CHECK(second_status.signaled());
    CHECK(second_status.term_signal() == SIGKILL);
  }
  SECTION("cancelling the first leaves the second waiting") {
    asio::cancellation_signal sig;
    exit_outcome first, second;
    p.async_wait(asio::bind_cancellation_slot(sig.slot(), first.handler()));
    p.async_wait(second.handler());
    ctx.poll();
    sig.emit(asio::cancellation_type::terminal);
    ctx.poll();
    CHECK(first.done);
    CHECK(first.result == asio::error::operation_aborted);
    CHECK_FALSE(second.done);
    p.signal(SIGKILL);
    ctx.run();
    CHECK_FALSE(second.result);
    CHECK(second.code == SIGKILL);
  }
  SECTION("cancelling the second leaves the first waiting") {
    asio::cancellation_signal sig;
    exit_outcome first, second;
    p.async_wait(first.handler());
    p.async_wait(asio::bind_cancellation_slot(sig.slot(), second.handler()));
    ctx.poll();
    sig.emit(asio::cancellation_type::terminal);
    ctx.poll();
    CHECK(second.done);
    CHECK(second.result == asio::error::operation_aborted);
    CHECK_FALSE(first.done);
    p.signal(SIGKILL);
    ctx.run();
    CHECK_FALSE(first.result);
    CHECK(first.code == SIGKILL);
  }
  p = aspawn::process(ctx); // closes the pidfd and its duplicate
  CHECK(test::open_fds().size() == fds_before.size() - 1);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("one handler cancels the only exit wait and starts another on "
          "an exited child: both complete and run() returns",
          "[watcher][process][cancel]") {
  // Both children have exited before the handler runs: the cancellation
  // leaves the watcher nothing to watch (its wait is cancelled), and the
  // new wait arrives ready, in the same pass. The second child's status is
  // taken first, behind the object's back: a wait on a child that can be
  // reaped would be settled in the call, without the watcher.
  io_context ctx;
  auto p1 = pausing_child(ctx);
  auto p2 = pausing_child(ctx);
  asio::cancellation_signal sig;
  exit_outcome first, second;
  p1.async_wait(asio::bind_cancellation_slot(sig.slot(), first.handler()));
  ctx.poll();
  ctx.restart();
  p1.signal(SIGKILL);
  p2.signal(SIGKILL);
  for (auto* p : {&p1, &p2}) {
    pollfd pfd{p->native_handle(), POLLIN, 0};
    REQUIRE(::poll(&pfd, 1, 10000) == 1);
  }
  siginfo_t stolen{};
  REQUIRE(::waitid(P_PID, static_cast<id_t>(p2.id()), &stolen, WEXITED) == 0);
  asio::post(ctx, [&] {
    sig.emit(asio::cancellation_type::terminal);
    p2.async_wait(second.handler());
  });
  ctx.run_for(std::chrono::seconds(20));
  CHECK(ctx.stopped()); // out of work, not out of time
  CHECK(first.result == asio::error::operation_aborted);
  CHECK(second.result == aspawn::errc::status_unavailable);
  CHECK(p1.wait() == SIGKILL); // the aborted wait left it unreaped
  CHECK_FALSE(test::has_children());
}

TEST_CASE("exit waits of many children complete on the watcher",
          "[watcher][process]") {
  io_context ctx;
  constexpr int n = 100; // more than one batch of the watcher's events
  std::vector<aspawn::process> ps;
  for (int i = 0; i < n; ++i)
    ps.push_back(pausing_child(ctx));
  int completed = 0;
  for (auto& p : ps)
    p.async_wait([&](error_code ec, int c) {
      CHECK_FALSE(ec);
      CHECK(c == SIGKILL);
      ++completed;
    });
  ctx.poll();
  CHECK(completed == 0);
  for (auto& p : ps)
    p.signal(SIGKILL);
  ctx.run();
  CHECK(completed == n);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("exit waits take their memory from blocks the pool keeps, one put "
          "by for each stack mapped",
          "[watcher][process]") {
  io_context ctx;
  auto& pool = aspawn::stack_pool::of(ctx);
  std::vector<aspawn::process> ps;
  for (int i = 0; i < 3; ++i)
    ps.push_back(pausing_child(ctx));
  const std::size_t stacks = pool.created();
  REQUIRE(stacks >= 1);
  CHECK(pool.wait_blocks_kept() == stacks);
  int completed = 0;
  for (auto& p : ps)
    p.async_wait([&](error_code ec, int code) {
      CHECK_FALSE(ec);
      CHECK(code == SIGKILL);
      ++completed;
    });
  ctx.poll();
  // Each wait holds a block: those put by first, then new ones.
  CHECK(pool.wait_blocks_kept() == stacks - std::min<std::size_t>(stacks, 3));
  for (auto& p : ps)
    p.signal(SIGKILL);
  ctx.run();
  CHECK(completed == 3);
  // Back before each handler ran, and kept for the next waits.
  const std::size_t kept = std::max<std::size_t>(stacks, 3);
  CHECK(pool.wait_blocks_kept() == kept);

  ctx.restart(); // run() ran out of work
  SECTION("no more are kept than max_cached()") {
    pool.set_max_cached(1);
    std::vector<aspawn::process> more;
    for (int i = 0; i < 3; ++i)
      more.push_back(pausing_child(ctx));
    for (auto& p : more)
      p.async_wait([&](error_code, int) { ++completed; });
    ctx.poll();
    for (auto& p : more)
      p.signal(SIGKILL);
    ctx.run();
    CHECK(completed == 6);
    CHECK(pool.wait_blocks_kept() <= kept);
    CHECK(pool.wait_blocks_kept() >= 1);
  }
  SECTION("a handler with an allocator of its own uses that allocator") {
    auto p = pausing_child(ctx);
    std::size_t allocated = 0;
    exit_outcome out;
    p.async_wait(asio::bind_allocator(counting<void>(&allocated),
                                      out.handler()));
    ctx.poll();
    CHECK(allocated >= 1);
    CHECK(pool.wait_blocks_kept() == kept); // none taken
    p.signal(SIGKILL);
    ctx.run();
    CHECK(out.done);
    CHECK(out.code == SIGKILL);
  }
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a wait on a child that has exited already is posted in a block "
          "the pool keeps, unless its handler has an allocator of its own "
          "or runs elsewhere (a strand, another io_context)",
          "[watcher][process]") {
  io_context ctx;
  auto& pool = aspawn::stack_pool::of(ctx);
  auto p = pausing_child(ctx);
  p.signal(SIGKILL);
  pollfd pfd{p.native_handle(), POLLIN, 0};
  REQUIRE(::poll(&pfd, 1, 10000) == 1); // exited, not reaped
  const std::size_t kept = pool.wait_blocks_kept();
  REQUIRE(kept >= 1);
  exit_outcome out;
  const int form = GENERATE(0, 1, 2, 3, 4, 5);
  CAPTURE(form);
  std::size_t allocated = 0;
  std::size_t kept_in_handler = 0;
  auto handler = [&](error_code ec, int c) {
    kept_in_handler = pool.wait_blocks_kept();
    out.handler()(ec, c);
  };
  auto strand = asio::make_strand(ctx);
  bool in_strand = false;
  io_context other;
  bool in_block = false;
  switch (form) {
  case 0: // the type-erased executor
    in_block = true;
    p.async_wait(handler);
    break;
  case 1: // the context's own
    in_block = true;
    p.async_wait(asio::bind_executor(ctx.get_executor(), handler));
    break;
  case 2: // the context's own, tracking work
    in_block = true;
    p.async_wait(asio::bind_executor(
        asio::prefer(ctx.get_executor(),
                     asio::execution::outstanding_work.tracked),
        handler));
    break;
  case 3: // an allocator of its own: posted as Asio posts it
    p.async_wait(asio::bind_allocator(counting<void>(&allocated), handler));
    break;
  case 4: // a strand: posted there, as before
    p.async_wait(asio::bind_executor(strand, [&](error_code ec, int c) {
      in_strand = strand.running_in_this_thread();
      handler(ec, c);
    }));
    break;
  default: // another context's: posted as Asio posts it, and runs there
    p.async_wait(asio::bind_executor(other.get_executor(), handler));
  }
  // Reaped in the call, completed later, never inside it.
  CHECK_FALSE(out.done);
  CHECK(pool.wait_blocks_kept() == (in_block ? kept - 1 : kept));
  ctx.poll();
  if (form == 5) {
    CHECK_FALSE(out.done);
    other.poll();
  }
  CHECK(out.done);
  CHECK_FALSE(out.result);
  CHECK(out.code == SIGKILL);
  CHECK(kept_in_handler == kept); // back before the handler ran
  CHECK(pool.wait_blocks_kept() == kept);
  if (form == 4)
    CHECK(in_strand);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a settled wait destroyed unrun at shutdown gives its block back",
          "[watcher][process][lifetime]") {
  test::inspectable_context ctx;
  auto& pool = aspawn::stack_pool::of(ctx);
  auto p = pausing_child(ctx);
  p.signal(SIGKILL);
  pollfd pfd{p.native_handle(), POLLIN, 0};
  REQUIRE(::poll(&pfd, 1, 10000) == 1);
  const std::size_t kept = pool.wait_blocks_kept();
  bool ran = false;
  p.async_wait([&](error_code, int) { ran = true; });
  CHECK(pool.wait_blocks_kept() == kept - 1);
  ctx.shutdown(); // destroys the queued completion
  CHECK_FALSE(ran);
  CHECK(pool.wait_blocks_kept() == kept);
  CHECK_FALSE(test::has_children()); // reaped in the call
}

TEST_CASE("an exit wait completes in the event loop pass that sees the exit",
          "[watcher][process]") {
  io_context ctx;
  // Both ways: the type-erased executor (run here without going through
  // the erasure) and the context's own.
  const bool erased = GENERATE(true, false);
  CAPTURE(erased);
  exit_outcome out;
  auto p = pausing_child(ctx);
  if (erased) {
    p.async_wait(out.handler());
  } else {
    p.async_wait(asio::bind_executor(ctx.get_executor(), out.handler()));
  }
  ctx.poll();
  REQUIRE_FALSE(out.done);
  p.signal(SIGKILL);
  pollfd pfd{p.native_handle(), POLLIN, 0};
  REQUIRE(::poll(&pfd, 1, 10000) == 1);
  // One handler: the watcher's wakeup, which resumes the wait and runs its
  // handler there.
  CHECK(ctx.run_one() == 1);
  CHECK(out.done);
  ctx.run();
  CHECK(out.code == SIGKILL);
  CHECK_FALSE(test::has_children());
}
