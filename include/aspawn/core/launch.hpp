//
// aspawn/core/launch.hpp
// ~~~~~~~~~~~~~~~~~~~~~~
//
// The launch core, usable without Asio.
//
// Overview
// --------
// `launch` clones a child that runs a command's setup steps and execs, on a
// stack taken from a `stack_cache`, and returns at once with three file
// descriptors: the child's pidfd, and the read end of its status pipe. The
// caller then
//
// 1. reads the status pipe until EOF: no data means the child exec'd (or
//    died before it), a `failure_record` means a step failed; only after EOF
//    may the stack go back to the cache (`stack_cache::release`);
// 2. waits for the pidfd to become readable and reaps the child with
//    `waitid(P_PIDFD, ...)`.
//
// The Asio layer (`aspawn/asio/async_spawn.hpp`) does exactly that without
// blocking; this header is for other event loops.
//
// Layer core/: the launch core without Asio (clone on a cached stack, status
// pipe and pidfd, exit statuses). It may use child/ and command/.
//

#ifndef ASPAWN_CORE_LAUNCH_HPP
#define ASPAWN_CORE_LAUNCH_HPP

#include <atomic>
#include <cstddef>
#include <mutex>
#include <vector>

#include <sys/resource.h>

#include <aspawn/command/command.hpp>
#include <aspawn/command/error.hpp>

namespace aspawn {

/// How children are cloned.
enum class clone_method {
  /// Probe once: clone3 with CLONE_CLEAR_SIGHAND, else plain clone.
  automatic,
  /// clone3(CLONE_VM | CLONE_PIDFD | CLONE_CLEAR_SIGHAND) (Linux 5.5).
  clone3,
  /// clone(CLONE_VM | CLONE_PIDFD) and a handler reset in the child (5.2).
  legacy_clone,
};

/// Chooses the clone method for the whole process (default: automatic).
/// Launches already under way are not affected.
void set_clone_method(clone_method m) noexcept;

/// The method launches use now (`automatic` until the first launch probes).
clone_method current_clone_method() noexcept;

/// A memory region a child runs on: a guard page, then the stack.
struct stack_region {
  std::byte* map = nullptr;  // start of the mapping (the guard page)
  std::size_t map_size = 0;  // bytes mapped, guard included
  std::size_t guard = 0;     // bytes of PROT_NONE guard at the bottom

  std::byte* top() const noexcept { return map + map_size; }
  std::size_t usable() const noexcept { return map_size - guard; }
  explicit operator bool() const noexcept { return map != nullptr; }
};

/// A thread-safe cache of child stacks.
/**
 * Stacks of the configured size are kept after use, up to `max_cached` of
 * them; a launch whose data does not fit a standard stack gets a one-off
 * larger mapping that is unmapped after use.
 */
class stack_cache {
public:
  static constexpr std::size_t default_stack_size = 256 * 1024;
  static constexpr std::size_t default_max_cached = 64;

  explicit stack_cache(std::size_t stack_size = default_stack_size,
                       std::size_t max_cached = default_max_cached) noexcept;
  ~stack_cache();
  stack_cache(const stack_cache&) = delete;
  stack_cache& operator=(const stack_cache&) = delete;

  /// Takes a stack with at least `need` usable bytes.
  error_code acquire(std::size_t need, stack_region& out);
  /// Gives a stack back. Only once the child no longer runs on it.
  void release(stack_region r) noexcept;

  /// Usable bytes of a standard stack; applies to stacks mapped from now on
  /// (cached ones of another size are dropped).
  void set_stack_size(std::size_t bytes);
  std::size_t stack_size() const noexcept;
  /// How many idle stacks to keep.
  void set_max_cached(std::size_t n);
  std::size_t max_cached() const noexcept;

