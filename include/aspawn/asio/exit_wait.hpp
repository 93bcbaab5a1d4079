//
// aspawn/asio/exit_wait.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~
//
// A process object's exit wait, as the stack pool's watcher holds it.
//
// `basic_process::async_wait` parks its operation on the execution
// context's `stack_pool`, which watches the pidfd with the status pipes of
// the launches in flight (see docs/design.md, "Watching for exits"): the
// operation lives in an `exit_waiting` entry, in memory of its own, until
// the pidfd becomes readable or the wait is taken off the watcher.
// `async_wait_status` is `async_wait` delivering the whole `exit_status`.
//
// Layer asio/: the Asio objects (stack pool and its watcher, process, reaper,
// async_spawn). It may use child/, command/ and core/.
//

#ifndef ASPAWN_ASIO_EXIT_WAIT_HPP
#define ASPAWN_ASIO_EXIT_WAIT_HPP

#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/recycling_allocator.hpp>

#include <aspawn/asio/stack_pool.hpp>
#include <aspawn/command/error.hpp>

namespace aspawn::detail {

// The allocator for `T` that an operation `op` allocates with: its handler's
// associated allocator, or else a recycling one (as Asio's own operations
// do, so that a warm event loop reuses the memory).
template <typename T, typename Op> auto op_allocator(const Op& op) {
  auto a = boost::asio::get_associated_allocator(op);
  if constexpr (std::is_same_v<decltype(a), std::allocator<void>>)
    return boost::asio::recycling_allocator<T>();
  else
    return typename std::allocator_traits<decltype(a)>::template rebind_alloc<
        T>(a);
}

// A process object's exit wait as the stack pool's watcher holds it, in
// memory of its own.
template <typename Self> struct exit_waiting : parked_op<Self> {
  using typename parked_op<Self>::work_type;

  explicit exit_waiting(Self&& s) : parked_op<Self>(std::move(s)) {
    this->counted = false;
    this->fire = &on_fire;
  }

  // The operation resumes with success when the pidfd became readable
  // (`events` from the watcher), and with `operation_aborted` when the
  // wait was taken off the watcher (no events: cancelled, or the process
  // object let go of its child).
  static void on_fire(watch_entry* e, std::uint32_t events, fire_mode mode) {
    auto* w = static_cast<exit_waiting*>(e);
    Self op(std::move(w->self));
    work_type work(std::move(w->work));
    // The memory goes back before the operation resumes, as with Asio's
    // own operations.
    auto a = op_allocator<exit_waiting>(op);
    w->~exit_waiting();
    a.deallocate(w, 1);
    if (mode == fire_mode::destroy) {
      op.get_cancellation_state().slot().clear();
      return;
    }
    error_code ec;
    if (events == 0)
      ec = boost::asio::error::operation_aborted;
    auto ex = op.get_executor();
    resume(ex, boost::asio::append(std::move(op), ec), mode);
  }
};

// `async_wait_status`: an exit wait that completes with the process
// object's `status()`.
template <typename Process> struct wait_status_op {
  Process* self_;

  template <typename Self> void operator()(Self& self) {
    self.reset_cancellation_state(boost::asio::enable_total_cancellation());
    self_->async_wait(std::move(self));
  }
  template <typename Self> void operator()(Self& self, error_code ec, int) {
    self.complete(ec, self_->status());
  }
};

} // namespace aspawn::detail

#endif // ASPAWN_ASIO_EXIT_WAIT_HPP
