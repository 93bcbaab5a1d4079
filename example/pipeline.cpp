// A two-process pipeline wired with pipes the commands make, then a
// long-running child in a process group of its own that must not outlive
// this program, stopped gracefully.
#include <aspawn/aspawn.hpp>

#include <boost/asio.hpp>

#include <chrono>
#include <csignal>
#include <iostream>
#include <string>

namespace asio = boost::asio;

// `seq 1 100000 | wc -l`
asio::awaitable<void> pipeline() {
  auto ex = co_await asio::this_coro::executor;

  aspawn::command producer("seq", {"1", "100000"});
  producer.stdout_(aspawn::redirect::pipe());
  auto p1 = co_await aspawn::async_spawn(ex, producer, asio::use_awaitable);
  auto mid = p1.take_stdout_pipe();

  aspawn::command consumer("wc", {"-l"});
  consumer.stdin_(aspawn::redirect::from(mid))
      .stdout_(aspawn::redirect::pipe());
  auto p2 = co_await aspawn::async_spawn(ex, consumer, asio::use_awaitable);
  mid.close(); // the consumer holds its own copy

  auto out = p2.take_stdout_pipe();
  std::string count;
  co_await asio::async_read(out, asio::dynamic_buffer(count),
                            asio::as_tuple(asio::use_awaitable));
  int c1 = co_await p1.async_wait(asio::use_awaitable);
  int c2 = co_await p2.async_wait(asio::use_awaitable);
  std::cout << "seq | wc -l: " << count << "exit codes " << c1 << ", " << c2
            << "\n";
}

// A "server" (a shell running a worker in the background) in a group of its
// own: one signal reaches both; kill_on_parent_death() means neither would
// outlive this program even if it crashed.
asio::awaitable<void> server() {
  auto ex = co_await asio::this_coro::executor;

  aspawn::command sh("/bin/sh", {"-c", "sleep 30 & wait"});
  sh.process_group(0).kill_on_parent_death();
  auto p = co_await aspawn::async_spawn(ex, sh, asio::use_awaitable);

  asio::steady_timer pause(ex, std::chrono::milliseconds(100));
  co_await pause.async_wait(asio::use_awaitable);

  p.signal_group(SIGTERM); // the shell and its worker
  auto st = co_await p.async_stop(std::chrono::seconds(5), asio::use_awaitable);
  std::cout << "server: "
            << (st.signaled() ? "killed by signal " : "exited with ")
            << (st.signaled() ? st.term_signal() : st.exit_code()) << ", "
            << (st.user_time() + st.system_time()).count() << " us CPU\n";
}

int main() {
  asio::io_context ctx;
  auto report = [](std::exception_ptr e) {
    if (e)
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        std::cerr << "error: " << x.what() << "\n";
      }
  };
  asio::co_spawn(ctx, pipeline(), report);
  asio::co_spawn(ctx, server(), report);
  ctx.run();
}
