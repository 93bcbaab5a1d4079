//
// bench/bench_aspawn.cpp
// ~~~~~~~~~~~~~~~~~~~~~~
//
// The aspawn contenders. Built only when bench/meson.build finds the
// library's asynchronous API (ASPAWN_BENCH_HAVE_ASPAWN, with the umbrella
// header in ASPAWN_BENCH_HEADER); everything aspawn-specific in the benchmark
// is in this file.
//
//   aspawn          aspawn::async_spawn(ctx, cmd, handler), then
//                   process::async_wait(handler), on an io_context; the
//                   command is built and prepared once per session.
//   aspawn_coro     the same launch and wait from a C++20 coroutine:
//                   co_await async_spawn(ctx, cmd, use_awaitable), then
//                   co_await p.async_wait(use_awaitable).
//   aspawn_scratch  as aspawn, but every launch builds a new command and
//                   does not prepare it (what a program does without
//                   building templates up front): the launch packs the
//                   arguments and environment onto the child stack itself.
//   aspawn_sync     the blocking Boost.Process v2-style constructor
//                   aspawn::process(ctx, exe, args), which returns once the
//                   child has exec'd, then async_wait. Registered only when
//                   the library has that constructor.
//
// The prepared command is built once per session and reused for every
// launch, as the executable path is for Boost.Process v2. The time "inside
// the launch call" is the async_spawn call itself (for aspawn_scratch it
// includes building the command; for aspawn_sync it is the constructor; for
// aspawn_coro see launch_one below); the rest of the work (the status pipe's
// EOF after exec, the pidfd) is done by handlers and shows in the latency,
// the launching thread's CPU time and the throughput.
//
// Batches (run_batch) are run the way an asynchronous program runs: inside a
// single io_context::run(), each completion starting the next launch (a
// callback chain, or a coroutine looping). Launches initiated there reuse
// the handler memory Asio caches per thread for the duration of run(); the
// one-at-a-time launches (launch_one) are initiated from outside run(),
// between run_one() calls, where that cache does not exist. The allocation
// phase reports both (see bench/README.md).
//

#include "alloc_count.hpp"
#include "harness.hpp"
#include "ticker.hpp"

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <type_traits>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include ASPAWN_BENCH_HEADER

namespace aspawn_bench {
namespace {

// A completion token that forwards to `inner` and records in `log` the time
// from `t0` until the initiation of the operation has returned. With
// use_awaitable, the initiation runs once the coroutine is suspended in its
// co_await, just before control goes back to the event loop: from a `t0`
// taken before the co_await, that is the coroutine's time in the launch call.
template <typename Inner> struct timed_initiation {
  Inner inner;
  std::int64_t t0;
  tick_log* log;
};

} // namespace
} // namespace aspawn_bench

template <typename Inner, typename... Signatures>
class boost::asio::async_result<aspawn_bench::timed_initiation<Inner>,
                                Signatures...> {
public:
  template <typename Initiation, typename RawToken, typename... Args>
  static auto initiate(Initiation&& init, RawToken&& token, Args&&... args) {
    return boost::asio::async_initiate<Inner, Signatures...>(
        [init = std::forward<Initiation>(init), t0 = token.t0,
         log = token.log](auto&& handler, auto&&... a) mutable {
          std::move(init)(std::forward<decltype(handler)>(handler),
                          std::forward<decltype(a)>(a)...);
          log->in_call_ns.push_back(aspawn_bench::now_ns() - t0);
        },
        token.inner, std::forward<Args>(args)...);
  }
};

