//
// bench/targets.hpp
// ~~~~~~~~~~~~~~~~~
//
// The design's performance targets, checked against the figures of a run
// (the responsiveness phase's among them): what is compared, the figure,
// the bound and whether it is met, for every report to show.
//

#ifndef ASPAWN_BENCH_TARGETS_HPP
#define ASPAWN_BENCH_TARGETS_HPP

#include "results.hpp"

#include <string>
#include <vector>

namespace aspawn_bench {

struct target_check {
  std::string target;    // what is compared with what
  std::string program;
  std::string contender;
  double value;          // the figure judged
  double ratio_of_medians; // for the paired figures: the tables' view
  std::string bound;     // as text: "<= 0.25", ">= 0.90", "1 +- 0.05", "0"
  bool met;
};

// The aspawn contenders that launch asynchronously (callback and
// coroutine), against the design's performance targets: at most 0.25x
// posix_spawn's and 0.1x Boost.Process v2's time in the call; at least
// 0.9x the raw loop's throughput with 16 in flight; a 4 GiB parent within
// 5% of an empty one; no heap allocation per warm launch. Checks whose
// figures the run lacks are left out.
std::vector<target_check> check_targets(const results& r);

} // namespace aspawn_bench

#endif // ASPAWN_BENCH_TARGETS_HPP
