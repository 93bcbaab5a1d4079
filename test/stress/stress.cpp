// Stress: many launches of every outcome, from 4 threads on one io_context and
// from several io_contexts at once; then checks that nothing is left behind.
//
// Usage: aspawn-stress [LAUNCHES]   (default: $ASPAWN_STRESS_LAUNCHES, else
// 100000). Needs $ASPAWN_TEST_HELPER (test/helper.cpp).
//
// The launches mix, in equal parts:
//   success            /bin/true exits 0
//   exec failure       a missing executable: child error ENOENT at exec
//   step failure       chdir to a missing directory: child error ENOENT
//   raised signal      the helper kills itself with SIGKILL
//   signal via pidfd   the helper pauses, the process object sends SIGTERM
//   cancelled wait     the helper pauses, the wait is cancelled through a
//                      cancellation_signal, the process object is destroyed
//                      (killed, then reaped by the context's reaper)
//   cancelled launch   the child blocks before exec, the launch is cancelled
//                      through a cancellation_signal (killed and reaped)
//
// A warm-up run (5% of the launches, at least 700) comes first; the figures
// "before" are taken after it. Afterwards: the same open descriptors, no
// child left (waitid(P_ALL, WEXITED|WNOHANG|WNOWAIT) gives ECHILD), no stack
// lent out, and VmRSS within a small bound of the figure after warm-up.
// Prints the figures; exits 0 if every check holds.

#include <aspawn/aspawn.hpp>

#include "../proc_util.hpp"

#include <boost/asio.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define STRESS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define STRESS_SANITIZED 1
#endif
#endif

namespace {

namespace asio = boost::asio;
using aspawn::command;
using aspawn::error_code;

enum kind : int {
  k_success,
  k_exec_failure,
  k_step_failure,
  k_raised_signal,
  k_pidfd_signal,
  k_cancelled_wait,
  k_cancelled_launch,
  k_count
};

const char* const kind_names[k_count] = {
    "success",        "exec failure",   "step failure",    "raised signal",
    "pidfd signal",   "cancelled wait", "cancelled launch"};

struct tally {
  std::atomic<long> as_expected[k_count] = {};
  std::atomic<long> unexpected{0};
  std::mutex mutex;
  std::vector<std::string> first_errors;

  void bad(int k, const std::string& what) {
    ++unexpected;
    std::lock_guard lk(mutex);
    if (first_errors.size() < 10)
      first_errors.push_back(std::string(kind_names[k]) + ": " + what);
  }
  long total_expected() const {
    long n = 0;
    for (auto& c : as_expected)
      n += c.load();
    return n;
  }
};

// The commands, built once and shared by every thread (launching a command
// from several threads at once is allowed).
struct commands {
  command by_kind[k_count];
  int never_fd = -1; // read end of a pipe nobody writes to

  commands(const std::string& helper, int never_read_fd) : never_fd(never_read_fd) {
    by_kind[k_success] = command("/bin/true");
    by_kind[k_exec_failure] = command("/nonexistent/aspawn-stress");
    by_kind[k_step_failure] = command(helper, {"exit", "0"});
    by_kind[k_step_failure].chdir("/nonexistent/aspawn-stress-dir");
    by_kind[k_raised_signal] = command(helper, {"raise", "9"});
    by_kind[k_pidfd_signal] = command(helper, {"pause"});
    by_kind[k_cancelled_wait] = command(helper, {"pause"});
    by_kind[k_cancelled_launch] = command(helper, {"exit", "0"});
    by_kind[k_cancelled_launch].child_function(block_on_fd, &never_fd,
                                               sizeof never_fd);
    for (auto& c : by_kind)
      if (c.prepare()) {
        std::fprintf(stderr, "cannot prepare a command: %s\n",
                     c.error().message().c_str());
        std::exit(2);
      }
  }

