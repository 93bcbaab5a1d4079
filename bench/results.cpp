//
// bench/results.cpp
// ~~~~~~~~~~~~~~~~~
//
// The metrics' titles, the lookup of a metric and the median (see
// results.hpp).
//

#include "results.hpp"

#include "options.hpp"

#include <algorithm>
#include <cstddef>
#include <stdexcept>

namespace aspawn_bench {

std::string title_of(const metric_info& m, const options& o) {
  std::string t = m.title;
  auto fill = [&](const std::string& key, const std::string& v) {
    if (auto pos = t.find(key); pos != std::string::npos)
      t.replace(pos, key.size(), v);
  };
  fill("{in_flight}", std::to_string(o.memory_in_flight));
  fill("{sleepers}", std::to_string(o.sleepers));
  return t;
}

const metric_info& info_of(const std::string& id) {
  for (const auto& m : metrics)
    if (id == m.id)
      return m;
  throw std::logic_error("unknown metric " + id);
}

double median(std::vector<double> v) {
  if (v.empty())
    return std::nan("");
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

} // namespace aspawn_bench
