//
// aspawn/process.hpp
// ~~~~~~~~~~~~~~~~~~
//
// A child process as an Asio I/O object.
//
// Overview
// --------
// `basic_process` owns a child through its pidfd, held in a
// `posix::basic_stream_descriptor`: the descriptor becomes readable when the
// child exits, and the child is then reaped with
// `waitid(P_PIDFD, ..., WNOHANG)`. No blocking wait, no SIGCHLD handler, no
// `waitpid(-1)`: the library coexists with any other code that manages
// children. Signals go through `pidfd_send_signal`, so they can never reach
// a recycled pid.
//
// Exit codes follow Boost.Process v2: `exit_code()` is the status given to
// `exit()` for a child that exited, or the signal number for a child killed
// by a signal; `native_exit_code()` is the raw `waitpid` status.
//
// Destruction
// -----------
// Destroying a process object whose child is still running and not detached
// kills the child (SIGKILL) and hands its pidfd to the context's reaper,
// which reaps it as soon as it dies, on the context's reactor: the
// destroying thread never blocks and no zombie is left. A detached child
// (`detach()`) is left running; the reaper still reaps it when it exits, as
// long as the execution context lives.
//
// As every Asio I/O object, a process object must be destroyed before its
// execution context. Destroying the context runs the reaper's shutdown: the
// children it holds that were killed by destructors are reaped then; detached
// ones still running are left to run (they become zombies when they exit,
// until this program exits, since nothing is left to reap them).
//
// Thread safety
// -------------
// Distinct objects: safe. Shared objects: unsafe (as every Asio I/O object).
//

#ifndef ASPAWN_PROCESS_HPP
#define ASPAWN_PROCESS_HPP

#include <csignal>
#include <type_traits>
#include <utility>

#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/query.hpp>
#include <boost/throw_exception.hpp>

#include <aspawn/core.hpp>
#include <aspawn/detail/reaper.hpp>
#include <aspawn/error.hpp>

namespace aspawn {

/// Converts a native (`waitpid`) status to a Boost.Process v2 exit code.
constexpr int evaluate_exit_code(int native) noexcept {
  if ((native & 0x7f) == 0) // exited
    return (native >> 8) & 0xff;
  if (((native & 0x7f) + 1) >> 1 > 0 && (native & 0xff) != 0x7f) // signalled
    return native & 0x7f;
  return native;
}

/// A child process owned through its pidfd.
template <typename Executor = boost::asio::any_io_executor>
class basic_process {
public:
  /// The executor type.
  using executor_type = Executor;

  /// The pidfd's type.
  using native_handle_type = int;

  /// Rebinds the process type to another executor.
  template <typename Executor1> struct rebind_executor {
    using other = basic_process<Executor1>;
  };

  /// A process object without a process, using `ex`.
  explicit basic_process(const executor_type& ex) : pidfd_(ex) {}

  /// A process object without a process, using `ctx`'s executor.
  template <typename ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&,
                                   boost::asio::execution_context&>
  explicit basic_process(ExecutionContext& ctx) : pidfd_(ctx.get_executor()) {}

  /// Adopts a child of this process by pid and pidfd (takes ownership of the
  /// pidfd). The child must not be reaped by anyone else.
  basic_process(const executor_type& ex, int pid, int pidfd)
      : pid_(pid), pidfd_(ex, pidfd) {}

  basic_process(basic_process&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)),
        native_status_(std::exchange(other.native_status_, still_active)),
        pidfd_(std::move(other.pidfd_)) {}

