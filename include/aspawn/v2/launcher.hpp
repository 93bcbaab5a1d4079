//
// aspawn/v2/launcher.hpp
// ~~~~~~~~~~~~~~~~~~~~~~
//
// The launcher object of Boost.Process v2.
//
// Overview
// --------
// In Boost.Process v2 the launching constructors of `basic_process` call a
// launcher object, `default_process_launcher`, which can also be called
// directly, in particular with an `error_code&` to report failure without
// throwing:
//
// @code
// aspawn::error_code ec;
// auto proc = aspawn::default_process_launcher()(ctx, ec, "/usr/bin/true", {});
// if (ec) ...
// @endcode
//
// aspawn's launcher does the same as the constructors (see
// `aspawn/asio/process.hpp`): it returns once the child has exec'd. On failure
// the returned process is empty and nothing is left behind.
//
// Layer v2/: the Boost.Process v2 surface (initializers, popen, execute,
// launcher). It may use every layer below it.
//

#ifndef ASPAWN_V2_LAUNCHER_HPP
#define ASPAWN_V2_LAUNCHER_HPP

#include <initializer_list>
#include <string_view>
#include <utility>

#include <aspawn/asio/async_spawn.hpp>
#include <aspawn/asio/process.hpp>
#include <aspawn/command/error.hpp>
#include <aspawn/command/initializer.hpp>

namespace aspawn {

/// Launches processes the way the `basic_process` constructors do.
struct default_process_launcher {
  /// Launches on `ex`; throws `system_error` on failure.
  template <detail::asio_executor Executor, path_like Exe, typename... Inits>
  basic_process<Executor> operator()(const Executor& ex, const Exe& exe,
                                     std::initializer_list<std::string_view> args,
                                     Inits&&... inits) const {
    return basic_process<Executor>(ex, exe, args, inits...);
  }
  template <detail::asio_executor Executor, path_like Exe, argument_range Args,
            typename... Inits>
  basic_process<Executor> operator()(const Executor& ex, const Exe& exe,
                                     const Args& args, Inits&&... inits) const {
    return basic_process<Executor>(ex, exe, args, inits...);
  }

  /// Launches on `ex`; reports failure in `ec`.
  template <detail::asio_executor Executor, path_like Exe, typename... Inits>
  basic_process<Executor> operator()(const Executor& ex, error_code& ec,
                                     const Exe& exe,
                                     std::initializer_list<std::string_view> args,
                                     Inits&&... inits) const {
    return basic_process<Executor>(ex, ec, exe, args, inits...);
  }
  template <detail::asio_executor Executor, path_like Exe, argument_range Args,
            typename... Inits>
  basic_process<Executor> operator()(const Executor& ex, error_code& ec,
                                     const Exe& exe, const Args& args,
                                     Inits&&... inits) const {
    return basic_process<Executor>(ex, ec, exe, args, inits...);
  }

  /// Launches on `ctx`'s executor; throws `system_error` on failure.
  template <detail::context_ref ExecutionContext, path_like Exe,
            typename... Inits>
  auto operator()(ExecutionContext& ctx, const Exe& exe,
                  std::initializer_list<std::string_view> args,
                  Inits&&... inits) const {
    return (*this)(ctx.get_executor(), exe, args, inits...);
  }
  template <detail::context_ref ExecutionContext, path_like Exe,
            argument_range Args, typename... Inits>
  auto operator()(ExecutionContext& ctx, const Exe& exe, const Args& args,
                  Inits&&... inits) const {
    return (*this)(ctx.get_executor(), exe, args, inits...);
  }

  /// Launches on `ctx`'s executor; reports failure in `ec`.
  template <detail::context_ref ExecutionContext, path_like Exe,
            typename... Inits>
  auto operator()(ExecutionContext& ctx, error_code& ec, const Exe& exe,
                  std::initializer_list<std::string_view> args,
                  Inits&&... inits) const {
    return (*this)(ctx.get_executor(), ec, exe, args, inits...);
  }
  template <detail::context_ref ExecutionContext, path_like Exe,
            argument_range Args, typename... Inits>
  auto operator()(ExecutionContext& ctx, error_code& ec, const Exe& exe,
                  const Args& args, Inits&&... inits) const {
    return (*this)(ctx.get_executor(), ec, exe, args, inits...);
  }
};

} // namespace aspawn

#endif // ASPAWN_V2_LAUNCHER_HPP
