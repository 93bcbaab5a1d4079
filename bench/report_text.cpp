//
// bench/report_text.cpp
// ~~~~~~~~~~~~~~~~~~~~~
//
// The text reports of aspawn-bench (see report.hpp): the figures' format,
// the Markdown tables (shown on the terminal too), the Markdown document
// and the terminal summary.
//

#include "report.hpp"

#include "responsiveness.hpp"
#include "targets.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <ostream>

namespace aspawn_bench {
namespace {

std::string fmt_value(double v, const std::string& unit) {
  if (std::isnan(v))
    return "-";
  char b[64];
  if (unit == "launches/s")
    std::snprintf(b, sizeof b, "%.0f", v);
  else if (unit == "allocations")
    std::snprintf(b, sizeof b, "%.2f", v);
  else if (v < 10)
    std::snprintf(b, sizeof b, "%.2f", v);
  else if (v < 100)
    std::snprintf(b, sizeof b, "%.1f", v);
  else
    std::snprintf(b, sizeof b, "%.0f", v);
  return b;
}

std::string fmt_ratio(double r) {
  if (std::isnan(r))
    return "-";
  char b[32];
  std::snprintf(b, sizeof b, r < 10 ? "%.2fx" : "%.1fx", r);
  return b;
}

std::string fmt_param(const metric_info& m, double p) {
  char b[32];
  if (std::string(m.param) == "parent_gib")
    std::snprintf(b, sizeof b, "%g GiB", p);
  else
    std::snprintf(b, sizeof b, "%g in flight", p);
  return b;
}

struct table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  bool numeric = true; // right-align the columns after the first

  static std::string escape(const std::string& cell) {
    std::string out;
    for (char ch : cell) {
      if (ch == '|')
        out += '\\';
      out += ch;
    }
    return out;
  }

  std::string markdown() const {
    std::vector<std::size_t> w(header.size(), 3);
    auto widen = [&](const std::vector<std::string>& r) {
      for (std::size_t i = 0; i < r.size(); ++i)
        w[i] = std::max(w[i], escape(r[i]).size());
    };
    widen(header);
    for (const auto& r : rows)
      widen(r);
    auto line = [&](const std::vector<std::string>& r) {
      std::string s = "|";
      for (std::size_t i = 0; i < r.size(); ++i) {
        std::string cell = escape(r[i]);
        cell.resize(w[i], ' ');
        s.append(" ").append(cell).append(" |");
      }
      return s + "\n";
    };
    std::string out = line(header);
    std::string sep = "|";
    for (std::size_t i = 0; i < w.size(); ++i)
      sep.append(" ").append(w[i], '-').append(i > 0 && numeric ? ":|" : " |");
    out += sep + "\n";
    for (const auto& r : rows)
      out += line(r);
    return out;
  }
};

} // namespace

std::string reporter::cell(const std::string& metric, const std::string& prog,
                           const std::string& cont, double param) const {
  const metric_info& m = info_of(metric);
  if (!r_.has(metric, prog, cont, param))
    return "-";
  std::string s = fmt_value(r_.med(metric, prog, cont, param), m.unit);
  s += " (" + fmt_ratio(r_.ratio(metric, prog, cont, param, ref_posix)) +
       " / " + fmt_ratio(r_.ratio(metric, prog, cont, param, ref_bp2)) + ")";
  return s;
}

// All the tables, as Markdown sections.
std::string reporter::tables() const {
  std::string out;
  for (const auto& m : metrics) {
    if (r_.params(m.id).empty())
      continue;
    const char* better = m.higher_is_better ? "higher" : "lower";
    if (m.param == nullptr) {
      out += "### " + title_of(m, o_) + " (" + m.unit + ", " + better +
             " is better)\n\n";
      table t;
      t.header.push_back("contender");
      for (const auto& p : progs_)
        t.header.push_back(p.label);
      for (const contender* c : cs_) {
        std::vector<std::string> row{c->name};
        bool any = false;
        for (const auto& p : progs_) {
          row.push_back(cell(m.id, p.label, c->name, -1));
          any = any || r_.has(m.id, p.label, c->name, -1);
        }
        if (any)
          t.rows.push_back(row);
      }
      out += t.markdown() + "\n";
    } else {
      std::vector<double> ps = r_.params(m.id);
      for (const auto& p : progs_) {
        out += "### " + title_of(m, o_) + ": " + p.label + " (" + m.unit +
               ", " + better + " is better)\n\n";
        table t;
        t.header.push_back("contender");
        for (double v : ps)
          t.header.push_back(fmt_param(m, v));
        for (const contender* c : cs_) {
          std::vector<std::string> row{c->name};
          bool any = false;
          for (double v : ps) {
            row.push_back(cell(m.id, p.label, c->name, v));
            any = any || r_.has(m.id, p.label, c->name, v);
          }
          if (any)
            t.rows.push_back(row);
        }
        out += t.markdown() + "\n";
      }
    }
  }
  if (!r_.responsiveness.empty())
    out += responsiveness_intro();
  for (auto& rt : responsiveness_tables(r_.responsiveness, progs_)) {
    table t{rt.header, rt.rows};
    out += "### " + rt.title + "\n\n" + t.markdown() + "\n";
  }
  return out;
}