  // Blocks reading the fd in `data`: the child never gets to exec.
  ASPAWN_CHILD_FN static int block_on_fd(void* data, std::size_t) {
    int fd = *static_cast<int*>(data);
    char c;
    long r;
    do
      r = aspawn::sys::read(fd, &c, 1);
    while (r == -EINTR);
    return r == 1 ? 0 : -EPIPE;
  }
};

// A sequence of launches run one after the other on a strand of its own:
// every handler of a lane runs on that strand, so a cancellation signal is
// emitted in the same serialized context as the operation it cancels.
class lane : public std::enable_shared_from_this<lane> {
public:
  using strand = asio::strand<asio::io_context::executor_type>;
  using process = aspawn::basic_process<strand>;

  lane(asio::io_context& ctx, const commands& cmds, tally& t,
       std::atomic<long>& remaining, std::atomic<long>& next_index)
      : strand_(asio::make_strand(ctx)), cmds_(cmds), tally_(t),
        remaining_(remaining), next_index_(next_index) {}

  // Starts the lane: its first launch is initiated by the calling thread.
  void start() { next(); }

private:
  void next() {
    if (remaining_.fetch_sub(1) <= 0)
      return;
    int k = static_cast<int>(next_index_.fetch_add(1) % k_count);
    auto self = shared_from_this();
    const command& cmd = cmds_.by_kind[k];
    if (k == k_cancelled_launch) {
      auto sig = std::make_shared<asio::cancellation_signal>();
      asio::dispatch(strand_, [this, self, sig, &cmd] {
        aspawn::async_spawn(
            strand_, cmd,
            asio::bind_cancellation_slot(
                sig->slot(), [this, self, sig](error_code ec, process p) {
                  if (ec == asio::error::operation_aborted && !p.is_open())
                    ++tally_.as_expected[k_cancelled_launch];
                  else
                    tally_.bad(k_cancelled_launch, ec.message());
                  next();
                }));
        sig->emit(asio::cancellation_type::terminal);
      });
      return;
    }
    asio::dispatch(strand_, [this, self, k, &cmd] {
      aspawn::async_spawn(strand_, cmd, [this, self, k](error_code ec,
                                                        process p) {
        launched(k, ec, std::move(p));
      });
    });
  }

  void launched(int k, error_code ec, process p) {
    switch (k) {
    case k_exec_failure:
      expect_failure(k, ec, aspawn::step_kind::exec);
      return next();
    case k_step_failure:
      expect_failure(k, ec, aspawn::step_kind::chdir);
      return next();
    default:
      break;
    }
    if (ec) {
      tally_.bad(k, "launch failed: " + ec.message());
      return next();
    }
    auto proc = std::make_shared<process>(std::move(p));
    auto self = shared_from_this();
    if (k == k_pidfd_signal) {
      error_code sec;
      proc->signal(SIGTERM, sec);
      if (sec)
        tally_.bad(k, "signal: " + sec.message());
    }
    if (k == k_cancelled_wait) {
      auto sig = std::make_shared<asio::cancellation_signal>();
      proc->async_wait(asio::bind_cancellation_slot(
          sig->slot(), [this, self, proc, sig](error_code wec, int) {
            if (wec == asio::error::operation_aborted)
              ++tally_.as_expected[k_cancelled_wait];
            else
              tally_.bad(k_cancelled_wait, "wait: " + wec.message());
            // The child still runs: destroying the process kills it and
            // leaves it to the reaper.
            next();
          }));
      sig->emit(asio::cancellation_type::terminal);
      return;
    }
    proc->async_wait([this, self, proc, k](error_code wec, int code) {
      int want = k == k_success         ? 0
                 : k == k_raised_signal ? SIGKILL
                                        : SIGTERM;
      if (!wec && code == want)
        ++tally_.as_expected[k];
      else
        tally_.bad(k, "wait: " + wec.message() + ", exit code " +
                          std::to_string(code));
      next();
    });
  }

  void expect_failure(int k, const error_code& ec, aspawn::step_kind step) {
    if (aspawn::child_errno(ec) == ENOENT &&
        aspawn::failed_step_kind(ec) == step)
      ++tally_.as_expected[k];
    else
      tally_.bad(k, "expected ENOENT, got " + ec.message());
  }

