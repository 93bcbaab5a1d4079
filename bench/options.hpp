//
// bench/options.hpp
// ~~~~~~~~~~~~~~~~~
//
// aspawn-bench's command line: the settings of a run (`options`), the
// --help text and the parser that fills the one from the other, with the
// defaults of a full run and of --quick.
//

#ifndef ASPAWN_BENCH_OPTIONS_HPP
#define ASPAWN_BENCH_OPTIONS_HPP

#include <iosfwd>
#include <set>
#include <string>
#include <vector>

namespace aspawn_bench {

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

/// Writes the --help text.
void usage(std::ostream& os);

/// `s` as a whole number of at least 0; std::invalid_argument naming
/// `flag` otherwise.
int to_int(const std::string& s, const char* flag);

/// The options on the command line, the defaults filled in (those of
/// --quick when it is given); std::invalid_argument for an unknown option
/// or a bad value. --help writes the usage to stdout and exits.
options parse(int argc, char** argv);

} // namespace aspawn_bench

#endif // ASPAWN_BENCH_OPTIONS_HPP
