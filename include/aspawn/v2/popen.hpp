//
// aspawn/v2/popen.hpp
// ~~~~~~~~~~~~~~~~~~~
//
// A process with pipes to its stdin and from its stdout, Boost.Process v2
// style.
//
// Overview
// --------
// `basic_popen` is a `basic_process` that is also a stream: what is written
// to it goes to the child's stdin, what is read from it comes from the
// child's stdout. It models Asio's `SyncReadStream`, `SyncWriteStream`,
// `AsyncReadStream` and `AsyncWriteStream`, so `asio::read`, `async_write`,
// `async_read_until`... work on it directly. The child's stderr is inherited
// unless an initializer says otherwise.
//
// Closing the stdin pipe (`get_stdin().close()`) sends end-of-file to the
// child; reading reports `asio::error::eof` once the child has closed its
// stdout (usually by exiting).
//
// Example
// -------
// @code
// aspawn::popen proc(ctx, "/usr/bin/tr", {"a-z", "A-Z"});
// asio::write(proc, asio::buffer("hello\n", 6));
// std::string line;
// asio::read_until(proc, asio::dynamic_buffer(line), '\n'); // "HELLO\n"
// proc.get_stdin().close();
// proc.wait();
// @endcode
//
// As with `basic_process`, the launching constructors return once the child
// has exec'd and throw `system_error` if it could not.
//
// Layer v2/: the Boost.Process v2 surface (initializers, popen, execute,
// launcher). It may use every layer below it.
//

#ifndef ASPAWN_V2_POPEN_HPP
#define ASPAWN_V2_POPEN_HPP

#include <cstddef>
#include <initializer_list>
#include <string_view>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/basic_readable_pipe.hpp>
#include <boost/asio/basic_writable_pipe.hpp>

#include <aspawn/asio/process.hpp>
#include <aspawn/command/error.hpp>
#include <aspawn/command/initializer.hpp>
#include <aspawn/v2/stdio.hpp>

namespace aspawn {

/// A process whose stdin and stdout are pipes to this object.
template <typename Executor = boost::asio::any_io_executor>
class basic_popen : public basic_process<Executor> {
  using base = basic_process<Executor>;

public:
  using executor_type = Executor;
  /// The pipe to the child's stdin.
  using stdin_type = boost::asio::basic_writable_pipe<Executor>;
  /// The pipe from the child's stdout.
  using stdout_type = boost::asio::basic_readable_pipe<Executor>;

  /// Rebinds the type to another executor.
  template <typename Executor1> struct rebind_executor {
    using other = basic_popen<Executor1>;
  };

  /// An object without a process.
  explicit basic_popen(const executor_type& ex) : base(ex) {}
  /// An object without a process, using `ctx`'s executor.
  template <detail::context_ref ExecutionContext>
  explicit basic_popen(ExecutionContext& ctx) : base(ctx) {}

  /// Launches `exe` with `args` and `inits`, with stdin and stdout connected
  /// to this object.
  template <path_like Exe, typename... Inits>
  explicit basic_popen(const executor_type& ex, const Exe& exe,
                       std::initializer_list<std::string_view> args,
                       Inits&&... inits)
      : base(ex) {
    start(exe, args, inits...);
  }
  template <path_like Exe, argument_range Args, typename... Inits>
  explicit basic_popen(const executor_type& ex, const Exe& exe,
                       const Args& args, Inits&&... inits)
      : base(ex) {
    start(exe, args, inits...);
  }
  template <detail::context_ref ExecutionContext, path_like Exe,
            typename... Inits>
  explicit basic_popen(ExecutionContext& ctx, const Exe& exe,
                       std::initializer_list<std::string_view> args,
                       Inits&&... inits)
      : base(ctx) {
    start(exe, args, inits...);
  }
  template <detail::context_ref ExecutionContext, path_like Exe,
            argument_range Args, typename... Inits>
  explicit basic_popen(ExecutionContext& ctx, const Exe& exe,
                       const Args& args, Inits&&... inits)
      : base(ctx) {
    start(exe, args, inits...);
  }

  basic_popen(basic_popen&&) noexcept = default;
  basic_popen& operator=(basic_popen&&) noexcept = default;

  /// Converting move.
  template <typename Executor1>
  basic_popen(basic_popen<Executor1>&& other)
      : base(std::move(other)), stdin_(std::move(other.stdin_)),
        stdout_(std::move(other.stdout_)) {}

  /// The pipe to the child's stdin.
  stdin_type& get_stdin() noexcept { return stdin_; }
  const stdin_type& get_stdin() const noexcept { return stdin_; }
  /// The pipe from the child's stdout.
  stdout_type& get_stdout() noexcept { return stdout_; }
  const stdout_type& get_stdout() const noexcept { return stdout_; }

  /// Writes some data to the child's stdin (blocking).
  template <typename ConstBufferSequence>
  std::size_t write_some(const ConstBufferSequence& buffers) {
    return stdin_.write_some(buffers);
  }
  template <typename ConstBufferSequence>
  std::size_t write_some(const ConstBufferSequence& buffers, error_code& ec) {
    return stdin_.write_some(buffers, ec);
  }

  /// Writes some data to the child's stdin.
  /** Completion signature: `void(error_code, std::size_t)`. */
  template <typename ConstBufferSequence,
            typename Token =
                boost::asio::default_completion_token_t<executor_type>>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token = {}) {
    return stdin_.async_write_some(buffers, std::forward<Token>(token));
  }

  /// Reads some data from the child's stdout (blocking).
  template <typename MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence& buffers) {
    return stdout_.read_some(buffers);
  }
  template <typename MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence& buffers, error_code& ec) {
    return stdout_.read_some(buffers, ec);
  }

  /// Reads some data from the child's stdout.
  /** Completion signature: `void(error_code, std::size_t)`. */
  template <typename MutableBufferSequence,
            typename Token =
                boost::asio::default_completion_token_t<executor_type>>
  auto async_read_some(const MutableBufferSequence& buffers,
                       Token&& token = {}) {
    return stdout_.async_read_some(buffers, std::forward<Token>(token));
  }

private:
  template <typename> friend class basic_popen;

  template <typename Exe, typename Args, typename... Inits>
  void start(const Exe& exe, const Args& args, Inits&... inits) {
    base::operator=(base(this->get_executor(), exe, args, inits...,
                         process_stdio{stdin_, stdout_, {}}));
  }

  stdin_type stdin_{base::get_executor()};
  stdout_type stdout_{base::get_executor()};
};

/// A popen using a type-erased I/O executor.
using popen = basic_popen<>;

} // namespace aspawn

#endif // ASPAWN_V2_POPEN_HPP
