//
// bench/main.cpp
// ~~~~~~~~~~~~~~
//
// aspawn-bench: measures ways of launching a program from a C++ process on
// the same workload in the same run, and reports each figure as a median
// over repetitions and as a ratio to posix_spawn and to Boost.Process v2.
// See bench/README.md for what each measurement means.
//

#include "alloc_count.hpp"
#include "harness.hpp"
#include "responsiveness.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <gnu/libc-version.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <boost/version.hpp>

#if defined(ASPAWN_BENCH_HAVE_GBENCH)
#include <benchmark/benchmark.h>
#endif

namespace aspawn_bench {
namespace {

// ---------------------------------------------------------------------------
// Configuration

using program = resp_program; // label, path

struct options {
  std::string exit0_path;
  std::string pause_path;
  std::string true_path = "/bin/true";
  std::string json_path;
  std::string markdown_path;
  std::string plot_dir;
  bool quick = false;
  int reps = 5;
  double warmup_seconds = 1.0;
  double settle_ms = 50;
  double memory_batch_seconds = 0.4;
  int memory_batches = 4;
  int samples = 200;
  double batch_seconds = 0.15;
  std::vector<int> in_flight = {1, 4, 16, 64};
  int memory_in_flight = 16;
  std::vector<double> parent_gib = {0, 1, 4};
  int sleepers = 1000;
  int alloc_launches = 100;
  int min_rounds = 2; // a throughput batch launches at least this * in_flight
  int resp_launches = 2000;
  double resp_seconds = 1.5;
  std::set<std::string> only;
  std::set<std::string> phases;
  bool list = false;
  bool gbench = false;
  std::vector<std::string> gbench_args;
};

const char* const all_phases[] = {"launch", "throughput", "memory", "sleepers",
                                  "allocs", "responsiveness"};

const char* const ref_posix = "posix_spawn";
const char* const ref_bp2 = "bp2_default";

// The seed of the contenders' order in repetition 0 (rep r: seed + r).
constexpr unsigned order_seed = 1;

std::string dir_of_self() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0)
    return ".";
  std::string p(buf, static_cast<std::size_t>(n));
  auto slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

void usage(std::ostream& os) {
  os << R"(usage: aspawn-bench [options]

Launches two programs (aspawn-exit0, a static no-libc binary, and /bin/true)
with every contender and reports medians over repetitions, each with its
ratio to posix_spawn and to Boost.Process v2 (bp2_default) from the same run.

  --exit0 PATH           the exit0 program (default: aspawn-exit0 next to
                         this executable)
  --pause PATH           the never-exiting child for --sleepers (default:
                         aspawn-pause next to this executable)
  --true PATH            the second program (default: /bin/true)
  --json PATH            write the results as JSON
  --markdown PATH        write the results as Markdown tables
  --plot-data DIR        write gnuplot data (DIR/plot-throughput.tmp,
                         DIR/plot-parent-size.tmp and, when the
                         responsiveness phase ran, DIR/plot-responsiveness.tmp)
  --quick                a short run (about a minute on 2 idle cores): fewer
                         repetitions and samples, shorter batches, no 4 GiB
                         parent, 250 live children
  --reps N               repetitions (default 5, quick 3)
  --settle-ms MS         idle pause before each contender's session in
                         every phase, so that none inherits the scheduler
                         state another left behind (default 50, quick 10;
                         0 to skip)
  --warmup S             seconds of untimed one-at-a-time launches, cycling
                         through the contenders, before the first phase
                         (default 1, quick 0.3; 0 to skip)
  --samples N            one-at-a-time launches per repetition (default 200,
                         quick 30)
  --batch-seconds S      target length of one throughput batch (default 0.15,
                         quick 0.03)
  --in-flight LIST       in-flight counts of the throughput and
                         responsiveness phases, comma-separated (default
                         1,4,16,64)
  --memory-in-flight N   in-flight count of the parent-size runs (default 16)
  --memory-batch-seconds S
                         target length of one parent-size batch of a
                         contender that does not fork (default 0.4; quick:
                         as --batch-seconds)
  --memory-batches K     split such a batch into K timed parts, each a
                         sample of the parent-size figures, when each part
                         still holds a round of --memory-in-flight launches
                         (default 4; 1: one part); the parent sizes, each
                         held by a worker process, take turns part by part
  --parent-gib LIST      touched parent memory in GiB, comma-separated
                         (default 0,1,4; quick 0,1)
  --skip-4gib            drop parent sizes of 4 GiB and more
  --sleepers N           live children during the "live children" runs
                         (default 1000, quick 250)
  --alloc-launches N     warm launches counted for allocations (default 100)
  --resp-launches N      responsiveness phase: launches per contender,
                         program and in-flight count, split over the
                         repetitions (default 2000, quick 500), in at least
                         a third of --resp-seconds
  --resp-seconds S       responsiveness phase: time box for those launches
                         (default 1.5, quick 0.5)
  --only LIST            only these contenders (comma-separated names)
  --phases LIST          only these phases: launch,throughput,memory,
                         sleepers,allocs,responsiveness (e.g. --phases
                         responsiveness runs that one alone)
  --list                 list the contenders and exit
  --gbench [ARGS...]     run the one-at-a-time launch through Google
                         Benchmark instead (the rest of the command line goes
                         to Google Benchmark)
  --help
)";
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty())
      out.push_back(item);
  return out;
}

int to_int(const std::string& s, const char* flag) {
  try {
    std::size_t pos = 0;
    int v = std::stoi(s, &pos);
    if (pos == s.size() && v >= 0)
      return v;
  } catch (const std::exception&) {
  }
  throw std::invalid_argument(std::string("bad value for ") + flag + ": " + s);
}

double to_double(const std::string& s, const char* flag) {
  try {
    std::size_t pos = 0;
    double v = std::stod(s, &pos);
    if (pos == s.size() && v >= 0)
      return v;
  } catch (const std::exception&) {
  }
  throw std::invalid_argument(std::string("bad value for ") + flag + ": " + s);
}

