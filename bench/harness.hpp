//
// bench/harness.hpp
// ~~~~~~~~~~~~~~~~~
//
// The contender interface of aspawn-bench.
//
// A contender is one way of launching a program and collecting its exit
// status (posix_spawn + waitpid, Boost.Process v2, aspawn, ...). The harness
// knows nothing about how a contender works: it opens a `session` (fresh
// state: an io_context, an epoll set, stacks...) and drives it through the
// function objects below. Every function launches `path` with argv = {path}
// and the harness's environment, and throws std::runtime_error when a launch
// fails or a child exits with a status other than 0.
//
// Adding a contender means writing one file with a registration function
// (see bench_aspawn.cpp) and calling it from main.cpp.
//

#ifndef ASPAWN_BENCH_HARNESS_HPP
#define ASPAWN_BENCH_HARNESS_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace aspawn_bench {

struct tick_log; // ticker.hpp

/// Monotonic time in nanoseconds.
inline std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// One launch measured by `session::launch_one`.
struct launch_sample {
  /// Time the calling thread spent inside the launch call itself (the
  /// function that starts the child; for an asynchronous API the initiating
  /// function, not the wait).
  std::int64_t call_ns = 0;
  /// Time from entering the launch call to the moment the caller learned of
  /// the reaped exit (the completion handler ran, waitpid returned...).
  std::int64_t total_ns = 0;
};

/// Live state of one contender; the function objects share it and it is
/// freed when the last copy of the session goes away.
struct session {
  /// Launches `path` once, waits for its exit and reaps it.
  std::function<launch_sample(const char* path)> launch_one;

  /// Launches `path` `count` times with at most `in_flight` children alive at
  /// any moment, launching a new one as soon as one is reaped. Returns when
  /// every child has been reaped.
  std::function<void(const char* path, int count, int in_flight)> run_batch;

  /// Optional. Like run_batch with `warm + count` launches in one batch, and
  /// calls alloc_count::start() when the `warm`-th child has been reaped
  /// and alloc_count::stop() when the last has, so that the caller counts
  /// the allocations of `count` launches made once warm, inside the same
  /// event loop run, and nothing of the batch's own end. (Without it the
  /// allocation phase runs a warm-up batch, then counts a second batch,
  /// whose first launches pay for Asio's per-run() handler cache again.)
  std::function<void(const char* path, int warm, int count, int in_flight)>
      run_batch_warm;

  /// Optional. Like run_batch, while the launching thread also serves a
  /// periodic 1 ms timer (ticker.hpp): records in `log` the time inside
  /// every launch call (the initiating call only) and the lateness of every
  /// tick. A contender whose launching thread blocks in the launch call
  /// serves the timer from a thread of its own (sleeping_ticker). Without
  /// it, the contender is left out of the responsiveness phase.
  std::function<void(const char* path, int count, int in_flight,
                     tick_log& log)>
      run_batch_ticking;

  /// Optional. Starts `count` children of the argument-less program `path`
  /// (they never exit on their own) and keeps waiting for each of them the
  /// way this contender waits for its children (an async_wait, an epoll
  /// registration...). Returns once all of them are started.
  std::function<void(const char* path, int count)> start_sleepers;

  /// Optional (needed with start_sleepers). Makes sure the sleepers die
  /// (kill_children_named may be used) and returns when this contender has
  /// seen every one of them exit.
  std::function<void()> stop_sleepers;
};

struct contender {
  /// Short identifier, used in files and tables: [a-z0-9_].
  std::string name;
  /// One line: how it launches and how it waits.
  std::string description;
  /// Opens a fresh session.
  std::function<session()> open;
  /// Whether a launch copies the parent's page tables (fork): such
  /// contenders slow down with the parent's size, and what they leave
  /// behind disturbs the next measurements, so the parent-size runs keep
  /// them apart.
  bool copies_parent = false;
};

/// A contender this machine cannot run (a C library without the function,
/// say), with the reason; the results list it as not measured.
struct unavailable_contender {
  std::string name;
  std::string reason;
};

class registry {
public:
  void add(contender c) { list_.push_back(std::move(c)); }
  void add_unavailable(std::string name, std::string reason) {
    missing_.push_back({std::move(name), std::move(reason)});
  }
  const std::vector<contender>& all() const noexcept { return list_; }
  const std::vector<unavailable_contender>& unavailable() const noexcept {
    return missing_;
  }

private:
  std::vector<contender> list_;
  std::vector<unavailable_contender> missing_;
};

/// Throws std::runtime_error("what: strerror(err)").
[[noreturn]] void throw_errno(int err, const char* what);

/// Throws unless `wait_status` (as filled by waitpid) is a normal exit with
/// status 0.
void check_wait_status(int wait_status, const char* who);

/// The waitpid-style status of a child reaped by waitid, from the si_code
/// (`code`) and si_status (`status`) of its siginfo_t, for check_wait_status.
int wait_status_of(int code, int status) noexcept;

/// Sends SIGKILL to the process of `pidfd` (pidfd_send_signal); returns 0 or
/// -1 with errno set.
int kill_pidfd(int pidfd) noexcept;

/// Creates a socket pair (AF_UNIX, SOCK_STREAM, close-on-exec) and forks.
/// Returns what fork returned; `fd` is then the caller's end of the pair in
/// the parent and the other end in the child (each side's other end is
/// closed). Throws, leaving nothing open, if either call fails.
pid_t fork_with_socket(int& fd);

/// Reads exactly `size` bytes from `fd` into `buf`, retrying after EINTR.
/// Returns false at end of file or on an error.
bool read_exact(int fd, void* buf, std::size_t size) noexcept;

/// Sends SIGKILL to every child of this process whose command name (the
/// first 15 bytes of the executable's file name, as in /proc/PID/stat) is
/// the file name of `path`. Returns how many were signalled.
int kill_children_named(const char* path);

// Registration functions, one per file.
void register_libc_contenders(registry& r);
void register_raw_contenders(registry& r);
#if defined(ASPAWN_BENCH_HAVE_BOOST_PROCESS)
void register_boost_process_v2_contenders(registry& r);
void register_boost_process_v1_contenders(registry& r);
#endif
#if defined(ASPAWN_BENCH_HAVE_ASPAWN)
void register_aspawn_contenders(registry& r);
#endif

} // namespace aspawn_bench

#endif // ASPAWN_BENCH_HARNESS_HPP