namespace aspawn_bench {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

void prepare(aspawn::command& cmd) {
  if constexpr (requires { cmd.prepare(); })
    cmd.prepare();
}

// Whether the library has the blocking constructor process(ctx, exe, args).
// Ctx keeps the expression dependent, so that its absence is not an error.
template <typename Ctx>
concept has_sync_constructor =
    requires(Ctx& ctx, const std::string& exe,
             const std::vector<std::string>& args) {
      aspawn::process(ctx, exe, args);
    };

// How a contender launches.
enum class form {
  prepared, // async_spawn, callbacks, command prepared once per session
  coro,     // async_spawn from a coroutine, command prepared once
  scratch,  // async_spawn, callbacks, a new unprepared command per launch
  sync,     // process(ctx, exe, args), blocks until exec
};

// Ctx is always asio::io_context; as a template parameter it keeps every use
// of the blocking constructor dependent (see has_sync_constructor).
template <form F, typename Ctx> struct state {
  Ctx ctx;

  std::string cached_path;
  std::optional<aspawn::command> cmd;
  std::vector<std::string> no_args;

  // run_batch: chain c keeps its process in slots[c] from the launch's
  // completion until its exit wait completes. The wait's handler destroys
  // it before starting the next launch, as a program does that lets the
  // process go once it has its exit code (and as the coroutine contender's
  // loop and the raw loop do): a finished child's pidfd held a round longer
  // would sit in the fd table that every later clone copies and every
  // exec closes.
  std::vector<std::optional<aspawn::process>> slots;
  int count = 0;
  int launched = 0;
  int completed = 0;
  int count_from = -1; // start the allocation counter at this completion
  int workers = 0; // coroutines still running (aspawn_coro)
  tick_log* log = nullptr; // run_batch_ticking: launch calls are timed

  int failures = 0;
  std::string last_failure;

  std::string sleeper_path;
  std::optional<aspawn::command> sleeper_cmd;
  std::vector<std::optional<aspawn::process>> sleepers;
  int live_sleepers = 0;

  const aspawn::command& command_for(const char* path) {
    if (!cmd || cached_path != path) {
      cached_path = path;
      cmd.emplace(path);
      prepare(*cmd);
    }
    return *cmd;
  }

  const std::string& path_for(const char* path) {
    if (cached_path != path)
      cached_path = path;
    return cached_path;
  }

  void note(error_code ec, int code) {
    ++completed;
    if (count_from >= 0) {
      // The counter covers the launches after the warm ones, each from its
      // initiation to its reaped exit, and stops at the last: the batch's
      // end (the coroutines' own completions, the loop's stop) is not a
      // launch's.
      if (completed == count_from)
        aspawn_bench::alloc_count::start();
      else if (completed == count)
        aspawn_bench::alloc_count::stop();
    }
    if (ec || code != 0) {
      ++failures;
      last_failure = ec ? ec.message() : "exit code " + std::to_string(code);
    }
  }

  void note(const std::exception_ptr& e) {
    ++failures;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      last_failure = x.what();
    } catch (...) {
      last_failure = "unknown exception";
    }
  }

  void check() {
    if (failures == 0)
      return;
    failures = 0;
    throw std::runtime_error("aspawn: " + last_failure);
  }

  // io_context stops itself whenever it runs out of work; restart it first.
  void run_one() {
    if (ctx.stopped())
      ctx.restart();
    if (ctx.run_one() == 0)
      throw std::runtime_error("aspawn: io_context ran out of work");
  }

  // One io_context::run() for a whole batch; finish_batch() stops it.
  void run_batch_loop() {
    if (ctx.stopped())
      ctx.restart();
    ctx.run();
  }

  // --- run_batch for the callback forms: chains of launches ---------------

  std::optional<aspawn::process>& slot_of(int chain) {
    return slots[static_cast<std::size_t>(chain)];
  }

  void launch_in_chain(int chain) {
    ++launched;
    if constexpr (F == form::sync) {
      auto& slot = slot_of(chain);
      slot.emplace(ctx, cached_path, no_args);
      watch(chain, *slot);
    } else {
      auto on_spawn = [this, chain](error_code ec, aspawn::process p) {
        if (ec) {
          note(ec, -1);
          chain_step_done(chain);
          return;
        }
        auto& slot = slot_of(chain);
        slot.emplace(std::move(p));
        watch(chain, *slot);
      };
      if constexpr (F == form::scratch) {
        aspawn::command fresh(cached_path);
        aspawn::async_spawn(ctx, fresh, std::move(on_spawn));
      } else {
        timed_call(log, [&] {
          aspawn::async_spawn(ctx, *cmd, std::move(on_spawn));
        });
      }
    }
  }

  void watch(int chain, aspawn::process& p) {
    p.async_wait([this, chain](error_code ec, int code) {
      note(ec, code);
      slot_of(chain).reset(); // the process whose wait this is
      chain_step_done(chain);
    });
  }

  void chain_step_done(int chain) {
    if (completed >= count) {
      ctx.stop();
      return;
    }
    if (launched < count)
      launch_in_chain(chain);
  }
};

template <form F, typename Ctx> using state_ptr = std::shared_ptr<state<F, Ctx>>;

// run_batch_warm: one batch whose allocation counting starts at the
// `warm`-th completion (state::note).
template <typename State>
void add_warm_batch(session& s, const std::shared_ptr<State>& st) {
  s.run_batch_warm = [st, batch = s.run_batch](const char* path, int warm,
                                               int count, int in_flight) {
    st->count_from = warm;
    try {
      batch(path, warm + count, in_flight);
    } catch (...) {
      st->count_from = -1;
      throw;
    }
    st->count_from = -1;
  };
}

