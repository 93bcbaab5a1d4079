//
// aspawn/asio/process.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~
//
// A child process as an Asio I/O object.
//
// Overview
// --------
// `basic_process` owns a child through its pidfd, which becomes readable
// when the child exits; the child is then reaped with
// `waitid(P_PIDFD, ..., WNOHANG)`. An `async_wait` on an `io_context`'s
// executor is watched by the context's `stack_pool`, as launches are (see
// docs/design.md, "Watching for exits"); on other executors, by a
// descriptor of the object's own. No blocking wait, no SIGCHLD handler, no
// `waitpid(-1)`: the library coexists with any other code that manages
// children. Signals go through `pidfd_send_signal`, so they can never reach
// a recycled pid.
//
// Exit codes follow Boost.Process v2: `exit_code()` is the status given to
// `exit()` for a child that exited, or the signal number for a child killed
// by a signal; `native_exit_code()` is the raw `waitpid` status; `status()`
// tells the whole story, with the child's CPU time and peak memory (see
// `aspawn/core/exit_status.hpp`).
//
// Boost.Process v2 surface
// ------------------------
// The class has the constructors of Boost.Process v2's `basic_process`, so
// that code written for v2 compiles against aspawn (see
// `docs/porting-from-boost-process.md`):
//
// * `basic_process(ex_or_ctx, exe, args, inits...)` launches `exe` (a path:
//   never searched in `PATH`) with the arguments `args` (a braced list or any
//   range of strings) and v2-style initializers (`process_stdio`,
//   `process_environment`, `process_start_dir`, `posix::bind_fd`; see
//   `aspawn/command/initializer.hpp`). It returns once the child has exec'd and
//   throws `system_error` if it could not; the variant taking an
//   `error_code&` after the executor reports instead of throwing. The wait
//   for the exec is short (the child's setup steps and its exec) but it does
//   block: `async_spawn` is the non-blocking path.
// * `basic_process(ex_or_ctx, pid)` attaches to a running process with
//   `pidfd_open` (Linux 5.3; `errc::unsupported_by_kernel` before).
//   Signals reach it through the pidfd; only a child of this process can be
//   waited for (others report `errc::status_unavailable`), and only a child
//   is killed by the destructor.
// * `basic_process(ex_or_ctx, pid, native_handle)` adopts a pid and its
//   pidfd.
//
// Stopping
// --------
// `terminate()` kills the child at once. `async_stop(grace, token)` asks
// first: SIGTERM, then SIGKILL if the child is still running when `grace`
// has passed, and completes with the final status. To bound a wait, cancel
// it from a timer: a cancelled `async_wait` completes with
// `operation_aborted` and leaves the child running, to be stopped or waited
// for again.
//
// The parts that are not the object itself have headers of their own: the
// exit wait as the stack pool's watcher holds it (`aspawn/asio/exit_wait.hpp`)
// and the graceful stop (`aspawn/asio/stop.hpp`). Signals are sent with the
// core's `send_signal` and `send_group_signal` (`aspawn/core/launch.hpp`).
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
// Layer asio/: the Asio objects (stack pool and its watcher, process, reaper,
// async_spawn). It may use child/, command/ and core/.
//

#ifndef ASPAWN_ASIO_PROCESS_HPP
#define ASPAWN_ASIO_PROCESS_HPP

#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <initializer_list>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/basic_readable_pipe.hpp>
#include <boost/asio/basic_writable_pipe.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/query.hpp>
#include <boost/throw_exception.hpp>

#include <aspawn/asio/exit_wait.hpp>
#include <aspawn/asio/reaper.hpp>
#include <aspawn/asio/stack_pool.hpp>
#include <aspawn/asio/stop.hpp>
#include <aspawn/command/error.hpp>
#include <aspawn/command/initializer.hpp>
#include <aspawn/core/blocking_launch.hpp>
#include <aspawn/core/exit_status.hpp>
#include <aspawn/core/launch.hpp>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

namespace aspawn {

namespace detail {
template <typename ExecutionContext>
concept context_ref =
    std::is_convertible_v<ExecutionContext&, boost::asio::execution_context&>;
} // namespace detail

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
  explicit basic_process(const executor_type& ex) : ex_(ex) {}

  /// A process object without a process, using `ctx`'s executor.
  template <typename ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&,
                                   boost::asio::execution_context&>
  explicit basic_process(ExecutionContext& ctx) : ex_(ctx.get_executor()) {}

