//
// aspawn/aspawn.hpp
// ~~~~~~~~~~~~~~~~~
//
// The whole library.
//

#ifndef ASPAWN_ASPAWN_HPP
#define ASPAWN_ASPAWN_HPP

#include <aspawn/async_spawn.hpp>
#include <aspawn/command.hpp>
#include <aspawn/core.hpp>
#include <aspawn/error.hpp>
#include <aspawn/process.hpp>
#include <aspawn/stack_pool.hpp>
#include <aspawn/step_kind.hpp>
#include <aspawn/sys.hpp>

#endif // ASPAWN_ASPAWN_HPP
