// execute and async_execute on a process object, with v2's cancellation.
#include "common.hpp"

#include <csignal>
#include <future>

using aspawn::error_code;
using test::asio::io_context;
namespace asio = test::asio;

TEST_CASE("execute waits and returns the exit code", "[v2][execute]") {
  io_context ctx;
  CHECK(aspawn::execute(aspawn::process(ctx, test::helper(), {"exit", "4"})) ==
        4);
  aspawn::process p(ctx, test::helper(), {"raise", "15"});
  CHECK(aspawn::execute(std::move(p)) == SIGTERM);
  CHECK_FALSE(p.is_open()); // moved into execute

  error_code ec;
  CHECK(aspawn::execute(aspawn::process(ctx, test::helper(), {"exit", "5"}),
                        ec) == 5);
  CHECK_FALSE(ec);
  CHECK(aspawn::execute(aspawn::process(ctx), ec) == -1);
  CHECK(ec == aspawn::errc::no_process);
  CHECK_THROWS_AS(aspawn::execute(aspawn::process(ctx)), aspawn::system_error);
}

TEST_CASE("async_execute on a process object", "[v2][execute]") {
  io_context ctx;

  SECTION("a callback") {
    int code = -1;
    aspawn::async_execute(aspawn::process(ctx, test::helper(), {"exit", "6"}),
                          [&](error_code ec, int c) {
                            CHECK_FALSE(ec);
                            code = c;
                          });
    ctx.run();
    CHECK(code == 6);
  }

  SECTION("a future") {
    auto f = aspawn::async_execute(
        aspawn::process(ctx, test::helper(), {"exit", "7"}), asio::use_future);
    ctx.run();
    CHECK(f.get() == 7);
  }

  SECTION("deferred, on a typed executor") {
    aspawn::basic_process<io_context::executor_type> p(ctx, test::helper(),
                                                       {"exit", "8"});
    auto op = aspawn::async_execute(std::move(p), asio::deferred);
    int code = -1;
    std::move(op)([&](error_code ec, int c) {
      CHECK_FALSE(ec);
      code = c;
    });
    ctx.run();
    CHECK(code == 8);
  }

  SECTION("an empty process") {
    error_code result;
    aspawn::async_execute(aspawn::process(ctx),
                          [&](error_code ec, int) { result = ec; });
    ctx.run();
    CHECK(result == aspawn::errc::no_process);
  }
}

TEST_CASE("async_execute cancellation maps to signals", "[v2][execute]") {
  io_context ctx;
  struct mapping {
    asio::cancellation_type type;
    int signal;
  };
  for (auto [type, sig] :
       {mapping{asio::cancellation_type::total, SIGINT},
        mapping{asio::cancellation_type::partial, SIGTERM},
        mapping{asio::cancellation_type::terminal, SIGKILL},
        // Several at once: the mildest applies.
        mapping{asio::cancellation_type::terminal |
                    asio::cancellation_type::partial,
                SIGTERM}}) {
    asio::cancellation_signal cancel;
    error_code result;
    int code = -1;
    aspawn::async_execute(aspawn::process(ctx, test::helper(), {"pause"}),
                          asio::bind_cancellation_slot(
                              cancel.slot(), [&](error_code ec, int c) {
                                result = ec;
                                code = c;
                              }));
    asio::post(ctx, [&, type = type] { cancel.emit(type); });
    ctx.run();
    ctx.restart();
    CHECK_FALSE(result); // the operation waits for the child to exit
    CHECK(code == sig);
  }
}

TEST_CASE("async_execute: a child that handles the signal keeps running "
          "until it exits",
          "[v2][execute]") {
  io_context ctx;
  asio::cancellation_signal cancel;
  int code = -1;
  // SIGTERM ignored: partial cancellation cannot stop it; terminal can.
  aspawn::async_execute(
      aspawn::process(ctx, test::helper(), {"pause"},
                      [](aspawn::command& c) {
                        c.signal_ignore(test::sigbit(SIGTERM));
                      }),
      asio::bind_cancellation_slot(cancel.slot(),
                                   [&](error_code, int c) { code = c; }));
  asio::post(ctx, [&] {
    cancel.emit(asio::cancellation_type::partial);
    asio::post(ctx, [&] {
      CHECK(code == -1);
      cancel.emit(asio::cancellation_type::terminal);
    });
  });
  ctx.run();
  CHECK(code == SIGKILL);
}
