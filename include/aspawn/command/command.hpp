//
// aspawn/command/command.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// The reusable launch description.
//
// Overview
// --------
// A `command` says everything about a launch: the executable, its arguments
// and environment, and the setup steps the child performs before exec. It is
// built once and launched many times:
//
// * The executable is resolved when the command is built (an absolute or
//   relative path is taken as is; a bare name is searched in `PATH` with
//   `execvp` rules), never in the child.
// * `prepare()` packs the arguments, environment and step list into one
//   position-independent blob; each launch copies it to the top of a child
//   stack with a single `memcpy`. A command that is not prepared is packed
//   straight onto the stack at each launch (correct, slightly slower).
// * Each setup step becomes one checked system call in the child, run in the
//   order the steps were added (standard streams first: stdin, stdout,
//   stderr). The first failure stops the launch, which completes with an
//   error naming the step (see `aspawn/command/error.hpp`).
//
// Validation happens as the command is built: the first invalid input is
// recorded and reported by `error()`, and any launch of the command fails
// with it before anything is cloned or opened.
//
// Thread safety
// -------------
// Distinct objects: safe. Shared objects: launching the same command from
// several threads at once is safe; modifying it while it is launched is not.
//
// Defaults
// --------
// The environment is inherited, standard streams are inherited, and every
// other file descriptor is closed in the child (`close_other_fds`), whether
// or not it is close-on-exec.
//
// Layer command/: the launch description (error codes, `command` and its
// packing, initializers translated into a command). It may use child/.
//

#ifndef ASPAWN_COMMAND_COMMAND_HPP
#define ASPAWN_COMMAND_COMMAND_HPP

#include <cstddef>
#include <cstdint>
#include <concepts>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>

#include <aspawn/child/step.hpp>
#include <aspawn/command/error.hpp>

namespace aspawn {

/// Where a child file descriptor comes from.
class redirect {
public:
  enum class kind { inherit, null, file, fd, to_stdout, close, pipe };

  /// Leave the descriptor as the parent has it.
  static redirect inherit() noexcept { return redirect(kind::inherit); }
  /// Open `/dev/null` (read-write) onto it.
  static redirect null() noexcept { return redirect(kind::null); }
  /// Open `path` in the child with `flags` and `mode`.
  static redirect file(std::string_view path, int flags = O_RDONLY,
                       unsigned mode = 0644) {
    redirect r(kind::file);
    r.path_ = std::string(path);
    r.flags_ = flags;
    r.mode_ = mode;
    return r;
  }
  /// Open `path` for writing, truncating it (created if missing).
  static redirect write_file(std::string_view path, unsigned mode = 0644) {
    return file(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  }
  /// Open `path` for appending (created if missing).
  static redirect append_file(std::string_view path, unsigned mode = 0644) {
    return file(path, O_WRONLY | O_CREAT | O_APPEND, mode);
  }
  /// Duplicate the parent's descriptor `fd`; it must stay open until the
  /// launch call returns.
  static redirect from_fd(int fd) noexcept {
    redirect r(kind::fd);
    r.fd_ = fd;
    return r;
  }
  /// Duplicate the descriptor of any object with `native_handle()` (an
  /// `asio::readable_pipe`, `asio::writable_pipe`, a socket, a file...).
  template <typename IoObject>
    requires requires(IoObject& o) {
      { o.native_handle() } -> std::convertible_to<int>;
    }
  static redirect from(IoObject& io) noexcept {
    return from_fd(static_cast<int>(io.native_handle()));
  }
  /// A new pipe for each launch: the child gets one end, the process object
  /// the other (`basic_process::take_stdin_pipe()`, `take_stdout_pipe()`,
  /// `take_stderr_pipe()`). Standard streams only.
  static redirect pipe() noexcept { return redirect(kind::pipe); }
  /// Make it a copy of the child's stdout (`2>&1`).
  static redirect to_stdout() noexcept { return redirect(kind::to_stdout); }
  /// Close it in the child.
  static redirect closed() noexcept { return redirect(kind::close); }

  kind which() const noexcept { return kind_; }
  const std::string& path() const noexcept { return path_; }
  int flags() const noexcept { return flags_; }
  unsigned mode() const noexcept { return mode_; }
  int fd() const noexcept { return fd_; }

private:
  explicit redirect(kind k) noexcept : kind_(k) {}
  kind kind_;
  std::string path_;
  int flags_ = 0;
  unsigned mode_ = 0;
  int fd_ = -1;
};

/// A resource limit for the child (see `setrlimit(2)`).
struct resource_limit {
  int resource;
  std::uint64_t soft;
  std::uint64_t hard;
};

/// The reusable launch description.
class command {
public:
  /// An empty command; launching it fails with `errc::empty_command`.
  command() = default;