// run_batch_ticking: the batch with a steady_timer on the same io_context,
// served by the same run().
template <typename State>
void add_ticking_batch(session& s, const std::shared_ptr<State>& st) {
  s.run_batch_ticking = [st, batch = s.run_batch](const char* path, int count,
                                                  int in_flight,
                                                  tick_log& log) {
    asio_ticker t(st->ctx, log);
    struct unset {
      State& st;
      ~unset() { st.log = nullptr; }
    } u{*st};
    st->log = &log;
    batch(path, count, in_flight);
  };
}

// The sleepers are launched with the prepared command and waited on with
// async_wait, as every aspawn contender waits.
template <form F, typename Ctx>
void add_sleeper_functions(session& s, const state_ptr<F, Ctx>& st) {
  s.start_sleepers = [st](const char* path, int count) {
    st->sleeper_path = path;
    st->sleeper_cmd.emplace(path);
    prepare(*st->sleeper_cmd);
    st->sleepers.reserve(st->sleepers.size() + static_cast<std::size_t>(count));
    const int first = static_cast<int>(st->sleepers.size());
    for (int i = 0; i < count; ++i)
      st->sleepers.emplace_back();
    int pending = count;
    auto* raw = st.get();
    for (int i = 0; i < count; ++i) {
      auto index = static_cast<std::size_t>(first + i);
      aspawn::async_spawn(
          st->ctx, *st->sleeper_cmd,
          [raw, index, &pending](error_code ec, aspawn::process p) {
            --pending;
            if (ec) {
              raw->note(ec, -1);
              return;
            }
            ++raw->live_sleepers;
            auto& slot = raw->sleepers[index];
            slot.emplace(std::move(p));
            slot->async_wait(
                [raw](error_code, int) { --raw->live_sleepers; });
          });
    }
    while (pending > 0)
      st->run_one();
    st->check();
  };

  s.stop_sleepers = [st] {
    if (!st->sleeper_path.empty())
      kill_children_named(st->sleeper_path.c_str());
    while (st->live_sleepers > 0)
      st->run_one();
    st->sleepers.clear();
  };
}

// aspawn, aspawn_scratch and aspawn_sync.
template <form F, typename Ctx>
session make_callback_session(bool launch_thread = true) {
  auto st = std::make_shared<state<F, Ctx>>();
  if constexpr (std::is_same_v<Ctx, asio::io_context>)
    aspawn::stack_pool::of(st->ctx).set_launch_thread(launch_thread);
  session s;

  s.launch_one = [st](const char* path) {
    if constexpr (F == form::prepared)
      st->command_for(path);
    else
      st->path_for(path);
    launch_sample r;
    std::optional<aspawn::process> proc;
    bool done = false;
    auto on_exit = [&](error_code ec, int code) {
      st->note(ec, code);
      done = true;
    };
    std::int64_t t0 = now_ns();
    std::int64_t t1 = 0;
    if constexpr (F == form::sync) {
      proc.emplace(st->ctx, st->cached_path, st->no_args);
      t1 = now_ns();
      proc->async_wait(on_exit);
    } else {
      auto on_spawn = [&](error_code ec, aspawn::process p) {
        if (ec) {
          st->note(ec, -1);
          done = true;
          return;
        }
        proc.emplace(std::move(p));
        proc->async_wait(on_exit);
      };
      if constexpr (F == form::scratch) {
        aspawn::command fresh(path);
        aspawn::async_spawn(st->ctx, fresh, on_spawn);
      } else {
        aspawn::async_spawn(st->ctx, *st->cmd, on_spawn);
      }
      t1 = now_ns();
    }
    while (!done)
      st->run_one();
    std::int64_t t2 = now_ns();
    st->check();
    r.call_ns = t1 - t0;
    r.total_ns = t2 - t0;
    return r;
  };

  s.run_batch = [st](const char* path, int count, int in_flight) {
    if constexpr (F == form::prepared)
      st->command_for(path);
    else
      st->path_for(path);
    st->count = count;
    st->launched = 0;
    st->completed = 0;
    const auto chains = static_cast<std::size_t>(in_flight);
    st->slots.clear();
    st->slots.resize(chains);
    // The first launches are started from a handler too, so that every
    // launch of the batch is initiated inside run().
    auto* raw = st.get();
    asio::post(st->ctx, [raw, in_flight] {
      for (int i = 0; i < in_flight && raw->launched < raw->count; ++i)
        raw->launch_in_chain(i);
    });
    st->run_batch_loop();
    if (st->completed < count && st->failures == 0)
      throw std::runtime_error("aspawn: io_context ran out of work");
    st->slots.clear();
    st->check();
  };

  add_warm_batch(s, st);
  if constexpr (F == form::prepared)
    add_ticking_batch(s, st);
  add_sleeper_functions<F, Ctx>(s, st);
  return s;
}

