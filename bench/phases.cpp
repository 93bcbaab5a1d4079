//
// bench/phases.cpp
// ~~~~~~~~~~~~~~~~
//
// The phases of aspawn-bench but the parent-size one: the runner's order
// of the contenders, its warm-up and settling pause, and the launch,
// throughput, live-children, allocation and responsiveness phases; the
// --gbench mode (see phases.hpp).
//

#include "phases.hpp"

#include "alloc_count.hpp"
#include "responsiveness.hpp"

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <random>

#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(ASPAWN_BENCH_HAVE_GBENCH)
#include <benchmark/benchmark.h>
#endif

namespace aspawn_bench {
namespace {

// The seed of the contenders' order in repetition 0 (rep r: seed + r).
constexpr unsigned order_seed = 1;

} // namespace

// Reaps children no contender accounted for; there should be none.
int reap_strays(const options& o) {
  kill_children_named(o.pause_path.c_str());
  int n = 0;
  int st = 0;
  while (::waitpid(-1, &st, WNOHANG) > 0)
    ++n;
  return n;
}

void progress(const std::string& s) {
  std::cerr << s << std::endl;
}

void runner::run() {
  const std::int64_t t0 = now_ns();
  auto timed = [&](const char* name, void (runner::*fn)()) {
    if (!o_.phases.count(name))
      return;
    std::int64_t s = now_ns();
    progress(std::string("== ") + name);
    (this->*fn)();
    progress(std::string("   ") + name + " took " +
             fmt_seconds(now_ns() - s));
  };
  warm_up();
  timed("launch", &runner::phase_launch);
  timed("throughput", &runner::phase_throughput);
  timed("memory", &runner::phase_memory);
  timed("sleepers", &runner::phase_sleepers);
  timed("allocs", &runner::phase_allocs);
  timed("responsiveness", &runner::phase_responsiveness);
  elapsed_s_ = static_cast<double>(now_ns() - t0) / 1e9;
}

std::string runner::fmt_seconds(std::int64_t ns) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f s", static_cast<double>(ns) / 1e9);
  return b;
}

// The contenders in a fixed shuffle per repetition (the same in every
// run). A rotation changes who goes first, not who follows whom, and the
// contender that always came right after the forking ones, or always a
// few places after the raw loop, was measured in conditions of its own.
std::vector<const contender*> runner::order(int rep) const {
  std::vector<const contender*> v;
  for (const contender* c : contenders_)
    if (!broken_.count(c->name))
      v.push_back(c);
  std::mt19937 rng(order_seed + static_cast<unsigned>(rep));
  std::shuffle(v.begin(), v.end(), rng);
  return v;
}

void runner::check_strays(const char* phase) {
  if (int n = reap_strays(o_); n != 0)
    std::cerr << "!! " << n << " unaccounted children reaped after "
              << phase << std::endl;
}

// The number of launches that makes a batch last about --batch-seconds,
// at least `min_count`; found with a pilot batch the first time.
int runner::calibrated(const std::string& key, session& s,
                       const char* path, int in_flight, int min_count,
                       double batch_seconds) {
  auto it = counts_.find(key);
  if (it != counts_.end())
    return it->second;
  const int pilot = std::max(min_count, 8);
  std::int64_t t = now_ns();
  s.run_batch(path, pilot, in_flight);
  double secs = static_cast<double>(now_ns() - t) / 1e9;
  double rate = pilot / std::max(secs, 1e-9);
  int n = static_cast<int>(rate * batch_seconds);
  n = std::clamp(n, min_count, 1'000'000);
  counts_[key] = n;
  return n;
}

// Untimed launches before the first phase. On an idle machine the first
// fraction of a second of launching was up to twice as slow for every
// contender (the first repetition showed it for all of them alike),
// which would otherwise land on whichever contenders come first. One
// session at a time, as in the phases, so that none runs alongside
// another's state (Boost.Process v1's SIGCHLD handler, for one).
void runner::warm_up() {
  if (o_.warmup_seconds <= 0)
    return;
  progress("== warm-up");
  const auto until =
      now_ns() + static_cast<std::int64_t>(o_.warmup_seconds * 1e9);
  bool any = true;
  while (any && now_ns() < until) {
    any = false;
    for (const contender* c : order(0)) {
      any = true;
      guarded(*c, "warm-up", [&] {
        session s = c->open();
        for (int i = 0; i < 5; ++i)
          for (const auto& prog : programs_)
            s.launch_one(prog.path.c_str());
      });
    }
  }
  check_strays("warm-up");
}

