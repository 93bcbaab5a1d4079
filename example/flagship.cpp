// Why aspawn exists: thousands of launches from one event-loop thread that
// never stalls. Launches a mix of commands with a fixed number in flight,
// while a 1 ms timer keeps ticking on the same thread, then prints the launch
// rate, the time the thread spent inside each launch call, how late the timer
// ever was, and the exit codes.
//
//   aspawn-flagship [launches] [in-flight]
#include <aspawn/aspawn.hpp>

#include <boost/asio.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

int main(int argc, char** argv) {
  const int total = argc > 1 ? std::atoi(argv[1]) : 5000;
  const int in_flight = argc > 2 ? std::atoi(argv[2]) : 16;
  if (total <= 0 || in_flight <= 0) {
    std::fprintf(stderr, "usage: %s [launches > 0] [in-flight > 0]\n", argv[0]);
    return 2;
  }

  // Prepared once, launched thousands of times.
  std::vector<aspawn::command> commands;
  commands.emplace_back("true");
  commands.emplace_back("false");
  commands.emplace_back("sh", std::initializer_list<std::string_view>{"-c", "exit 3"});
  commands.emplace_back("/no/such/program");
  for (auto& c : commands) {
    c.stdout_(aspawn::redirect::null()).stderr_(aspawn::redirect::null());
    c.prepare();
  }

  asio::io_context ctx;
  std::map<std::string, int> outcomes;
  std::vector<double> in_call_us;
  in_call_us.reserve(static_cast<std::size_t>(total));
  int started = 0, finished = 0;

  // A ticking timer on the same thread: a blocking launcher would make it
  // late.
  asio::steady_timer tick(ctx);
  auto max_late = clock_type::duration::zero();
  long ticks = 0;
  std::function<void(clock_type::time_point)> arm =
      [&](clock_type::time_point due) {
        tick.expires_at(due);
        tick.async_wait([&, due](aspawn::error_code ec) {
          if (ec)
            return;
          max_late = std::max(max_late, clock_type::now() - due);
          ++ticks;
          if (finished < total)
            arm(due + std::chrono::milliseconds(1));
        });
      };
  arm(clock_type::now() + std::chrono::milliseconds(1));

  std::function<void()> launch_one = [&] {
    const auto& cmd = commands[static_cast<std::size_t>(started) % commands.size()];
    ++started;
    auto t0 = clock_type::now();
    aspawn::async_execute(ctx, cmd, [&](aspawn::error_code ec, int code) {
      ++finished;
      if (ec)
        ++outcomes["launch error: " + ec.message()];
      else
        ++outcomes["exit code " + std::to_string(code)];
      if (started < total)
        launch_one();
      else if (finished == total)
        tick.cancel();
    });
    in_call_us.push_back(
        std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
  };

  auto start = clock_type::now();
  for (int i = 0; i < std::min(in_flight, total); ++i)
    launch_one();
  ctx.run();
  double secs = std::chrono::duration<double>(clock_type::now() - start).count();

  std::sort(in_call_us.begin(), in_call_us.end());
  auto pct = [&](double p) {
    return in_call_us[static_cast<std::size_t>(p * (in_call_us.size() - 1))];
  };
  auto& pool = aspawn::stack_pool::of(ctx);

  std::printf("aspawn flagship: %d launches, %d in flight, one thread\n", total,
              in_flight);
  std::printf("  rate:            %.0f launches/s (%.2f s)\n", total / secs, secs);
  std::printf("  in-call time:    median %.1f us, p99 %.1f us, max %.1f us\n",
              pct(0.5), pct(0.99), in_call_us.back());
  std::printf("  1 ms timer:      %ld ticks, at most %.2f ms late\n", ticks,
              std::chrono::duration<double, std::milli>(max_late).count());
  std::printf("  stacks:          %zu mapped, %zu cached, %zu in use\n",
              pool.created(), pool.cached(), pool.in_use());
  std::printf("  outcomes:\n");
  for (auto& [what, n] : outcomes)
    std::printf("    %6d  %s\n", n, what.c_str());
  return finished == total ? 0 : 1;
}
