//
// aspawn/command/initializer.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// Launch initializers in the style of Boost.Process v2.
//
// Overview
// --------
// Boost.Process v2 describes a launch as an executable path, an argument
// list and any number of initializer objects:
//
// @code
// aspawn::process proc(ctx, "/usr/bin/env", {"-0"},
//                      aspawn::process_environment{{"A=1"}},
//                      aspawn::process_start_dir("/tmp"),
//                      aspawn::process_stdio{nullptr, out_pipe, {}});
// @endcode
//
// aspawn translates such a description into an `aspawn::command` (see
// `aspawn/command/command.hpp`), the library's reusable launch description:
// each initializer is applied to the command in the order given. An
// initializer is any object `init` for which one of these is valid:
//
// * `init.on_setup(cmd)`, returning `error_code` (or `void`), where `cmd` is
//   the `aspawn::command&` being built. The library's initializers
//   (`process_stdio`, `process_environment`, `process_start_dir`,
//   `posix::bind_fd`) are of this kind, and so can be one's own.
// * `init(cmd)`, returning `error_code` or `void`: a callable, handy for
//   reaching the command's features that have no v2 initializer
//   (`new_session`, `limit`, `cgroup`...).
//
// The first initializer to return an error stops the translation, and the
// launch fails with that error before anything is cloned.
//
// The executable is a path, as in Boost.Process v2: a name without a slash
// is taken relative to the working directory (the child's, if a start
// directory is given), never searched in `PATH`; use
// `environment::find_executable` for that. `argv[0]` is the path as given.
// Paths may be given as `std::string`, `std::string_view`, `const char*`,
// `std::filesystem::path`, `boost::filesystem::path` or any type with a
// `native()` member returning a `std::string`.
//
// `make_command` exposes the translation itself, to launch the result with
// `async_spawn`, the non-blocking path; the launching constructors of
// `basic_process` wait (briefly) for the child's exec instead. The command
// refers to descriptors that some initializers own (the child's end of a
// pipe created by `process_stdio`, a file opened by `posix::bind_fd`): keep
// those initializers alive until the launch has been initiated.
//
// Layer command/: the launch description (error codes, `command` and its
// packing, initializers translated into a command). It may use child/.
//

#ifndef ASPAWN_COMMAND_INITIALIZER_HPP
#define ASPAWN_COMMAND_INITIALIZER_HPP

#include <concepts>
#include <cstddef>
#include <filesystem>
#include <initializer_list>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <boost/throw_exception.hpp>

#include <aspawn/command/command.hpp>
#include <aspawn/command/error.hpp>

namespace aspawn {

/// The filesystem library paths are taken from (Boost.Process v2 uses
/// `boost::filesystem`; aspawn accepts both).
namespace filesystem = std::filesystem;

/// Something that names a file: a string or a path object.
template <typename T>
concept path_like =
    !std::is_same_v<std::remove_cvref_t<T>, std::nullptr_t> &&
    (std::is_convertible_v<const T&, std::string_view> ||
     requires(const T& p) {
       { p.native() } -> std::convertible_to<std::string_view>;
     });

/// The characters of a path-like value.
template <path_like T> std::string_view path_view(const T& p) noexcept {
  if constexpr (std::is_convertible_v<const T&, std::string_view>)
    return std::string_view(p);
  else
    return std::string_view(p.native());
}

/// A range of argument strings.
template <typename R>
concept argument_range = requires(const R& r) {
  std::begin(r);
  std::end(r);
  std::string_view(*std::begin(r));
};

namespace detail {

template <typename Init>
concept member_initializer = requires(Init& i, command& c) { i.on_setup(c); };

template <typename Init>
concept callable_initializer =
    !member_initializer<Init> && std::is_invocable_v<Init&, command&>;

template <typename Init>
error_code apply_initializer(Init& init, command& cmd) {
  static_assert(member_initializer<Init> || callable_initializer<Init>,
                "not an aspawn initializer: expected process_stdio, "
                "process_environment, process_start_dir, posix::bind_fd, or "
                "an object with on_setup(aspawn::command&) or callable with "
                "aspawn::command&");
  if constexpr (member_initializer<Init>) {
    if constexpr (std::is_void_v<decltype(init.on_setup(cmd))>) {
      init.on_setup(cmd);
      return {};
    } else {
      return error_code(init.on_setup(cmd));
    }
  } else {
    if constexpr (std::is_void_v<std::invoke_result_t<Init&, command&>>) {
      init(cmd);
      return {};
    } else {
      return error_code(init(cmd));
    }
  }
}

} // namespace detail

/// Initializer: the child is killed when this process ends (see
/// `command::kill_on_parent_death`).
struct process_kill_on_parent_death {
  void on_setup(command& cmd) const { cmd.kill_on_parent_death(); }
};

/// Translates a Boost.Process v2 style launch description into `cmd`.
/**
 * @returns the first error of an initializer, or the command's own
 * validation error (`cmd.error()`), or an empty code.
 */
template <path_like Exe, argument_range Args, typename... Inits>
error_code make_command(command& cmd, const Exe& exe, const Args& args,
                        Inits&&... inits) {
  const std::string_view path = path_view(exe);
  if (!path.empty() && path.find('/') == std::string_view::npos) {
    std::string relative("./");
    relative += path;
    cmd = command(relative);
  } else {
    cmd = command(path);
  }
  if (!path.empty())
    cmd.argv0(path);
  cmd.args(args);
  error_code ec;
  ((ec ? void() : void(ec = detail::apply_initializer(inits, cmd))), ...);
  if (!ec)
    ec = cmd.error();
  return ec;
}

/// @overload
template <path_like Exe, typename... Inits>
error_code make_command(command& cmd, const Exe& exe,
                        std::initializer_list<std::string_view> args,
                        Inits&&... inits) {
  return make_command(cmd, exe, std::span<const std::string_view>(args.begin(),
                                                                  args.size()),
                      std::forward<Inits>(inits)...);
}

/// Translates a launch description; throws `system_error` on failure.
template <path_like Exe, argument_range Args, typename... Inits>
command make_command(const Exe& exe, const Args& args, Inits&&... inits) {
  command cmd;
  if (error_code ec =
          make_command(cmd, exe, args, std::forward<Inits>(inits)...))
    boost::throw_exception(system_error(ec, "aspawn::make_command"));
  return cmd;
}

/// @overload
template <path_like Exe, typename... Inits>
command make_command(const Exe& exe,
                     std::initializer_list<std::string_view> args,
                     Inits&&... inits) {
  command cmd;
  if (error_code ec =
          make_command(cmd, exe, args, std::forward<Inits>(inits)...))
    boost::throw_exception(system_error(ec, "aspawn::make_command"));
  return cmd;
}

} // namespace aspawn

#endif // ASPAWN_COMMAND_INITIALIZER_HPP
