//
// bench/responsiveness_report.cpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// The responsiveness phase's tables, summary lines, targets, JSON and chart
// data (see responsiveness.hpp).
//

#include "responsiveness.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

namespace aspawn_bench {
namespace {

// The in-flight count the targets are about, and the one reported beside.
constexpr int target_in_flight = 16;
constexpr int note_in_flight = 64;

std::string us(double v) {
  if (std::isnan(v))
    return "-";
  char b[32];
  std::snprintf(b, sizeof b, v < 10 ? "%.2f" : v < 100 ? "%.1f" : "%.0f", v);
  return b;
}

std::string num(double v, const char* f) {
  if (std::isnan(v))
    return "-";
  char b[32];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string json_num(double v) {
  return std::isnan(v) || std::isinf(v) ? "null" : num(v, "%.6g");
}

const resp_record* find(const std::vector<resp_record>& rs,
                        const std::string& prog, const std::string& cont,
                        int n) {
  for (const auto& r : rs)
    if (r.program == prog && r.contender == cont && r.in_flight == n)
      return &r;
  return nullptr;
}

double ratio(double a, double b) {
  return std::isnan(a) || std::isnan(b) || b <= 0 ? std::nan("") : a / b;
}

// The median of a[i] / b[i], batches of the same repetition; NaN unless both
// ran the same batches.
double paired(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.empty() || a.size() != b.size())
    return std::nan("");
  std::vector<double> q;
  for (std::size_t i = 0; i < a.size(); ++i)
    q.push_back(ratio(a[i], b[i]));
  std::sort(q.begin(), q.end());
  const std::size_t n = q.size();
  return n % 2 ? q[n / 2] : (q[n / 2 - 1] + q[n / 2]) / 2;
}

// The bystander's p99 at in-flight count n: the median over the batches of
// every contender (each its own figure during that contender's batches).
double bystander_reference(const std::vector<resp_record>& rs,
                           const std::string& prog, int n) {
  std::vector<double> v;
  for (const auto& r : rs)
    if (r.program == prog && r.in_flight == n && !std::isnan(r.bystander_p99))
      v.push_back(r.bystander_p99);
  if (v.empty())
    return std::nan("");
  std::sort(v.begin(), v.end());
  const std::size_t k = v.size();
  return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

// A value of the chart data: "?" where missing (or not drawable on a log
// scale).
std::string cell(double v) {
  return std::isnan(v) || v <= 0 ? "?" : num(v, "%.6g");
}

std::vector<int> in_flight_counts(const std::vector<resp_record>& rs) {
  std::set<int> s;
  for (const auto& r : rs)
    s.insert(r.in_flight);
  return {s.begin(), s.end()};
}

// The contenders of `prog`, in the records' order.
std::vector<std::string> contenders_of(const std::vector<resp_record>& rs,
                                       const std::string& prog) {
  std::vector<std::string> v;
  for (const auto& r : rs)
    if (r.program == prog &&
        std::find(v.begin(), v.end(), r.contender) == v.end())
      v.push_back(r.contender);
  return v;
}

} // namespace

std::string responsiveness_intro() {
  return "While each contender runs a batch with N children in flight, its "
         "launching thread also serves a periodic 1 ms timer (cyclictest "
         "semantics: deadlines on a grid, lateness = wake-up - deadline, "
         "passed grid points skipped and counted as missed). The blocking "
         "contenders (`posix_spawn`, `vfork_exec`, `fork_exec`) cannot serve "
         "it from the launching thread; a thread of their own sleeps to each "
         "deadline instead. The bystander is a separate process in the same "
         "session and process group that serves only the same timer, "
         "measured during the same batch: the machine's CPU share alone. "
         "Times in us; in call = the initiating call only; percentiles over "
         "the samples of every repetition pooled; launches/s = median of the "
         "batches.\n\n";
}

std::vector<resp_table> responsiveness_tables(
    const std::vector<resp_record>& records,
    const std::vector<resp_program>& programs) {
  std::vector<resp_table> out;
  for (const auto& prog : programs) {
    resp_table t;
    t.title = "Responsiveness: " + prog.label +
              " (1 ms timer on the launching thread; us, lower is better)";
    t.header = {"contender",        "in flight",       "in call p50",
                "p99",              "p99.9",           "max",
                "timer late p50",   "p99",             "max",
                "missed",           "bystander p99",   "bystander max",
                "launches/s"};
    for (const auto& r : records) {
      if (r.program != prog.label)
        continue;
      t.rows.push_back({r.contender, std::to_string(r.in_flight),
                        us(r.in_call_p50), us(r.in_call_p99),
                        us(r.in_call_p999), us(r.in_call_max), us(r.tick_p50),
                        us(r.tick_p99), us(r.tick_max),
                        std::to_string(r.missed) + "/" +
                            std::to_string(r.ticks + r.missed),
                        us(r.bystander_p99), us(r.bystander_max),
                        num(r.throughput, "%.0f")});
    }
    if (t.rows.empty())
      continue;
    for (int n : in_flight_counts(records))
      t.rows.push_back({"(bystander, median of the batches)",
                        std::to_string(n), "", "", "", "", "", "", "", "",
                        us(bystander_reference(records, prog.label, n)), "",
                        ""});
    out.push_back(std::move(t));
  }
  return out;
}

std::string responsiveness_headline(const std::vector<resp_record>& records,
                                    const std::vector<resp_program>& programs) {
  std::string out;
  for (const auto& prog : programs) {
    bool first = true;
    for (const auto& r : records) {
      if (r.program != prog.label || r.in_flight != target_in_flight)
        continue;
      if (first)
        out += prog.label + ", responsiveness with " +
               std::to_string(target_in_flight) + " in flight:\n";
      first = false;
      char b[256];
      std::snprintf(b, sizeof b,
                    "  %-13s timer late p99 %7s us (bystander %7s us)  in "
                    "call p99 %7s us  %8s /s\n",
                    r.contender.c_str(), us(r.tick_p99).c_str(),
                    us(r.bystander_p99).c_str(), us(r.in_call_p99).c_str(),
                    num(r.throughput, "%.0f").c_str());
      out += b;
    }
  }
  return out;
}

std::vector<resp_target> responsiveness_targets(
    const std::vector<resp_record>& records) {
  std::vector<resp_target> out;
  std::vector<std::string> progs;
  for (const auto& r : records)
    if (r.in_flight == target_in_flight &&
        std::find(progs.begin(), progs.end(), r.program) == progs.end())
      progs.push_back(r.program);
  const double nan = std::nan("");
  for (const auto& p : progs) {
    const resp_record* a = find(records, p, "aspawn", target_in_flight);
    const resp_record* raw = find(records, p, "raw_clone", target_in_flight);
    auto add = [&](const char* what, double v, double rom, const char* bound,
                   bool met) {
      out.push_back({what, p, "aspawn", v, rom, bound, met && !std::isnan(v)});
    };
    double v = a ? ratio(a->tick_p99, a->bystander_p99) : nan;
    add("timer lateness p99 / bystander's (same batches), 16 in flight", v, v,
        "<= 1.20", v <= 1.2);
    v = a && raw ? ratio(a->in_call_p99, raw->in_call_p99) : nan;
    add("in-call p99 / raw loop's (responsiveness phase), 16 in flight", v, v,
        "<= 1.00", v <= 1.0);
    v = a && raw ? paired(a->throughput_reps, raw->throughput_reps) : nan;
    const double rom = a && raw ? ratio(a->throughput, raw->throughput) : nan;
    add("throughput / raw loop's (responsiveness phase), 16 in flight", v, rom,
        ">= 0.90", v >= 0.9);
  }
  return out;
}

std::vector<std::string> responsiveness_notes(
    const std::vector<resp_record>& records) {
  std::vector<std::string> out;
  for (const auto& r : records) {
    if (r.contender != "aspawn" || r.in_flight != note_in_flight)
      continue;
    const resp_record* raw =
        find(records, r.program, "raw_clone", note_in_flight);
    const double raw_call = raw ? raw->in_call_p99 : std::nan("");
    const double raw_tp = raw ? raw->throughput : std::nan("");
    out.push_back(
        r.program + ", " + std::to_string(note_in_flight) +
        " in flight (not a target): aspawn timer lateness p99 " +
        us(r.tick_p99) + " us = " +
        num(ratio(r.tick_p99, r.bystander_p99), "%.2f") + "x bystander's (" +
        us(r.bystander_p99) + " us); in-call p99 " + us(r.in_call_p99) +
        " us = " + num(ratio(r.in_call_p99, raw_call), "%.2f") +
        "x raw loop's; throughput " + num(ratio(r.throughput, raw_tp), "%.2f") +
        "x raw loop's");
  }
  return out;
}

std::string responsiveness_json(const std::vector<resp_record>& records) {
  std::ostringstream j;
  j << "[";
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    // Names and labels are [a-z0-9_] (harness.hpp): no escaping needed.
    j << (i ? "," : "") << "\n    {\"program\": \"" << r.program
      << "\", \"contender\": \"" << r.contender
      << "\", \"in_flight\": " << r.in_flight << ", \"batches\": " << r.batches
      << ", \"launches\": " << r.launches
      << ", \"seconds\": " << json_num(r.seconds)
      << ", \"throughput\": " << json_num(r.throughput)
      << ", \"throughput_reps\": [";
    for (std::size_t k = 0; k < r.throughput_reps.size(); ++k)
      j << (k ? ", " : "") << json_num(r.throughput_reps[k]);
    j << "], \"in_call_us\": {\"p50\": " << json_num(r.in_call_p50)
      << ", \"p99\": " << json_num(r.in_call_p99)
      << ", \"p99_9\": " << json_num(r.in_call_p999)
      << ", \"max\": " << json_num(r.in_call_max)
      << "}, \"timer_lateness_us\": {\"p50\": " << json_num(r.tick_p50)
      << ", \"p99\": " << json_num(r.tick_p99)
      << ", \"max\": " << json_num(r.tick_max) << ", \"ticks\": " << r.ticks
      << ", \"missed\": " << r.missed
      << "}, \"bystander_lateness_us\": {\"p50\": "
      << json_num(r.bystander_p50) << ", \"p99\": " << json_num(r.bystander_p99)
      << ", \"max\": " << json_num(r.bystander_max)
      << ", \"ticks\": " << r.bystander_ticks << ", \"missed\": "
      << (r.bystander_missed < 0 ? std::string("null")
                                 : std::to_string(r.bystander_missed))
      << "}}";
  }
  j << (records.empty() ? "]" : "\n  ]");
  return j.str();
}

void write_responsiveness_plot_data(const std::string& dir,
                                    const std::vector<resp_record>& records,
                                    const std::vector<resp_program>& programs) {
  if (records.empty())
    return;
  const std::vector<int> ns = in_flight_counts(records);
  std::string out;
  // Blocks 0 and 1: timer lateness p99 (bystander first); 2 and 3: in-call
  // p99; one per program, in the programs' order.
  for (bool lateness : {true, false}) {
    for (const auto& prog : programs) {
      const auto cs = contenders_of(records, prog.label);
      out += std::string("# ") + (lateness ? "timer lateness" : "in-call") +
             " p99 (us) " + prog.label + "\nin_flight";
      if (lateness)
        out += " bystander";
      for (const auto& c : cs)
        out += " " + c;
      out += "\n";
      for (int n : ns) {
        out += std::to_string(n);
        if (lateness) {
          out += ' ';
          out += cell(bystander_reference(records, prog.label, n));
        }
        for (const auto& c : cs) {
          const resp_record* r = find(records, prog.label, c, n);
          out += ' ';
          out += cell(r ? (lateness ? r->tick_p99 : r->in_call_p99)
                        : std::nan(""));
        }
        out += "\n";
      }
      out += "\n\n";
    }
  }
  const std::string path = dir + "/plot-responsiveness.tmp";
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << out;
  if (!f)
    throw std::runtime_error("cannot write " + path);
}

} // namespace aspawn_bench