  /// Adopts a child of this process by pid and pidfd (takes ownership of the
  /// pidfd). The child must not be reaped by anyone else.
  basic_process(const executor_type& ex, int pid, int pidfd)
      : pid_(pid), ex_(ex), pidfd_(pidfd) {
    prepare_reaper();
  }

  /// Adopts a process by pid and pidfd, using `ctx`'s executor.
  template <detail::context_ref ExecutionContext>
  basic_process(ExecutionContext& ctx, int pid, int pidfd)
      : pid_(pid), ex_(ctx.get_executor()), pidfd_(pidfd) {
    prepare_reaper();
  }

  /// Adopts the child of a finished launch (`aspawn::launch` once its
  /// status pipe has reported the exec, stack released): its pid, pidfd and
  /// the parent's ends of its pipes, which `l` no longer holds afterwards.
  basic_process(const executor_type& ex, launched&& l) : ex_(ex) {
    take_child(l);
  }

  /// @name Attaching to a running process
  /// @{
  /// Opens a pidfd for `pid` (`pidfd_open`, Linux 5.3).
  /**
   * @throws system_error: `errc::unsupported_by_kernel` on kernels without
   * `pidfd_open`, `ESRCH` if there is no such process, `EINVAL` for a pid
   * that is not positive.
   */
  explicit basic_process(const executor_type& ex, pid_type pid) : ex_(ex) {
    error_code ec;
    attach(pid, ec);
    throw_if(ec, "aspawn::basic_process: attach to a pid");
  }
  /// @overload Reports failure in `ec`; the object is then empty.
  basic_process(const executor_type& ex, pid_type pid, error_code& ec)
      : ex_(ex) {
    attach(pid, ec);
  }
  template <detail::context_ref ExecutionContext>
  explicit basic_process(ExecutionContext& ctx, pid_type pid)
      : ex_(ctx.get_executor()) {
    error_code ec;
    attach(pid, ec);
    throw_if(ec, "aspawn::basic_process: attach to a pid");
  }
  template <detail::context_ref ExecutionContext>
  basic_process(ExecutionContext& ctx, pid_type pid, error_code& ec)
      : ex_(ctx.get_executor()) {
    attach(pid, ec);
  }
  /// @}

  /// @name Launching (Boost.Process v2 style)
  /// @{
  /// Launches `exe` with `args` and the initializers `inits`, and returns
  /// once the child has exec'd (see the header's overview).
  /**
   * @throws system_error with the launch's error: an initializer's, the
   * command's validation error, the parent's system error, or the failing
   * child step's (`ec == errc::no_such_file_or_directory` for a missing
   * executable). Nothing is left behind.
   */
  template <path_like Exe, typename... Inits>
  explicit basic_process(const executor_type& ex, const Exe& exe,
                         std::initializer_list<std::string_view> args,
                         Inits&&... inits)
      : ex_(ex) {
    launch_or_throw(exe, args, inits...);
  }
  template <path_like Exe, argument_range Args, typename... Inits>
  explicit basic_process(const executor_type& ex, const Exe& exe,
                         const Args& args, Inits&&... inits)
      : ex_(ex) {
    launch_or_throw(exe, args, inits...);
  }
  template <detail::context_ref ExecutionContext, path_like Exe,
            typename... Inits>
  explicit basic_process(ExecutionContext& ctx, const Exe& exe,
                         std::initializer_list<std::string_view> args,
                         Inits&&... inits)
      : ex_(ctx.get_executor()) {
    launch_or_throw(exe, args, inits...);
  }
  template <detail::context_ref ExecutionContext, path_like Exe,
            argument_range Args, typename... Inits>
  explicit basic_process(ExecutionContext& ctx, const Exe& exe,
                         const Args& args, Inits&&... inits)
      : ex_(ctx.get_executor()) {
    launch_or_throw(exe, args, inits...);
  }

