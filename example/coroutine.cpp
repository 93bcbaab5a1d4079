// Launch a command from a C++20 coroutine, capture its output, wait for it.
#include <aspawn/aspawn.hpp>

#include <boost/asio.hpp>

#include <iostream>

namespace asio = boost::asio;

asio::awaitable<void> show_kernel() {
  auto ex = co_await asio::this_coro::executor;

  aspawn::command uname("uname", {"-sr"});
  uname.stdout_(aspawn::redirect::pipe()); // a new pipe for each launch

  auto child = co_await aspawn::async_spawn(ex, uname, asio::use_awaitable);
  auto out = child.take_stdout_pipe(); // the parent's end, an Asio pipe

  std::string text;
  // Reads until EOF: the child exited, closing its end.
  auto [ec, n] = co_await asio::async_read(out, asio::dynamic_buffer(text),
                                           asio::as_tuple(asio::use_awaitable));
  if (ec != asio::error::eof)
    std::cerr << "read: " << ec.message() << "\n";
  int code = co_await child.async_wait(asio::use_awaitable);
  std::cout << "pid " << child.id() << " printed: " << text
            << "exit code: " << code << "\n";
}

int main() {
  asio::io_context ctx;
  asio::co_spawn(ctx, show_kernel(), [](std::exception_ptr e) {
    if (e)
      std::rethrow_exception(e);
  });
  ctx.run();
}