  strand strand_;
  const commands& cmds_;
  tally& tally_;
  std::atomic<long>& remaining_;
  std::atomic<long>& next_index_;
};

// Phase A: 4 threads share one io_context; each starts `lanes_per_thread`
// lanes itself, then runs the context.
void run_shared_context(asio::io_context& ctx, const commands& cmds, tally& t,
                        long launches, int threads, int lanes_per_thread) {
  std::atomic<long> remaining{launches};
  std::atomic<long> index{0};
  std::vector<std::thread> pool;
  std::atomic<int> started{0};
  auto work = asio::make_work_guard(ctx);
  for (int i = 0; i < threads; ++i)
    pool.emplace_back([&] {
      for (int l = 0; l < lanes_per_thread; ++l)
        std::make_shared<lane>(ctx, cmds, t, remaining, index)->start();
      // The last thread to have started its lanes drops the guard: from then
      // on the context runs out of work when every lane is done.
      if (++started == threads)
        work.reset();
      ctx.run();
    });
  for (auto& th : pool)
    th.join();
  ctx.restart();
}

// Phase B: `contexts` io_contexts, each run by a thread of its own.
bool run_separate_contexts(const commands& cmds, tally& t, long launches,
                           int contexts, int lanes) {
  std::vector<std::unique_ptr<asio::io_context>> ctxs;
  for (int c = 0; c < contexts; ++c)
    ctxs.push_back(std::make_unique<asio::io_context>(1));
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<std::atomic<long>>> remaining, index;
  for (int c = 0; c < contexts; ++c) {
    long share = launches / contexts + (c < launches % contexts ? 1 : 0);
    remaining.push_back(std::make_unique<std::atomic<long>>(share));
    index.push_back(std::make_unique<std::atomic<long>>(c));
  }
  for (int c = 0; c < contexts; ++c)
    threads.emplace_back([&, c] {
      for (int l = 0; l < lanes; ++l)
        std::make_shared<lane>(*ctxs[c], cmds, t, *remaining[c], *index[c])
            ->start();
      ctxs[c]->run();
    });
  for (auto& th : threads)
    th.join();
  bool ok = true;
  for (auto& c : ctxs)
    if (aspawn::stack_pool::of(*c).in_use() != 0)
      ok = false;
  return ok;
}

std::set<int> open_fds() {
  return test::proc::open_fds().value_or(std::set<int>{});
}

long vm_rss_kb() {
  FILE* f = std::fopen("/proc/self/status", "re");
  if (!f)
    return -1;
  char line[256];
  long kb = -1;
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, "VmRSS:", 6) == 0) {
      kb = std::strtol(line + 6, nullptr, 10);
      break;
    }
  std::fclose(f);
  return kb;
}

// 1 if this process has a child left (running or zombie), else 0: waitid
// reports ECHILD when there is none.
int children_left() {
  siginfo_t info{};
  return ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 ? 1 : 0;
}

std::string list(const std::set<int>& fds) {
  std::string s;
  for (int fd : fds)
    s += (s.empty() ? "" : " ") + std::to_string(fd);
  return s;
}

} // namespace