  /// Launches like the throwing constructors; reports failure in `ec`, and
  /// the object is then empty.
  template <path_like Exe, typename... Inits>
  basic_process(const executor_type& ex, error_code& ec, const Exe& exe,
                std::initializer_list<std::string_view> args, Inits&&... inits)
      : ex_(ex) {
    launch(ec, exe, args, inits...);
  }
  template <path_like Exe, argument_range Args, typename... Inits>
  basic_process(const executor_type& ex, error_code& ec, const Exe& exe,
                const Args& args, Inits&&... inits)
      : ex_(ex) {
    launch(ec, exe, args, inits...);
  }
  template <detail::context_ref ExecutionContext, path_like Exe,
            typename... Inits>
  basic_process(ExecutionContext& ctx, error_code& ec, const Exe& exe,
                std::initializer_list<std::string_view> args, Inits&&... inits)
      : ex_(ctx.get_executor()) {
    launch(ec, exe, args, inits...);
  }
  template <detail::context_ref ExecutionContext, path_like Exe,
            argument_range Args, typename... Inits>
  basic_process(ExecutionContext& ctx, error_code& ec, const Exe& exe,
                const Args& args, Inits&&... inits)
      : ex_(ctx.get_executor()) {
    launch(ec, exe, args, inits...);
  }
  /// @}

