// aspawn/child/step.hpp: the child-side launch image.
//
// Everything here is plain data with no pointers into the parent's heap: a
// command packs it once into a position-independent blob, and each launch
// copies the blob to the top of a child stack and adds the pointer arrays.
//
// Layer child/: child-safe code, the only code that may run in the child
// between clone and exec (raw system calls, the launch image). It uses
// no other layer of aspawn, no Boost, no libc call.
//

#ifndef ASPAWN_CHILD_STEP_HPP
#define ASPAWN_CHILD_STEP_HPP

#include <cstddef>
#include <cstdint>

#include <aspawn/child/step_kind.hpp>
#include <aspawn/child/sys.hpp>

namespace aspawn {

/// A function run in the child between clone and exec.
/**
 * @param data A private copy, on the child's stack, of the bytes given to
 * `command::child_function`; the function may modify it.
 * @param size Their length.
 * @returns 0 to go on with the next step, or `-errno` to stop the launch; the
 * launch then completes with that errno and this step's index.
 *
 * The function runs in a process that shares the parent's memory: it may only
 * call the functions of `aspawn/child/sys.hpp`, must not throw, and should be
 * marked `ASPAWN_CHILD_FN`.
 */
using child_function_type = int (*)(void* data, std::size_t size);

} // namespace aspawn

namespace aspawn::detail {

inline constexpr std::uint32_t no_string = 0xffffffffu;

/// One step: `kind` picks the system call; the fields are its arguments.
/// Strings and arrays are offsets into the blob.
struct step {
  step_kind kind;
  std::uint8_t from_slot; // dup: `a` is a launch slot (a pipe made per launch)
  std::uint8_t pad_[2];
  std::int32_t a;      // fd, pid, resource, signal...
  std::int32_t b;      // target fd, flags, pgid...
  std::int32_t c;      // mode...
  std::uint64_t x;     // 64-bit values: signal sets, limits, masks
  std::uint64_t y;     // second 64-bit value: hard limit...
  std::uint32_t str;   // blob offset of a string or array, or no_string
  std::uint32_t len;   // its length in elements (arrays) or bytes (data)
  std::uintptr_t fn;   // child function
};

/// Header of a packed blob.
struct blob_header {
  std::uint32_t size;        // total bytes, a multiple of 16
  std::uint32_t exe;         // offset of the executable path
  std::uint32_t argc;        // argv entries
  std::uint32_t argv;        // offset of argc uint32 string offsets
  std::uint32_t env_mode;    // 0 inherit unchanged, 1 inherit+edit, 2 replace
  std::uint32_t env_count;   // entries set ("K=V")
  std::uint32_t env;         // offset of env_count uint32 string offsets
  std::uint32_t unset_count; // keys removed from the inherited environment
  std::uint32_t unset;       // offset of unset_count uint32 string offsets
  std::uint32_t step_count;
  std::uint32_t steps;       // offset of step_count `step`s (8-aligned)
  std::uint32_t max_fd;      // highest fd named as a target or closed
  std::int32_t exec_fd;      // O_PATH fd to execveat, or -1
  std::uint32_t flags;       // blob_flags
  std::uint64_t sigmask;     // mask for the child if flag_sigmask
};

enum blob_flags : std::uint32_t {
  flag_sigmask = 1u << 0,       // use header.sigmask instead of parent's
  flag_restore_dumpable = 1u << 1,
  flag_fexecve_script = 1u << 2,
  // A pipe per launch for stdin, stdout, stderr (bit 3 + n for fd n): the
  // launcher creates it and puts the child's end in `child_args::slot[n]`.
  flag_pipe_stdin = 1u << 3,
  flag_pipe_stdout = 1u << 4,
  flag_pipe_stderr = 1u << 5,
  // Kill the child when the parent process ends (`kill_on_parent_death`).
  flag_kill_on_parent_death = 1u << 6,
  // The steps set PR_SET_NO_NEW_PRIVS: CLONE_NNP changes nothing for them.
  flag_no_new_privs = 1u << 7,
};

/// The child's view of a launch: lives on the child stack.
struct child_args {
  const std::byte* blob;
  const char* path;
  char* const* argv;
  char* const* envp;
  int status_fd;              // write end of the status pipe
  int exec_fd;                // held executable (child-side), or -1
  int reset_handlers;         // 1 on the plain-clone path
  int slot[3];                // child ends of per-launch pipes, or -1
  int autokill;               // 1 if cloned with CLONE_PIDFD_AUTOKILL
  sys::sigset parent_mask;    // the parent thread's mask before the launch
};

/// The record a failing child writes to the status pipe.
struct failure_record {
  std::int32_t step;
  std::int32_t err;
  std::uint32_t kind;
  std::uint32_t magic;
};
inline constexpr std::uint32_t failure_magic = 0x61737077u; // "aspw"

} // namespace aspawn::detail

#endif // ASPAWN_CHILD_STEP_HPP