int main(int argc, char** argv) {
  long launches = 100000;
  if (const char* e = std::getenv("ASPAWN_STRESS_LAUNCHES"))
    launches = std::atol(e);
  if (argc > 1)
    launches = std::atol(argv[1]);
  if (launches < k_count) {
    std::fprintf(stderr, "usage: %s [LAUNCHES >= %d]\n", argv[0], k_count);
    return 2;
  }
  const char* helper = std::getenv("ASPAWN_TEST_HELPER");
  if (!helper) {
    std::fprintf(stderr, "ASPAWN_TEST_HELPER is not set\n");
    return 2;
  }

  int never[2];
  if (::pipe2(never, O_CLOEXEC) != 0) {
    std::perror("pipe2");
    return 2;
  }
  commands cmds(helper, never[0]);
  constexpr int threads = 4, lanes_per_thread = 4, contexts = 3,
                lanes_per_context = 6;

  asio::io_context shared_ctx(threads);
  tally warm;
  const long warm_launches = std::max(700L, launches / 20);
  run_shared_context(shared_ctx, cmds, warm, warm_launches / 2, threads,
                     lanes_per_thread);
  run_separate_contexts(cmds, warm, warm_launches - warm_launches / 2, contexts,
                        lanes_per_context);

  const auto fds_before = open_fds();
  const long rss_before = vm_rss_kb();
  const auto t0 = std::chrono::steady_clock::now();

  tally t;
  const long shared_launches = launches / 2;
  run_shared_context(shared_ctx, cmds, t, shared_launches, threads,
                     lanes_per_thread);
  bool pools_ok = run_separate_contexts(cmds, t, launches - shared_launches,
                                        contexts, lanes_per_context);

  const auto t1 = std::chrono::steady_clock::now();
  auto& pool = aspawn::stack_pool::of(shared_ctx);
  const std::size_t stacks_in_use = pool.in_use();
  const std::size_t reaper_pending =
      asio::use_service<aspawn::detail::reaper>(shared_ctx).pending();
  const int left = children_left();
  const auto fds_after = open_fds();
  const long rss_after = vm_rss_kb();
  const double elapsed = std::chrono::duration<double>(t1 - t0).count();

#if defined(STRESS_SANITIZED)
  const bool check_rss = false;
#else
  const bool check_rss = true;
#endif
  // Warm-up brought the pools, the reaper and malloc's arenas to their
  // steady state; what remains is noise.
  const long rss_bound_kb = 8 * 1024;

  std::printf("launches: %ld (warm-up %ld first)\n", launches, warm_launches);
  for (int k = 0; k < k_count; ++k)
    std::printf("  %-17s %ld\n", kind_names[k], t.as_expected[k].load());
  std::printf("  %-17s %ld\n", "unexpected", t.unexpected.load());
  for (auto& e : t.first_errors)
    std::printf("    %s\n", e.c_str());
  std::printf("  %-17s %ld\n", "warm-up unexpected", warm.unexpected.load());
  std::printf("fds before: %zu {%s}, after: %zu {%s}\n", fds_before.size(),
              list(fds_before).c_str(), fds_after.size(),
              list(fds_after).c_str());
  std::printf("children left: %d\n", left);
  std::printf("stacks in use: %zu (shared context; %zu mapped, %zu cached); "
              "separate contexts %s\n",
              stacks_in_use, pool.created(), pool.cached(),
              pools_ok ? "all 0" : "NOT all 0");
  std::printf("reaper entries pending: %zu\n", reaper_pending);
  std::printf("RSS before: %ld kB, after: %ld kB (%+ld kB; bound %s)\n",
              rss_before, rss_after, rss_after - rss_before,
              check_rss ? ("+" + std::to_string(rss_bound_kb) + " kB").c_str()
                        : "not checked under sanitizers");
  std::printf("elapsed: %.2f s, rate: %.0f launches/s\n", elapsed,
              static_cast<double>(launches) / elapsed);

  bool ok = true;
  auto fail = [&](const char* what) {
    std::printf("FAILED: %s\n", what);
    ok = false;
  };
  if (t.total_expected() != launches || t.unexpected != 0)
    fail("every launch has its expected outcome");
  if (warm.unexpected != 0)
    fail("every warm-up launch has its expected outcome");
  if (fds_after != fds_before)
    fail("the same descriptors are open before and after");
  if (left != 0)
    fail("no child is left");
  if (stacks_in_use != 0 || !pools_ok)
    fail("every stack is back in its pool");
  if (reaper_pending != 0)
    fail("the reaper holds no child");
  if (check_rss && rss_after - rss_before > rss_bound_kb)
    fail("RSS stays within the bound");
  std::printf("%s\n", ok ? "OK" : "FAILED");
  ::close(never[0]);
  ::close(never[1]);
  return ok ? 0 : 1;
}
