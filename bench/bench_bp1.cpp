//
// bench/bench_bp1.cpp
// ~~~~~~~~~~~~~~~~~~~
//
// Boost.Process v1: bp::child(bp::exe = path, ctx, bp::on_exit = handler).
// The launch forks and reads a CLOEXEC error pipe until exec; the exit is
// delivered by the io_context's sigchld_service, which on every SIGCHLD calls
// waitpid(pid, WNOHANG) once for each child it is waiting for.
//

#include "harness.hpp"

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <signal.h>

#include <boost/asio/io_context.hpp>
#include <boost/process/async.hpp>
#include <boost/process/child.hpp>
#include <boost/process/exe.hpp>

namespace aspawn_bench {
namespace {

namespace asio = boost::asio;
namespace bp = boost::process;

struct state {
  asio::io_context ctx;
  std::string exe;

  std::vector<std::optional<bp::child>> slots;
  std::vector<int> free_slots;
  int completed = 0;
  int failures = 0;
  std::string last_failure;

  std::vector<std::optional<bp::child>> sleepers;
  int live_sleepers = 0;

  void note(int code, const std::error_code& ec) {
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
    throw std::runtime_error("bp1_on_exit: " + last_failure);
  }

  // Runs one handler. io_context stops itself whenever it runs out of work
  // (after each completion here), so it is restarted first.
  void run_one() {
    if (ctx.stopped())
      ctx.restart();
    if (ctx.run_one() == 0) {
      throw std::runtime_error("bp1_on_exit: io_context ran out of work");
    }
  }
};

session make_session() {
  auto st = std::make_shared<state>();
  session s;

  s.launch_one = [st](const char* path) {
    if (st->exe != path)
      st->exe = path;
    launch_sample r;
    bool done = false;
    std::int64_t t0 = now_ns();
    bp::child c(bp::exe = st->exe, st->ctx,
                bp::on_exit = [&](int code, const std::error_code& ec) {
                  st->note(code, ec);
                  done = true;
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
    if (st->exe != path)
      st->exe = path;
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
        st->slots[static_cast<std::size_t>(i)].emplace(
            bp::exe = st->exe, st->ctx,
            bp::on_exit = [raw = st.get(), i](int code, const std::error_code& ec) {
              raw->note(code, ec);
              raw->free_slots.push_back(i);
            });
        ++launched;
      }
      st->run_one();
    }
    st->slots.clear();
    st->check();
  };

  s.start_sleepers = [st](const char* path, int count) {
    std::string exe = path;
    st->sleepers.reserve(st->sleepers.size() + static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
      st->sleepers.emplace_back(std::in_place, bp::exe = exe, st->ctx,
                                bp::on_exit = [raw = st.get()](int, const std::error_code&) {
                                  --raw->live_sleepers;
                                });
      ++st->live_sleepers;
    }
  };

  s.stop_sleepers = [st] {
    for (auto& c : st->sleepers)
      if (c)
        ::kill(c->id(), SIGKILL);
    while (st->live_sleepers > 0)
      st->run_one();
    st->sleepers.clear();
  };
  return s;
}

} // namespace

void register_boost_process_v1_contenders(registry& r) {
  r.add({"bp1_on_exit",
         "Boost.Process v1 child(exe, ctx, on_exit): fork + error pipe, blocks "
         "until exec; SIGCHLD + waitpid per watched child",
         [] { return make_session(); }, true});
}

} // namespace aspawn_bench
