//
// aspawn/v2/bind_fd.hpp
// ~~~~~~~~~~~~~~~~~~~~~
//
// Passing extra file descriptors to a child, Boost.Process v2 style.
//
// Overview
// --------
// A child receives only its standard streams and the descriptors it is
// explicitly given: every other descriptor is closed in the child, whether
// or not it is close-on-exec (as with Boost.Process v2). `posix::bind_fd`
// gives one: it makes the child's descriptor `target` a copy of a
// descriptor of the parent.
//
// @code
// posix::bind_fd(3)              // the parent's 3 as the child's 3
// posix::bind_fd(3, fd)          // the parent's fd as the child's 3
// posix::bind_fd(3, socket)      // any object with native_handle()
// posix::bind_fd(3, stderr)      // a FILE*
// posix::bind_fd(3, nullptr)     // /dev/null
// posix::bind_fd(3, "log.txt")   // a file, opened O_RDWR | O_CREAT, 0660
// posix::bind_fd(3, "in.txt", O_RDONLY)
// @endcode
//
// Files are opened in the parent when the `bind_fd` is constructed
// (close-on-exec, so no other child inherits them) and closed when it is
// destroyed. A file that cannot be opened, or a negative descriptor, makes
// the launch fail with a clear error; nothing is left behind.
//
// Descriptors are bound after the standard streams, in the order given, so
// binds may swap descriptors. Binding 0, 1 or 2 is allowed as long as no
// `process_stdio` also sets that stream (`errc::duplicate_target_fd`).
//
// Layer v2/: the Boost.Process v2 surface (initializers, popen, execute,
// launcher). It may use every layer below it.
//

#ifndef ASPAWN_V2_BIND_FD_HPP
#define ASPAWN_V2_BIND_FD_HPP

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <string>
#include <type_traits>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

#include <aspawn/command/command.hpp>
#include <aspawn/command/error.hpp>
#include <aspawn/command/initializer.hpp>

namespace aspawn::posix {

/// The initializer binding a parent descriptor to a child descriptor.
struct bind_fd {
  /// The descriptor number in the child.
  int target;
  /// The parent's descriptor.
  int fd;
  /// Whether `fd` was opened here (and is closed by the destructor).
  bool fd_needs_closing = false;
  /// The error met opening a file, if any.
  error_code ec;

  bind_fd() = delete;

  /// Passes the parent's `target` as the child's `target`.
  bind_fd(int target) noexcept : target(target), fd(target) {}

  /// Passes the parent's `fd` as the child's `target`.
  bind_fd(int target, int fd) noexcept : target(target), fd(fd) {}

  /// Passes the descriptor of a `FILE`.
  bind_fd(int target, FILE* f) noexcept
      : target(target), fd(f ? ::fileno(f) : -1) {}

  /// Passes the descriptor of any object with `native_handle()`.
  template <typename IoObject>
    requires requires(IoObject& o) {
      { o.native_handle() } -> std::convertible_to<int>;
    }
  bind_fd(int target, IoObject&& io) noexcept
      : target(target), fd(static_cast<int>(io.native_handle())) {}

  /// Passes the null device (opened read-write).
  bind_fd(int target, std::nullptr_t) : bind_fd(target, "/dev/null") {}

  /// Passes a file opened with `flags` (mode 0660 if created).
  template <path_like Path>
    requires(!std::is_convertible_v<const Path&, int>)
  bind_fd(int target, const Path& path, int flags = O_RDWR | O_CREAT)
      : target(target), fd(-1) {
    std::string p(path_view(path));
    do
      fd = ::open(p.c_str(), flags | O_CLOEXEC, 0660);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
      ec = error_code(errno, boost::system::system_category());
    else
      fd_needs_closing = true;
  }

  bind_fd(bind_fd&& o) noexcept
      : target(o.target), fd(o.fd),
        fd_needs_closing(std::exchange(o.fd_needs_closing, false)),
        ec(o.ec) {}
  bind_fd& operator=(bind_fd&& o) noexcept {
    if (this != &o) {
      close_owned();
      target = o.target;
      fd = o.fd;
      fd_needs_closing = std::exchange(o.fd_needs_closing, false);
      ec = o.ec;
    }
    return *this;
  }
  bind_fd(const bind_fd&) = delete;
  bind_fd& operator=(const bind_fd&) = delete;

  ~bind_fd() { close_owned(); }

  /// Adds the binding to `cmd`.
  error_code on_setup(command& cmd) const {
    if (ec)
      return ec;
    cmd.map_fd(target, fd);
    return {};
  }

private:
  void close_owned() noexcept {
    if (fd_needs_closing && fd >= 0)
      ::close(fd);
    fd_needs_closing = false;
  }
};

} // namespace aspawn::posix

#endif // ASPAWN_V2_BIND_FD_HPP
