//
// aspawn/v2/execute.hpp
// ~~~~~~~~~~~~~~~~~~~~~
//
// Waiting for a launched process to finish, Boost.Process v2 style.
//
// Overview
// --------
// `execute(proc)` takes a process object and blocks until the child exits,
// returning its exit code; `async_execute(proc, token)` does the same as an
// asynchronous operation. Both take the process by value (move it in), and
// the operation owns it until it completes.
//
// Cancelling `async_execute` does not abandon the child: it asks it to stop,
// and the operation still completes when the child has exited, with its exit
// code (a child may ignore or handle all but SIGKILL):
//
// * `cancellation_type::total`    -> `interrupt()` (SIGINT)
// * `cancellation_type::partial`  -> `request_exit()` (SIGTERM)
// * `cancellation_type::terminal` -> `terminate()` (SIGKILL)
//
// If several types are requested at once, the mildest one applies.
//
// Boost.Process v2 (up to Boost 1.81 at least) filters out partial and total
// cancellation before they reach its handler; aspawn honours all three.
//
// To launch a `command` and wait without blocking at any point, see
// `aspawn::async_execute(ex, command, token)` in `aspawn/asio/async_spawn.hpp`.
//
// Example
// -------
// @code
// asio::cancellation_signal stop;
// aspawn::async_execute(
//     aspawn::process(ctx, "/usr/bin/sleep", {"60"}),
//     asio::bind_cancellation_slot(stop.slot(),
//                                  [](aspawn::error_code ec, int code) {
//                                    // code == SIGTERM after the emit below
//                                  }));
// stop.emit(asio::cancellation_type::partial);
// @endcode
//
// Layer v2/: the Boost.Process v2 surface (initializers, popen, execute,
// launcher). It may use every layer below it.
//

#ifndef ASPAWN_V2_EXECUTE_HPP
#define ASPAWN_V2_EXECUTE_HPP

#include <csignal>
#include <memory>
#include <utility>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/compose.hpp>

#include <aspawn/asio/process.hpp>
#include <aspawn/command/error.hpp>

namespace aspawn {

/// Waits for `proc`'s child to exit and returns its exit code.
/** @throws system_error if the wait fails (e.g. `errc::no_process`). */
template <typename Executor> int execute(basic_process<Executor> proc) {
  return proc.wait();
}

/// @overload Reports failure in `ec` (and returns -1).
template <typename Executor>
int execute(basic_process<Executor> proc, error_code& ec) {
  int code = proc.wait(ec);
  return ec ? -1 : code;
}

namespace detail {

template <typename Executor> struct process_execute_op {
  std::unique_ptr<basic_process<Executor>> proc;

  struct canceller {
    basic_process<Executor>* proc;
    void operator()(boost::asio::cancellation_type type) const {
      using boost::asio::cancellation_type;
      error_code ignored;
      if ((type & cancellation_type::total) != cancellation_type::none)
        proc->interrupt(ignored);
      else if ((type & cancellation_type::partial) != cancellation_type::none)
        proc->request_exit(ignored);
      else if ((type & cancellation_type::terminal) != cancellation_type::none)
        proc->signal(SIGKILL, ignored); // the wait below reaps it
    }
  };

  template <typename Self> void operator()(Self& self) {
    self.reset_cancellation_state(boost::asio::enable_total_cancellation());
    auto slot = self.get_cancellation_state().slot();
    if (slot.is_connected())
      slot.template emplace<canceller>(proc.get());
    auto* p = proc.get();
    // The wait itself is never cancelled: the child's exit ends it.
    p->async_wait(boost::asio::bind_cancellation_slot(
        boost::asio::cancellation_slot(), std::move(self)));
  }

  template <typename Self> void operator()(Self& self, error_code ec, int code) {
    self.get_cancellation_state().slot().clear();
    self.complete(ec, code);
  }
};

} // namespace detail

/// Waits asynchronously for `proc`'s child to exit.
/**
 * @par Completion signature
 * `void(error_code ec, int exit_code)`.
 *
 * @par Errors
 * As `basic_process::async_wait`.
 *
 * @par Per-operation cancellation
 * Total, partial and terminal, mapped to signals (see the overview); the
 * operation completes when the child has exited.
 *
 * The handler never runs inside this call.
 */
template <typename Executor,
          typename Token = boost::asio::default_completion_token_t<Executor>>
auto async_execute(basic_process<Executor> proc, Token&& token = {}) {
  auto ex = proc.get_executor();
  auto owned = std::make_unique<basic_process<Executor>>(std::move(proc));
  return boost::asio::async_compose<Token, void(error_code, int)>(
      detail::process_execute_op<Executor>{std::move(owned)}, token, ex);
}

} // namespace aspawn

#endif // ASPAWN_V2_EXECUTE_HPP
