//
// bench/bench_aspawn.cpp
// ~~~~~~~~~~~~~~~~~~~~~~
//
// The aspawn contenders. Built only when bench/meson.build finds the
// library's asynchronous API (ASPAWN_BENCH_HAVE_ASPAWN, with the umbrella
// header in ASPAWN_BENCH_HEADER); everything aspawn-specific in the benchmark
// is in this file.
//
//   aspawn   aspawn::async_spawn(ctx, cmd, handler), then
//            process::async_wait(handler), on an io_context.
//
// The command is built once per session and reused for every launch, as the
// executable path is for Boost.Process v2. The time "inside the launch call"
// is the async_spawn call itself; the rest of the work (the status pipe's EOF
// after exec, the pidfd) is done by handlers and shows in the latency, the
// launching thread's CPU time and the throughput.
//

#include "harness.hpp"

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include ASPAWN_BENCH_HEADER

namespace aspawn_bench {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

void prepare(aspawn::command& cmd) {
  if constexpr (requires { cmd.prepare(); })
    cmd.prepare();
}

struct state {
  asio::io_context ctx;

  std::string cached_path;
  std::optional<aspawn::command> cmd;

  std::vector<std::optional<aspawn::process>> slots;
  std::vector<int> free_slots;
  int completed = 0;
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

  void note(error_code ec, int code) {
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
    throw std::runtime_error("aspawn: " + last_failure);
  }

  // io_context stops itself whenever it runs out of work; restart it first.
  void run_one() {
    if (ctx.stopped())
      ctx.restart();
    if (ctx.run_one() == 0)
      throw std::runtime_error("aspawn: io_context ran out of work");
  }
};

session make_session() {
  auto st = std::make_shared<state>();
  session s;

  s.launch_one = [st](const char* path) {
    const aspawn::command& cmd = st->command_for(path);
    launch_sample r;
    std::optional<aspawn::process> proc;
    bool done = false;
    std::int64_t t0 = now_ns();
    aspawn::async_spawn(st->ctx, cmd, [&](error_code ec, aspawn::process p) {
      if (ec) {
        st->note(ec, -1);
        done = true;
        return;
      }
      proc.emplace(std::move(p));
      proc->async_wait([&](error_code ec2, int code) {
        st->note(ec2, code);
        done = true;
      });
    });
    std::int64_t t1 = now_ns();
    while (!done)
      st->run_one();
    std::int64_t t2 = now_ns();
    st->check();
    r.call_ns = t1 - t0;
    r.total_ns = t2 - t0;
    return r;
  };

  s.run_batch = [st](const char* path, int count, int in_flight) {
    const aspawn::command& cmd = st->command_for(path);
    st->completed = 0;
    st->slots.clear();
    st->slots.resize(static_cast<std::size_t>(in_flight));
    st->free_slots.clear();
    for (int i = in_flight - 1; i >= 0; --i)
      st->free_slots.push_back(i);
    int launched = 0;
    while (st->completed < count) {
      while (launched < count && !st->free_slots.empty()) {
        int i = st->free_slots.back();
        st->free_slots.pop_back();
        ++launched;
        aspawn::async_spawn(
            st->ctx, cmd, [raw = st.get(), i](error_code ec, aspawn::process p) {
              if (ec) {
                raw->note(ec, -1);
                raw->free_slots.push_back(i);
                return;
              }
              auto& slot = raw->slots[static_cast<std::size_t>(i)];
              slot.emplace(std::move(p));
              slot->async_wait([raw, i](error_code ec2, int code) {
                raw->note(ec2, code);
                // The process object is replaced when the slot is reused,
                // outside this handler.
                raw->free_slots.push_back(i);
              });
            });
      }
      st->run_one();
    }
    st->slots.clear();
    st->check();
  };

  s.start_sleepers = [st](const char* path, int count) {
    st->sleeper_path = path;
    st->sleeper_cmd.emplace(path);
    prepare(*st->sleeper_cmd);
    st->sleepers.reserve(st->sleepers.size() + static_cast<std::size_t>(count));
    const int first = static_cast<int>(st->sleepers.size());
    for (int i = 0; i < count; ++i)
      st->sleepers.emplace_back();
    int pending = count;
    for (int i = 0; i < count; ++i) {
      auto index = static_cast<std::size_t>(first + i);
      aspawn::async_spawn(
          st->ctx, *st->sleeper_cmd,
          [raw = st.get(), index, &pending](error_code ec, aspawn::process p) {
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
  return s;
}

} // namespace

void register_aspawn_contenders(registry& r) {
  r.add({"aspawn",
         "aspawn::async_spawn (clone(CLONE_VM) on pooled stacks, returns at "
         "once) + process::async_wait (pidfd)",
         [] { return make_session(); }});
}

} // namespace aspawn_bench
