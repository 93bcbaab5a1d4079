//
// bench/main.cpp
// ~~~~~~~~~~~~~~
//
// aspawn-bench: measures ways of launching a program from a C++ process on
// the same workload in the same run, and reports each figure as a median
// over repetitions and as a ratio to posix_spawn and to Boost.Process v2.
// See bench/README.md for what each measurement means.
//
// This file wires the parts together; bench/README.md ("Source layout")
// lists them.
//

#include "harness.hpp"
#include "options.hpp"
#include "phases.hpp"
#include "report.hpp"
#include "responsiveness.hpp"

#include <algorithm>
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

namespace aspawn_bench {
namespace {

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
  rep.print_summary(std::cout, run.elapsed_s());

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
