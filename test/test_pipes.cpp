// Pipes the command makes at each launch (`redirect::pipe()`), handed back
// with the process.
#include "common.hpp"

#include <optional>
#include <string>
#include <vector>

using aspawn::command;
using aspawn::redirect;
using test::asio::io_context;
namespace asio = boost::asio;

namespace {

// Reads `pipe` to end-of-file from a coroutine. (Results of co_await are
// checked outside Catch's macros: GCC 12 mishandles temporaries across a
// suspension inside them.)
template <typename Pipe>
asio::awaitable<std::string> co_read_all(Pipe& pipe) {
  std::string text;
  auto [ec, n] = co_await asio::async_read(pipe, asio::dynamic_buffer(text),
                                           asio::as_tuple(asio::use_awaitable));
  CHECK(ec == asio::error::eof);
  co_return text;
}

// Runs `body` as a coroutine on a fresh io_context until it is done.
template <typename Body> void run_coro(Body body) {
  io_context ctx;
  bool done = false;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        co_await body(co_await asio::this_coro::executor);
        done = true;
      },
      [](std::exception_ptr e) {
        if (e)
          std::rethrow_exception(e);
      });
  ctx.run();
  CHECK(done);
}

} // namespace

TEST_CASE("stdout and stderr captured through pipes the command makes",
          "[pipes]") {
  auto before = test::open_fds();
  run_coro([](auto ex) -> asio::awaitable<void> {
    command cmd(test::helper(), {"echo", "to stdout", "echoerr", "to stderr"});
    cmd.stdout_(redirect::pipe()).stderr_(redirect::pipe());
    auto p = co_await aspawn::async_spawn(ex, cmd, asio::use_awaitable);
    CHECK(p.has_pipe(1));
    CHECK(p.has_pipe(2));
    CHECK_FALSE(p.has_pipe(0));
    auto out = p.take_stdout_pipe();
    auto err = p.take_stderr_pipe();
    REQUIRE(out.is_open());
    REQUIRE(err.is_open());
    CHECK_FALSE(p.has_pipe(1));
    // The parent's ends never reach another child.
    CHECK(test::is_cloexec(out.native_handle()));
    CHECK(test::is_cloexec(err.native_handle()));
    {
      auto got_ = co_await co_read_all(out);
      CHECK(got_ == "to stdout\n");
    }
    {
      auto got_ = co_await co_read_all(err);
      CHECK(got_ == "to stderr\n");
    }
    {
      auto got_ = co_await p.async_wait(asio::use_awaitable);
      CHECK(got_ == 0);
    }
  });
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("stdin fed through a pipe the command makes", "[pipes]") {
  run_coro([](auto ex) -> asio::awaitable<void> {
    command cat(test::helper(), {"cat"});
    cat.stdin_(redirect::pipe()).stdout_(redirect::pipe());
    auto p = co_await aspawn::async_spawn(ex, cat, asio::use_awaitable);
    auto in = p.take_stdin_pipe();
    auto out = p.take_stdout_pipe();
    std::string text(200000, 'x'); // more than a pipe holds
    for (std::size_t i = 0; i < text.size(); i += 997)
      text[i] = static_cast<char>('a' + i % 26);
    // Write and read at once: the child blocks when its stdout is full.
    bool written = false;
    asio::co_spawn(
        ex,
        [&]() -> asio::awaitable<void> {
          co_await asio::async_write(in, asio::buffer(text),
                                     asio::use_awaitable);
          in.close(); // end-of-file for cat
          written = true;
        },
        asio::detached);
    std::string got = co_await co_read_all(out);
    CHECK(written);
    CHECK(got.size() == text.size());
    CHECK(got == text);
    {
      auto got_ = co_await p.async_wait(asio::use_awaitable);
      CHECK(got_ == 0);
    }
  });
  CHECK_FALSE(test::has_children());
}

TEST_CASE("each launch of a prepared command gets pipes of its own",
          "[pipes][templates]") {
  auto before = test::open_fds();
  constexpr int n = 8;
  std::vector<std::string> got(n);
  run_coro([&](auto ex) -> asio::awaitable<void> {
    command cat(test::helper(), {"cat"});
    cat.stdin_(redirect::pipe()).stdout_(redirect::pipe());
    REQUIRE_FALSE(cat.prepare());
    std::vector<aspawn::process> procs;
    for (int i = 0; i < n; ++i)
      procs.push_back(
          co_await aspawn::async_spawn(ex, cat, asio::use_awaitable));
    // Feed every child before reading any: each has its own pipes.
    for (int i = 0; i < n; ++i) {
      auto in = procs[i].take_stdin_pipe();
      std::string text = "child " + std::to_string(i) + "\n";
      co_await asio::async_write(in, asio::buffer(text), asio::use_awaitable);
    } // each stdin pipe closes here: end-of-file for its cat
    for (int i = 0; i < n; ++i) {
      auto out = procs[i].take_stdout_pipe();
      got[i] = co_await co_read_all(out);
      {
        auto got_ = co_await procs[i].async_wait(asio::use_awaitable);
        CHECK(got_ == 0);
      }
    }
  });
  for (int i = 0; i < n; ++i)
    CHECK(got[i] == "child " + std::to_string(i) + "\n");
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("pipes work whatever descriptor numbers they get in the parent",
          "[pipes]") {
  // Targets far above the descriptors the pipes get: the child's pipe ends
  // start below the named fds and must move out of their way.
  test::pipe_pair a, b;
  command cmd(test::helper(), {"fds", "echo", "done"});
  cmd.stdout_(redirect::pipe())
      .stderr_(redirect::to_stdout())
      .map_fd(60, a.wr)
      .map_fd(61, b.wr);
  std::string text;
  run_coro([&](auto ex) -> asio::awaitable<void> {
    auto p = co_await aspawn::async_spawn(ex, cmd, asio::use_awaitable);
    auto out = p.take_stdout_pipe();
    CHECK(out.native_handle() < 60);
    text = co_await co_read_all(out);
    {
      auto got_ = co_await p.async_wait(asio::use_awaitable);
      CHECK(got_ == 0);
    }
  });
  CHECK(text == "fds=0 1 2 60 61\ndone\n");
}

TEST_CASE("pipes not taken are closed with the process", "[pipes]") {
  auto before = test::open_fds();
  {
    io_context ctx;
    command cmd(test::helper(), {"cat"});
    cmd.stdin_(redirect::pipe()).stdout_(redirect::pipe());
    int code = -1;
    std::optional<aspawn::process> keep;
    aspawn::async_spawn(ctx, cmd, [&](error_code ec, aspawn::process p) {
      REQUIRE_FALSE(ec);
      keep.emplace(std::move(p));
      // The stdin pipe closes with the process object below: cat sees EOF.
      auto in = keep->take_stdin_pipe();
      CHECK(in.is_open());
      CHECK_FALSE(keep->take_stdin_pipe().is_open()); // taken already
      keep->async_wait([&](error_code ec2, int c) {
        CHECK_FALSE(ec2);
        code = c;
      });
    });
    ctx.run();
    CHECK(code == 0);
    CHECK(keep->has_pipe(1)); // stdout was never taken
  }
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a failed launch leaves no pipe behind", "[pipes][errors]") {
  command cmd(test::helper(), {"echo", "never"});
  cmd.stdin_(redirect::pipe())
      .stdout_(redirect::pipe())
      .stderr_(redirect::pipe())
      .chdir("/no/such/directory");
  test::expect_step_failure(cmd, aspawn::step_kind::chdir, ENOENT);

  // Nor does a launch that fails before any clone.
  auto before = test::open_fds();
  command bad("/no/such/program");
  bad.stdout_(redirect::pipe());
  CHECK(test::run_error(bad));
  CHECK(test::open_fds() == before);
}

TEST_CASE("async_execute refuses a command whose pipes nobody could take",
          "[pipes][errors]") {
  auto before = test::open_fds();
  command cat(test::helper(), {"cat"});
  cat.stdin_(redirect::pipe());
  int code = 0;
  auto ec = test::run_error(cat, &code);
  CHECK(ec == aspawn::errc::unclaimed_pipes);
  CHECK(ec == boost::system::errc::invalid_argument);
  CHECK(code == -1);
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a pipeline wired with command pipes: producer | consumer",
          "[pipes][templates]") {
  std::string text;
  run_coro([&](auto ex) -> asio::awaitable<void> {
    command producer(test::helper(), {"count-to-stdout", "100000"});
    producer.stdout_(redirect::pipe());
    auto p1 = co_await aspawn::async_spawn(ex, producer, asio::use_awaitable);
    auto mid = p1.take_stdout_pipe();

    command consumer("wc", {"-c"});
    consumer.stdin_(redirect::from(mid)).stdout_(redirect::pipe());
    auto p2 = co_await aspawn::async_spawn(ex, consumer, asio::use_awaitable);
    mid.close(); // the consumer holds its own copy
    auto out = p2.take_stdout_pipe();
    text = co_await co_read_all(out);
    {
      auto got_ = co_await p1.async_wait(asio::use_awaitable);
      CHECK(got_ == 0);
    }
    {
      auto got_ = co_await p2.async_wait(asio::use_awaitable);
      CHECK(got_ == 0);
    }
  });
  CHECK(text == "100000\n");
  CHECK_FALSE(test::has_children());
}