// The body of a coroutine that launches and waits until the batch's count
// is reached.
template <typename Ctx>
asio::awaitable<void> launch_loop(state<form::coro, Ctx>* st) {
  while (st->launched < st->count) {
    ++st->launched;
    std::optional<aspawn::process> p;
    if (st->log != nullptr)
      p.emplace(co_await aspawn::async_spawn(
          st->ctx, *st->cmd,
          timed_initiation<asio::use_awaitable_t<>>{asio::use_awaitable,
                                                    now_ns(), st->log}));
    else
      p.emplace(co_await aspawn::async_spawn(st->ctx, *st->cmd,
                                             asio::use_awaitable));
    int code = co_await p->async_wait(asio::use_awaitable);
    st->note(error_code{}, code);
  }
}

// aspawn_coro.
template <typename Ctx> session make_coro_session() {
  auto st = std::make_shared<state<form::coro, Ctx>>();
  session s;

  // One coroutine per launch (the harness asks for one launch at a time).
  // The time "inside the launch call" runs from the co_await of async_spawn
  // until the coroutine is suspended and control is back in the event loop,
  // which is when the launch has been initiated; the latency ends when the
  // coroutine resumes with the exit code.
  s.launch_one = [st](const char* path) {
    const aspawn::command& cmd = st->command_for(path);
    launch_sample r;
    bool started = false;
    bool done = false;
    std::int64_t t0 = 0;
    std::int64_t t2 = 0;
    asio::co_spawn(
        st->ctx,
        [&]() -> asio::awaitable<void> {
          t0 = now_ns();
          started = true;
          auto p = co_await aspawn::async_spawn(st->ctx, cmd, asio::use_awaitable);
          int code = co_await p.async_wait(asio::use_awaitable);
          t2 = now_ns();
          st->note(error_code{}, code);
        },
        [&](std::exception_ptr e) {
          if (e)
            st->note(e);
          done = true;
        });
    while (!started && !done)
      st->run_one();
    std::int64_t t1 = now_ns();
    while (!done)
      st->run_one();
    st->check();
    r.call_ns = t1 - t0;
    r.total_ns = t2 - t0;
    return r;
  };

  // in_flight coroutines, each launching and waiting in a loop, inside one
  // io_context::run().
  s.run_batch = [st](const char* path, int count, int in_flight) {
    st->command_for(path);
    st->count = count;
    st->launched = 0;
    st->completed = 0;
    st->workers = in_flight;
    auto* raw = st.get();
    asio::post(st->ctx, [raw, in_flight] {
      for (int i = 0; i < in_flight; ++i)
        asio::co_spawn(raw->ctx, launch_loop(raw), [raw](std::exception_ptr e) {
          if (e)
            raw->note(e);
          if (--raw->workers == 0)
            raw->ctx.stop();
        });
    });
    st->run_batch_loop();
    if (st->workers != 0)
      throw std::runtime_error("aspawn: io_context ran out of work");
    st->check();
  };

  add_warm_batch(s, st);
  add_ticking_batch(s, st);
  add_sleeper_functions<form::coro, Ctx>(s, st);
  return s;
}

template <typename Ctx> void register_sync_contender(registry& r) {
  if constexpr (has_sync_constructor<Ctx>) {
    r.add({"aspawn_sync",
           "aspawn::process(ctx, exe, args), the Boost.Process v2-style "
           "constructor: command built per launch, clone, blocks until exec; "
           "process::async_wait (pidfd)",
           [] { return make_callback_session<form::sync, Ctx>(); }});
  }
}

} // namespace

void register_aspawn_contenders(registry& r) {
  using ctx = asio::io_context;
  r.add({"aspawn",
         "aspawn::async_spawn (clone(CLONE_VM) on pooled stacks, returns at "
         "once) + process::async_wait (pidfd); callbacks, command prepared "
         "once",
         [] { return make_callback_session<form::prepared, ctx>(); }});
  r.add({"aspawn_inline",
         "as aspawn, with the pool's launch thread off "
         "(stack_pool::set_launch_thread(false)): the clone runs on the "
         "event-loop thread, inside the call",
         [] { return make_callback_session<form::prepared, ctx>(false); }});
  r.add({"aspawn_coro",
         "as aspawn, from a C++20 coroutine: co_await async_spawn(ctx, cmd, "
         "use_awaitable), co_await p.async_wait(use_awaitable)",
         [] { return make_coro_session<ctx>(); }});
  r.add({"aspawn_scratch",
         "as aspawn, with a new command built for each launch and not "
         "prepared (packed onto the child stack by the launch)",
         [] { return make_callback_session<form::scratch, ctx>(); }});
  register_sync_contender<ctx>(r);
}

} // namespace aspawn_bench
