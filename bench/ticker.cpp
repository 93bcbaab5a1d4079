//
// bench/ticker.cpp
// ~~~~~~~~~~~~~~~~
//
// The periodic timers of the responsiveness phase; see ticker.hpp.
//

#include "ticker.hpp"

#include <cerrno>
#include <chrono>
#include <cstddef>

#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

namespace aspawn_bench {

namespace {

timespec timespec_of(std::int64_t ns) noexcept {
  return {static_cast<time_t>(ns / 1'000'000'000),
          static_cast<long>(ns % 1'000'000'000)};
}

} // namespace

void tick_log::reset(int launches, double seconds) {
  in_call_ns.clear();
  lateness_ns.clear();
  missed = 0;
  in_call_ns.reserve(static_cast<std::size_t>(launches > 0 ? launches : 0));
  const double ticks = seconds * 1e9 / static_cast<double>(tick_period_ns);
  lateness_ns.reserve(static_cast<std::size_t>(ticks * 2 + 1000));
}

void tick_grid::tick(std::int64_t woke, tick_log& log) {
  log.lateness_ns.push_back(woke - next_);
  next_ += tick_period_ns;
  const std::int64_t now = now_ns();
  if (next_ <= now) {
    const std::int64_t skipped = (now - next_) / tick_period_ns + 1;
    next_ += skipped * tick_period_ns;
    log.missed += skipped;
  }
}

// --- asio_ticker -------------------------------------------------------------

struct asio_ticker::impl : std::enable_shared_from_this<impl> {
  impl(boost::asio::io_context& ctx, tick_log& log)
      : timer(ctx), log(&log), grid(now_ns()) {}

  void arm() {
    using clock = std::chrono::steady_clock;
    timer.expires_at(clock::time_point(
        std::chrono::duration_cast<clock::duration>(
            std::chrono::nanoseconds(grid.deadline()))));
    timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || !self->running)
        return;
      self->grid.tick(now_ns(), *self->log);
      self->arm();
    });
  }

  boost::asio::steady_timer timer;
  tick_log* log;
  tick_grid grid;
  bool running = true;
};

asio_ticker::asio_ticker(boost::asio::io_context& ctx, tick_log& log)
    : p_(std::make_shared<impl>(ctx, log)) {
  p_->arm();
}

asio_ticker::~asio_ticker() { stop(); }

void asio_ticker::stop() noexcept {
  if (!p_ || !p_->running)
    return;
  p_->running = false;
  p_->timer.cancel();
}

// --- timerfd_ticker ----------------------------------------------------------

timerfd_ticker::timerfd_ticker(tick_log& log) : log_(log), grid_(now_ns()) {
  fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd_ < 0)
    throw_errno(errno, "timerfd_create");
  arm();
}

timerfd_ticker::~timerfd_ticker() { ::close(fd_); }

void timerfd_ticker::arm() {
  itimerspec its{};
  its.it_value = timespec_of(grid_.deadline());
  if (::timerfd_settime(fd_, TFD_TIMER_ABSTIME, &its, nullptr) != 0)
    throw_errno(errno, "timerfd_settime");
}

void timerfd_ticker::on_readable() {
  std::uint64_t expirations = 0;
  if (::read(fd_, &expirations, sizeof expirations) !=
      static_cast<ssize_t>(sizeof expirations))
    return; // EAGAIN: not expired after all
  grid_.tick(now_ns(), log_);
  arm();
}

// --- sleeping_ticker ---------------------------------------------------------

sleeping_ticker::sleeping_ticker(tick_log& log) {
  thread_ = std::thread([this, &log] {
    tick_grid grid(now_ns());
    while (!stop_.load(std::memory_order_relaxed)) {
      const timespec ts = timespec_of(grid.deadline());
      int rc = ::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
      if (rc == EINTR)
        continue;
      if (stop_.load(std::memory_order_relaxed))
        break;
      grid.tick(now_ns(), log);
    }
  });
}

sleeping_ticker::~sleeping_ticker() { stop(); }

void sleeping_ticker::stop() noexcept {
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable())
    thread_.join();
}

} // namespace aspawn_bench
