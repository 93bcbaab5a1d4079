// aspawn/core/blocking_launch.hpp: launching and waiting for the exec.
//
// The launching constructors of `basic_process` (the Boost.Process v2
// surface) report a failed exec synchronously. They use the launch core
// directly: clone, then a blocking read of the status pipe until EOF, which
// comes as soon as the child has exec'd or failed a step. A failed child is
// reaped before returning (it exits right after reporting), so nothing is
// left behind. `async_spawn` is the non-blocking path.
//
// Layer core/: the launch core without Asio (clone on a cached stack, status
// pipe and pidfd, exit statuses). It may use child/ and command/.
//

#ifndef ASPAWN_CORE_BLOCKING_LAUNCH_HPP
#define ASPAWN_CORE_BLOCKING_LAUNCH_HPP

#include <cerrno>
#include <cstddef>

#include <unistd.h>

#include <aspawn/command/command.hpp>
#include <aspawn/command/error.hpp>
#include <aspawn/core/launch.hpp>

namespace aspawn::detail {

/// Launches `cmd` and waits until the child has exec'd. On success `l`
/// describes the child (pid, pidfd, pipe ends, owned by the caller; its
/// stack is released already); on failure no child, fd or stack is left.
inline error_code launch_blocking(const command& cmd, stack_cache& stacks,
                                  launched& l) noexcept {
  if (error_code ec = aspawn::launch(cmd, stacks, l))
    return ec;

  alignas(16) std::byte record[status_area_size];
  long n = read_status(l.status_fd, record, sizeof record);
  std::size_t got = n > 0 ? static_cast<std::size_t>(n) : 0;
  error_code result;
  if (n < 0)
    result = error_code(static_cast<int>(-n), boost::system::system_category());
  else if (got >= sizeof record) // the protocol is broken
    result = errc::protocol_error;
  if (result) {
    // Kills the child, waits for it to leave its stack, and reaps it.
    abandon_launch(l, stacks);
    return result;
  }

  // EOF: the child no longer runs on its stack.
  ::close(l.status_fd);
  l.status_fd = -1;
  stacks.release(l.stack);
  l.stack = stack_region{};
  if (l.credentials)
    end_credential_launch();

  result = decode_status(record, got);
  if (result) {
    // The child reported a failed step and exits at once.
    int status;
    aspawn::reap(l.pidfd, l.pid, true, status, nullptr, l.autoreaped);
    ::close(l.pidfd);
    l.pidfd = -1;
    l.pid = -1;
    close_pipes(l);
    return result;
  }
  return {};
}

} // namespace aspawn::detail

#endif // ASPAWN_CORE_BLOCKING_LAUNCH_HPP
