//
// aspawn/core/exit_status.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// Exit codes, and the full exit status of a child with its resource usage.
//
// Overview
// --------
// A child's fate is recorded as a native status in the `waitpid` encoding
// (`native_exit_code_type`). Boost.Process v2 reduces it to one portable
// number, and so does aspawn, with the same functions:
//
// * `evaluate_exit_code(native)`: the status given to `exit()` for a child
//   that exited, the signal number for a child killed by a signal;
// * `process_is_running(native)`: whether the status says the child has not
//   terminated yet (`still_active`, see `aspawn/core/launch.hpp`).
//
// The portable number cannot tell "exited with 9" from "killed by SIGKILL".
// `exit_status` keeps the whole story: how the child ended, and the resource
// usage the kernel reported when it was reaped (user and system CPU time,
// peak resident set size). `basic_process::status()` and
// `basic_process::async_wait_status()` deliver it.
//
// Example
// -------
// @code
// proc.async_wait_status([](aspawn::error_code ec, aspawn::exit_status s) {
//   if (!ec && s.signaled())
//     std::printf("killed by signal %d after %lld us of CPU\n",
//                 s.term_signal(), (long long)s.user_time().count());
// });
// @endcode
//
// Layer core/: the launch core without Asio (clone on a cached stack, status
// pipe and pidfd, exit statuses). It may use child/ and command/.
//

#ifndef ASPAWN_CORE_EXIT_STATUS_HPP
#define ASPAWN_CORE_EXIT_STATUS_HPP

#include <chrono>
#include <cstdint>

#include <sys/resource.h>
#include <unistd.h>

#include <aspawn/core/launch.hpp>

namespace aspawn {

/// A process id.
using pid_type = int;

/// The native exit status: the `waitpid` encoding.
using native_exit_code_type = int;

/// The id of the calling process.
inline pid_type current_pid() noexcept { return ::getpid(); }

/// Whether a native status says the child has not terminated (it neither
/// exited nor was killed by a signal).
constexpr bool process_is_running(native_exit_code_type native) noexcept {
  const bool exited = (native & 0x7f) == 0;
  const bool signaled = (native & 0x7f) != 0 && (native & 0x7f) != 0x7f;
  return !exited && !signaled;
}

/// Converts a native (`waitpid`) status to a Boost.Process v2 exit code:
/// the exit status of a child that exited, the signal number of a child
/// killed by a signal, the native status itself otherwise.
constexpr int evaluate_exit_code(native_exit_code_type native) noexcept {
  if ((native & 0x7f) == 0) // exited
    return (native >> 8) & 0xff;
  if (((native & 0x7f) + 1) >> 1 > 0 && (native & 0xff) != 0x7f) // signalled
    return native & 0x7f;
  return native;
}

/// How a child ended, with the resources it used.
/**
 * A default-constructed status describes a child that is still running.
 * The resource figures are those of the child alone (its own children that
 * it waited for included, as `getrusage(RUSAGE_CHILDREN)` would count them),
 * and are zero until the child has been reaped.
 */
class exit_status {
public:
  /// A running child.
  exit_status() noexcept = default;

  /// A status from its native encoding and the usage `waitid` reported.
  exit_status(native_exit_code_type native, const struct rusage& usage) noexcept
      : native_(native), usage_(usage) {}

  /// The native (`waitpid`) status.
  native_exit_code_type native() const noexcept { return native_; }

  /// The Boost.Process v2 exit code (see `evaluate_exit_code`).
  int code() const noexcept { return evaluate_exit_code(native_); }

  /// Whether the child has not terminated yet.
  bool running() const noexcept { return process_is_running(native_); }

  /// Whether the child exited (returned from `main` or called `exit`).
  bool exited() const noexcept { return (native_ & 0x7f) == 0; }

  /// Whether the child was killed by a signal.
  bool signaled() const noexcept { return !exited() && !running(); }

  /// The status the child passed to `exit`, or -1 if it did not exit.
  int exit_code() const noexcept {
    return exited() ? (native_ >> 8) & 0xff : -1;
  }

  /// The signal that killed the child, or 0 if it was not killed.
  int term_signal() const noexcept { return signaled() ? native_ & 0x7f : 0; }

  /// Whether the child dumped core when it was killed.
  bool core_dumped() const noexcept { return signaled() && (native_ & 0x80); }

  /// CPU time spent in user mode.
  std::chrono::microseconds user_time() const noexcept {
    return to_us(usage_.ru_utime);
  }

  /// CPU time spent in the kernel on the child's behalf.
  std::chrono::microseconds system_time() const noexcept {
    return to_us(usage_.ru_stime);
  }

  /// The peak resident set size, in bytes.
  std::uint64_t max_rss_bytes() const noexcept {
    return static_cast<std::uint64_t>(usage_.ru_maxrss) * 1024u;
  }

  /// Everything `waitid` reported.
  const struct rusage& usage() const noexcept { return usage_; }

private:
  static std::chrono::microseconds to_us(const struct timeval& tv) noexcept {
    return std::chrono::seconds(tv.tv_sec) +
           std::chrono::microseconds(tv.tv_usec);
  }

  native_exit_code_type native_ = still_active;
  struct rusage usage_ {};
};

} // namespace aspawn

#endif // ASPAWN_CORE_EXIT_STATUS_HPP
