//
// bench/report.hpp
// ~~~~~~~~~~~~~~~~
//
// aspawn-bench's reports of a run: the tables and the summary on the
// terminal, the Markdown document (report_text.cpp); the JSON document,
// the facts about the machine, the gnuplot data (report_data.cpp).
//

#ifndef ASPAWN_BENCH_REPORT_HPP
#define ASPAWN_BENCH_REPORT_HPP

#include "harness.hpp"
#include "options.hpp"
#include "results.hpp"

#include <iosfwd>
#include <string>
#include <vector>

namespace aspawn_bench {

class reporter {
public:
  reporter(const options& o, const results& r,
           const std::vector<const contender*>& cs,
           const std::vector<unavailable_contender>& missing,
           const std::vector<program>& progs)
      : o_(o), r_(r), cs_(cs), missing_(missing), progs_(progs) {}

  /// A table's cell: the median, and its ratios to the references.
  std::string cell(const std::string& metric, const std::string& prog,
                   const std::string& cont, double param) const;

  /// All the tables, as Markdown sections.
  std::string tables() const;

  /// The whole Markdown document; `machine_md` is machine_markdown's.
  std::string markdown(const std::string& machine_md) const;

  /// The contenders' headline figures, a line each, by program.
  std::string headline() const;

  /// What the terminal shows after the run: the tables, the headline
  /// figures, the targets and the run time.
  void print_summary(std::ostream& os, double elapsed_s) const;

private:
  const options& o_;
  const results& r_;
  const std::vector<const contender*>& cs_;
  const std::vector<unavailable_contender>& missing_;
  const std::vector<program>& progs_;
};

/// The load average when the run started ("1.02 0.87 0.55"), set by
/// real_main, and the load average now.
extern std::string load_at_start;
std::string load_average();

/// The JSON document of the run.
std::string json(const options& o, const results& r,
                 const std::vector<const contender*>& cs,
                 const std::vector<unavailable_contender>& missing,
                 const std::vector<program>& progs, double elapsed);

/// The facts about the machine, and the run time, as a Markdown list.
std::string machine_markdown(double elapsed);

/// Writes `text` to `path`; std::runtime_error if that fails.
void write_file(const std::string& path, const std::string& text);

// gnuplot data: one block (index) per program; first line of a block is the
// column header, "?" marks a missing value.
void write_plot_data(const std::string& dir, const results& r,
                     const std::vector<const contender*>& cs,
                     const std::vector<program>& progs);

} // namespace aspawn_bench

#endif // ASPAWN_BENCH_REPORT_HPP
