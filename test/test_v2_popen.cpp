// popen: a process that is a stream to its stdin and from its stdout.
#include "common.hpp"

using aspawn::error_code;
using test::asio::io_context;
namespace asio = test::asio;

TEST_CASE("popen: synchronous I/O", "[v2][popen]") {
  io_context ctx;
  aspawn::popen p(ctx, test::helper(), {"cat"});
  CHECK(p.is_open());
  CHECK(p.get_stdin().is_open());
  CHECK(p.get_stdout().is_open());
  CHECK(p.write_some(asio::buffer(std::string("ab"))) == 2);
  error_code ec;
  asio::write(p, asio::buffer(std::string("c\n")), ec);
  CHECK_FALSE(ec);
  std::string line;
  asio::read_until(p, asio::dynamic_buffer(line), '\n');
  CHECK(line == "abc\n");
  p.get_stdin().close();
  char c;
  CHECK(p.read_some(asio::buffer(&c, 1), ec) == 0);
  CHECK(ec == asio::error::eof);
  CHECK(p.wait() == 0);
}

TEST_CASE("popen: asynchronous I/O, a range of arguments, more initializers",
          "[v2][popen]") {
  io_context ctx;
  std::vector<std::string> args{"getenv", "WHO", "cat"};
  aspawn::popen p(ctx.get_executor(), test::helper(), args,
                  aspawn::process_environment{"WHO=popen"});
  std::string out;
  asio::async_write(p, asio::buffer(std::string("echoed")),
                    [&](error_code ec, std::size_t n) {
                      CHECK_FALSE(ec);
                      CHECK(n == 6);
                      p.get_stdin().close();
                    });
  asio::async_read(p, asio::dynamic_buffer(out),
                   [&](error_code ec, std::size_t) {
                     CHECK(ec == asio::error::eof);
                   });
  ctx.run();
  ctx.restart();
  CHECK(out == "WHO=popen\nechoed");
  int code = -1;
  p.async_wait([&](error_code ec, int c) {
    CHECK_FALSE(ec);
    code = c;
  });
  ctx.run();
  CHECK(code == 0);
}

TEST_CASE("popen: construction, moves and failures", "[v2][popen]") {
  io_context ctx;
  aspawn::popen empty(ctx);
  CHECK_FALSE(empty.is_open());
  CHECK_FALSE(empty.get_stdin().is_open());
  aspawn::popen empty2(ctx.get_executor());
  CHECK_FALSE(empty2.is_open());

  aspawn::basic_popen<io_context::executor_type> typed(ctx, test::helper(),
                                                       {"cat"});
  aspawn::popen erased(std::move(typed));
  CHECK(erased.get_stdout().is_open());
  aspawn::popen moved(std::move(erased));
  moved.get_stdin().close();
  CHECK(moved.wait() == 0);

  const auto fds = test::open_fds();
  CHECK_THROWS_AS(aspawn::popen(ctx, "/nonexistent/program", {}),
                  aspawn::system_error);
  CHECK(test::open_fds() == fds);
  CHECK_FALSE(test::has_children());

  using rebound = aspawn::popen::rebind_executor<
      io_context::executor_type>::other;
  static_assert(std::is_same_v<rebound::executor_type,
                               io_context::executor_type>);
}
