// Every completion token kind, and the handler contract.
#include "common.hpp"

using aspawn::error_code;

#include <future>

using aspawn::command;
using test::asio::io_context;
namespace asio = test::asio;

TEST_CASE("a plain callback", "[tokens]") {
  io_context ctx;
  int code = -1;
  aspawn::async_execute(ctx, test::helper_cmd({"exit", "4"}),
                        [&](error_code ec, int c) {
                          CHECK_FALSE(ec);
                          code = c;
                        });
  ctx.run();
  CHECK(code == 4);
}

TEST_CASE("a move-only callback", "[tokens]") {
  io_context ctx;
  int seen = -1;
  auto owned = std::make_unique<int*>(&seen);
  aspawn::async_spawn(ctx, test::helper_cmd({"exit", "6"}),
                      [o = std::move(owned)](error_code ec,
                                             aspawn::process p) mutable {
                        REQUIRE_FALSE(ec);
                        **o = p.wait();
                      });
  ctx.run();
  CHECK(seen == 6);
}

TEST_CASE("use_future", "[tokens]") {
  io_context ctx;
  auto guard = asio::make_work_guard(ctx);
  std::thread runner([&] { ctx.run(); });
  auto f = aspawn::async_execute(ctx, test::helper_cmd({"exit", "8"}),
                                 asio::use_future);
  CHECK(f.get() == 8);
  auto bad = aspawn::async_spawn(ctx, command("/nonexistent"),
                                 asio::use_future);
  CHECK_THROWS_AS(bad.get(), boost::system::system_error);
  guard.reset();
  runner.join();
}

TEST_CASE("use_awaitable", "[tokens]") {
  io_context ctx;
  int code = -1;
  command cmd = test::helper_cmd({"exit", "11"});
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        auto p = co_await aspawn::async_spawn(ex, cmd, asio::use_awaitable);
        code = co_await p.async_wait(asio::use_awaitable);
      },
      asio::detached);
  ctx.run();
  CHECK(code == 11);
}

TEST_CASE("deferred", "[tokens]") {
  io_context ctx;
  command cmd = test::helper_cmd({"exit", "12"});
  auto op = aspawn::async_execute(ctx, cmd, asio::deferred);
  int code = -1;
  std::move(op)([&](error_code ec, int c) {
    CHECK_FALSE(ec);
    code = c;
  });
  ctx.run();
  CHECK(code == 12);
}

TEST_CASE("as_tuple and redirect_error adapt the completion", "[tokens]") {
  io_context ctx;
  error_code ec;
  aspawn::async_spawn(ctx, command("/nonexistent"),
                      asio::redirect_error(
                          [](aspawn::process p) { CHECK_FALSE(p.is_open()); },
                          ec));
  ctx.run();
  CHECK(ec == boost::system::errc::no_such_file_or_directory);
}

TEST_CASE("handlers never run inside the initiating call", "[tokens]") {
  io_context ctx;
  bool ran = false;
  aspawn::async_spawn(ctx, command(), [&](error_code, aspawn::process) {
    ran = true;
  });
  CHECK_FALSE(ran); // even an immediate failure is posted
  aspawn::async_spawn(ctx, command("/bin/true"),
                      [&](error_code, aspawn::process) { ran = true; });
  CHECK_FALSE(ran);
  ctx.run();
  CHECK(ran);
}

TEST_CASE("the handler's associated executor is honoured", "[tokens]") {
  io_context ctx;
  auto strand = asio::make_strand(ctx);
  bool in_strand = false;
  aspawn::async_execute(ctx, command("/bin/true"),
                        asio::bind_executor(strand, [&](error_code, int) {
                          in_strand = strand.running_in_this_thread();
                        }));
  ctx.run();
  CHECK(in_strand);
}

namespace {
std::atomic<int> allocations{0};

template <typename T> struct counting_allocator {
  using value_type = T;
  counting_allocator() = default;
  template <typename U> counting_allocator(const counting_allocator<U>&) {}
  T* allocate(std::size_t n) {
    ++allocations;
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, std::size_t n) { std::allocator<T>().deallocate(p, n); }
  bool operator==(const counting_allocator&) const { return true; }
  bool operator!=(const counting_allocator&) const { return false; }
};
} // namespace

TEST_CASE("the handler's associated allocator is honoured", "[tokens]") {
  io_context ctx;
  allocations = 0;
  int code = -1;
  aspawn::async_execute(
      ctx, test::helper_cmd({"exit", "2"}),
      asio::bind_allocator(counting_allocator<void>(),
                           [&](error_code, int c) { code = c; }));
  ctx.run();
  CHECK(code == 2);
  CHECK(allocations > 0);
}

TEST_CASE("cancelling a launch kills and reaps the child", "[tokens][cancel]") {
  io_context ctx;
  asio::cancellation_signal sig;
  error_code result;
  // The child blocks before exec, so the launch is pending when cancelled.
  test::pipe_pair never;
  command cmd = test::helper_cmd({"exit", "0"});
  cmd.inherit_fd(never.rd).child_function(test::block_on_fd, &never.rd,
                                          sizeof never.rd);
  aspawn::async_spawn(ctx, cmd,
                      asio::bind_cancellation_slot(
                          sig.slot(), [&](error_code ec, aspawn::process p) {
                            result = ec;
                            CHECK_FALSE(p.is_open());
                          }));
  ctx.poll();
  sig.emit(asio::cancellation_type::terminal);
  ctx.run();
  CHECK(result == asio::error::operation_aborted);
  CHECK_FALSE(test::has_children());
  CHECK(aspawn::stack_pool::of(ctx).in_use() == 0);
}
