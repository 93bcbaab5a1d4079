//
// aspawn/command/error.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~
//
// Error codes.
//
// Overview
// --------
// aspawn reports every failure as a `boost::system::error_code`. There are
// three sources:
//
// * The parent's own system calls (pipe2, mmap, clone, waitid...): their errno
//   in `boost::system::system_category()`.
//
// * A setup step that failed in the child, or the exec itself: the error is in
//   `aspawn::child_category()`. Its value packs the errno, the index of the
//   failing step and the step's kind, and its message reads
//   "step 2 (chdir) failed: No such file or directory". It compares equal to
//   the matching generic condition, so
//   `ec == boost::system::errc::no_such_file_or_directory` holds for a child
//   that could not find its executable. `aspawn::child_errno(ec)` and
//   `aspawn::failed_step(ec)` take it apart.
//
// * Conditions the library detects itself (bad input, missing kernel
//   features, a child reaped by someone else): `aspawn::errc` in
//   `aspawn::library_category()`.
//
// Layer command/: the launch description (error codes, `command` and its
// packing, initializers translated into a command). It may use child/.
//

#ifndef ASPAWN_COMMAND_ERROR_HPP
#define ASPAWN_COMMAND_ERROR_HPP

#include <cstdint>
#include <string_view>
#include <type_traits>

#include <aspawn/child/step_kind.hpp>

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

namespace aspawn {

using boost::system::error_code;
using boost::system::system_error;

/// The library's own error conditions.
enum class errc : int {
  /// A path, argument or environment entry contains a NUL character.
  embedded_nul = 1,
  /// The argument vector is empty (a program needs at least argv[0]).
  empty_argv,
  /// The executable name is empty.
  empty_executable,
  /// An environment entry is not of the form `KEY=VALUE` with a non-empty key
  /// free of `=`.
  bad_environment_entry,
  /// A negative or otherwise unusable file descriptor was given.
  bad_fd,
  /// Two actions target the same child file descriptor.
  duplicate_target_fd,
  /// The arguments and environment exceed the kernel's limit for exec.
  arguments_too_large,
  /// Two options of the command contradict each other.
  conflicting_options,
  /// The running kernel lacks a feature the launch needs.
  unsupported_by_kernel,
  /// The process object holds no process (default-constructed, moved from,
  /// detached or never launched).
  no_process,
  /// The child's exit status was collected by someone else (for example a
  /// `waitpid(-1)` elsewhere in the program).
  status_unavailable,
  /// The child broke the launch protocol (unexpected data on the status pipe).
  protocol_error,
  /// The user data of a child function is larger than the stack can hold.
  user_data_too_large,
  /// The command holds no executable (default-constructed or moved from).
  empty_command,
  /// A signal meant for the child's process group would reach this process
  /// too: the child is in the caller's own group (launch it with
  /// `command::process_group(0)` to give it a group of its own).
  own_process_group,
  /// The command makes pipes (`redirect::pipe()`) that this kind of launch
  /// cannot hand over (`async_execute`): nobody could write to or read from
  /// them.
  unclaimed_pipes,
};

/// The category of `aspawn::errc`.
const boost::system::error_category& library_category() noexcept;

inline error_code make_error_code(errc e) noexcept {
  return error_code(static_cast<int>(e), library_category());
}

/// A short name for a step kind ("chdir", "exec"...).
std::string_view to_string(step_kind k) noexcept;

/// The category of errors raised by a failed step in the child.
const boost::system::error_category& child_category() noexcept;

/// Builds a child error: errno `err` from step number `index` of kind `kind`.
error_code make_child_error(int index, step_kind kind, int err) noexcept;

/// The errno of a child error, or 0 if `ec` is not one.
int child_errno(const error_code& ec) noexcept;

/// The index of the failing step of a child error (the exec is the last
/// step), or -1 if `ec` is not one.
int failed_step(const error_code& ec) noexcept;

/// The kind of the failing step; meaningful only where `failed_step(ec) >= 0`.
step_kind failed_step_kind(const error_code& ec) noexcept;

} // namespace aspawn

namespace boost::system {
template <> struct is_error_code_enum<aspawn::errc> : std::true_type {};
} // namespace boost::system

#endif // ASPAWN_COMMAND_ERROR_HPP
