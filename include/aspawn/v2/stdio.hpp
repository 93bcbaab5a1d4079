//
// aspawn/v2/stdio.hpp
// ~~~~~~~~~~~~~~~~~~~
//
// The standard streams of a child, Boost.Process v2 style.
//
// Overview
// --------
// `process_stdio` is the initializer that sets the child's stdin, stdout and
// stderr at once. It is an aggregate of three members, `in`, `out` and
// `err`, so that it can be written positionally or with designated
// initializers:
//
// @code
// asio::readable_pipe out(ctx);
// aspawn::process proc(ctx, "/usr/bin/ls", {"-l"},
//                      aspawn::process_stdio{nullptr, out, {}});
// aspawn::process quiet(ctx, "/usr/bin/make", {},
//                       aspawn::process_stdio{.out = nullptr, .err = nullptr});
// @endcode
//
// Each member accepts:
//
// * nothing (`{}`): the parent's stream is inherited;
// * `nullptr`: the null device (`/dev/null`);
// * a `FILE*` (`stdin`, `stderr`, a file from `fopen`...): its descriptor;
// * a native descriptor (`int`);
// * a path (`std::string`, `const char*`, `std::filesystem::path`,
//   `boost::filesystem::path`...): the file, opened in the child for
//   reading (stdin) or for writing, created with mode 0660 if missing and
//   not truncated (stdout, stderr), as Boost.Process v2 does;
// * an `asio::readable_pipe` for stdout or stderr, or an
//   `asio::writable_pipe` for stdin, that is not open yet: a new pipe is
//   created, the pipe object gets the parent's end and the child the other
//   (the parent's copy of the child's end is closed when the `process_stdio`
//   is destroyed: keep it a temporary, as above, so that the reader sees
//   end-of-file when the child exits);
// * any other object with `native_handle()` (a socket, an open pipe of the
//   other direction, a file...): its descriptor.
//
// Descriptors are duplicated in the child; the parent's stay as they are.
// A stream left to inherit does not override what an earlier initializer
// (a `posix::bind_fd` of 0, 1 or 2) set for it.
// An invalid input (a negative descriptor, a pipe object that is already
// open, a failed `pipe2`) makes the launch fail with a clear error and
// nothing else happens.
//
// Layer v2/: the Boost.Process v2 surface (initializers, popen, execute,
// launcher). It may use every layer below it.
//

#ifndef ASPAWN_V2_STDIO_HPP
#define ASPAWN_V2_STDIO_HPP

#include <cstddef>
#include <cstdio>
#include <string_view>
#include <type_traits>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/basic_readable_pipe.hpp>
#include <boost/asio/basic_writable_pipe.hpp>
#include <boost/asio/error.hpp>

#include <aspawn/command/command.hpp>
#include <aspawn/command/error.hpp>
#include <aspawn/command/initializer.hpp>