options parse(int argc, char** argv) {
  options o;
  bool reps_set = false, samples_set = false, batch_set = false,
       gib_set = false, sleepers_set = false, skip4 = false,
       warmup_set = false, settle_set = false, memory_batch_set = false,
       resp_launches_set = false, resp_seconds_set = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        throw std::invalid_argument("missing value for " + a);
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      usage(std::cout);
      std::exit(0);
    } else if (a == "--exit0") {
      o.exit0_path = value();
    } else if (a == "--pause") {
      o.pause_path = value();
    } else if (a == "--true") {
      o.true_path = value();
    } else if (a == "--json") {
      o.json_path = value();
    } else if (a == "--markdown") {
      o.markdown_path = value();
    } else if (a == "--plot-data") {
      o.plot_dir = value();
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--reps") {
      o.reps = std::max(1, to_int(value(), "--reps"));
      reps_set = true;
    } else if (a == "--memory-batches") {
      o.memory_batches = std::max(1, to_int(value(), "--memory-batches"));
    } else if (a == "--memory-batch-seconds") {
      o.memory_batch_seconds = to_double(value(), "--memory-batch-seconds");
      memory_batch_set = true;
    } else if (a == "--settle-ms") {
      o.settle_ms = to_double(value(), "--settle-ms");
      settle_set = true;
    } else if (a == "--warmup") {
      o.warmup_seconds = to_double(value(), "--warmup");
      warmup_set = true;
    } else if (a == "--samples") {
      o.samples = std::max(1, to_int(value(), "--samples"));
      samples_set = true;
    } else if (a == "--batch-seconds") {
      o.batch_seconds = to_double(value(), "--batch-seconds");
      batch_set = true;
    } else if (a == "--in-flight") {
      o.in_flight.clear();
      for (auto& s : split(value()))
        o.in_flight.push_back(std::max(1, to_int(s, "--in-flight")));
    } else if (a == "--memory-in-flight") {
      o.memory_in_flight = std::max(1, to_int(value(), "--memory-in-flight"));
    } else if (a == "--parent-gib") {
      o.parent_gib.clear();
      for (auto& s : split(value()))
        o.parent_gib.push_back(to_double(s, "--parent-gib"));
      gib_set = true;
    } else if (a == "--skip-4gib") {
      skip4 = true;
    } else if (a == "--sleepers") {
      o.sleepers = to_int(value(), "--sleepers");
      sleepers_set = true;
    } else if (a == "--alloc-launches") {
      o.alloc_launches = std::max(1, to_int(value(), "--alloc-launches"));
    } else if (a == "--resp-launches") {
      o.resp_launches = std::max(1, to_int(value(), "--resp-launches"));
      resp_launches_set = true;
    } else if (a == "--resp-seconds") {
      o.resp_seconds = to_double(value(), "--resp-seconds");
      resp_seconds_set = true;
    } else if (a == "--only") {
      for (auto& s : split(value()))
        o.only.insert(s);
    } else if (a == "--phases") {
      for (auto& s : split(value())) {
        if (std::find_if(std::begin(all_phases), std::end(all_phases),
                         [&](const char* p) { return s == p; }) ==
            std::end(all_phases))
          throw std::invalid_argument("unknown phase: " + s);
        o.phases.insert(s);
      }
    } else if (a == "--list") {
      o.list = true;
    } else if (a == "--gbench") {
      o.gbench = true;
      for (++i; i < argc; ++i)
        o.gbench_args.emplace_back(argv[i]);
    } else {
      throw std::invalid_argument("unknown option: " + a);
    }
  }
  if (o.quick) {
    if (!reps_set)
      o.reps = 3;
    if (!samples_set)
      o.samples = 30;
    if (!warmup_set)
      o.warmup_seconds = 0.3;
    if (!settle_set)
      o.settle_ms = 10;
    if (!batch_set)
      o.batch_seconds = 0.03;
    if (!memory_batch_set)
      o.memory_batch_seconds = o.batch_seconds;
    if (!gib_set)
      o.parent_gib = {0, 1};
    if (!sleepers_set)
      o.sleepers = 250;
    o.alloc_launches = std::min(o.alloc_launches, 30);
    o.min_rounds = 1;
    if (!resp_launches_set)
      o.resp_launches = 500;
    if (!resp_seconds_set)
      o.resp_seconds = 0.5;
  }
  if (skip4)
    std::erase_if(o.parent_gib, [](double g) { return g >= 4; });
  if (o.phases.empty())
    for (const char* p : all_phases)
      o.phases.insert(p);
  const std::string dir = dir_of_self();
  if (o.exit0_path.empty())
    o.exit0_path = dir + "/aspawn-exit0";
  if (o.pause_path.empty())
    o.pause_path = dir + "/aspawn-pause";
  return o;
}

// ---------------------------------------------------------------------------
// Results

struct metric_info {
  const char* id;
  const char* title;
  const char* unit;
  bool higher_is_better;
  const char* param; // nullptr: no parameter
};

const metric_info metrics[] = {
    {"in_call_us", "Time inside the launch call", "us", false, nullptr},
    {"latency_us", "Launch to reaped exit, one at a time", "us", false,
     nullptr},
    {"parent_cpu_us",
     "CPU time of the launching thread per launch and reap, one at a time",
     "us", false, nullptr},
    {"throughput", "Throughput with N children in flight", "launches/s", true,
     "in_flight"},
    {"parent_size_throughput",
     "Throughput with {in_flight} in flight by touched parent memory",
     "launches/s", true, "parent_gib"},
    {"parent_size_cpu_us",
     "CPU time of the launching thread per launch and reap, {in_flight} in "
     "flight, by touched parent memory",
     "us", false, "parent_gib"},
    {"sleepers_in_call_us",
     "Time inside the launch call with {sleepers} live children waited on", "us",
     false, nullptr},
    {"sleepers_latency_us",
     "Launch to reaped exit with {sleepers} live children waited on", "us", false,
     nullptr},
    {"allocs_per_launch",
     "Heap allocations per warm launch, launches in the contender's own loop "
     "(malloc family, whole process)",
     "allocations", false, nullptr},
    {"news_per_launch", "Of which through operator new", "allocations", false,
     nullptr},
    {"allocs_per_launch_outside_loop",
     "Heap allocations per warm launch, one at a time from outside the event "
     "loop",
     "allocations", false, nullptr},
};

// The title with {in_flight} and {sleepers} filled in.
std::string title_of(const metric_info& m, const options& o) {
  std::string t = m.title;
  auto fill = [&](const std::string& key, const std::string& v) {
    if (auto pos = t.find(key); pos != std::string::npos)
      t.replace(pos, key.size(), v);
  };
  fill("{in_flight}", std::to_string(o.memory_in_flight));
  fill("{sleepers}", std::to_string(o.sleepers));
  return t;
}

const metric_info& info_of(const std::string& id) {
  for (const auto& m : metrics)
    if (id == m.id)
      return m;
  throw std::logic_error("unknown metric " + id);
}

double median(std::vector<double> v) {
  if (v.empty())
    return std::nan("");
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

using result_key = std::tuple<std::string, std::string, std::string, double>;

struct failure {
  std::string contender;
  std::string phase;
  std::string error;
};

struct results {
  // (metric, program label, contender, param or -1) -> one value per rep
  std::map<result_key, std::vector<double>> values;
  std::vector<failure> failures;
  std::vector<resp_record> responsiveness;

  void add(const std::string& metric, const std::string& prog,
           const std::string& cont, double param, double v) {
    values[{metric, prog, cont, param}].push_back(v);
  }

  bool has(const std::string& metric, const std::string& prog,
           const std::string& cont, double param) const {
    return values.count({metric, prog, cont, param}) != 0;
  }

  double med(const std::string& metric, const std::string& prog,
             const std::string& cont, double param) const {
    auto it = values.find({metric, prog, cont, param});
    return it == values.end() ? std::nan("") : median(it->second);
  }

  // NaN when either side is missing or the reference is 0.
  double ratio(const std::string& metric, const std::string& prog,
               const std::string& cont, double param,
               const std::string& ref) const {
    double a = med(metric, prog, cont, param);
    double b = med(metric, prog, ref, param);
    if (std::isnan(a) || std::isnan(b) || b == 0)
      return std::nan("");
    return a / b;
  }

  std::vector<double> params(const std::string& metric) const {
    std::set<double> s;
    for (const auto& [k, v] : values)
      if (std::get<0>(k) == metric)
        s.insert(std::get<3>(k));
    return {s.begin(), s.end()};
  }
};

// ---------------------------------------------------------------------------
// Measurement helpers

std::int64_t thread_cpu_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

double mem_available_gib() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  long long kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:")
      return static_cast<double>(kib) / (1024.0 * 1024.0);
  return -1;
}

