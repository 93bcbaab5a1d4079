// basic_process: members, signals through the pidfd, waits, destruction.
#include "common.hpp"

using aspawn::error_code;

#include <csignal>
#include <sys/wait.h>
#include <functional>
#include <memory>
#include <optional>

using aspawn::command;
using test::asio::io_context;

namespace {

aspawn::process spawn(io_context& ctx, const command& cmd) {
  aspawn::process out(ctx);
  bool done = false;
  aspawn::async_spawn(ctx, cmd, [&](error_code ec, aspawn::process p) {
    REQUIRE_FALSE(ec);
    out = std::move(p);
    done = true;
  });
  while (!done)
    ctx.run_one();
  ctx.restart();
  return out;
}

int wait_async(io_context& ctx, aspawn::process& p, error_code* err = nullptr) {
  int code = -100;
  bool done = false;
  p.async_wait([&](error_code ec, int c) {
    if (err)
      *err = ec;
    else
      CHECK_FALSE(ec);
    code = c;
    done = true;
  });
  while (!done)
    ctx.run_one();
  ctx.restart();
  return code;
}

} // namespace

TEST_CASE("a process object has the anatomy of an Asio I/O object",
          "[process]") {
  io_context ctx;
  aspawn::process empty(ctx.get_executor());
  CHECK_FALSE(empty.is_open());
  CHECK(empty.id() == -1);
  CHECK(empty.native_handle() == -1);
  error_code ec;
  CHECK_FALSE(empty.running(ec));
  CHECK(ec == aspawn::errc::no_process);
  empty.wait(ec);
  CHECK(ec == aspawn::errc::no_process);
  CHECK_THROWS_AS(empty.wait(), aspawn::system_error);

  static_assert(!std::is_copy_constructible_v<aspawn::process>);
  static_assert(std::is_nothrow_move_constructible_v<aspawn::process>);
  using strand_process = aspawn::process::rebind_executor<
      test::asio::strand<io_context::executor_type>>::other;
  static_assert(std::is_same_v<strand_process::executor_type,
                               test::asio::strand<io_context::executor_type>>);

  // Converting move from the context's own executor type.
  aspawn::basic_process<io_context::executor_type> typed(ctx);
  aspawn::process erased(std::move(typed));
  CHECK_FALSE(erased.is_open());
}

