//
// bench/options.cpp
// ~~~~~~~~~~~~~~~~~
//
// aspawn-bench's --help text and command-line parser (see options.hpp).
//

#include "options.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <iterator>
#include <sstream>
#include <stdexcept>

#include <unistd.h>

namespace aspawn_bench {
namespace {

const char* const all_phases[] = {"launch", "throughput", "memory", "sleepers",
                                  "allocs", "responsiveness"};

std::string dir_of_self() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0)
    return ".";
  std::string p(buf, static_cast<std::size_t>(n));
  auto slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
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

} // namespace

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

} // namespace aspawn_bench
