//
// aspawn/asio/stop.hpp
// ~~~~~~~~~~~~~~~~~~~~
//
// Stopping a process gracefully: `basic_process::async_stop`.
//
// The operation sends SIGTERM, then waits for the child's exit and for a
// grace period, whichever ends first; if the grace period runs out, it sends
// SIGKILL and waits again. It completes with the child's `exit_status`. It
// uses only the process object's public interface (`signal`, `async_wait`,
// `status`).
//
// Layer asio/: the Asio objects (stack pool and its watcher, process, reaper,
// async_spawn). It may use child/, command/ and core/.
//

#ifndef ASPAWN_ASIO_STOP_HPP
#define ASPAWN_ASIO_STOP_HPP

#include <array>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <memory>
#include <utility>

#include <boost/asio/append.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/wait_traits.hpp>

#include <aspawn/command/error.hpp>
#include <aspawn/core/launch.hpp>

namespace aspawn::detail {

// The composed operation of `async_stop` for a process object of type
// `Process`.
template <typename Process> struct stop_op {
  using timer_type =
      boost::asio::basic_waitable_timer<std::chrono::steady_clock,
                                        boost::asio::wait_traits<
                                            std::chrono::steady_clock>,
                                        typename Process::executor_type>;

  Process* self_;
  std::chrono::steady_clock::duration grace_;
  std::unique_ptr<timer_type> timer_{};
  error_code error_{};

  template <typename Self> void operator()(Self& self) {
    self.reset_cancellation_state(boost::asio::enable_total_cancellation());
    auto& p = *self_;
    if (p.native_exit_code() != still_active || p.native_handle() < 0) {
      p.async_wait(std::move(self)); // completes at once, with the status
      return;
    }
    p.signal(SIGTERM, error_);
    if (error_) { // e.g. EPERM: the child may never exit, do not wait
      boost::asio::post(p.get_executor(),
                        boost::asio::append(std::move(self), error_, -1));
      return;
    }
    timer_ = std::make_unique<timer_type>(p.get_executor(), grace_);
    auto& timer = *timer_;
    boost::asio::experimental::make_parallel_group(
        timer.async_wait(boost::asio::deferred),
        p.async_wait(boost::asio::deferred))
        .async_wait(boost::asio::experimental::wait_for_one(),
                    std::move(self));
  }

  // The grace period ran out, or the child exited, or both were cancelled.
  template <typename Self>
  void operator()(Self& self, std::array<std::size_t, 2> order,
                  error_code timer_ec, error_code wait_ec, int) {
    auto& p = *self_;
    if (order[0] == 1 || p.native_exit_code() != still_active) {
      self.complete(
          p.native_exit_code() != still_active ? error_code{} : wait_ec,
          p.status());
      return;
    }
    if (timer_ec) { // cancelled
      self.complete(timer_ec, p.status());
      return;
    }
    p.signal(SIGKILL, error_);
    p.async_wait(std::move(self));
  }

  template <typename Self> void operator()(Self& self, error_code ec, int) {
    self.complete(error_ ? error_ : ec, self_->status());
  }
};

} // namespace aspawn::detail

#endif // ASPAWN_ASIO_STOP_HPP