namespace aspawn {

namespace detail {

template <typename T> struct is_readable_pipe : std::false_type {};
template <typename E>
struct is_readable_pipe<boost::asio::basic_readable_pipe<E>> : std::true_type {};
template <typename T> struct is_writable_pipe : std::false_type {};
template <typename E>
struct is_writable_pipe<boost::asio::basic_writable_pipe<E>> : std::true_type {};

template <typename T>
concept has_native_fd = requires(T& o) {
  { o.native_handle() } -> std::convertible_to<int>;
};

/// One standard stream of the child: `Target` is 0, 1 or 2.
template <int Target> class process_io_binding {
public:
  static constexpr int target = Target;

  /// Inherit the parent's stream.
  process_io_binding() noexcept = default;

  /// The null device.
  process_io_binding(std::nullptr_t) noexcept : r_(redirect::null()) {}

  /// The descriptor of an open `FILE`.
  process_io_binding(FILE* f) noexcept
      : r_(redirect::from_fd(f ? ::fileno(f) : -1)) {}

  /// A native descriptor of the parent.
  process_io_binding(int fd) noexcept : r_(redirect::from_fd(fd)) {}

  /// A file, opened in the child.
  template <path_like Path>
    requires(!std::is_convertible_v<const Path&, int>)
  process_io_binding(const Path& p)
      : r_(redirect::file(path_view(p),
                          Target == 0 ? O_RDONLY : (O_WRONLY | O_CREAT),
                          0660)) {}

  /// A new pipe: `pipe` gets the parent's end (stdout and stderr).
  template <typename Executor>
    requires(Target != 0)
  process_io_binding(boost::asio::basic_readable_pipe<Executor>& pipe) {
    make_pipe(pipe, 0);
  }

  /// A new pipe: `pipe` gets the parent's end (stdin).
  template <typename Executor>
    requires(Target == 0)
  process_io_binding(boost::asio::basic_writable_pipe<Executor>& pipe) {
    make_pipe(pipe, 1);
  }

  /// The descriptor of any I/O object.
  template <typename IoObject>
    requires has_native_fd<IoObject> &&
             (!(Target != 0 &&
                is_readable_pipe<std::remove_cvref_t<IoObject>>::value)) &&
             (!(Target == 0 &&
                is_writable_pipe<std::remove_cvref_t<IoObject>>::value))
  process_io_binding(IoObject&& io) noexcept
      : r_(redirect::from_fd(static_cast<int>(io.native_handle()))) {}

  process_io_binding(process_io_binding&& o) noexcept
      : r_(std::move(o.r_)), owned_(std::exchange(o.owned_, -1)), ec_(o.ec_) {}
  process_io_binding& operator=(process_io_binding&& o) noexcept {
    if (this != &o) {
      close_owned();
      r_ = std::move(o.r_);
      owned_ = std::exchange(o.owned_, -1);
      ec_ = o.ec_;
    }
    return *this;
  }
  process_io_binding(const process_io_binding&) = delete;
  process_io_binding& operator=(const process_io_binding&) = delete;

  ~process_io_binding() { close_owned(); }

  /// What the child's descriptor `target` will be.
  const redirect& get() const noexcept { return r_; }

  /// An error met while building the binding (creating a pipe).
  const error_code& error() const noexcept { return ec_; }

  /// Applies the binding to `cmd` (an inheriting binding leaves the
  /// command's setting for the stream as it is).
  error_code on_setup(command& cmd) const {
    if (ec_)
      return ec_;
    if (r_.which() != redirect::kind::inherit)
      cmd.stdio(Target, r_);
    return {};
  }

private:
  template <typename Pipe> void make_pipe(Pipe& pipe, int parent_end) {
    if (pipe.is_open()) {
      ec_ = boost::asio::error::already_open;
      return;
    }
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      ec_ = error_code(errno, boost::system::system_category());
      return;
    }
    pipe.assign(fds[parent_end], ec_);
    if (ec_) {
      ::close(fds[0]);
      ::close(fds[1]);
      return;
    }
    owned_ = fds[1 - parent_end];
    r_ = redirect::from_fd(owned_);
  }

  void close_owned() noexcept {
    if (owned_ >= 0)
      ::close(owned_);
    owned_ = -1;
  }

  redirect r_ = redirect::inherit();
  int owned_ = -1; // the child's end of a pipe created here
  error_code ec_;
};

} // namespace detail

/// The stdin binding of `process_stdio`.
using process_input_binding = detail::process_io_binding<0>;
/// The stdout binding of `process_stdio`.
using process_output_binding = detail::process_io_binding<1>;
/// The stderr binding of `process_stdio`.
using process_error_binding = detail::process_io_binding<2>;

/// The initializer for the child's standard streams (see the overview).
struct process_stdio {
  process_input_binding in{};
  process_output_binding out{};
  process_error_binding err{};

  /// Applies the three bindings to `cmd`.
  error_code on_setup(command& cmd) const {
    if (error_code ec = in.on_setup(cmd))
      return ec;
    if (error_code ec = out.on_setup(cmd))
      return ec;
    return err.on_setup(cmd);
  }
};

} // namespace aspawn

#endif // ASPAWN_V2_STDIO_HPP