  basic_process(basic_process&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)),
        native_status_(std::exchange(other.native_status_, still_active)),
        usage_(std::exchange(other.usage_, rusage_type{})),
        pipes_(std::exchange(other.pipes_, no_pipes)),
        autoreaped_(std::exchange(other.autoreaped_, false)),
        ex_(other.ex_), pidfd_(std::exchange(other.pidfd_, -1)) {
    other.end_waits(); // a pending wait ends (operation_aborted)
  }

  /// Converting move.
  template <typename Executor1>
    requires std::is_convertible_v<Executor1, Executor>
  basic_process(basic_process<Executor1>&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)),
        native_status_(std::exchange(other.native_status_, still_active)),
        usage_(std::exchange(other.usage_, rusage_type{})),
        pipes_(std::exchange(other.pipes_, no_pipes)),
        autoreaped_(std::exchange(other.autoreaped_, false)),
        ex_(other.ex_), pidfd_(std::exchange(other.pidfd_, -1)) {
    other.end_waits();
  }

  basic_process& operator=(basic_process&& other) noexcept {
    if (this != &other) {
      abandon();
      close_pipes();
      other.end_waits();
      pid_ = std::exchange(other.pid_, -1);
      native_status_ = std::exchange(other.native_status_, still_active);
      usage_ = std::exchange(other.usage_, rusage_type{});
      pipes_ = std::exchange(other.pipes_, no_pipes);
      autoreaped_ = std::exchange(other.autoreaped_, false);
      ex_ = other.ex_;
      pidfd_ = std::exchange(other.pidfd_, -1);
    }
    return *this;
  }

  basic_process(const basic_process&) = delete;
  basic_process& operator=(const basic_process&) = delete;

  /// Kills a running, non-detached child and leaves it to the reaper (see
  /// the header's overview), and closes the pipe ends not taken. Never
  /// blocks.
  ~basic_process() {
    abandon();
    close_pipes();
  }

  /// The executor.
  executor_type get_executor() noexcept { return ex_; }

  /// @name Pipes made by the command (`redirect::pipe()`)
  /// @{
  /// The pipe to the child's stdin.
  using stdin_pipe_type = boost::asio::basic_writable_pipe<Executor>;
  /// The pipe from the child's stdout or stderr.
  using output_pipe_type = boost::asio::basic_readable_pipe<Executor>;

  /// Hands over the parent's end of the child's stdin pipe, on this
  /// object's executor; closing it sends end-of-file to the child. A second
  /// call, or a command without `stdin_(redirect::pipe())`, gives a pipe
  /// that is not open.
  /** @throws system_error if the pipe cannot be registered with the
   * reactor (it is closed then). */
  stdin_pipe_type take_stdin_pipe() { return take_pipe<stdin_pipe_type>(0); }
  /// Hands over the read end of the child's stdout pipe (see
  /// `take_stdin_pipe`).
  output_pipe_type take_stdout_pipe() {
    return take_pipe<output_pipe_type>(1);
  }
  /// Hands over the read end of the child's stderr pipe (see
  /// `take_stdin_pipe`).
  output_pipe_type take_stderr_pipe() {
    return take_pipe<output_pipe_type>(2);
  }
  /// Whether the pipe for standard stream `fd` (0, 1 or 2) is still held.
  bool has_pipe(int fd) const noexcept {
    return fd >= 0 && fd <= 2 && pipes_[static_cast<std::size_t>(fd)] >= 0;
  }
  /// @}

  /// The child's pid, or -1.
  int id() const noexcept { return pid_; }

  /// The pidfd, or -1.
  native_handle_type native_handle() noexcept { return pidfd_; }

  /// Whether the object holds a child (running or exited, not yet
  /// detached).
  bool is_open() const noexcept { return pidfd_ >= 0; }

  /// The native (`waitpid`) status; `still_active` until the child is reaped.
  int native_exit_code() const noexcept { return native_status_; }

  /// The Boost.Process v2 exit code (see the overview).
  int exit_code() const noexcept { return evaluate_exit_code(native_status_); }

  /// How the child ended and the resources it used; `running()` until the
  /// child is reaped.
  exit_status status() const noexcept {
    return exit_status(native_status_, usage_);
  }

  /// Whether the child is still running; reaps it (without waiting) if it
  /// has exited.
  bool running(error_code& ec) {
    ec.clear();
    if (native_status_ != still_active)
      return false;
    if (pidfd_ < 0) {
      ec = errc::no_process;
      return false;
    }
    int r = aspawn::reap(pidfd_, pid_, false, native_status_,
                         &usage_, autoreaped_);
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
    if (pidfd_ < 0) {
      ec = errc::no_process;
      return -1;
    }
    int r = aspawn::reap(pidfd_, pid_, true, native_status_,
                         &usage_, autoreaped_);
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
    if (pidfd_ < 0) {
      ec = errc::no_process;
      return;
    }
    if (native_status_ != still_active)
      return; // exited and reaped: nothing to signal
    int r = aspawn::send_signal(pidfd_, sig);
    if (r < 0 && r != -ESRCH) // ESRCH: exited, not reaped yet
      ec = error_code(-r, boost::system::system_category());
  }
  void signal(int sig) {
    error_code ec;
    signal(sig, ec);
    throw_if(ec, "signal");
  }

  /// Sends `sig` to the child's process group: the child and every process
  /// in its group (a pipeline, a shell's jobs, a build tool's workers).
  /**
   * The group is the child's current one. A child that leads it is
   * signalled through the pidfd (`PIDFD_SIGNAL_PROCESS_GROUP`, Linux 6.9);
   * otherwise, or before 6.9, with `kill(-pgid)`, which is equally exact
   * while the child is not reaped (see `aspawn::send_group_signal`). Give
   * the child a group of its own with `command::process_group(0)`.
   *
   * @par Errors
   * `errc::no_process` without a child; `errc::own_process_group` if the
   * child is in the caller's own group (the signal would reach the caller);
   * `errc::status_unavailable` once the child has been reaped (its group may
   * be gone or reused); the kernel's errors (`EPERM`, `EINVAL`).
   */
  void signal_group(int sig, error_code& ec) {
    ec.clear();
    if (pidfd_ < 0) {
      ec = errc::no_process;
      return;
    }
    if (native_status_ != still_active) {
      ec = errc::status_unavailable;
      return;
    }
    int r = aspawn::send_group_signal(pidfd_, pid_, sig,
                                      autoreaped_);
    if (r == -EDEADLK)
      ec = errc::own_process_group;
    else if (r == -ECHILD)
      ec = errc::status_unavailable; // reaped elsewhere: group unknown
    else if (r < 0)
      ec = error_code(-r, boost::system::system_category());
  }
  void signal_group(int sig) {
    error_code ec;
    signal_group(sig, ec);
    throw_if(ec, "signal_group");
  }

  /// SIGINT.
  void interrupt(error_code& ec) { signal(SIGINT, ec); }
  void interrupt() { signal(SIGINT); }
  /// SIGTERM.
  void request_exit(error_code& ec) { signal(SIGTERM, ec); }
  void request_exit() { signal(SIGTERM); }
  /// SIGKILL, then reaps the child (a brief wait: SIGKILL cannot be caught).
  /// Boost.Process v2 only sends the signal; waiting afterwards works with
  /// both.
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
    if (pidfd_ >= 0 && native_status_ == still_active)
      reaper_of().adopt(ex_, pid_, release_pidfd(), false, autoreaped_);
    else if (pidfd_ >= 0)
      close_pidfd();
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
   * A child that has exited already is reaped inside this call (one
   * non-blocking `waitid`), and the handler receives its status even if
   * the wait is cancelled before the handler runs.
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
        wait_op{this}, token, ex_);
  }

  /// Waits for the child to exit and reaps it, delivering the full status.
  /**
   * As `async_wait`, with the completion signature
   * `void(error_code ec, exit_status status)`: how the child ended and the
   * CPU time and peak memory it used (see `aspawn/core/exit_status.hpp`). On
   * error, `status` is what is known (`running()` if the child was not
   * reaped).
   */
  template <typename Token =
                boost::asio::default_completion_token_t<executor_type>>
  auto async_wait_status(Token&& token = {}) {
    return boost::asio::async_compose<Token, void(error_code, exit_status)>(
        detail::wait_status_op<basic_process>{this}, token, ex_);
  }

  /// Stops the child gracefully: SIGTERM, then SIGKILL if it has not exited
  /// within `grace`.
  /**
   * Completes once the child has exited and been reaped, whichever signal
   * ended it (a child that ignores or handles SIGTERM is killed when the
   * grace period runs out; one that was already over is just reaped).
   *
   * @par Completion signature
   * `void(error_code ec, exit_status status)`.
   *
   * @par Errors
   * As `async_wait`; the failure of sending SIGTERM.
   *
   * @par Per-operation cancellation
   * Terminal, partial and total: the operation completes with
   * `operation_aborted`; the child, which has received SIGTERM, is left
   * alone (it may still be running).
   *
   * @par Object lifetimes
   * As `async_wait`.
   */
  template <typename Rep, typename Period,
            typename Token =
                boost::asio::default_completion_token_t<executor_type>>
  auto async_stop(std::chrono::duration<Rep, Period> grace, Token&& token = {}) {
    return boost::asio::async_compose<Token, void(error_code, exit_status)>(
        detail::stop_op<basic_process>{
            this,
            std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                grace)},
        token, ex_);
  }

