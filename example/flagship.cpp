// Why aspawn exists: thousands of launches from one event-loop thread that
// stays responsive. Launches a mix of commands with a fixed number in
// flight, while a 1 ms timer keeps ticking on the same thread, then prints
// the launch rate, the time the thread spent inside each launch call, how
// late the timer was (median, p99, worst) and the exit codes.
//
// "Never blocks" means: a launch call returns without waiting for the child
// (no wait for its exec, no blocking read, no waitpid), and the clone itself
// runs on the pool's launch thread, so the event loop's share of a launch is
// a few microseconds. It does not mean the loop gets more than its share of
// the CPU: with more children starting than there are cores, every thread
// of the machine runs late. To show that share, a bystander process in the
// same session runs only a 1 ms timer meanwhile, and its lateness is
// printed beside the loop's: the difference is what the launcher costs its
// own thread. Measured on a 2-core VM with 16 in flight, see README.md,
// "Performance".
//
//   aspawn-flagship [launches] [in-flight]
#include <aspawn/aspawn.hpp>

#include <boost/asio.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <thread>
#include <memory>
#include <string>
#include <vector>

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace {

// A 1 ms timer on `ctx`, cyclictest-style: deadlines on a 1 ms grid, each
// tick's lateness recorded; grid points already past are skipped.
struct ticker {
  asio::steady_timer timer;
  std::vector<double> late_ms;
  bool stopped = false;
  explicit ticker(asio::io_context& ctx) : timer(ctx) {
    late_ms.reserve(1 << 16);
    arm(clock_type::now() + std::chrono::milliseconds(1));
  }
  void arm(clock_type::time_point due) {
    timer.expires_at(due);
    timer.async_wait([this, due](aspawn::error_code ec) {
      if (ec || stopped)
        return;
      auto now = clock_type::now();
      late_ms.push_back(std::chrono::duration<double, std::milli>(now - due).count());
      auto next = due + std::chrono::milliseconds(1);
      while (next <= now)
        next += std::chrono::milliseconds(1);
      arm(next);
    });
  }
  void stop() {
    stopped = true;
    timer.cancel();
  }
};

double percentile(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

// The bystander: a process of its own (forked before anything else runs,
// in this session) with only a 1 ms timer, until `stop_fd` reaches EOF;
// it then writes "p50 p99 max" (ms) to `out_fd`.
[[noreturn]] void bystander(int stop_fd, int out_fd) {
  asio::io_context ctx;
  ticker t(ctx);
  asio::posix::stream_descriptor stop(ctx, stop_fd);
  char byte;
  stop.async_read_some(asio::buffer(&byte, 1),
                       [&](aspawn::error_code, std::size_t) { t.stop(); });
  ctx.run();
  char line[128];
  int n = std::snprintf(line, sizeof line, "%.3f %.3f %.3f\n",
                        percentile(t.late_ms, 0.5), percentile(t.late_ms, 0.99),
                        percentile(t.late_ms, 1.0));
  if (::write(out_fd, line, static_cast<std::size_t>(n)) < 0)
    ::_exit(1);
  ::_exit(0);
}

} // namespace

int main(int argc, char** argv) {
  const int total = argc > 1 ? std::atoi(argv[1]) : 5000;
  const int in_flight = argc > 2 ? std::atoi(argv[2]) : 16;
  if (total <= 0 || in_flight <= 0) {
    std::fprintf(stderr, "usage: %s [launches > 0] [in-flight > 0]\n", argv[0]);
    return 2;
  }

  // The bystander first, while this process has a single thread.
  int stop_pipe[2], result_pipe[2];
  if (::pipe2(stop_pipe, O_CLOEXEC) != 0 || ::pipe2(result_pipe, O_CLOEXEC) != 0) {
    std::perror("pipe2");
    return 1;
  }
  const pid_t bystander_pid = ::fork();
  if (bystander_pid < 0) {
    std::perror("fork");
    return 1;
  }
  if (bystander_pid == 0) {
    ::close(stop_pipe[1]);
    ::close(result_pipe[0]);
    bystander(stop_pipe[0], result_pipe[1]);
  }
  ::close(stop_pipe[0]);
  ::close(result_pipe[1]);

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
  ticker tick(ctx);

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
        tick.stop();
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
  // Stop the bystander and collect its figures.
  ::close(stop_pipe[1]);
  char line[128] = {};
  std::size_t got = 0;
  for (ssize_t n; got + 1 < sizeof line &&
                  (n = ::read(result_pipe[0], line + got, sizeof line - 1 - got)) > 0;)
    got += static_cast<std::size_t>(n);
  ::close(result_pipe[0]);
  ::waitpid(bystander_pid, nullptr, 0);
  double b50 = 0, b99 = 0, bmax = 0;
  const bool have_bystander = std::sscanf(line, "%lf %lf %lf", &b50, &b99, &bmax) == 3;

  std::printf("  1 ms timer:      %zu ticks, late by median %.2f ms, p99 %.2f ms, "
              "max %.2f ms\n",
              tick.late_ms.size(), percentile(tick.late_ms, 0.5),
              percentile(tick.late_ms, 0.99), percentile(tick.late_ms, 1.0));
  if (have_bystander) {
    std::printf("  bystander:       another process of this session, only a 1 ms timer:\n"
                "                   late by median %.2f ms, p99 %.2f ms, max %.2f ms\n",
                b50, b99, bmax);
    if (b99 > 0)
      std::printf("                   this loop's p99 is %.2fx the bystander's: what is\n"
                  "                   not the machine's CPU share\n",
                  percentile(tick.late_ms, 0.99) / b99);
  }
  std::printf("  stacks:          %zu mapped, %zu cached, %zu in use\n",
              pool.created(), pool.cached(), pool.in_use());
  std::printf("  outcomes:\n");
  for (auto& [what, n] : outcomes)
    std::printf("    %6d  %s\n", n, what.c_str());
  return finished == total ? 0 : 1;
}
