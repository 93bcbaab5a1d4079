//
// bench/report_data.cpp
// ~~~~~~~~~~~~~~~~~~~~~
//
// The machine-readable reports of aspawn-bench (see report.hpp): the JSON
// document, the facts about the machine that it and the Markdown document
// record, and the gnuplot data of the charts.
//

#include "report.hpp"

#include "responsiveness.hpp"
#include "targets.hpp"

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <ctime>
#include <exception>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>

#include <gnu/libc-version.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <boost/version.hpp>

namespace aspawn_bench {
namespace {

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

} // namespace

std::string load_at_start;

std::string load_average() {
  std::string l = read_first_line("/proc/loadavg");
  // "0.52 0.58 0.59 1/123 4567": keep the three averages
  std::istringstream in(l);
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
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

} // namespace aspawn_bench
