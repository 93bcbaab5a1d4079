//
// aspawn/aspawn.hpp
// ~~~~~~~~~~~~~~~~~
//
// The whole library.
//
// The native interface is `command` and `async_spawn`. The Boost.Process v2
// surface (`process` constructors with initializers, `process_stdio`,
// `process_environment`, `process_start_dir`, `posix::bind_fd`, `execute`,
// `async_execute`, `popen`, `environment`) lets code written for v2 use
// aspawn with `namespace bp = aspawn;` (see
// `docs/porting-from-boost-process.md`).
//

#ifndef ASPAWN_ASPAWN_HPP
#define ASPAWN_ASPAWN_HPP

#include <aspawn/async_spawn.hpp>
#include <aspawn/bind_fd.hpp>
#include <aspawn/command.hpp>
#include <aspawn/core.hpp>
#include <aspawn/environment.hpp>
#include <aspawn/error.hpp>
#include <aspawn/execute.hpp>
#include <aspawn/exit_status.hpp>
#include <aspawn/initializer.hpp>
#include <aspawn/launcher.hpp>
#include <aspawn/popen.hpp>
#include <aspawn/process.hpp>
#include <aspawn/stack_pool.hpp>
#include <aspawn/start_dir.hpp>
#include <aspawn/stdio.hpp>
#include <aspawn/step_kind.hpp>
#include <aspawn/sys.hpp>

#endif // ASPAWN_ASPAWN_HPP