// Anonymous memory the parent holds and has written to, in 4 KiB pages (no
// transparent huge pages, so fork has one page-table entry per page to copy).
class held_memory {
public:
  explicit held_memory(double gib) {
    size_ = static_cast<std::size_t>(gib * 1024.0 * 1024.0 * 1024.0);
    if (size_ == 0)
      return;
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      throw_errno(errno, "mmap(parent memory)");
    base_ = static_cast<char*>(p);
    ::madvise(base_, size_, MADV_NOHUGEPAGE);
#if defined(MADV_POPULATE_WRITE)
    if (::madvise(base_, size_, MADV_POPULATE_WRITE) == 0)
      return;
#endif
    const long page = ::sysconf(_SC_PAGESIZE);
    for (std::size_t off = 0; off < size_; off += static_cast<std::size_t>(page))
      base_[off] = 1;
  }
  held_memory(const held_memory&) = delete;
  held_memory& operator=(const held_memory&) = delete;
  ~held_memory() {
    if (base_ != nullptr)
      ::munmap(base_, size_);
  }

private:
  char* base_ = nullptr;
  std::size_t size_ = 0;
};

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

class runner {
public:
  runner(const options& o, std::vector<const contender*> cs,
         std::vector<program> progs)
      : o_(o), contenders_(std::move(cs)), programs_(std::move(progs)) {}

  results& res() { return res_; }

  void run() {
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

  double elapsed_s() const noexcept { return elapsed_s_; }

private:
  static std::string fmt_seconds(std::int64_t ns) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f s", static_cast<double>(ns) / 1e9);
    return b;
  }

  // The contenders in a fixed shuffle per repetition (the same in every
  // run). A rotation changes who goes first, not who follows whom, and the
  // contender that always came right after the forking ones, or always a
  // few places after the raw loop, was measured in conditions of its own.
  std::vector<const contender*> order(int rep) const {
    std::vector<const contender*> v;
    for (const contender* c : contenders_)
      if (!broken_.count(c->name))
        v.push_back(c);
    std::mt19937 rng(order_seed + static_cast<unsigned>(rep));
    std::shuffle(v.begin(), v.end(), rng);
    return v;
  }

