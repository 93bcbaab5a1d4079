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
// The headers below are grouped by layer, one folder each, from the bottom:
// child/ (the only code that runs in the child), command/ (the launch
// description), core/ (the launch without Asio), asio/ (the Asio objects)
// and v2/ (the Boost.Process v2 surface). A header includes only its own
// layer and lower ones (test/check_layers.sh); see docs/design.md, "Layers".
// Every name is in namespace `aspawn` whichever folder declares it: this
// header is the one to include.
//

#ifndef ASPAWN_ASPAWN_HPP
#define ASPAWN_ASPAWN_HPP

#include <aspawn/child/step_kind.hpp>
#include <aspawn/child/sys.hpp>

#include <aspawn/command/command.hpp>
#include <aspawn/command/error.hpp>
#include <aspawn/command/initializer.hpp>

#include <aspawn/core/exit_status.hpp>
#include <aspawn/core/launch.hpp>

#include <aspawn/asio/async_spawn.hpp>
#include <aspawn/asio/process.hpp>
#include <aspawn/asio/stack_pool.hpp>

#include <aspawn/v2/bind_fd.hpp>
#include <aspawn/v2/environment.hpp>
#include <aspawn/v2/execute.hpp>
#include <aspawn/v2/launcher.hpp>
#include <aspawn/v2/popen.hpp>
#include <aspawn/v2/start_dir.hpp>
#include <aspawn/v2/stdio.hpp>

#endif // ASPAWN_ASPAWN_HPP
