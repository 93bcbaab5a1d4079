// The pool's status-pipe watcher, and the descriptor path it falls back to.
#include "common.hpp"

#include <array>
#include <future>
#include <memory>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
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

struct inspectable_context : io_context {
  using io_context::shutdown;
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
    inspectable_context ctx;
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
  // report together, in one wakeup (two launches posted, the last
  // dispatched).
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