  /// A command running `executable` with `argv[0]` set to `executable`.
  explicit command(std::string_view executable);

  /// A command running `executable` with the given arguments after argv[0].
  command(std::string_view executable,
          std::initializer_list<std::string_view> args);

  /// A command running `executable` with the arguments of `args` after
  /// argv[0]; `args` is any range of things convertible to `string_view`.
  template <typename Range>
    requires requires(const Range& r) {
      std::string_view(*std::begin(r));
    }
  command(std::string_view executable, const Range& args)
      : command(executable) {
    this->args(args);
  }

  command(const command&) = default;
  command& operator=(const command&) = default;
  command(command&&) noexcept = default;
  command& operator=(command&&) noexcept = default;

  /// @name Arguments
  /// @{
  /// Appends one argument.
  command& arg(std::string_view a);
  /// Appends every element of a range.
  template <typename Range> command& args(const Range& r) {
    for (const auto& a : r)
      arg(std::string_view(a));
    return *this;
  }
  command& args(std::initializer_list<std::string_view> r) {
    for (auto a : r)
      arg(a);
    return *this;
  }
  /// Sets `argv[0]` (by default the executable as it was given).
  command& argv0(std::string_view a);
  /// @}

  /// @name Environment
  /// @{
  /// Inherit the parent's environment at each launch (the default), with the
  /// edits made by `env_set` and `env_unset`.
  command& env_inherit();
  /// Start from an empty environment.
  command& env_clear();
  /// Sets `key` to `value`, replacing an inherited or earlier value.
  command& env_set(std::string_view key, std::string_view value);
  /// Sets an entry given as `KEY=VALUE`.
  command& env_entry(std::string_view key_value);
  /// Removes `key` (from the inherited environment and earlier sets).
  command& env_unset(std::string_view key);
  /// @}

  /// @name File descriptors
  /// @{
  command& stdin_(redirect r) { return stdio(0, std::move(r)); }
  command& stdout_(redirect r) { return stdio(1, std::move(r)); }
  command& stderr_(redirect r) { return stdio(2, std::move(r)); }
  /// Sets where child fd `child_fd` (0, 1 or 2) comes from.
  command& stdio(int child_fd, redirect r);
  /// Duplicates the parent's `source` onto the child's `target` (`dup2`);
  /// `target == source` makes `source` inheritable. Runs in the order given,
  /// after the standard streams, so maps may swap descriptors.
  command& map_fd(int target, int source);
  /// Closes `fd` in the child.
  command& close_fd(int fd);
  /// Keeps the parent's `fd` open, at the same number, in the child.
  command& inherit_fd(int fd) { return map_fd(fd, fd); }
  /// Whether to close every fd the command does not name (default: true).
  command& close_other_fds(bool on);
  /// @}

