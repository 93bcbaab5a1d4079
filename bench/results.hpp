//
// bench/results.hpp
// ~~~~~~~~~~~~~~~~~
//
// What aspawn-bench measures and what a run found: the metrics (id, title,
// unit, which way is better, the parameter of a series), the programs
// launched, the figures of each repetition by (metric, program, contender,
// parameter), the failures, and the median every report is made of.
//

#ifndef ASPAWN_BENCH_RESULTS_HPP
#define ASPAWN_BENCH_RESULTS_HPP

#include "responsiveness.hpp"

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace aspawn_bench {

struct options;

using program = resp_program; // label, path

/// The contenders every ratio is taken against.
const char* const ref_posix = "posix_spawn";
const char* const ref_bp2 = "bp2_default";

struct metric_info {
  const char* id;
  const char* title;
  const char* unit;
  bool higher_is_better;
  const char* param; // nullptr: no parameter
};

inline constexpr metric_info metrics[] = {
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
std::string title_of(const metric_info& m, const options& o);

/// The metric `id`; std::logic_error if there is none.
const metric_info& info_of(const std::string& id);

/// The median of `v`; NaN when it is empty.
double median(std::vector<double> v);

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

} // namespace aspawn_bench

#endif // ASPAWN_BENCH_RESULTS_HPP