// Opens a contender's session for a phase, after an idle pause. The
// scheduler's load tracking outlives a session: after the fork-based
// contenders had run, the next contender's children were moved to the
// other core at exec (sched_exec), where waking an idle virtual CPU cost
// about 50 us per launch, and whichever contender came next in the
// rotation paid for it (the same contender every time). 50 ms of
// idleness lets most of that history decay (its half-life is 32 ms);
// with it, the effect was gone.
session runner::open_session(const contender& c) const {
  if (o_.settle_ms > 0) {
    const auto ns = static_cast<std::int64_t>(o_.settle_ms * 1e6);
    timespec ts{static_cast<time_t>(ns / 1'000'000'000),
                static_cast<long>(ns % 1'000'000'000)};
    while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
  return c.open();
}

void runner::phase_launch() {
  const int warm = std::max(3, o_.samples / 10);
  for (int rep = 0; rep < o_.reps; ++rep) {
    for (const auto& prog : programs_) {
      for (const contender* c : order(rep)) {
        guarded(*c, "launch", [&] {
          session s = open_session(*c);
          for (int i = 0; i < warm; ++i)
            s.launch_one(prog.path.c_str());
          std::vector<double> call, total, cpu;
          call.reserve(static_cast<std::size_t>(o_.samples));
          total.reserve(static_cast<std::size_t>(o_.samples));
          cpu.reserve(static_cast<std::size_t>(o_.samples));
          for (int i = 0; i < o_.samples; ++i) {
            std::int64_t c0 = thread_cpu_ns();
            launch_sample r = s.launch_one(prog.path.c_str());
            std::int64_t c1 = thread_cpu_ns();
            call.push_back(static_cast<double>(r.call_ns) / 1e3);
            total.push_back(static_cast<double>(r.total_ns) / 1e3);
            cpu.push_back(static_cast<double>(c1 - c0) / 1e3);
          }
          res_.add("in_call_us", prog.label, c->name, -1, median(call));
          res_.add("latency_us", prog.label, c->name, -1, median(total));
          res_.add("parent_cpu_us", prog.label, c->name, -1, median(cpu));
        });
      }
    }
    progress("   rep " + std::to_string(rep + 1) + "/" +
             std::to_string(o_.reps));
  }
  check_strays("launch");
}

// For each program and in-flight count, the contenders run one after
// the other, each in a fresh session: the figures compared with each
// other are taken within a few seconds. On this shared virtual machine
// throughput moves by 10-20% over seconds, and when a session ran all
// four in-flight counts in a row, a contender's 16-in-flight batch and
// the raw loop's were up to 15 s apart, and their ratio moved with it.
void runner::phase_throughput() {
  for (int rep = 0; rep < o_.reps; ++rep) {
    for (const auto& prog : programs_) {
      for (int n : o_.in_flight) {
        for (const contender* c : order(rep)) {
          guarded(*c, "throughput", [&] {
            session s = open_session(*c);
            // Warm: its stacks (or whatever it keeps) for n in flight.
            s.run_batch(prog.path.c_str(), std::max(8, n), n);
            std::string key = "tp/" + c->name + "/" + prog.label + "/" +
                              std::to_string(n);
            int count =
                calibrated(key, s, prog.path.c_str(), n, o_.min_rounds * n,
                           o_.batch_seconds);
            std::int64_t t = now_ns();
            s.run_batch(prog.path.c_str(), count, n);
            double secs = static_cast<double>(now_ns() - t) / 1e9;
            res_.add("throughput", prog.label, c->name, n, count / secs);
          });
        }
      }
    }
    progress("   rep " + std::to_string(rep + 1) + "/" +
             std::to_string(o_.reps));
  }
  check_strays("throughput");
}

void runner::phase_sleepers() {
  if (::access(o_.pause_path.c_str(), X_OK) != 0) {
    std::cerr << "!! " << o_.pause_path
              << " is not executable; live-children runs skipped"
              << std::endl;
    return;
  }
  const int samples = std::max(5, o_.samples / 2);
  for (const contender* c : order(0)) {
    guarded(*c, "sleepers", [&] {
      session s = open_session(*c);
      if (!s.start_sleepers || !s.stop_sleepers)
        return;
      std::int64_t t = now_ns();
      s.start_sleepers(o_.pause_path.c_str(), o_.sleepers);
      std::string started = fmt_seconds(now_ns() - t);
      struct stopper {
        session& s;
        ~stopper() {
          try {
            s.stop_sleepers();
          } catch (...) {
          }
        }
      } stop{s};
      for (const auto& prog : programs_)
        for (int i = 0; i < 3; ++i)
          s.launch_one(prog.path.c_str());
      for (int rep = 0; rep < o_.reps; ++rep) {
        for (const auto& prog : programs_) {
          std::vector<double> call, total;
          for (int i = 0; i < samples; ++i) {
            launch_sample r = s.launch_one(prog.path.c_str());
            call.push_back(static_cast<double>(r.call_ns) / 1e3);
            total.push_back(static_cast<double>(r.total_ns) / 1e3);
          }
          res_.add("sleepers_in_call_us", prog.label, c->name, -1,
                   median(call));
          res_.add("sleepers_latency_us", prog.label, c->name, -1,
                   median(total));
        }
      }
      progress("   " + c->name + ": " + std::to_string(o_.sleepers) +
               " sleepers started in " + started);
    });
    check_strays("sleepers");
  }
}

// Two figures per contender, both over --alloc-launches warm launches of
// one child at a time:
//
// allocs_per_launch (and news_per_launch): one batch (run_batch with 1 in
// flight), the contender's own loop. The aspawn contenders run it inside a
// single io_context::run(), each launch initiated from the previous one's
// completion handler, as an asynchronous program does; Asio then recycles
// handler memory through its per-thread cache, which lives as long as that
// run() call.
//
// allocs_per_launch_outside_loop: launch_one repeated, each launch
// initiated by the harness from outside io_context::run() (between
// run_one() calls), where that cache does not exist.
void runner::phase_allocs() {
  if (!alloc_count::available()) {
    std::cerr << "!! built without the allocation hooks (sanitizer build); "
                 "allocations not counted"
              << std::endl;
    return;
  }
  const int n = o_.alloc_launches;
  const double k = n;
  for (const auto& prog : programs_) {
    for (const contender* c : order(0)) {
      guarded(*c, "allocs", [&] {
        session s = open_session(*c);
        const char* path = prog.path.c_str();

        for (int i = 0; i < 20; ++i)
          s.launch_one(path);
        alloc_count::start();
        for (int i = 0; i < n; ++i)
          s.launch_one(path);
        alloc_count::snapshot outside = alloc_count::stop();

        alloc_count::snapshot in_loop;
        if (s.run_batch_warm) {
          s.run_batch_warm(path, 20, n, 1); // starts the counter itself
          in_loop = alloc_count::stop();
        } else {
          s.run_batch(path, 20, 1);
          alloc_count::start();
          s.run_batch(path, n, 1);
          in_loop = alloc_count::stop();
        }

        res_.add("allocs_per_launch", prog.label, c->name, -1,
                 static_cast<double>(in_loop.mallocs) / k);
        res_.add("news_per_launch", prog.label, c->name, -1,
                 static_cast<double>(in_loop.news) / k);
        res_.add("allocs_per_launch_outside_loop", prog.label, c->name, -1,
                 static_cast<double>(outside.mallocs) / k);
      });
    }
  }
  check_strays("allocs");
}

// responsiveness.cpp runs the phase through these hooks.
void runner::phase_responsiveness() {
  resp_settings s{o_.in_flight, o_.reps, o_.resp_launches, o_.resp_seconds,
                  o_.min_rounds};
  resp_hooks h;
  h.order = [this](int rep) { return order(rep); };
  h.open = [this](const contender& c) { return open_session(c); };
  h.guarded = [this](const contender& c, const std::function<void()>& fn) {
    guarded(c, "responsiveness", fn);
  };
  h.progress = progress;
  h.failed = [this](const std::string& e) {
    std::cerr << "!! " << e << std::endl;
    res_.failures.push_back({"(bystander)", "responsiveness", e});
  };
  res_.responsiveness = run_responsiveness(s, programs_, contenders_, h);
  check_strays("responsiveness");
}

#if defined(ASPAWN_BENCH_HAVE_GBENCH)
int run_gbench(const options& o, const std::vector<const contender*>& cs,
               const std::vector<program>& progs, const char* argv0) {
  std::vector<std::string> args_store{argv0};
  args_store.insert(args_store.end(), o.gbench_args.begin(),
                    o.gbench_args.end());
  std::vector<char*> args;
  for (auto& a : args_store)
    args.push_back(a.data());
  int argc = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&argc, args.data());
  for (const contender* c : cs) {
    for (const auto& p : progs) {
      std::string name = "launch_and_reap/" + c->name + "/" + p.label;
      benchmark::RegisterBenchmark(
          name.c_str(),
          [c, path = p.path](benchmark::State& state) {
            session s = c->open();
            for (int i = 0; i < 5; ++i)
              s.launch_one(path.c_str());
            double call_us = 0;
            for (auto _ : state) {
              launch_sample r = s.launch_one(path.c_str());
              state.SetIterationTime(static_cast<double>(r.total_ns) / 1e9);
              call_us += static_cast<double>(r.call_ns) / 1e3;
            }
            state.counters["in_call_us"] =
                benchmark::Counter(call_us, benchmark::Counter::kAvgIterations);
          })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
#endif

} // namespace aspawn_bench
