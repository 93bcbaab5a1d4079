//
// bench/responsiveness.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~
//
// The responsiveness phase of aspawn-bench: how late a 1 ms timer served by
// the launching thread fires while a contender keeps N children in flight,
// how long each launch call holds that thread, and, as the reference, how
// late the same timer fires in a bystander process that only serves it.
// See bench/README.md ("Responsiveness") for the semantics.
//
// main.cpp runs the phase (run_responsiveness) and hooks its records into
// the tables, the targets, the JSON and the chart data with the functions
// below; the bystander process is aspawn-bench itself, started with the
// hidden option `--bystander FD` (bystander_main).
//

#ifndef ASPAWN_BENCH_RESPONSIVENESS_HPP
#define ASPAWN_BENCH_RESPONSIVENESS_HPP

#include "harness.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace aspawn_bench {

struct resp_program {
  std::string label;
  std::string path;
};

struct resp_settings {
  std::vector<int> in_flight;
  /// Repetitions: each (contender, program, in-flight count) runs one batch
  /// per repetition, in the order given by resp_hooks::order; the samples
  /// of all repetitions are pooled.
  int reps = 1;
  /// Launches per (contender, program, in-flight count), over all
  /// repetitions: as many, but in at least a third of `seconds` (for
  /// enough ticks) and at most `seconds` (sized by a pilot batch).
  int launches = 2000;
  /// Time box per (contender, program, in-flight count), over all
  /// repetitions.
  double seconds = 1.5;
  /// A batch launches at least this many rounds of N.
  int min_rounds = 2;
};

/// How the phase reaches the rest of the harness.
struct resp_hooks {
  /// The contenders still in the run, in the order of repetition `rep`.
  std::function<std::vector<const contender*>(int rep)> order;
  /// Opens a session (after the harness's settling pause).
  std::function<session(const contender&)> open;
  /// Runs `fn`; if it throws, reports the failure and leaves the contender
  /// out from then on.
  std::function<void(const contender&, const std::function<void()>& fn)>
      guarded;
  std::function<void(const std::string&)> progress;
  /// A failure that is no contender's (the bystander died).
  std::function<void(const std::string&)> failed;
};

/// The figures of one (contender, program, in-flight count). Times in us;
/// NaN where there were no samples.
struct resp_record {
  std::string program;
  std::string contender;
  int in_flight = 0;
  int batches = 0;
  std::int64_t launches = 0;
  double seconds = 0;
  double throughput = 0; // median over the batches, launches/s
  std::vector<double> throughput_reps;
  double in_call_p50 = 0, in_call_p99 = 0, in_call_p999 = 0, in_call_max = 0;
  std::int64_t ticks = 0, missed = 0;
  double tick_p50 = 0, tick_p99 = 0, tick_max = 0;
  std::int64_t bystander_ticks = 0, bystander_missed = 0;
  double bystander_p50 = 0, bystander_p99 = 0, bystander_max = 0;
};

/// Runs the phase; the records come in the order of `programs`, then of
/// `contenders`, then of s.in_flight.
std::vector<resp_record> run_responsiveness(
    const resp_settings& s, const std::vector<resp_program>& programs,
    const std::vector<const contender*>& contenders, const resp_hooks& hooks);

/// The bystander's side: serves a 1 ms steady_timer and answers the
/// harness on socket `fd` until it closes. Returns the exit status.
int bystander_main(int fd);

// --- Reports (responsiveness_report.cpp) ------------------------------------

/// A table for main.cpp's Markdown formatter.
struct resp_table {
  std::string title;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

/// An introductory paragraph and one table per program.
std::string responsiveness_intro();
std::vector<resp_table> responsiveness_tables(
    const std::vector<resp_record>& records,
    const std::vector<resp_program>& programs);

/// Lines for the terminal summary.
std::string responsiveness_headline(const std::vector<resp_record>& records,
                                    const std::vector<resp_program>& programs);

/// The phase's targets at 16 in flight, as main.cpp's target_check rows
/// want them; none when the phase did not run.
struct resp_target {
  std::string target;
  std::string program;
  std::string contender;
  double value;
  double ratio_of_medians;
  std::string bound;
  bool met;
};
std::vector<resp_target> responsiveness_targets(
    const std::vector<resp_record>& records);

/// The same figures at 64 in flight, reported but not judged: one line each.
std::vector<std::string> responsiveness_notes(
    const std::vector<resp_record>& records);

/// The JSON array of the records ("responsiveness").
std::string responsiveness_json(const std::vector<resp_record>& records);

/// gnuplot data for bench/plot-responsiveness.gp: DIR/plot-responsiveness.tmp.
/// Nothing is written when there are no records.
void write_responsiveness_plot_data(const std::string& dir,
                                    const std::vector<resp_record>& records,
                                    const std::vector<resp_program>& programs);

} // namespace aspawn_bench

#endif // ASPAWN_BENCH_RESPONSIVENESS_HPP