std::string reporter::markdown(const std::string& machine_md) const {
  std::string out = "# aspawn-bench results\n\n";
  out += machine_md + "\n";
  out += "Each figure is the median of " + std::to_string(o_.reps) +
         " repetitions (for the parent-size figures, of up to " +
         std::to_string(o_.memory_batches) +
         " timed parts of each repetition's batch). In parentheses: the "
         "ratio to `" + ref_posix +
         "` / the ratio to `" + ref_bp2 +
         "`, from the same run (a ratio above 1 is better for throughput, "
         "below 1 for times and allocation counts).\n\n";
  out += "Programs: ";
  for (std::size_t i = 0; i < progs_.size(); ++i)
    out += (i ? ", " : "") + std::string("`") + progs_[i].label + "` = `" +
           progs_[i].path + "`";
  out += ".\n\n## Contenders\n\n";
  table t;
  t.header = {"contender", "launch and wait"};
  t.numeric = false;
  for (const contender* c : cs_)
    t.rows.push_back({c->name, c->description});
  out += t.markdown() + "\n";
  for (const auto& u : missing_)
    out += "Not measured: `" + u.name + "`, " + u.reason + ".\n\n";
  if (auto ts = check_targets(r_); !ts.empty()) {
    out += "## Targets\n\n"
           "The figures the design's targets are about. For throughput "
           "and parent size, the figure judged is the median of the "
           "ratios of samples taken side by side (the same repetition, "
           "within seconds of each other); the ratio of the medians, as "
           "the tables below would give it, is alongside.\n\n";
    table tt;
    tt.header = {"target", "program", "contender", "figure",
                 "ratio of medians", "bound", "met"};
    tt.numeric = false;
    for (const auto& c : ts) {
      char v[32], m[32];
      std::snprintf(v, sizeof v, "%.3g", c.value);
      std::snprintf(m, sizeof m, "%.3g", c.ratio_of_medians);
      tt.rows.push_back({c.target, c.program, c.contender,
                         std::isnan(c.value) ? "not measured" : v,
                         std::isnan(c.ratio_of_medians) ? "-" : m, c.bound,
                         c.met ? "yes" : "**no**"});
    }
    out += tt.markdown() + "\n";
  }
  if (auto ns = responsiveness_notes(r_.responsiveness); !ns.empty()) {
    for (const auto& n : ns)
      out += "- " + n + "\n";
    out += "\n";
  }
  out += "## Results\n\n" + tables();
  if (!r_.failures.empty()) {
    out += "## Failures\n\n";
    for (const auto& f : r_.failures)
      out += "- `" + f.contender + "` in " + f.phase + ": " + f.error + "\n";
    out += "\n";
  }
  return out;
}

std::string reporter::headline() const {
  std::string out;
  for (const auto& p : progs_) {
    std::string rows;
    for (const contender* c : cs_) {
      char b[512];
      double call = r_.med("in_call_us", p.label, c->name, -1);
      double lat = r_.med("latency_us", p.label, c->name, -1);
      double tp = r_.med("throughput", p.label, c->name, 16);
      if (std::isnan(call) && std::isnan(lat) && std::isnan(tp))
        continue; // none of its phases ran
      std::snprintf(b, sizeof b,
                    "  %-13s in call %8s us  latency %8s us  16 in flight "
                    "%8s /s (%s posix_spawn, %s bp2)\n",
                    c->name.c_str(), fmt_value(call, "us").c_str(),
                    fmt_value(lat, "us").c_str(),
                    fmt_value(tp, "launches/s").c_str(),
                    fmt_ratio(r_.ratio("throughput", p.label, c->name, 16,
                                       ref_posix))
                        .c_str(),
                    fmt_ratio(r_.ratio("throughput", p.label, c->name, 16,
                                       ref_bp2))
                        .c_str());
      rows += b;
    }
    if (!rows.empty())
      out += p.label + ":\n" + rows;
  }
  return out + responsiveness_headline(r_.responsiveness, progs_);
}

void reporter::print_summary(std::ostream& os, double elapsed_s) const {
  os << "\n" << tables();
  os << "Each figure: median of " << o_.reps
     << " repetitions (ratio to " << ref_posix << " / ratio to "
     << ref_bp2 << ").\n\nSummary\n" << headline();
  for (const auto& u : missing_)
    os << "  " << u.name << ": not measured, " << u.reason << "\n";
  if (auto ts = check_targets(r_); !ts.empty()) {
    os << "\nTargets (paired figures: median of side-by-side ratios)\n";
    for (const auto& c : ts) {
      char line[256];
      char value[32] = "not measured";
      if (!std::isnan(c.value))
        std::snprintf(value, sizeof value, "%7.3f", c.value);
      std::snprintf(line, sizeof line, "  %-3s %-56s %-6s %-12s %s (%s)\n",
                    c.met ? "met" : "NOT", c.target.c_str(),
                    c.program.c_str(), c.contender.c_str(), value,
                    c.bound.c_str());
      os << line;
    }
    for (const auto& n : responsiveness_notes(r_.responsiveness))
      os << "  " << n << "\n";
  }
  char b[64];
  std::snprintf(b, sizeof b, "\ntotal run time %.1f s\n", elapsed_s);
  os << b;
}

} // namespace aspawn_bench
