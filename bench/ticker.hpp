//
// bench/ticker.hpp
// ~~~~~~~~~~~~~~~~
//
// Periodic timers for the responsiveness phase (bench/responsiveness.cpp):
// while a contender runs a batch, its launching thread also serves a 1 ms
// timer, and the lateness of every tick is recorded.
//
// The semantics are those of cyclictest: the deadlines lie on a grid,
// start + k * period; a tick's lateness is its wake-up time minus its
// deadline; after a tick, the next deadline is the next grid point after the
// one just served that is still in the future. Grid points that have passed
// already are skipped and counted as missed, not served late one after the
// other.
//
// Three ways to serve the timer, one for each kind of launching thread:
//   asio_ticker      a steady_timer on the contender's io_context, re-armed
//                    with expires_at(next deadline) (the Asio contenders);
//   timerfd_ticker   a timerfd (CLOCK_MONOTONIC, TFD_TIMER_ABSTIME) for a
//                    contender's own epoll loop (raw_clone);
//   sleeping_ticker  a thread of its own sleeping in clock_nanosleep
//                    (TIMER_ABSTIME) to each deadline: the nearest
//                    equivalent for a launcher that blocks in its call
//                    (posix_spawn, vfork, fork), whose thread cannot serve
//                    a timer meanwhile.
// All use CLOCK_MONOTONIC, the clock of now_ns() (std::chrono::steady_clock).
//

#ifndef ASPAWN_BENCH_TICKER_HPP
#define ASPAWN_BENCH_TICKER_HPP

#include "harness.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace aspawn_bench {

constexpr std::int64_t tick_period_ns = 1'000'000;

/// What one ticking batch records (session::run_batch_ticking).
struct tick_log {
  /// Time inside each launch call (the initiating call only), ns.
  std::vector<std::int64_t> in_call_ns;
  /// Lateness of each tick served, ns.
  std::vector<std::int64_t> lateness_ns;
  /// Grid points skipped because they had passed before the timer was
  /// re-armed.
  std::int64_t missed = 0;

  /// Empties the log, keeping room for `launches` launches and `seconds`
  /// of ticks, so that recording does not allocate during the batch.
  void reset(int launches, double seconds);
};

/// The deadlines of a periodic timer, cyclictest-style.
class tick_grid {
public:
  /// The first deadline is one period after `start`.
  explicit tick_grid(std::int64_t start) noexcept
      : next_(start + tick_period_ns) {}

  std::int64_t deadline() const noexcept { return next_; }

  /// Records the tick of the current deadline, woken at `woke`, and moves
  /// to the next grid point still in the future.
  void tick(std::int64_t woke, tick_log& log);

private:
  std::int64_t next_;
};

/// Runs `f`, recording the time spent in it in log->in_call_ns unless `log`
/// is null.
template <class F> auto timed_call(tick_log* log, F&& f) -> decltype(f()) {
  if (log == nullptr)
    return f();
  struct record {
    tick_log* log;
    std::int64_t t0 = now_ns();
    ~record() { log->in_call_ns.push_back(now_ns() - t0); }
  } r{log};
  return f();
}

/// A 1 ms steady_timer on `ctx`, started by the constructor; its ticks run
/// wherever `ctx` runs its handlers. Stops when destroyed.
class asio_ticker {
public:
  asio_ticker(boost::asio::io_context& ctx, tick_log& log);
  ~asio_ticker();
  asio_ticker(const asio_ticker&) = delete;
  asio_ticker& operator=(const asio_ticker&) = delete;

  /// Cancels the timer: the handler still queued (it may outlive this
  /// object) records nothing more.
  void stop() noexcept;

  struct impl;

private:
  std::shared_ptr<impl> p_;
};

/// A 1 ms timerfd, armed by the constructor, for an epoll loop: add fd()
/// to the set (EPOLLIN) and call on_readable() when it reports it.
class timerfd_ticker {
public:
  explicit timerfd_ticker(tick_log& log);
  ~timerfd_ticker();
  timerfd_ticker(const timerfd_ticker&) = delete;
  timerfd_ticker& operator=(const timerfd_ticker&) = delete;

  int fd() const noexcept { return fd_; }
  void on_readable();

private:
  void arm();

  tick_log& log_;
  tick_grid grid_;
  int fd_ = -1;
};

/// A thread of its own that sleeps to each 1 ms deadline, started by the
/// constructor. Until stop() (or destruction) returns, the thread owns
/// log.lateness_ns and log.missed. Neither copied nor moved (its members
/// are not): the thread refers to it.
class sleeping_ticker {
public:
  explicit sleeping_ticker(tick_log& log);
  ~sleeping_ticker();

  void stop() noexcept;

private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

} // namespace aspawn_bench

#endif // ASPAWN_BENCH_TICKER_HPP