  /// Converting move.
  template <typename Executor1>
    requires std::is_convertible_v<Executor1, Executor>
  basic_process(basic_process<Executor1>&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)),
        native_status_(std::exchange(other.native_status_, still_active)),
        pidfd_(std::move(other.pidfd_)) {}

  basic_process& operator=(basic_process&& other) noexcept {
    if (this != &other) {
      abandon();
      pid_ = std::exchange(other.pid_, -1);
      native_status_ = std::exchange(other.native_status_, still_active);
      pidfd_ = std::move(other.pidfd_);
    }
    return *this;
  }

  basic_process(const basic_process&) = delete;
  basic_process& operator=(const basic_process&) = delete;

  /// Kills a running, non-detached child and leaves it to the reaper (see
  /// the header's overview). Never blocks.
  ~basic_process() { abandon(); }

  /// The executor.
  executor_type get_executor() noexcept { return pidfd_.get_executor(); }

  /// The child's pid, or -1.
  int id() const noexcept { return pid_; }

  /// The pidfd, or -1.
  native_handle_type native_handle() noexcept { return pidfd_.native_handle(); }

  /// Whether the object holds a child (running or exited, not yet
  /// detached).
  bool is_open() const noexcept { return pidfd_.is_open(); }

  /// The native (`waitpid`) status; `still_active` until the child is reaped.
  int native_exit_code() const noexcept { return native_status_; }

  /// The Boost.Process v2 exit code (see the overview).
  int exit_code() const noexcept { return evaluate_exit_code(native_status_); }

  /// Whether the child is still running; reaps it (without waiting) if it
  /// has exited.
  bool running(error_code& ec) {
    ec.clear();
    if (native_status_ != still_active)
      return false;
    if (!pidfd_.is_open()) {
      ec = errc::no_process;
      return false;
    }
    int r = aspawn::reap(pidfd_.native_handle(), pid_, false, native_status_);
    if (r < 0) {
      ec = reap_error(r);
      return false;
    }
    return r == 0;
  }
  bool running() {
    error_code ec;
    bool r = running(ec);
    throw_if(ec, "running");
    return r;
  }

  /// Blocks until the child exits, reaps it, and returns its exit code.
  int wait(error_code& ec) {
    ec.clear();
    if (native_status_ != still_active)
      return exit_code();
    if (!pidfd_.is_open()) {
      ec = errc::no_process;
      return -1;
    }
    int r = aspawn::reap(pidfd_.native_handle(), pid_, true, native_status_);
    if (r < 0)
      ec = reap_error(r);
    return exit_code();
  }
  int wait() {
    error_code ec;
    int r = wait(ec);
    throw_if(ec, "wait");
    return r;
  }

  /// Sends `sig` through the pidfd.
  void signal(int sig, error_code& ec) {
    ec.clear();
    if (!pidfd_.is_open()) {
      ec = errc::no_process;
      return;
    }
    if (native_status_ != still_active)
      return; // exited and reaped: nothing to signal
    int r = aspawn::send_signal(pidfd_.native_handle(), sig);
    if (r < 0 && r != -ESRCH) // ESRCH: exited, not reaped yet
      ec = error_code(-r, boost::system::system_category());
  }
  void signal(int sig) {
    error_code ec;
    signal(sig, ec);
    throw_if(ec, "signal");
  }

  /// SIGINT.
  void interrupt(error_code& ec) { signal(SIGINT, ec); }
  void interrupt() { signal(SIGINT); }
  /// SIGTERM.
  void request_exit(error_code& ec) { signal(SIGTERM, ec); }
  void request_exit() { signal(SIGTERM); }
  /// SIGKILL, then reaps the child (as Boost.Process v2 does; brief, since
  /// the child was killed).
  void terminate(error_code& ec) {
    signal(SIGKILL, ec);
    if (!ec)
      wait(ec);
  }
  void terminate() {
    error_code ec;
    terminate(ec);
    throw_if(ec, "terminate");
  }
  /// SIGSTOP.
  void suspend(error_code& ec) { signal(SIGSTOP, ec); }
  void suspend() { signal(SIGSTOP); }
  /// SIGCONT.
  void resume(error_code& ec) { signal(SIGCONT, ec); }
  void resume() { signal(SIGCONT); }

  /// Lets the child run on its own: the object forgets it, and the
  /// context's reaper reaps it when it exits.
  void detach() {
    if (pidfd_.is_open() && native_status_ == still_active)
      reaper_of().adopt(pidfd_.get_executor(), pid_, pidfd_.release(), false);
    else if (pidfd_.is_open())
      pidfd_.close();
    pid_ = -1;
  }

  /// Waits for the child to exit and reaps it.
  /**
   * @par Completion signature
   * `void(error_code ec, int exit_code)`.
   *
   * @par Errors
   * `errc::no_process` if the object holds no child;
   * `errc::status_unavailable` if someone else reaped the child;
   * `operation_aborted` if the wait was cancelled (the child is left alone).
   *
   * @par Per-operation cancellation
   * Terminal, partial and total cancellation.
   *
   * @par Object lifetimes
   * The process object must outlive the operation and must not be moved
   * while it is pending.
   *
   * The handler never runs inside this call; it runs through the handler's
   * associated executor, or else this object's executor.
   */
  template <typename Token =
                boost::asio::default_completion_token_t<executor_type>>
  auto async_wait(Token&& token = {}) {
    return boost::asio::async_compose<Token, void(error_code, int)>(
        wait_op{this}, token, pidfd_);
  }