  /// @name Process setup
  /// @{
  /// Changes directory to `path` in the child.
  command& chdir(std::string_view path);
  /// Changes directory to the directory open as `dirfd` (`fchdir`).
  command& chdir_fd(int dirfd);
  /// Starts a new session (`setsid`).
  command& new_session();
  /// Puts the child into process group `pgid` (0: a new group led by the
  /// child).
  command& process_group(int pgid);
  /// Makes the child's process group the foreground group of the terminal
  /// open as `tty_fd` (`tcsetpgrp`).
  command& foreground(int tty_fd);
  /// The signal mask the child execs with (bit N-1 for signal N); by
  /// default the launching thread's mask.
  command& signal_mask(std::uint64_t mask);
  /// Signals to reset to their default action.
  command& signal_default(std::uint64_t set);
  /// Signals to ignore.
  command& signal_ignore(std::uint64_t set);
  /// Supplementary groups (`setgroups`).
  command& groups(std::vector<unsigned> gids);
  /// Real, effective and saved group id (`setresgid`).
  command& gid(unsigned gid);
  /// Real, effective and saved user id (`setresuid`).
  command& uid(unsigned uid);
  /// The file mode creation mask.
  command& umask(unsigned mask);
  /// Sets `PR_SET_NO_NEW_PRIVS`.
  command& no_new_privs();
  /// A resource limit (`prlimit`).
  command& limit(resource_limit l);
  /// The nice value (`setpriority`).
  command& nice(int value);
  /// CPU affinity: the CPUs the child may run on.
  command& cpu_affinity(const std::vector<int>& cpus);
  /// Signal sent to the child when the launching thread exits
  /// (`PR_SET_PDEATHSIG`). Armed after the other steps, whatever the order
  /// they were given in: a credential change (`uid`, `gid`...) would clear
  /// it.
  command& parent_death_signal(int sig);
  /// Kills the child (SIGKILL) when this process ends, however it ends.
  /**
   * Where the kernel has `CLONE_PIDFD_AUTOKILL` (probed at the first such
   * launch) the child is cloned with it: the kernel kills the child when
   * its pidfd is closed for good, which the exit of this process does. The
   * child is then reaped by the kernel (`CLONE_AUTOREAP`); its exit status
   * still reaches `async_wait` (through `PIDFD_GET_INFO`), without resource
   * usage. Unprivileged callers get it only with `no_new_privs()` (the
   * kernel requires `CLONE_NNP` or `CAP_SYS_ADMIN`).
   *
   * Elsewhere the child arms `PR_SET_PDEATHSIG` with SIGKILL, checking that
   * the parent did not exit before: the kernel then kills it when the
   * thread that launched it exits, so launch from threads that live as long
   * as the program (an io_context's threads normally do).
   *
   * Either way a detached child keeps running until this process ends, and
   * executing a set-user-ID program drops the protection (the kernel clears
   * the parent-death signal; `no_new_privs()` prevents the privilege gain).
   * `kill_on_parent_death_mechanism()` tells which mechanism launches use.
   */
  command& kill_on_parent_death();
  /// Holds the executable open (`O_PATH`) from now on and launches it with
  /// `execveat(fd, "", ..., AT_EMPTY_PATH)`: later renames or replacements
  /// of the path do not affect the command. Scripts (`#!`) are launched by
  /// path, since their interpreter could not open a close-on-exec fd.
  command& hold_executable();
  /// Starts the child directly in the cgroup v2 directory `path`
  /// (`clone3` with `CLONE_INTO_CGROUP`, Linux 5.7). The directory is opened
  /// now and held; launches fail with `errc::unsupported_by_kernel` where
  /// the kernel cannot do it, or with the kernel's error if the cgroup
  /// refuses the child.
  command& cgroup(std::string_view path);
  /// Runs `fn(data, size)` in the child, as a step among the others, with a
  /// private copy of `size` bytes at `data` placed on the child's stack.
  command& child_function(child_function_type fn, const void* data = nullptr,
                          std::size_t size = 0);
  /// @}

  /// Packs the command for cheap repeated launches. Idempotent; invalidated
  /// by any later modification (which then needs `prepare()` again, or is
  /// packed per launch).
  const error_code& prepare();

  /// The first invalid input given to this command, or an empty code.
  const error_code& error() const noexcept { return error_; }