private:
  template <typename> friend class basic_process;

  using rusage_type = struct rusage;

  template <typename Exe, typename Args, typename... Inits>
  void launch_or_throw(const Exe& exe, const Args& args, Inits&... inits) {
    error_code ec;
    launch(ec, exe, args, inits...);
    if (ec) {
      std::string what = "aspawn::basic_process: launching ";
      what += path_view(exe);
      boost::throw_exception(system_error(ec, what));
    }
  }

  template <typename Exe, typename Args, typename... Inits>
  void launch(error_code& ec, const Exe& exe, const Args& args,
              Inits&... inits) {
    command cmd;
    ec = make_command(cmd, exe, args, inits...);
    if (ec)
      return;
    auto& pool = stack_pool::of(boost::asio::query(
        ex_, boost::asio::execution::context));
    launched l;
    ec = detail::launch_blocking(cmd, pool.cache(), l);
    pool.reserve_wait_blocks();
    if (ec)
      return;
    take_child(l);
  }

  void attach(pid_type pid, error_code& ec) {
    ec.clear();
    if (pid <= 0) {
      ec = error_code(EINVAL, boost::system::system_category());
      return;
    }
    long fd = ::syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) {
      int err = errno;
      if (err == ENOSYS)
        ec = errc::unsupported_by_kernel;
      else
        ec = error_code(err, boost::system::system_category());
      return;
    }
    pidfd_ = static_cast<int>(fd);
    pid_ = pid;
    native_status_ = still_active;
    prepare_reaper();
  }

  struct wait_op {
    basic_process* self_;
    int state_ = 0;
    // What a wait settled in its initiation completes with (state 2),
    // without looking at the object again.
    error_code result_{};
    int code_ = -1;

    template <typename Self>
    void operator()(Self& self, error_code ec = {}) {
      auto& p = *self_;
      switch (state_) {
      case 0:
        self.reset_cancellation_state(
            boost::asio::enable_total_cancellation());
        // A child that has exited already is reaped here, with one waitid:
        // no watch to set up, no readiness to wait for. Most short-lived
        // children have exited by the time the handler of their launch
        // asks for their exit (their exec reported first). A failure is
        // left to the wait: a process that is not our child (`attach`)
        // fails to reap while it runs, and is reported when it exits. Not
        // for a child the kernel reaps itself, whose status may take a few
        // yields to appear: the handler waits for that, not the caller.
        if (p.native_status_ == still_active && p.pidfd_ >= 0 &&
            (p.autoreaped_ ||
             aspawn::reap(p.pidfd_, p.pid_, false, p.native_status_,
                          &p.usage_, p.autoreaped_) <= 0)) {
          state_ = 1;
          p.start_wait(self);
          return;
        }
        if (p.native_status_ != still_active)
          code_ = p.exit_code();
        else
          result_ = error_code(errc::no_process);
        state_ = 2;
        p.post_settled(std::move(self));
        return;
      case 1: {
        if (ec) {
          self.complete(ec, -1);
          return;
        }
        if (p.native_status_ != still_active) { // reaped meanwhile
          self.complete(error_code{}, p.exit_code());
          return;
        }
        int r = aspawn::reap(p.pidfd_, p.pid_, false,
                             p.native_status_, &p.usage_, p.autoreaped_);
        if (r == 0) { // spurious readiness
          p.start_wait(self);
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
        self.complete(result_, code_);
      }
    }
  };

  // Posts `self`, a wait settled in its initiation: in a block of the
  // stack pool's where it goes to an io_context's executor (see
  // detail::post_in_block).
  template <typename Self> void post_settled(Self&& self) {
    detail::post_in_block(ex_, std::forward<Self>(self));
  }

  // Waits for the pidfd to become readable, then resumes `self` with an
  // error code: on the stack pool's watcher where it watches (an
  // io_context's executors), which costs the reactor no descriptor;
  // otherwise (or for a second wait at the same time) on a descriptor of
  // the object's own. A failure to set the wait up (no memory, no
  // descriptor) resumes `self` with its error.
  template <typename Self> void start_wait(Self& self) {
    error_code ec;
    try {
      if (watch_exit(self))
        return;
      if (!desc_)
        ec = open_descriptor();
    } catch (const system_error& e) {
      ec = e.code();
    } catch (const std::bad_alloc&) {
      ec = make_error_code(boost::system::errc::not_enough_memory);
    }
    if (ec) {
      boost::asio::post(ex_, boost::asio::append(std::move(self), ec));
      return;
    }
    desc_->async_wait(boost::asio::posix::descriptor_base::wait_read,
                      std::move(self));
  }

  // The object's own descriptor, on a duplicate of the pidfd.
  error_code open_descriptor() {
    int fd = ::fcntl(pidfd_, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
      return error_code(errno, boost::system::system_category());
    error_code ec;
    try {
      desc_ = std::make_unique<descriptor_type>(ex_);
    } catch (...) {
      ::close(fd);
      throw;
    }
    desc_->assign(fd, ec);
    if (ec) {
      desc_.reset();
      ::close(fd);
    }
    return ec;
  }

  // Cancellation of an exit wait the pool's watcher holds.
  struct cancel_exit_wait {
    basic_process* p;
    void operator()(boost::asio::cancellation_type t) const {
      if (t != boost::asio::cancellation_type::none)
        p->unwatch_exit();
    }
  };

  // Hands the wait to the pool's watcher, moving `self` into an entry of
  // its own. False (and nothing moved) where the pool does not watch, or
  // while another wait of this object is there.
  template <typename Self> bool watch_exit(Self& self) {
    if constexpr (!stack_pool::may_watch<Executor>()) {
      return false;
    } else {
      using entry = detail::exit_waiting<Self>;
      auto& pool = stack_pool::of(
          boost::asio::query(ex_, boost::asio::execution::context));
      entry* mem = detail::allocate_entry<entry>(pool, self);
      bool ok;
      wait_pool_ = &pool;
      try {
        ok = pool.watch(
            ex_, pidfd_, mem,
            [&] {
              // The handler first: should it throw, nothing has moved.
              auto slot = self.get_cancellation_state().slot();
              if (slot.is_connected())
                slot.template emplace<cancel_exit_wait>(cancel_exit_wait{this});
              new (mem) entry(std::move(self), pool);
            },
            &waiting_);
      } catch (...) {
        detail::deallocate_entry(pool, self, mem);
        throw;
      }
      if (!ok)
        detail::deallocate_entry(pool, self, mem);
      return ok;
    }
  }

  // Takes a pending exit wait off the pool's watcher; it completes with
  // `operation_aborted`, without touching this object.
  void unwatch_exit() noexcept {
    if (!wait_pool_)
      return;
    if (detail::watch_entry* e = wait_pool_->unwatch(&waiting_)) {
      try {
        e->fire(e, 0, detail::fire_mode::post); // no events: aborted
      } catch (...) {
        // No memory to post it: the operation is dropped, as at shutdown.
      }
      wait_pool_->disarm_if_idle();
    }
  }

  // Ends any pending exit wait, on the watcher or on the object's own
  // descriptor (destroying it closes the duplicate): it completes with
  // `operation_aborted`.
  void end_waits() noexcept {
    unwatch_exit();
    desc_.reset();
  }

  // Gives up the pidfd: pending waits complete with `operation_aborted`.
  int release_pidfd() noexcept {
    end_waits();
    return std::exchange(pidfd_, -1);
  }

  void close_pidfd() noexcept {
    int fd = release_pidfd();
    if (fd >= 0)
      ::close(fd);
  }

  static error_code reap_error(int r) {
    if (r == -ECHILD)
      return errc::status_unavailable;
    return error_code(-r, boost::system::system_category());
  }

  static void throw_if(const error_code& ec, const char* what) {
    if (ec)
      boost::throw_exception(system_error(ec, what));
  }

  // The reaper must exist before the context shuts down: a process object
  // destroyed during the shutdown (held by a pending handler) hands its child
  // to it, and a service created that late would never be shut down, leaving
  // the child unreaped. Creating it when the object gets a child is enough.
  void prepare_reaper() noexcept {
    try {
      reaper_of();
    } catch (...) {
      // Out of memory: abandon() reaps synchronously if it has to.
    }
  }

  detail::reaper& reaper_of() {
    return boost::asio::use_service<detail::reaper>(boost::asio::query(
        ex_, boost::asio::execution::context));
  }

  void abandon() noexcept {
    if (pidfd_ < 0)
      return;
    int st;
    if (native_status_ != still_active ||
        aspawn::reap(pidfd_, pid_, false, st, nullptr,
                     autoreaped_) != 0) {
      // Reaped before or just now, or not a child of this process (attached
      // by pid): nothing to kill.
      close_pidfd();
      pid_ = -1;
      return;
    }
    aspawn::send_signal(pidfd_, SIGKILL);
    try {
      reaper_of().adopt(ex_, pid_, release_pidfd(), true, autoreaped_);
    } catch (...) {
      // No memory for the reaper's entry: reap here (brief after SIGKILL).
      int fd = release_pidfd();
      int st;
      aspawn::reap(fd, pid_, true, st, nullptr, autoreaped_);
      ::close(fd);
    }
    pid_ = -1;
  }

  static constexpr std::array<int, 3> no_pipes{-1, -1, -1};

  void take_child(launched& l) {
    const int pid = std::exchange(l.pid, -1);
    const int fd = std::exchange(l.pidfd, -1);
    const bool autoreaped = l.autoreaped;
    for (std::size_t i = 0; i < 3; ++i)
      pipes_[i] = std::exchange(l.pipes[i], -1);
    pidfd_ = fd;
    pid_ = pid;
    autoreaped_ = autoreaped;
    native_status_ = still_active;
    prepare_reaper();
  }

  template <typename Pipe> Pipe take_pipe(std::size_t i) {
    Pipe p(ex_);
    int fd = std::exchange(pipes_[i], -1);
    if (fd < 0)
      return p;
    error_code ec;
    p.assign(fd, ec);
    if (ec) {
      ::close(fd);
      throw_if(ec, "aspawn::basic_process: take a pipe");
    }
    return p;
  }

  void close_pipes() noexcept {
    for (int& fd : pipes_)
      if (fd >= 0)
        ::close(std::exchange(fd, -1));
  }

  int pid_ = -1;
  int native_status_ = still_active;
  rusage_type usage_{};
  std::array<int, 3> pipes_ = no_pipes;
  bool autoreaped_ = false; // the kernel reaps it (CLONE_AUTOREAP)
  using descriptor_type = boost::asio::posix::basic_stream_descriptor<Executor>;

  Executor ex_;
  int pidfd_ = -1;
  stack_pool* wait_pool_ = nullptr;
  // The pending exit wait, while the stack pool's watcher has it (see
  // `start_wait`); set and cleared under the pool's lock.
  detail::watch_entry* waiting_ = nullptr;
  // Exit waits on executors the pool does not watch for: a descriptor on a
  // duplicate of the pidfd, made at the first such wait.
  std::unique_ptr<descriptor_type> desc_;
};

/// A process using a type-erased I/O executor.
using process = basic_process<>;

} // namespace aspawn

#endif // ASPAWN_ASIO_PROCESS_HPP
