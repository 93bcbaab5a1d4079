//
// aspawn/child/step_kind.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// The kinds of child setup steps, as named in error messages. Free of any
// dependency so that child-side code can use it.
//
// Layer child/: child-safe code, the only code that may run in the child
// between clone and exec (raw system calls, the launch image). It uses
// no other layer of aspawn, no Boost, no libc call.
//

#ifndef ASPAWN_CHILD_STEP_KIND_HPP
#define ASPAWN_CHILD_STEP_KIND_HPP

#include <cstdint>

namespace aspawn {

/// What a child setup step does; named in messages of `child_category()`.
enum class step_kind : std::uint8_t {
  exec = 0,
  reset_signals,
  open,
  dup,
  close,
  close_others,
  chdir,
  fchdir,
  setsid,
  setpgid,
  tcsetpgrp,
  sigmask,
  signal_default,
  signal_ignore,
  setgroups,
  setresgid,
  setresuid,
  umask,
  no_new_privs,
  prlimit,
  nice,
  affinity,
  pdeathsig,
  user_function,
  restore_dumpable,
  count_ // not a kind
};

} // namespace aspawn

#endif // ASPAWN_CHILD_STEP_KIND_HPP
