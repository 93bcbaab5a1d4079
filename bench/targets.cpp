//
// bench/targets.cpp
// ~~~~~~~~~~~~~~~~~
//
// The checks of the design's performance targets (see targets.hpp).
//

#include "targets.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <set>
#include <utility>

namespace aspawn_bench {
namespace {

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

} // namespace

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

} // namespace aspawn_bench
