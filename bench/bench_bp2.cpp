//
// bench/bench_bp2.cpp
// ~~~~~~~~~~~~~~~~~~~
//
// Boost.Process v2 (header-only in Boost 1.81), waiting with
// process::async_wait on an io_context (a pidfd watched by the reactor on
// Linux). Two launchers:
//
//   bp2_default  bp2::process(ctx, exe, args): the default launcher, fork +
//                a CLOEXEC error pipe read synchronously until exec.
//   bp2_vfork    bp2::posix::vfork_launcher.
//
// The executable path is converted to a filesystem::path once per session,
// as a program launching the same thing repeatedly would do.
//

#include "harness.hpp"
#include "ticker.hpp"

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <signal.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/process/v2/posix/default_launcher.hpp>
#include <boost/process/v2/posix/vfork_launcher.hpp>
#include <boost/process/v2/process.hpp>

namespace aspawn_bench {
namespace {

namespace asio = boost::asio;
namespace bp2 = boost::process::v2;

struct default_launch {
  static bp2::process launch(asio::io_context& ctx, const bp2::filesystem::path& exe,
                             const std::vector<std::string>& args) {
    return bp2::process(ctx, exe, args);
  }
};

struct vfork_launch {
  static bp2::process launch(asio::io_context& ctx, const bp2::filesystem::path& exe,
                             const std::vector<std::string>& args) {
    return bp2::posix::vfork_launcher{}(asio::any_io_executor(ctx.get_executor()),
                                        exe, args);
  }
};

template <class Launch>
struct state {
  explicit state(const char* who) : who(who) {}

  asio::io_context ctx;
  // Creates the io_context's reactor (epoll, eventfd and timerfd descriptors)
  // before any pidfd exists. Boost 1.81's vfork_launcher calls
  // ctx.notify_fork(fork_child) in the vfork child, which shares the parent's
  // memory: the reactor closes and recreates its descriptors there and
  // stores the child's new numbers in the parent's io_context. They come out
  // the same only when no lower descriptor is free, which holds if the
  // reactor takes the lowest numbers before the first pidfd is opened and
  // closed; otherwise the parent's reactor ends up using a wrong descriptor
  // (epoll_ctl fails with EINVAL on the next launch).
  asio::steady_timer reactor_first{ctx};
  const char* who;
  std::vector<std::string> no_args;
  std::string cached_path;
  bp2::filesystem::path exe;

  std::vector<std::optional<bp2::process>> slots;
  std::vector<int> free_slots;
  int completed = 0;
  int failures = 0;
  std::string last_failure;

  std::vector<std::optional<bp2::process>> sleepers;
  int live_sleepers = 0;

  const bp2::filesystem::path& path_for(const char* p) {
    if (cached_path != p) {
      cached_path = p;
      exe = p;
    }
    return exe;
  }

  void note(bp2::error_code ec, int code) {
    ++completed;
    if (ec || code != 0) {
      ++failures;
      last_failure = ec ? ec.message() : "exit code " + std::to_string(code);
    }
  }

  void check() {
    if (failures == 0)
      return;
    failures = 0;
    throw std::runtime_error(std::string(who) + ": " + last_failure);
  }

  // Runs one handler. io_context stops itself whenever it runs out of work
  // (after each completion here), so it is restarted first.
  void run_one() {
    if (ctx.stopped())
      ctx.restart();
    if (ctx.run_one() == 0) {
      throw std::runtime_error(std::string(who) + ": io_context ran out of work");
    }
  }
};

// count launches, at most in_flight alive, launched between run_one() calls;
// with a log, each launch call is timed into it.
template <class Launch>
void run_batch_on(state<Launch>& st, const char* path, int count, int in_flight,
                  tick_log* log) {
  const auto& exe = st.path_for(path);
  st.completed = 0;
  st.slots.clear();
  st.slots.resize(static_cast<std::size_t>(in_flight));
  st.free_slots.clear();
  for (int i = in_flight - 1; i >= 0; --i)
    st.free_slots.push_back(i);
  int launched = 0;
  while (st.completed < count) {
    while (launched < count && !st.free_slots.empty()) {
      int i = st.free_slots.back();
      st.free_slots.pop_back();
      auto& slot = st.slots[static_cast<std::size_t>(i)];
      timed_call(log, [&] {
        slot.emplace(Launch::launch(st.ctx, exe, st.no_args));
      });
      ++launched;
      slot->async_wait([raw = &st, i](bp2::error_code ec, int code) {
        raw->note(ec, code);
        // The process object is replaced by the loop above, outside this
        // completion handler.
        raw->free_slots.push_back(i);
      });
    }
    st.run_one();
  }
  st.slots.clear();
  st.check();
}

template <class Launch>
session make_session(const char* who) {
  auto st = std::make_shared<state<Launch>>(who);
  session s;

  s.launch_one = [st](const char* path) {
    const auto& exe = st->path_for(path);
    launch_sample r;
    bool done = false;
    std::int64_t t0 = now_ns();
    bp2::process p = Launch::launch(st->ctx, exe, st->no_args);
    std::int64_t t1 = now_ns();
    p.async_wait([&](bp2::error_code ec, int code) {
      st->note(ec, code);
      done = true;
    });
    while (!done)
      st->run_one();
    std::int64_t t2 = now_ns();
    st->check();
    r.call_ns = t1 - t0;
    r.total_ns = t2 - t0;
    return r;
  };

  s.run_batch = [st](const char* path, int count, int in_flight) {
    run_batch_on(*st, path, count, in_flight, nullptr);
  };

  // The timer is served by run_one() between launches, on the same
  // io_context; the default launcher only (the responsiveness phase's
  // Boost.Process contender).
  if constexpr (std::is_same_v<Launch, default_launch>) {
    s.run_batch_ticking = [st](const char* path, int count, int in_flight,
                               tick_log& log) {
      asio_ticker t(st->ctx, log);
      run_batch_on(*st, path, count, in_flight, &log);
    };
  }

  s.start_sleepers = [st](const char* path, int count) {
    bp2::filesystem::path exe = path;
    st->sleepers.reserve(st->sleepers.size() + static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
      st->sleepers.emplace_back(Launch::launch(st->ctx, exe, st->no_args));
      ++st->live_sleepers;
      st->sleepers.back()->async_wait(
          [raw = st.get()](bp2::error_code, int) { --raw->live_sleepers; });
    }
  };

  s.stop_sleepers = [st] {
    for (auto& p : st->sleepers)
      if (p)
        ::kill(p->id(), SIGKILL);
    while (st->live_sleepers > 0)
      st->run_one();
    st->sleepers.clear();
  };
  return s;
}

} // namespace

void register_boost_process_v2_contenders(registry& r) {
  r.add({"bp2_default",
         "Boost.Process v2 process(ctx, exe, args): fork + error pipe, blocks "
         "until exec; async_wait (pidfd)",
         [] { return make_session<default_launch>("bp2_default"); }, true});
  r.add({"bp2_vfork",
         "Boost.Process v2 posix::vfork_launcher, blocks until exec; "
         "async_wait (pidfd)",
         [] { return make_session<vfork_launch>("bp2_vfork"); }});
}

} // namespace aspawn_bench
