//
// bench/phases.hpp
// ~~~~~~~~~~~~~~~~
//
// The measurement phases of aspawn-bench. A `runner` takes the contenders
// through the phases the options ask for (launch, throughput, memory,
// sleepers, allocs, responsiveness; bench/README.md says what each one
// measures) and collects their figures in a `results`. The parent-size
// phase ("memory") and its worker processes are in phases_memory.cpp, the
// other phases in phases.cpp, the responsiveness phase's own work in
// responsiveness.cpp.
//

#ifndef ASPAWN_BENCH_PHASES_HPP
#define ASPAWN_BENCH_PHASES_HPP

#include "harness.hpp"
#include "options.hpp"
#include "results.hpp"

#include <cstdint>
#include <exception>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <time.h>

namespace aspawn_bench {

/// CPU time of the calling thread in nanoseconds.
inline std::int64_t thread_cpu_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Reaps children no contender accounted for; there should be none.
int reap_strays(const options& o);

/// A line of progress on stderr.
void progress(const std::string& s);

class runner {
public:
  runner(const options& o, std::vector<const contender*> cs,
         std::vector<program> progs)
      : o_(o), contenders_(std::move(cs)), programs_(std::move(progs)) {}

  results& res() { return res_; }

  /// Runs the warm-up and the phases the options ask for.
  void run();

  double elapsed_s() const noexcept { return elapsed_s_; }

private:
  static std::string fmt_seconds(std::int64_t ns);

  std::vector<const contender*> order(int rep) const;

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

  void check_strays(const char* phase);
  int calibrated(const std::string& key, session& s, const char* path,
                 int in_flight, int min_count, double batch_seconds);
  void warm_up();
  session open_session(const contender& c) const;

  void phase_launch();
  void phase_throughput();
  void phase_sleepers();
  void phase_allocs();
  void phase_responsiveness();

  // The parent-size phase (phases_memory.cpp).
  void phase_memory();
  struct worker_request;
  struct worker_reply;
  struct worker_lost;
  class size_worker;
  [[noreturn]] void serve(int fd, double gib) noexcept;
  void serve_requests(int fd, double gib);
  static int count_threads();
  void memory_pass(bool forking);
  void memory_batches(const contender& c, int ci, int pi, const program& prog,
                      int n, bool forking, int rep,
                      std::vector<std::unique_ptr<size_worker>>& workers);
  int calibrated_in(size_worker& w, int ci, int pi, int n,
                    double batch_seconds, double gib);
  int index_of(const contender* c) const;

  const options& o_;
  std::vector<const contender*> contenders_;
  std::vector<program> programs_;
  results res_;
  std::set<std::string> broken_;
  std::map<std::string, int> counts_;
  double elapsed_s_ = 0;
};

#if defined(ASPAWN_BENCH_HAVE_GBENCH)
/// --gbench: the one-at-a-time launch of each contender and program as a
/// Google Benchmark benchmark, with o.gbench_args as its command line.
int run_gbench(const options& o, const std::vector<const contender*>& cs,
               const std::vector<program>& progs, const char* argv0);
#endif

} // namespace aspawn_bench

#endif // ASPAWN_BENCH_PHASES_HPP