TEST_CASE("id, native_handle, running and exit codes", "[process]") {
  io_context ctx;
  auto p = spawn(ctx, test::helper_cmd({"exit", "3"}));
  CHECK(p.id() > 0);
  CHECK(p.native_handle() >= 0);
  CHECK(p.is_open());
  CHECK(p.native_exit_code() == aspawn::still_active);
  CHECK(wait_async(ctx, p) == 3);
  CHECK(p.exit_code() == 3);
  CHECK(WIFEXITED(p.native_exit_code()));
  CHECK_FALSE(p.running());
  // A second wait completes at once with the stored code.
  CHECK(wait_async(ctx, p) == 3);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("signals go through the pidfd", "[process][signals]") {
  io_context ctx;
  SECTION("interrupt") {
    auto p = spawn(ctx, test::helper_cmd({"pause"}));
    p.interrupt();
    CHECK(wait_async(ctx, p) == SIGINT);
  }
  SECTION("request_exit") {
    auto p = spawn(ctx, test::helper_cmd({"pause"}));
    p.request_exit();
    CHECK(wait_async(ctx, p) == SIGTERM);
    CHECK(WIFSIGNALED(p.native_exit_code()));
  }
  SECTION("terminate reaps the child") {
    auto p = spawn(ctx, test::helper_cmd({"pause"}));
    CHECK(p.running());
    p.terminate();
    CHECK_FALSE(p.running());
    CHECK(p.exit_code() == SIGKILL);
  }
  SECTION("suspend and resume") {
    auto p = spawn(ctx, test::helper_cmd({"pause"}));
    p.suspend();
    siginfo_t info{};
    REQUIRE(::waitid(P_PIDFD, static_cast<id_t>(p.native_handle()), &info,
                     WSTOPPED) == 0);
    CHECK(info.si_code == CLD_STOPPED);
    p.resume();
    REQUIRE(::waitid(P_PIDFD, static_cast<id_t>(p.native_handle()), &info,
                     WCONTINUED) == 0);
    CHECK(info.si_code == CLD_CONTINUED);
    p.terminate();
  }
  SECTION("signalling a reaped child is harmless") {
    auto p = spawn(ctx, test::helper_cmd({"exit", "0"}));
    CHECK(wait_async(ctx, p) == 0);
    error_code ec;
    p.request_exit(ec);
    CHECK_FALSE(ec);
  }
  CHECK_FALSE(test::has_children());
}

TEST_CASE("the synchronous wait blocks until exit", "[process]") {
  io_context ctx;
  auto p = spawn(ctx, test::helper_cmd({"sleep", "20", "exit", "9"}));
  CHECK(p.wait() == 9);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a wait for a child that has exited already reaps it at once and "
          "still completes through the context",
          "[process]") {
  io_context ctx;
  // Until `p`'s child has exited, leaving it unreaped.
  auto until_exited = [](aspawn::process& p) {
    siginfo_t info{};
    REQUIRE(::waitid(P_PID, static_cast<id_t>(p.id()), &info,
                     WEXITED | WNOWAIT) == 0);
  };
  auto zombie = [&](const command& cmd) {
    auto p = spawn(ctx, cmd);
    until_exited(p);
    return p;
  };
  SECTION("an exit code") {
    auto p = zombie(test::helper_cmd({"exit", "7"}));
    bool done = false;
    error_code result = make_error_code(aspawn::errc::no_process);
    int code = -1;
    p.async_wait([&](error_code ec, int c) {
      result = ec;
      code = c;
      done = true;
    });
    CHECK_FALSE(done); // never inside the initiating call
    CHECK_FALSE(test::has_children()); // reaped by the call itself
    ctx.run();
    CHECK(done);
    CHECK_FALSE(result);
    CHECK(code == 7);
    CHECK(p.exit_code() == 7);
  }
  SECTION("a signal, with the child's resource usage") {
    auto p = spawn(ctx, test::helper_cmd({"pause"}));
    p.request_exit();
    until_exited(p);
    int code = -1;
    p.async_wait([&](error_code ec, int c) {
      CHECK_FALSE(ec);
      code = c;
    });
    CHECK_FALSE(test::has_children());
    ctx.run();
    CHECK(code == SIGTERM);
    CHECK(WIFSIGNALED(p.native_exit_code()));
    CHECK(p.status().max_rss_bytes() > 0);
  }
  SECTION("two waits at once: the first reaps, both complete") {
    auto p = zombie(test::helper_cmd({"exit", "4"}));
    int first = -1, second = -1;
    p.async_wait([&](error_code, int c) { first = c; });
    p.async_wait([&](error_code, int c) { second = c; });
    ctx.run();
    CHECK(first == 4);
    CHECK(second == 4);
    ctx.restart();
    CHECK(wait_async(ctx, p) == 4);
  }
  SECTION("cancelled before its handler runs: the status is delivered") {
    auto p = zombie(test::helper_cmd({"exit", "5"}));
    test::asio::cancellation_signal sig;
    error_code result = make_error_code(aspawn::errc::no_process);
    int code = -1;
    p.async_wait(test::asio::bind_cancellation_slot(
        sig.slot(), [&](error_code ec, int c) {
          result = ec;
          code = c;
        }));
    sig.emit(test::asio::cancellation_type::terminal);
    ctx.run();
    CHECK_FALSE(result);
    CHECK(code == 5);
  }
  SECTION("the object destroyed before the handler runs") {
    auto p = std::make_unique<aspawn::process>(
        zombie(test::helper_cmd({"exit", "6"})));
    int code = -1;
    p->async_wait([&](error_code ec, int c) {
      CHECK_FALSE(ec);
      code = c;
    });
    p.reset(); // the completion reads nothing of it
    ctx.run();
    CHECK(code == 6);
  }
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a cancelled wait leaves the child alone", "[process][cancel]") {
  io_context ctx;
  auto p = spawn(ctx, test::helper_cmd({"pause"}));
  test::expect_wait_pending_then_cancelled(ctx, p);
  CHECK(p.running());
  p.terminate();
  CHECK(p.exit_code() == SIGKILL);
}

TEST_CASE("a process object may be destroyed inside its own wait's handler",
          "[process][lifetime]") {
  // As a program does that lets a process go once it has its exit code: on
  // the pool's watcher (one wait), and on the object's own descriptor (a
  // second wait at the same time), each handler destroying the object when
  // it is the last to run; the next launch starts from there. The first six
  // children sleep, so that their waits are watched; the last two exit at
  // once, so that theirs are mostly settled in the call.
  io_context ctx;
  std::optional<aspawn::process> slot;
  int codes = 0;
  int launches = 0;
  const command sleeper = test::helper_cmd({"sleep", "20", "exit", "3"});
  const command quick = test::helper_cmd({"exit", "3"});
  std::function<void()> next = [&] {
    if (++launches > 8)
      return;
    aspawn::async_spawn(
        ctx, launches <= 6 ? sleeper : quick,
        [&](error_code ec, aspawn::process p) {
          REQUIRE_FALSE(ec);
          slot.emplace(std::move(p));
          const int waits = launches % 2 == 0 ? 2 : 1;
          auto pending = std::make_shared<int>(waits);
          for (int i = 0; i < waits; ++i)
            slot->async_wait([&, pending](error_code wec, int code) {
              CHECK_FALSE(wec);
              CHECK(code == 3);
              ++codes;
              if (--*pending == 0) {
                slot.reset(); // the object whose wait this is
                next();
              }
            });
        });
  };
  next();
  ctx.run();
  CHECK(codes == 12); // 4 launches with one wait, 4 with two
  CHECK_FALSE(slot);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("destroying a running process kills and reaps it without blocking",
          "[process][lifetime]") {
  io_context ctx;
  {
    auto p = spawn(ctx, test::helper_cmd({"pause"}));
    CHECK(p.running());
  } // killed here, reaped by the reaper
  ctx.run();
  CHECK_FALSE(test::has_children());
  CHECK(test::asio::use_service<aspawn::detail::reaper>(ctx).pending() == 0);
}

TEST_CASE("a detached child keeps running and is reaped when it exits",
          "[process][lifetime]") {
  io_context ctx;
  test::pipe_pair done;
  {
    auto p = spawn(ctx, test::helper_cmd({"wait-fd", "3", "exit", "0"})
                            .map_fd(3, done.rd));
    int pid = p.id();
    p.detach();
    CHECK_FALSE(p.is_open());
    CHECK(::kill(pid, 0) == 0); // still running
  }
  REQUIRE(::write(done.wr, "x", 1) == 1);
  ctx.run(); // the reaper collects it
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a status stolen by waitpid(-1) is a clear error, not a hang",
          "[process][coexistence]") {
  io_context ctx;
  auto p = spawn(ctx, test::helper_cmd({"exit", "0"}));
  int status;
  REQUIRE(::waitpid(-1, &status, 0) == p.id()); // the rogue reaper
  error_code ec;
  wait_async(ctx, p, &ec);
  CHECK(ec == aspawn::errc::status_unavailable);
  CHECK(ec.message().find("collected elsewhere") != std::string::npos);
}

TEST_CASE("a detached child outlives its io_context", "[process][lifetime]") {
  auto ctx = std::make_unique<io_context>();
  int pid;
  {
    auto p = spawn(*ctx, test::helper_cmd({"pause"}));
    pid = p.id();
    p.detach(); // the reaper owns it now
  }
  ctx.reset(); // shutdown: a detached, running child is left to run
  CHECK(::kill(pid, 0) == 0);
  ::kill(pid, SIGKILL);
  int status;
  CHECK(::waitpid(pid, &status, 0) == pid);
}

TEST_CASE("destroying the io_context reaps the children killed by destructors",
          "[process][lifetime]") {
  auto ctx = std::make_unique<io_context>();
  {
    auto p = spawn(*ctx, test::helper_cmd({"pause"}));
  } // killed; the reaper has not run yet
  ctx.reset(); // the reaper's shutdown reaps it
  CHECK_FALSE(test::has_children());
}