private:
  template <typename> friend class basic_process;

  struct wait_op {
    basic_process* self_;
    int state_ = 0;

    template <typename Self>
    void operator()(Self& self, error_code ec = {}) {
      auto& p = *self_;
      switch (state_) {
      case 0:
        if (p.native_status_ != still_active || !p.pidfd_.is_open()) {
          state_ = 2;
          boost::asio::post(p.pidfd_.get_executor(), std::move(self));
          return;
        }
        state_ = 1;
        p.pidfd_.async_wait(boost::asio::posix::descriptor_base::wait_read,
                            std::move(self));
        return;
      case 1: {
        if (ec) {
          self.complete(ec, -1);
          return;
        }
        int r = aspawn::reap(p.pidfd_.native_handle(), p.pid_, false,
                             p.native_status_);
        if (r == 0) { // spurious readiness
          p.pidfd_.async_wait(boost::asio::posix::descriptor_base::wait_read,
                              std::move(self));
          return;
        }
        if (r < 0) {
          self.complete(reap_error(r), -1);
          return;
        }
        self.complete(error_code{}, p.exit_code());
        return;
      }
      default:
        if (p.native_status_ != still_active)
          self.complete(error_code{}, p.exit_code());
        else
          self.complete(error_code(errc::no_process), -1);
      }
    }
  };

  static error_code reap_error(int r) {
    if (r == -ECHILD)
      return errc::status_unavailable;
    return error_code(-r, boost::system::system_category());
  }

  static void throw_if(const error_code& ec, const char* what) {
    if (ec)
      boost::throw_exception(system_error(ec, what));
  }

  detail::reaper& reaper_of() {
    return boost::asio::use_service<detail::reaper>(boost::asio::query(
        pidfd_.get_executor(), boost::asio::execution::context));
  }

  void abandon() noexcept {
    if (!pidfd_.is_open())
      return;
    if (native_status_ != still_active) {
      pidfd_.close();
      return;
    }
    aspawn::send_signal(pidfd_.native_handle(), SIGKILL);
    try {
      reaper_of().adopt(pidfd_.get_executor(), pid_, pidfd_.release(), true);
    } catch (...) {
      // No memory for the reaper's entry: reap here (brief after SIGKILL).
      int fd = pidfd_.release();
      int st;
      aspawn::reap(fd, pid_, true, st);
      ::close(fd);
    }
    pid_ = -1;
  }

  int pid_ = -1;
  int native_status_ = still_active;
  boost::asio::posix::basic_stream_descriptor<Executor> pidfd_;
};

/// A process using a type-erased I/O executor.
using process = basic_process<>;

} // namespace aspawn

#endif // ASPAWN_PROCESS_HPP