  /// The executable that will be run (after `PATH` resolution).
  const std::string& executable() const noexcept { return exe_; }

  /// The argument vector, `argv[0]` included.
  std::vector<std::string> argv() const;

  /// Number of argv entries, `argv[0]` included.
  std::size_t argc() const noexcept { return 1 + args_.size(); }

  /// Number of environment entries the command sets.
  std::size_t env_set_count() const noexcept { return env_set_.size(); }

  /// Whether `prepare()` has packed the current state.
  bool prepared() const noexcept { return !packed_.empty(); }

  /// Bytes the launch data takes on a child stack.
  std::size_t packed_size() const noexcept;

  /// Writes the launch image into `out` (`packed_size()` bytes, 16-byte
  /// aligned). Internal: used by the launcher.
  void pack_into(std::byte* out) const noexcept;

  /// The held executable fd, or -1 (see `hold_executable`).
  int executable_fd() const noexcept { return exe_fd_ ? exe_fd_->fd : -1; }
  /// The held cgroup directory fd, or -1 (see `cgroup`).
  int cgroup_fd() const noexcept { return cgroup_fd_ ? cgroup_fd_->fd : -1; }

  /// Whether a standard stream is a pipe made per launch (`redirect::pipe()`).
  bool makes_pipes() const noexcept {
    for (const auto& r : stdio_)
      if (r.which() == redirect::kind::pipe)
        return true;
    return false;
  }

  /// Whether launching changes credentials (see `docs/design.md`).
  bool changes_credentials() const noexcept { return creds_; }

  /// Whether the child must be cloned by the thread that asks for the
  /// launch, inside that call: the command names descriptors of the
  /// caller's (a held executable or cgroup, `redirect::fd`, `dup`,
  /// `fchdir`, `tcsetpgrp`), which the child copies when it is cloned and
  /// which the caller may close once the call returns, or keeps all of the
  /// caller's (`close_other_fds(false)`); or ties the child to its creator
  /// (`parent_death_signal`, `kill_on_parent_death`) or runs the caller's
  /// code in it (`child_function`). Such launches skip the pool's launch
  /// thread (see aspawn/asio/stack_pool.hpp, "The launch thread").
  bool binds_calling_thread() const noexcept;

private:
  struct step_spec {
    detail::step st{};
    std::string text;                // string argument
    std::vector<std::int32_t> ints;  // array argument
    std::vector<std::byte> bytes;    // raw bytes (user data, cpu set)
  };

  // A descriptor the command holds; copies of the command share it.
  struct held_fd {
    int fd = -1;
    explicit held_fd(int f) noexcept : fd(f) {}
    held_fd(const held_fd&) = delete;
    held_fd& operator=(const held_fd&) = delete;
    ~held_fd();
  };

  void fail(error_code ec);
  void modified() noexcept { packed_.clear(); }
  bool check_text(std::string_view s);
  bool check_fd(int fd);
  step_spec& add_step(step_kind k);
  std::size_t compute_size() const noexcept;
  std::size_t pack(std::byte* out) const noexcept; // null: count only

  std::string exe_;
  std::string argv0_;
  std::vector<std::string> args_;
  bool env_replace_ = false;
  std::vector<std::string> env_set_;   // "K=V"
  std::vector<std::string> env_unset_; // "K"
  redirect stdio_[3] = {redirect::inherit(), redirect::inherit(),
                        redirect::inherit()};
  std::vector<step_spec> steps_;
  std::vector<int> targets_;
  bool close_others_ = true;
  bool has_mask_ = false;
  std::uint64_t mask_ = 0;
  bool creds_ = false;
  bool kill_on_parent_death_ = false;
  bool no_new_privs_ = false;
  std::shared_ptr<const held_fd> exe_fd_;
  std::shared_ptr<const held_fd> cgroup_fd_;
  error_code error_;
  std::vector<std::byte> packed_;
};

} // namespace aspawn

#endif // ASPAWN_COMMAND_COMMAND_HPP