  /// Stacks mapped so far.
  std::size_t created() const noexcept { return created_.load(); }
  /// Idle stacks held now.
  std::size_t cached() const noexcept;
  /// Stacks lent out now (children between clone and exec).
  std::size_t in_use() const noexcept { return in_use_.load(); }
  /// Unmaps every idle stack.
  void trim() noexcept;

private:
  mutable std::mutex mutex_;
  std::vector<stack_region> idle_;
  std::size_t stack_size_;
  std::size_t max_cached_;
  std::atomic<std::size_t> created_{0};
  std::atomic<std::size_t> in_use_{0};
};

/// What `launch` hands back.
struct launched {
  int pid = -1;
  int pidfd = -1;      // CLONE_PIDFD, close-on-exec
  int status_fd = -1;  // read end of the status pipe, close-on-exec
  stack_region stack;  // to release after EOF on status_fd
  bool credentials = false; // call `end_credential_launch()` after EOF
  /// The parent's ends of the pipes the command asked for
  /// (`redirect::pipe()`), close-on-exec, or -1: `pipes[0]` writes to the
  /// child's stdin, `pipes[1]` and `pipes[2]` read its stdout and stderr.
  int pipes[3] = {-1, -1, -1};
  /// The kernel reaps the child itself (`CLONE_AUTOREAP`, which comes with
  /// `CLONE_PIDFD_AUTOKILL`): pass `autoreaped = true` to `reap`.
  bool autoreaped = false;
  /// Internal, between `prepare_launch` and `start_launch`: the child's
  /// arguments on the stack, the cgroup to clone into (or -1), and whether
  /// the launch changes credentials.
  void* args = nullptr;
  int cgroup_fd = -1;
  bool wants_credentials = false;
};

/// How `command::kill_on_parent_death()` is carried out.
enum class parent_death_mechanism {
  /// Not probed yet (no such launch so far).
  unknown,
  /// `clone3` with `CLONE_PIDFD_AUTOKILL` and `CLONE_AUTOREAP`.
  pidfd_autokill,
  /// `PR_SET_PDEATHSIG` with SIGKILL in the child.
  parent_death_signal,
};
/// The mechanism launches use, as far as probed so far.
parent_death_mechanism kill_on_parent_death_mechanism() noexcept;
/// Whether launches may use `CLONE_PIDFD_AUTOKILL` where the kernel has it
/// (default: true). With false, `PR_SET_PDEATHSIG` is used everywhere.
void allow_pidfd_autokill(bool allow) noexcept;

/// Closes the pipe ends `l` still holds.
void close_pipes(launched& l) noexcept;

/// Starts `cmd` on a stack from `stacks`. Returns without waiting for the
/// child. On failure nothing is left behind: no child, no fd, no stack.
error_code launch(const command& cmd, stack_cache& stacks, launched& out);

/// The two halves of `launch`, for callers that clone on another thread
/// than the one that asks for the launch (the pool's launch thread).
/// `prepare_launch` validates `cmd`, takes a stack from `stacks` and lays
/// the child's data out on it, recording the calling thread's signal mask
/// for the child; it clones nothing, makes no descriptor, and on failure
/// leaves nothing behind. Once it succeeded, `cmd` is no longer needed.
error_code prepare_launch(const command& cmd, stack_cache& stacks,
                          launched& out);
/// Makes the pipes and clones the child prepared in `out`, from any
/// thread. On failure `out` still holds its stack (and nothing else): give
/// it back with `stack_cache::release`.
error_code start_launch(launched& out);

/// Reads a launch's status pipe, blocking (it waits on a non-blocking fd
/// too), until end-of-file or, with `buf`, until `cap` bytes are in `buf`;
/// without `buf` the data is read and dropped. Returns the bytes kept (0
/// without `buf`), or `-errno`.
long read_status(int status_fd, std::byte* buf, std::size_t cap) noexcept;

/// Turns the status pipe's content into the launch's result: an empty code
/// for no data, the child's step error for a failure record.
error_code decode_status(const void* data, std::size_t size) noexcept;

/// Bytes at the top of a launch's stack that the child never touches. The
/// parent may use them until the stack is released: the top 64 to receive
/// the status record, the rest (16-byte aligned) for objects of its own,
/// such as the descriptor watching the status pipe.
inline constexpr std::size_t parent_area_size = 1024;
inline constexpr std::size_t status_area_size = 64;
inline constexpr std::size_t parent_storage_size =
    parent_area_size - status_area_size;
inline std::byte* status_area(const stack_region& r) noexcept {
  return r.top() - status_area_size;
}
inline std::byte* parent_storage(const stack_region& r) noexcept {
  return r.top() - parent_area_size;
}

/// The wait status (`waitpid` encoding) of a child not yet reaped.
inline constexpr int still_active = 0x017f;

/// Reaps a child through its pidfd (`waitid(P_PIDFD)`, or `P_PID` on kernels
/// before 5.4, which is safe because an unreaped child's pid cannot be
/// reused). With `block` false it never waits.
/// @returns 1 and sets `status` (waitpid encoding) and `usage` (if not null)
/// if the child was reaped; 0 if it is still running; `-errno` on failure
/// (`-ECHILD`: someone else collected the status).
///
/// For a child the kernel reaps itself (`launched::autoreaped`), the status
/// comes from `ioctl(PIDFD_GET_INFO)` once the child is gone; `usage` is
/// then zeroed (the kernel keeps no resource usage for it).
int reap(int pidfd, int pid, bool block, int& status,
         struct rusage* usage = nullptr, bool autoreaped = false) noexcept;

/// Sends `sig` through the pidfd (`pidfd_send_signal`, Linux 5.1); never to
/// a recycled pid. Returns 0 or `-errno`.
int send_signal(int pidfd, int sig) noexcept;

/// How `send_group_signal` reaches a process group.
enum class group_signal_method {
  /// `pidfd_send_signal(PIDFD_SIGNAL_PROCESS_GROUP)` where the kernel has it
  /// (Linux 6.9), probed once; `kill(-pgid)` otherwise.
  automatic,
  /// Always `kill(-pgid)` (for tests of the fallback).
  kill,
};
/// Chooses the method for the whole process (default: automatic).
void set_group_signal_method(group_signal_method m) noexcept;

/// Sends `sig` to the process group of the child `pid` owned through
/// `pidfd`, which the caller has not reaped.
/**
 * First makes sure the pid is still the child's: not reaped yet
 * (`waitid(WNOWAIT)`; `-ECHILD` if someone else reaped it), or for a child
 * the kernel reaps itself (`autoreaped`), still running. Its group is then
 * `getpgid(pid)`, which cannot be reused while the child is unreaped. A
 * child that leads its group is signalled through the pidfd where the
 * kernel can (`PIDFD_SIGNAL_PROCESS_GROUP`, Linux 6.9); otherwise
 * `kill(-pgid, sig)`. Refuses, with `-EDEADLK`, a group that contains the
 * calling process. Returns 0 or `-errno`.
 */
int send_group_signal(int pidfd, int pid, int sig,
                      bool autoreaped = false) noexcept;

/// Kills a child whose launch is being abandoned, waits (briefly: it was
/// SIGKILLed) for its status pipe to close so that its stack is free, gives
/// the stack back, reaps the child and closes its pipes. For destructors;
/// blocks.
void abandon_launch(launched& l, stack_cache& stacks) noexcept;

/// Undoes, once no credential-changing child is between clone and exec, the
/// parent's loss of the dumpable flag (setresuid in a CLONE_VM child clears
/// it for the shared memory, so for the parent).
void end_credential_launch() noexcept;

} // namespace aspawn

#endif // ASPAWN_CORE_LAUNCH_HPP