  // Runs fn, and drops the contender from the rest of the run if it throws.
  template <class Fn>
  void guarded(const contender& c, const char* phase, Fn&& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      std::cerr << "!! " << c.name << " failed in " << phase << ": "
                << e.what() << "; left out from here on" << std::endl;
      res_.failures.push_back({c.name, phase, e.what()});
      broken_.insert(c.name);
      reap_strays(o_);
    }
  }

  void check_strays(const char* phase) {
    if (int n = reap_strays(o_); n != 0)
      std::cerr << "!! " << n << " unaccounted children reaped after "
                << phase << std::endl;
  }

  // The number of launches that makes a batch last about --batch-seconds,
  // at least `min_count`; found with a pilot batch the first time.
  int calibrated(const std::string& key, session& s, const char* path,
                 int in_flight, int min_count, double batch_seconds) {
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
  void warm_up() {
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
  session open_session(const contender& c) const {
    if (o_.settle_ms > 0) {
      const auto ns = static_cast<std::int64_t>(o_.settle_ms * 1e6);
      timespec ts{static_cast<time_t>(ns / 1'000'000'000),
                  static_cast<long>(ns % 1'000'000'000)};
      while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
      }
    }
    return c.open();
  }

  void phase_launch() {
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
  void phase_throughput() {
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

  // Each parent size is held by a worker process of its own, forked from
  // this one before the phase, which touches its memory once and then runs
  // the batches it is asked for. The sizes take turns batch by batch (0, 1,
  // 4, 0, 1, 4, ... GiB, about 0.1 s each, in a rotated order): a
  // throughput batch on this shared virtual machine moves by 10-20% from
  // one moment to the next, and a size held for a whole stretch of the run
  // (as when one process mapped, touched and freed each size in turn) took
  // in that stretch's drift, by up to 17% either way. The contenders that
  // fork go in a pass of their own, after the others: forking a 4 GiB
  // parent copies 8 MiB of page tables per launch and slows the machine for
  // whatever runs next.
  void phase_memory() {
    if (count_threads() != 1) {
      // fork() would leave the workers with a lock some other thread holds.
      std::cerr << "!! parent-size runs skipped: the process is not "
                   "single-threaded"
                << std::endl;
      return;
    }
    for (bool forking : {false, true})
      memory_pass(forking);
    check_strays("memory");
  }

  struct worker_request {
    int op = 0; // op_open, op_batch or op_close
    int contender = 0;
    int program = 0;
    int count = 0;
    int in_flight = 0;
  };
  struct worker_reply {
    int ok = 0;
    std::int64_t wall_ns = 0;
    std::int64_t cpu_ns = 0;
    char error[240] = {};
  };
  enum { op_open = 1, op_batch = 2, op_close = 3 };

  // A worker that exited or cannot be reached: the pass ends, and no
  // contender is blamed.
  struct worker_lost : std::runtime_error {
    using std::runtime_error::runtime_error;
  };

  // A process holding `gib` of touched memory, launching on request over a
  // socket pair (a write to a dead worker fails with EPIPE, without
  // SIGPIPE).
  class size_worker {
  public:
    size_worker(runner& r, double gib, const std::vector<int>& close_in_child)
        : gib_(gib) {
      std::cout.flush();
      std::cerr.flush();
      int fd = -1;
      pid_ = fork_with_socket(fd);
      if (pid_ == 0) {
        // Only this worker's end: another worker's would keep that one
        // from seeing its end of file.
        for (int other : close_in_child)
          ::close(other);
        r.serve(fd, gib); // does not return
      }
      fd_ = fd;
      worker_reply ready = receive();
      if (!ready.ok) {
        shut();
        throw worker_lost(std::string("parent-size worker: ") + ready.error);
      }
      touch_ns_ = ready.wall_ns;
    }
    size_worker(const size_worker&) = delete;
    size_worker& operator=(const size_worker&) = delete;
    ~size_worker() { shut(); }

    double gib() const noexcept { return gib_; }
    std::int64_t touch_ns() const noexcept { return touch_ns_; }
    int fd() const noexcept { return fd_; }

    // Runs one request. Throws worker_lost if the worker is gone, and
    // runtime_error with the worker's message if the request failed.
    worker_reply call(const worker_request& q) {
      if (::send(fd_, &q, sizeof q, MSG_NOSIGNAL) !=
          static_cast<ssize_t>(sizeof q))
        throw worker_lost(lost_message());
      worker_reply a = receive();
      if (!a.ok)
        throw std::runtime_error(a.error);
      return a;
    }

  private:
    std::string lost_message() const {
      char b[96];
      std::snprintf(b, sizeof b, "the parent-size worker holding %g GiB exited",
                    gib_);
      return b;
    }

    worker_reply receive() {
      worker_reply a{};
      if (!read_exact(fd_, &a, sizeof a))
        throw worker_lost(lost_message());
      return a;
    }

    // Closing the socket ends the worker; it is reaped here.
    void shut() noexcept {
      if (fd_ >= 0)
        ::close(std::exchange(fd_, -1));
      if (pid_ > 0) {
        int st;
        while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
      }
    }

    double gib_;
    pid_t pid_ = -1;
    int fd_ = -1;
    std::int64_t touch_ns_ = 0;
  };

  // The worker's side, in the child of fork(): touches the memory, then
  // answers requests until the socket closes. It never returns into the
  // parent's code.
  [[noreturn]] void serve(int fd, double gib) noexcept {
    try {
      serve_requests(fd, gib);
    } catch (...) {
    }
    ::_exit(1);
  }

  void serve_requests(int fd, double gib) {
    auto send = [&](const worker_reply& a) {
      if (::send(fd, &a, sizeof a, MSG_NOSIGNAL) !=
          static_cast<ssize_t>(sizeof a))
        ::_exit(1);
    };
    auto fail = [&](const char* what) {
      worker_reply a{};
      std::snprintf(a.error, sizeof a.error, "%s", what);
      send(a);
    };
    std::unique_ptr<held_memory> mem;
    try {
      std::int64_t t = now_ns();
      mem = std::make_unique<held_memory>(gib);
      worker_reply a{};
      a.ok = 1;
      a.wall_ns = now_ns() - t;
      send(a);
    } catch (const std::exception& e) {
      fail(e.what());
      ::_exit(1);
    }
    std::unique_ptr<session> s;
    worker_request q;
    // (read_exact retries after EINTR: a contender's SIGCHLD handler.)
    while (read_exact(fd, &q, sizeof q)) {
      worker_reply a{};
      try {
        const char* path =
            programs_.at(static_cast<std::size_t>(q.program)).path.c_str();
        if (q.op == op_open) {
          s.reset();
          s = std::make_unique<session>(open_session(
              *contenders_.at(static_cast<std::size_t>(q.contender))));
          // Warm: its stacks (or whatever it keeps) for the batches.
          s->run_batch(path, q.count, q.in_flight);
        } else if (q.op == op_batch) {
          if (!s)
            throw std::runtime_error("no session open");
          std::int64_t c0 = thread_cpu_ns();
          std::int64_t t0 = now_ns();
          s->run_batch(path, q.count, q.in_flight);
          a.wall_ns = now_ns() - t0;
          a.cpu_ns = thread_cpu_ns() - c0;
        } else {
          s.reset();
        }
        a.ok = 1;
        send(a);
      } catch (const std::exception& e) {
        s.reset();
        reap_strays(o_); // what the failed contender left behind
        fail(e.what());
      }
    }
    s.reset();
    ::_exit(reap_strays(o_) == 0 ? 0 : 1);
  }

  static int count_threads() {
    std::ifstream in("/proc/self/status");
    std::string key;
    while (in >> key) {
      if (key == "Threads:") {
        int n = 0;
        in >> n;
        return n;
      }
      std::string rest;
      std::getline(in, rest);
    }
    return -1;
  }

  void memory_pass(bool forking) {
    std::vector<const contender*> cs;
    for (const contender* c : contenders_)
      if (c->copies_parent == forking)
        cs.push_back(c);
    if (cs.empty())
      return;
    progress(forking ? "   the contenders that fork"
                     : "   the contenders that do not fork");
    const int n = o_.memory_in_flight;
    std::vector<std::unique_ptr<size_worker>> workers;
    std::vector<int> parent_fds;
    for (double gib : o_.parent_gib) {
      double avail = mem_available_gib();
      if (gib > 0 && avail >= 0 && gib + 1.0 > avail) {
        std::cerr << "!! skipping a " << gib << " GiB parent: only " << avail
                  << " GiB available" << std::endl;
        continue;
      }
      try {
        workers.push_back(
            std::make_unique<size_worker>(*this, gib, parent_fds));
      } catch (const std::exception& e) {
        std::cerr << "!! skipping a " << gib << " GiB parent: " << e.what()
                  << std::endl;
        continue;
      }
      parent_fds.push_back(workers.back()->fd());
      progress("   a worker holds " + std::to_string(gib).substr(0, 4) +
               " GiB (touched in " + fmt_seconds(workers.back()->touch_ns()) +
               ")");
    }
    const std::size_t nw = workers.size();
    if (nw == 0)
      return;
    for (int rep = 0; rep < o_.reps; ++rep) {
      for (std::size_t pi = 0; pi < programs_.size(); ++pi) {
        const auto& prog = programs_[pi];
        for (const contender* c : order(rep)) {
          if (c->copies_parent != forking)
            continue;
          const int ci = index_of(c);
          const int p = static_cast<int>(pi);
          bool lost = false;
          guarded(*c, "memory", [&] {
            try {
              memory_batches(*c, ci, p, prog, n, forking, rep, workers);
            } catch (const worker_lost& e) {
              std::cerr << "!! " << e.what()
                        << "; this pass of the parent-size runs ends here"
                        << std::endl;
              res_.failures.push_back({"(parent-size worker)", "memory",
                                       e.what()});
              lost = true;
            }
          });
          if (lost)
            return;
        }
      }
      progress("   rep " + std::to_string(rep + 1) + "/" +
               std::to_string(o_.reps));
    }
  }

  // One contender's batches in every worker, the sizes taking turns.
  void memory_batches(const contender& c, int ci, int pi, const program& prog,
                      int n, bool forking,
                      int rep,
                      std::vector<std::unique_ptr<size_worker>>& workers) {
    const std::size_t nw = workers.size();
    std::vector<int> counts(nw);
    for (std::size_t w = 0; w < nw; ++w) {
      // Warm with n in flight; a forking contender with one launch only
      // (a round of them takes a second with 4 GiB).
      workers[w]->call(forking ? worker_request{op_open, ci, pi, 1, 1}
                               : worker_request{op_open, ci, pi,
                                                std::max(8, n), n});
      // A contender that does not fork gets one count for every size (the
      // first size's), so that the batches compared are alike; one that
      // forks, a count per size, at least one round of n (a batch at
      // 0 GiB would otherwise take minutes at 4 GiB).
      counts[w] = forking || w == 0
                      ? calibrated_in(*workers[w], ci, pi, n,
                                      o_.memory_batch_seconds,
                                      forking ? workers[w]->gib() : -1)
                      : counts[0];
    }
    // Parts of a batch, each a sample, as long as each still holds a round
    // of n at every size.
    int parts = o_.memory_batches;
    for (int k : counts)
      parts = std::min(parts, std::max(1, k / n));
    for (int part = 0; part < parts; ++part) {
      for (std::size_t k = 0; k < nw; ++k) {
        const std::size_t w = (k + static_cast<std::size_t>(rep + part)) % nw;
        const int m = std::max(n, counts[w] / parts);
        worker_reply a = workers[w]->call({op_batch, ci, pi, m, n});
        const double secs = static_cast<double>(a.wall_ns) / 1e9;
        res_.add("parent_size_throughput", prog.label, c.name,
                 workers[w]->gib(), m / secs);
        res_.add("parent_size_cpu_us", prog.label, c.name, workers[w]->gib(),
                 static_cast<double>(a.cpu_ns) / 1e3 / m);
      }
    }
    for (auto& w : workers)
      w->call({op_close, ci, pi, 0, 0});
  }

  // The number of launches that makes a batch in `w` last about
  // `batch_seconds`, at least one round of `n`; found with a pilot batch
  // the first time for the contender, program and `gib` (-1: any size).
  int calibrated_in(size_worker& w, int ci, int pi, int n,
                    double batch_seconds, double gib) {
    const std::string key =
        "mem/" + contenders_[static_cast<std::size_t>(ci)]->name + "/" +
        programs_[static_cast<std::size_t>(pi)].label + "/" +
        std::to_string(gib);
    auto it = counts_.find(key);
    if (it != counts_.end())
      return it->second;
    const int pilot = std::max(n, 8);
    worker_reply a = w.call({op_batch, ci, pi, pilot, n});
    const double secs = std::max(static_cast<double>(a.wall_ns) / 1e9, 1e-9);
    int k = static_cast<int>(pilot / secs * batch_seconds);
    k = std::clamp(k, n, 1'000'000);
    counts_[key] = k;
    return k;
  }

  int index_of(const contender* c) const {
    for (std::size_t i = 0; i < contenders_.size(); ++i)
      if (contenders_[i] == c)
        return static_cast<int>(i);
    return -1;
  }

  void phase_sleepers() {
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
  void phase_allocs() {
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
  void phase_responsiveness() {
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

  const options& o_;
  std::vector<const contender*> contenders_;
  std::vector<program> programs_;
  results res_;
  std::set<std::string> broken_;
  std::map<std::string, int> counts_;
  double elapsed_s_ = 0;
};

// ---------------------------------------------------------------------------
// Reporting

std::string fmt_value(double v, const std::string& unit) {
  if (std::isnan(v))
    return "-";
  char b[64];
  if (unit == "launches/s")
    std::snprintf(b, sizeof b, "%.0f", v);
  else if (unit == "allocations")
    std::snprintf(b, sizeof b, "%.2f", v);
  else if (v < 10)
    std::snprintf(b, sizeof b, "%.2f", v);
  else if (v < 100)
    std::snprintf(b, sizeof b, "%.1f", v);
  else
    std::snprintf(b, sizeof b, "%.0f", v);
  return b;
}

std::string fmt_ratio(double r) {
  if (std::isnan(r))
    return "-";
  char b[32];
  std::snprintf(b, sizeof b, r < 10 ? "%.2fx" : "%.1fx", r);
  return b;
}

std::string fmt_param(const metric_info& m, double p) {
  char b[32];
  if (std::string(m.param) == "parent_gib")
    std::snprintf(b, sizeof b, "%g GiB", p);
  else
    std::snprintf(b, sizeof b, "%g in flight", p);
  return b;
}

struct table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  bool numeric = true; // right-align the columns after the first

  static std::string escape(const std::string& cell) {
    std::string out;
    for (char ch : cell) {
      if (ch == '|')
        out += '\\';
      out += ch;
    }
    return out;
  }

  std::string markdown() const {
    std::vector<std::size_t> w(header.size(), 3);
    auto widen = [&](const std::vector<std::string>& r) {
      for (std::size_t i = 0; i < r.size(); ++i)
        w[i] = std::max(w[i], escape(r[i]).size());
    };
    widen(header);
    for (const auto& r : rows)
      widen(r);
    auto line = [&](const std::vector<std::string>& r) {
      std::string s = "|";
      for (std::size_t i = 0; i < r.size(); ++i) {
        std::string cell = escape(r[i]);
        cell.resize(w[i], ' ');
        s.append(" ").append(cell).append(" |");
      }
      return s + "\n";
    };
    std::string out = line(header);
    std::string sep = "|";
    for (std::size_t i = 0; i < w.size(); ++i)
      sep.append(" ").append(w[i], '-').append(i > 0 && numeric ? ":|" : " |");
    out += sep + "\n";
    for (const auto& r : rows)
      out += line(r);
    return out;
  }
};

// ---------------------------------------------------------------------------
// The design's performance targets, checked against this run

struct target_check {
  std::string target;    // what is compared with what
  std::string program;
  std::string contender;
  double value;          // the figure judged
  double ratio_of_medians; // for the paired figures: the tables' view
  std::string bound;     // as text: "<= 0.25", ">= 0.90", "1 +- 0.05", "0"
  bool met;
};

// The median of the ratios a[i] / b[i] of samples taken side by side (the
// same repetition, the same part), so that what the machine did at that
// moment falls on both; NaN unless both have the same number of samples.
double paired_median(const std::vector<double>& a,
                     const std::vector<double>& b) {
  if (a.empty() || a.size() != b.size())
    return std::nan("");
  std::vector<double> q;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (b[i] > 0)
      q.push_back(a[i] / b[i]);
  return median(q);
}

// The aspawn contenders that launch asynchronously (callback and
// coroutine), against the design's performance targets: at most 0.25x
// posix_spawn's and 0.1x Boost.Process v2's time in the call; at least
// 0.9x the raw loop's throughput with 16 in flight; a 4 GiB parent within
// 5% of an empty one; no heap allocation per warm launch. Checks whose
// figures the run lacks are left out.
std::vector<target_check> check_targets(const results& r) {
  std::vector<target_check> out;
  const std::string raw = "raw_clone";
  auto samples = [&](const std::string& m, const std::string& p,
                     const std::string& c, double param)
      -> const std::vector<double>* {
    auto it = r.values.find({m, p, c, param});
    return it == r.values.end() ? nullptr : &it->second;
  };
  // Whether the run measured `m` at all (its phase ran): then a figure
  // missing for a contender is a target not met, not one left out.
  auto measured = [&](const std::string& m) {
    for (const auto& [k, v] : r.values)
      if (std::get<0>(k) == m)
        return true;
    return false;
  };
  double big = -1; // the largest parent size measured
  std::set<std::string> progs;
  for (const auto& [k, v] : r.values) {
    progs.insert(std::get<1>(k));
    if (std::get<0>(k) == "parent_size_throughput")
      big = std::max(big, std::get<3>(k));
  }
  const double nan = std::nan("");
  for (const std::string& p : progs) {
    for (const std::string c : {"aspawn", "aspawn_coro"}) {
      auto add = [&](std::string what, double v, double rom,
                     const std::string& bound, bool met) {
        out.push_back({std::move(what), p, c, v, rom, bound,
                       met && !std::isnan(v)});
      };
      if (measured("in_call_us")) {
        double v = r.ratio("in_call_us", p, c, -1, ref_posix);
        add("time in the launch call / posix_spawn's", v, v, "<= 0.25",
            v <= 0.25);
        v = r.ratio("in_call_us", p, c, -1, ref_bp2);
        add("time in the launch call / Boost.Process v2's", v, v, "<= 0.10",
            v <= 0.10);
      }
      if (measured("throughput")) {
        auto* a = samples("throughput", p, c, 16);
        auto* b = samples("throughput", p, raw, 16);
        double v = a && b ? paired_median(*a, *b) : nan;
        double rom = a && b ? median(*a) / median(*b) : nan;
        add("throughput with 16 in flight / raw loop's", v, rom, ">= 0.90",
            v >= 0.9);
      }
      if (big >= 4) {
        auto* a = samples("parent_size_throughput", p, c, big);
        auto* b = samples("parent_size_throughput", p, c, 0);
        double v = a && b ? paired_median(*a, *b) : nan;
        double rom = a && b ? median(*a) / median(*b) : nan;
        char what[96];
        std::snprintf(what, sizeof what,
                      "throughput, parent holding %g GiB / empty parent", big);
        add(what, v, rom, "1 +- 0.05", std::abs(v - 1) <= 0.05);
      }
      if (measured("allocs_per_launch")) {
        auto* a = samples("allocs_per_launch", p, c, -1);
        double v = a ? median(*a) : nan;
        add("heap allocations per warm launch, from the event loop", v, v,
            "0", v == 0);
      }
    }
  }
  for (auto& t : responsiveness_targets(r.responsiveness))
    out.push_back({t.target, t.program, t.contender, t.value,
                   t.ratio_of_medians, t.bound, t.met});
  return out;
}

class reporter {
public:
  reporter(const options& o, const results& r,
           const std::vector<const contender*>& cs,
           const std::vector<unavailable_contender>& missing,
           const std::vector<program>& progs)
      : o_(o), r_(r), cs_(cs), missing_(missing), progs_(progs) {}

  std::string cell(const std::string& metric, const std::string& prog,
                   const std::string& cont, double param) const {
    const metric_info& m = info_of(metric);
    if (!r_.has(metric, prog, cont, param))
      return "-";
    std::string s = fmt_value(r_.med(metric, prog, cont, param), m.unit);
    s += " (" + fmt_ratio(r_.ratio(metric, prog, cont, param, ref_posix)) +
         " / " + fmt_ratio(r_.ratio(metric, prog, cont, param, ref_bp2)) + ")";
    return s;
  }

  // All the tables, as Markdown sections.
  std::string tables() const {
    std::string out;
    for (const auto& m : metrics) {
      if (r_.params(m.id).empty())
        continue;
      const char* better = m.higher_is_better ? "higher" : "lower";
      if (m.param == nullptr) {
        out += "### " + title_of(m, o_) + " (" + m.unit + ", " + better +
               " is better)\n\n";
        table t;
        t.header.push_back("contender");
        for (const auto& p : progs_)
          t.header.push_back(p.label);
        for (const contender* c : cs_) {
          std::vector<std::string> row{c->name};
          bool any = false;
          for (const auto& p : progs_) {
            row.push_back(cell(m.id, p.label, c->name, -1));
            any = any || r_.has(m.id, p.label, c->name, -1);
          }
          if (any)
            t.rows.push_back(row);
        }
        out += t.markdown() + "\n";
      } else {
        std::vector<double> ps = r_.params(m.id);
        for (const auto& p : progs_) {
          out += "### " + title_of(m, o_) + ": " + p.label + " (" + m.unit +
                 ", " + better + " is better)\n\n";
          table t;
          t.header.push_back("contender");
          for (double v : ps)
            t.header.push_back(fmt_param(m, v));
          for (const contender* c : cs_) {
            std::vector<std::string> row{c->name};
            bool any = false;
            for (double v : ps) {
              row.push_back(cell(m.id, p.label, c->name, v));
              any = any || r_.has(m.id, p.label, c->name, v);
            }
            if (any)
              t.rows.push_back(row);
          }
          out += t.markdown() + "\n";
        }
      }
    }
    if (!r_.responsiveness.empty())
      out += responsiveness_intro();
    for (auto& rt : responsiveness_tables(r_.responsiveness, progs_)) {
      table t{rt.header, rt.rows};
      out += "### " + rt.title + "\n\n" + t.markdown() + "\n";
    }
    return out;
  }

  std::string markdown(const std::string& machine_md) const {
    std::string out = "# aspawn-bench results\n\n";
    out += machine_md + "\n";
    out += "Each figure is the median of " + std::to_string(o_.reps) +
           " repetitions (for the parent-size figures, of up to " +
           std::to_string(o_.memory_batches) +
           " timed parts of each repetition's batch). In parentheses: the "
           "ratio to `" + ref_posix +
           "` / the ratio to `" + ref_bp2 +
           "`, from the same run (a ratio above 1 is better for throughput, "
           "below 1 for times and allocation counts).\n\n";
    out += "Programs: ";
    for (std::size_t i = 0; i < progs_.size(); ++i)
      out += (i ? ", " : "") + std::string("`") + progs_[i].label + "` = `" +
             progs_[i].path + "`";
    out += ".\n\n## Contenders\n\n";
    table t;
    t.header = {"contender", "launch and wait"};
    t.numeric = false;
    for (const contender* c : cs_)
      t.rows.push_back({c->name, c->description});
    out += t.markdown() + "\n";
    for (const auto& u : missing_)
      out += "Not measured: `" + u.name + "`, " + u.reason + ".\n\n";
    if (auto ts = check_targets(r_); !ts.empty()) {
      out += "## Targets\n\n"
             "The figures the design's targets are about. For throughput "
             "and parent size, the figure judged is the median of the "
             "ratios of samples taken side by side (the same repetition, "
             "within seconds of each other); the ratio of the medians, as "
             "the tables below would give it, is alongside.\n\n";
      table tt;
      tt.header = {"target", "program", "contender", "figure",
                   "ratio of medians", "bound", "met"};
      tt.numeric = false;
      for (const auto& c : ts) {
        char v[32], m[32];
        std::snprintf(v, sizeof v, "%.3g", c.value);
        std::snprintf(m, sizeof m, "%.3g", c.ratio_of_medians);
        tt.rows.push_back({c.target, c.program, c.contender,
                           std::isnan(c.value) ? "not measured" : v,
                           std::isnan(c.ratio_of_medians) ? "-" : m, c.bound,
                           c.met ? "yes" : "**no**"});
      }
      out += tt.markdown() + "\n";
    }
    if (auto ns = responsiveness_notes(r_.responsiveness); !ns.empty()) {
      for (const auto& n : ns)
        out += "- " + n + "\n";
      out += "\n";
    }
    out += "## Results\n\n" + tables();
    if (!r_.failures.empty()) {
      out += "## Failures\n\n";
      for (const auto& f : r_.failures)
        out += "- `" + f.contender + "` in " + f.phase + ": " + f.error + "\n";
      out += "\n";
    }
    return out;
  }

  std::string headline() const {
    std::string out;
    for (const auto& p : progs_) {
      std::string rows;
      for (const contender* c : cs_) {
        char b[512];
        double call = r_.med("in_call_us", p.label, c->name, -1);
        double lat = r_.med("latency_us", p.label, c->name, -1);
        double tp = r_.med("throughput", p.label, c->name, 16);
        if (std::isnan(call) && std::isnan(lat) && std::isnan(tp))
          continue; // none of its phases ran
        std::snprintf(b, sizeof b,
                      "  %-13s in call %8s us  latency %8s us  16 in flight "
                      "%8s /s (%s posix_spawn, %s bp2)\n",
                      c->name.c_str(), fmt_value(call, "us").c_str(),
                      fmt_value(lat, "us").c_str(),
                      fmt_value(tp, "launches/s").c_str(),
                      fmt_ratio(r_.ratio("throughput", p.label, c->name, 16,
                                         ref_posix))
                          .c_str(),
                      fmt_ratio(r_.ratio("throughput", p.label, c->name, 16,
                                         ref_bp2))
                          .c_str());
        rows += b;
      }
      if (!rows.empty())
        out += p.label + ":\n" + rows;
    }
    return out + responsiveness_headline(r_.responsiveness, progs_);
  }

private:
  const options& o_;
  const results& r_;
  const std::vector<const contender*>& cs_;
  const std::vector<unavailable_contender>& missing_;
  const std::vector<program>& progs_;
};

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    switch (ch) {
    case '"': out += "\\\""; break;
    case '\\': out += "\\\\"; break;
    case '\n': out += "\\n"; break;
    case '\t': out += "\\t"; break;
    default:
      if (ch < 0x20) {
        char b[8];
        std::snprintf(b, sizeof b, "\\u%04x", ch);
        out += b;
      } else {
        out += static_cast<char>(ch);
      }
    }
  }
  return out + "\"";
}

std::string json_number(double v) {
  if (std::isnan(v) || std::isinf(v))
    return "null";
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

std::string read_first_line(const char* path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos)
        return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  return "unknown";
}

std::string load_at_start;

std::string load_average() {
  std::string l = read_first_line("/proc/loadavg");
  // "0.52 0.58 0.59 1/123 4567": keep the three averages
  std::istringstream in(l);
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// Running DAMON monitors and what their schemes do, e.g. "paddr: pageout"
// (proactive reclaim of memory it finds idle, such as the parent's held
// memory): "none" when none runs or DAMON is not there.
std::string damon_summary() {
  const std::string base = "/sys/kernel/mm/damon/admin/kdamonds/";
  auto count = [](const std::string& path) {
    try {
      return std::stoi(read_first_line(path.c_str()));
    } catch (const std::exception&) {
      return 0;
    }
  };
  std::string out;
  for (int k = 0, nk = count(base + "nr_kdamonds"); k < nk; ++k) {
    const std::string kd = base + std::to_string(k) + "/";
    if (read_first_line((kd + "state").c_str()) != "on")
      continue;
    for (int c = 0, nc = count(kd + "contexts/nr_contexts"); c < nc; ++c) {
      const std::string ctx = kd + "contexts/" + std::to_string(c) + "/";
      std::string d = read_first_line((ctx + "operations").c_str());
      const std::string schemes = ctx + "schemes/";
      for (int i = 0, ns = count(schemes + "nr_schemes"); i < ns; ++i)
        d += (i == 0 ? ": " : ", ") +
             read_first_line((schemes + std::to_string(i) + "/action").c_str());
      out += (out.empty() ? "" : "; ") + d;
    }
  }
  return out.empty() ? "none" : out;
}

std::vector<std::pair<std::string, std::string>> machine_facts() {
  std::vector<std::pair<std::string, std::string>> f;
  utsname u{};
  ::uname(&u);
  char date[64];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  f.emplace_back("date", date);
  f.emplace_back("kernel", std::string(u.sysname) + " " + u.release);
  f.emplace_back("arch", u.machine);
  f.emplace_back("cpu", cpu_model());
  f.emplace_back("cpus_online", std::to_string(::sysconf(_SC_NPROCESSORS_ONLN)));
  f.emplace_back("glibc", ::gnu_get_libc_version());
  f.emplace_back("boost", std::to_string(BOOST_VERSION / 100000) + "." +
                              std::to_string(BOOST_VERSION / 100 % 1000) + "." +
                              std::to_string(BOOST_VERSION % 100));
#if defined(__clang__)
  f.emplace_back("compiler", std::string("Clang ") + __clang_version__);
#elif defined(__GNUC__)
  f.emplace_back("compiler", std::string("GCC ") + __VERSION__);
#else
  f.emplace_back("compiler", __VERSION__);
#endif
  f.emplace_back("transparent_hugepage",
                 read_first_line("/sys/kernel/mm/transparent_hugepage/enabled"));
  f.emplace_back("damon", damon_summary());
  f.emplace_back("load_average_at_start", load_at_start);
  f.emplace_back("load_average_at_end", load_average());
  return f;
}

std::string json(const options& o, const results& r,
                 const std::vector<const contender*>& cs,
                 const std::vector<unavailable_contender>& missing,
                 const std::vector<program>& progs, double elapsed) {
  std::ostringstream j;
  j << "{\n  \"tool\": \"aspawn-bench\",\n  \"format\": 1,\n";
  j << "  \"elapsed_s\": " << json_number(elapsed) << ",\n";
  j << "  \"machine\": {";
  bool first = true;
  for (const auto& [k, v] : machine_facts()) {
    j << (first ? "\n" : ",\n") << "    " << json_string(k) << ": "
      << json_string(v);
    first = false;
  }
  j << "\n  },\n";
  j << "  \"config\": {\n"
    << "    \"quick\": " << (o.quick ? "true" : "false") << ",\n"
    << "    \"reps\": " << o.reps << ",\n"
    << "    \"samples\": " << o.samples << ",\n"
    << "    \"warmup_seconds\": " << json_number(o.warmup_seconds) << ",\n"
    << "    \"settle_ms\": " << json_number(o.settle_ms) << ",\n"
    << "    \"batch_seconds\": " << json_number(o.batch_seconds) << ",\n"
    << "    \"memory_batch_seconds\": " << json_number(o.memory_batch_seconds)
    << ",\n"
    << "    \"memory_batches\": " << o.memory_batches << ",\n"
    << "    \"memory_in_flight\": " << o.memory_in_flight << ",\n"
    << "    \"sleepers\": " << o.sleepers << ",\n"
    << "    \"sleeper_program\": " << json_string(o.pause_path) << ",\n"
    << "    \"alloc_launches\": " << o.alloc_launches << ",\n"
    << "    \"resp_launches\": " << o.resp_launches << ",\n"
    << "    \"resp_seconds\": " << json_number(o.resp_seconds) << "\n  },\n";
  j << "  \"references\": [" << json_string(ref_posix) << ", "
    << json_string(ref_bp2) << "],\n";
  j << "  \"programs\": [";
  for (std::size_t i = 0; i < progs.size(); ++i)
    j << (i ? ", " : "") << "{\"label\": " << json_string(progs[i].label)
      << ", \"path\": " << json_string(progs[i].path) << "}";
  j << "],\n  \"contenders\": [";
  for (std::size_t i = 0; i < cs.size(); ++i)
    j << (i ? "," : "") << "\n    {\"name\": " << json_string(cs[i]->name)
      << ", \"description\": " << json_string(cs[i]->description) << "}";
  j << "\n  ],\n  \"unavailable_contenders\": [";
  for (std::size_t i = 0; i < missing.size(); ++i)
    j << (i ? "," : "") << "\n    {\"name\": " << json_string(missing[i].name)
      << ", \"reason\": " << json_string(missing[i].reason) << "}";
  j << (missing.empty() ? "" : "\n  ") << "],\n  \"metrics\": [";
  first = true;
  for (const auto& m : metrics) {
    j << (first ? "" : ",") << "\n    {\"id\": " << json_string(m.id)
      << ", \"title\": " << json_string(title_of(m, o))
      << ", \"unit\": " << json_string(m.unit) << ", \"better\": "
      << json_string(m.higher_is_better ? "higher" : "lower")
      << ", \"param\": " << (m.param ? json_string(m.param) : "null") << "}";
    first = false;
  }
  j << "\n  ],\n  \"results\": [";
  first = true;
  for (const auto& [k, v] : r.values) {
    const auto& [metric, prog, cont, param] = k;
    const metric_info& m = info_of(metric);
    j << (first ? "" : ",") << "\n    {\"metric\": " << json_string(metric)
      << ", \"program\": " << json_string(prog)
      << ", \"contender\": " << json_string(cont) << ", \"param\": "
      << (m.param ? json_number(param) : "null")
      << ", \"median\": " << json_number(median(v)) << ", \"reps\": [";
    for (std::size_t i = 0; i < v.size(); ++i)
      j << (i ? ", " : "") << json_number(v[i]);
    j << "], \"vs_" << ref_posix
      << "\": " << json_number(r.ratio(metric, prog, cont, param, ref_posix))
      << ", \"vs_" << ref_bp2
      << "\": " << json_number(r.ratio(metric, prog, cont, param, ref_bp2))
      << "}";
    first = false;
  }
  j << "\n  ],\n  \"targets\": [";
  {
    auto ts = check_targets(r);
    for (std::size_t i = 0; i < ts.size(); ++i)
      j << (i ? "," : "") << "\n    {\"target\": " << json_string(ts[i].target)
        << ", \"program\": " << json_string(ts[i].program)
        << ", \"contender\": " << json_string(ts[i].contender)
        << ", \"figure\": " << json_number(ts[i].value)
        << ", \"ratio_of_medians\": " << json_number(ts[i].ratio_of_medians)
        << ", \"bound\": " << json_string(ts[i].bound)
        << ", \"met\": " << (ts[i].met ? "true" : "false") << "}";
  }
  j << "\n  ],\n  \"responsiveness\": " << responsiveness_json(r.responsiveness);
  j << ",\n  \"failures\": [";
  for (std::size_t i = 0; i < r.failures.size(); ++i)
    j << (i ? "," : "") << "\n    {\"contender\": "
      << json_string(r.failures[i].contender)
      << ", \"phase\": " << json_string(r.failures[i].phase)
      << ", \"error\": " << json_string(r.failures[i].error) << "}";
  j << (r.failures.empty() ? "" : "\n  ") << "]\n}\n";
  return j.str();
}

std::string machine_markdown(double elapsed) {
  std::string out;
  for (const auto& [k, v] : machine_facts())
    out += "- " + k + ": " + v + "\n";
  char b[64];
  std::snprintf(b, sizeof b, "- run time: %.0f s\n", elapsed);
  return out + b;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out)
    throw std::runtime_error("cannot write " + path);
}

// gnuplot data: one block (index) per program; first line of a block is the
// column header, "?" marks a missing value.
void write_plot_data(const std::string& dir, const results& r,
                     const std::vector<const contender*>& cs,
                     const std::vector<program>& progs) {
  auto block = [&](const char* metric, bool as_cost, const char* suffix) {
    std::string out;
    std::vector<double> ps = r.params(metric);
    for (const auto& p : progs) {
      out += "# " + std::string(metric) + " " + p.label + "\n";
      out += "contender";
      for (double v : ps) {
        char b[32];
        std::snprintf(b, sizeof b, " %g%s", v, suffix);
        out += b;
      }
      out += "\n";
      for (const contender* c : cs) {
        bool any = false;
        std::string line = c->name;
        for (double v : ps) {
          double m = r.med(metric, p.label, c->name, v);
          if (std::isnan(m) || m <= 0) {
            line += " ?";
            continue;
          }
          any = true;
          char b[32];
          std::snprintf(b, sizeof b, " %.6g", as_cost ? 1e6 / m : m);
          line += b;
        }
        if (any)
          out += line + "\n";
      }
      out += "\n\n";
    }
    return out;
  };
  write_file(dir + "/plot-throughput.tmp", block("throughput", false, ""));
  write_file(dir + "/plot-parent-size.tmp",
             block("parent_size_throughput", true, "GiB"));
  write_responsiveness_plot_data(dir, r.responsiveness, progs);
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

int real_main(int argc, char** argv) {
  // The responsiveness phase's bystander process (responsiveness.cpp).
  if (argc == 3 && std::string(argv[1]) == "--bystander")
    return bystander_main(to_int(argv[2], "--bystander"));
  options o = parse(argc, argv);

  // A thousand live children with a pidfd each need more than 1024 files.
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 &&
      nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &nofile);
  }

  registry reg;
#if defined(ASPAWN_BENCH_HAVE_ASPAWN)
  register_aspawn_contenders(reg);
#endif
  register_raw_contenders(reg);
  register_libc_contenders(reg);
#if defined(ASPAWN_BENCH_HAVE_BOOST_PROCESS)
  register_boost_process_v2_contenders(reg);
  register_boost_process_v1_contenders(reg);
#endif

  if (o.list) {
    for (const auto& c : reg.all())
      std::cout << c.name << "\t" << c.description << "\n";
    for (const auto& u : reg.unavailable())
      std::cout << u.name << "\tnot available: " << u.reason << "\n";
    return 0;
  }

  std::vector<const contender*> cs;
  for (const auto& c : reg.all())
    if (o.only.empty() || o.only.count(c.name))
      cs.push_back(&c);
  std::vector<unavailable_contender> missing;
  for (const auto& u : reg.unavailable()) {
    if (o.only.count(u.name))
      throw std::runtime_error(u.name + " is not available here: " + u.reason);
    if (o.only.empty())
      missing.push_back(u);
  }
  for (const auto& n : o.only)
    if (std::none_of(cs.begin(), cs.end(),
                     [&](const contender* c) { return c->name == n; }))
      throw std::invalid_argument("unknown contender: " + n);
  if (cs.empty())
    throw std::invalid_argument("no contenders");

  std::vector<program> progs;
  for (const auto& [label, path] :
       {std::pair<std::string, std::string>{"exit0", o.exit0_path},
        {"true", o.true_path}}) {
    if (::access(path.c_str(), X_OK) != 0)
      throw std::runtime_error(path + " is not executable (see --exit0, --true)");
    progs.push_back({label, path});
  }

#if defined(ASPAWN_BENCH_HAVE_GBENCH)
  if (o.gbench)
    return run_gbench(o, cs, progs, argv[0]);
#else
  if (o.gbench)
    throw std::runtime_error("built without Google Benchmark");
#endif

  load_at_start = load_average();
  if (std::stod(load_at_start) > 0.5)
    std::cerr << "!! load average " << load_at_start
              << ": other work is running, the figures will be noisy"
              << std::endl;

  runner run(o, cs, progs);
  run.run();
  const results& r = run.res();
  reporter rep(o, r, cs, missing, progs);

  std::cout << "\n" << rep.tables();
  std::cout << "Each figure: median of " << o.reps
            << " repetitions (ratio to " << ref_posix << " / ratio to "
            << ref_bp2 << ").\n\nSummary\n" << rep.headline();
  for (const auto& u : missing)
    std::cout << "  " << u.name << ": not measured, " << u.reason << "\n";
  if (auto ts = check_targets(r); !ts.empty()) {
    std::cout << "\nTargets (paired figures: median of side-by-side ratios)\n";
    for (const auto& c : ts) {
      char line[256];
      char value[32] = "not measured";
      if (!std::isnan(c.value))
        std::snprintf(value, sizeof value, "%7.3f", c.value);
      std::snprintf(line, sizeof line, "  %-3s %-56s %-6s %-12s %s (%s)\n",
                    c.met ? "met" : "NOT", c.target.c_str(),
                    c.program.c_str(), c.contender.c_str(), value,
                    c.bound.c_str());
      std::cout << line;
    }
    for (const auto& n : responsiveness_notes(r.responsiveness))
      std::cout << "  " << n << "\n";
  }
  char b[64];
  std::snprintf(b, sizeof b, "\ntotal run time %.1f s\n", run.elapsed_s());
  std::cout << b;

  if (!o.json_path.empty())
    write_file(o.json_path, json(o, r, cs, missing, progs, run.elapsed_s()));
  if (!o.markdown_path.empty())
    write_file(o.markdown_path,
               rep.markdown(machine_markdown(run.elapsed_s())));
  if (!o.plot_dir.empty())
    write_plot_data(o.plot_dir, r, cs, progs);
  return r.failures.empty() ? 0 : 1;
}

} // namespace
} // namespace aspawn_bench

int main(int argc, char** argv) {
  try {
    return aspawn_bench::real_main(argc, argv);
  } catch (const std::invalid_argument& e) {
    std::cerr << "aspawn-bench: " << e.what() << "\n";
    aspawn_bench::usage(std::cerr);
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "aspawn-bench: " << e.what() << "\n";
    return 1;
  }
}
