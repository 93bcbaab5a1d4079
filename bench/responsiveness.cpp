//
// bench/responsiveness.cpp
// ~~~~~~~~~~~~~~~~~~~~~~~~
//
// The responsiveness phase (see responsiveness.hpp and bench/README.md):
// the bystander process, the batches, and the phase's reports.
//

#include "responsiveness.hpp"
#include "ticker.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <tuple>
#include <utility>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

namespace aspawn_bench {
namespace {

namespace asio = boost::asio;

// The bystander's protocol: one byte a request; 'S' (start: forget the
// samples so far) is answered with one byte, 'T' (stop) with a stop_reply
// followed by `count` lateness samples (int64 ns). The bystander says 'R'
// once it is serving its timer.
constexpr char cmd_start = 'S';
constexpr char cmd_stop = 'T';
constexpr char ready = 'R';

struct stop_reply {
  std::uint64_t count = 0;
  std::int64_t missed = 0;
};

struct bystander_lost : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The harness's side: the bystander is aspawn-bench itself (/proc/self/exe
// --bystander FD), forked and exec'd in this process's session and process
// group. Not setsid(): with autogroup scheduling on, a new session gets a
// scheduling group of its own, which would be given a CPU share of its own
// against the whole benchmark, and its lateness would no longer show what
// the machine's CPU share costs a process beside the launcher.
class bystander {
public:
  bystander() {
    std::fflush(nullptr);
    int fd = -1;
    pid_ = fork_with_socket(fd);
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::fcntl(fd, F_SETFD, 0); // inherited across exec
      char fd_arg[16];
      std::snprintf(fd_arg, sizeof fd_arg, "%d", fd);
      char self[] = "/proc/self/exe";
      char name[] = "aspawn-bench";
      char opt[] = "--bystander";
      char* argv[] = {name, opt, fd_arg, nullptr};
      ::execv(self, argv);
      ::_exit(127);
    }
    fd_ = fd;
    char c = 0;
    if (!read_exact(fd_, &c, 1) || c != ready) {
      shut();
      throw bystander_lost("the bystander process did not start");
    }
  }
  bystander(const bystander&) = delete;
  bystander& operator=(const bystander&) = delete;
  ~bystander() { shut(); }

  void start() {
    send(cmd_start);
    char c = 0;
    if (!read_exact(fd_, &c, 1))
      throw bystander_lost("the bystander process exited");
  }

  void stop(std::vector<std::int64_t>& lateness, std::int64_t& missed) {
    send(cmd_stop);
    stop_reply r;
    if (!read_exact(fd_, &r, sizeof r))
      throw bystander_lost("the bystander process exited");
    const std::size_t at = lateness.size();
    lateness.resize(at + r.count);
    if (r.count != 0 && !read_exact(fd_, lateness.data() + at,
                                    r.count * sizeof(std::int64_t)))
      throw bystander_lost("the bystander process exited");
    missed += r.missed;
  }

private:
  void send(char c) {
    if (::send(fd_, &c, 1, MSG_NOSIGNAL) != 1)
      throw bystander_lost("the bystander process exited");
  }

  // Killed and reaped (its own pid: the phase's waitpid(-1) contenders
  // must never see it exit while they run).
  void shut() noexcept {
    if (fd_ >= 0)
      ::close(std::exchange(fd_, -1));
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
    }
  }

  pid_t pid_ = -1;
  int fd_ = -1;
};

// The bystander's side.
class bystander_server {
public:
  explicit bystander_server(int fd) : sock_(ctx_, fd), ticker_(ctx_, log_) {
    log_.reset(0, 60);
  }

  int run() {
    asio::write(sock_, asio::buffer(&ready, 1));
    read_next();
    ctx_.run();
    return 0;
  }

private:
  void read_next() {
    sock_.async_read_some(asio::buffer(&cmd_, 1),
                          [this](boost::system::error_code ec, std::size_t) {
                            if (ec) { // the harness closed its end
                              ticker_.stop();
                              ctx_.stop();
                              return;
                            }
                            serve();
                            read_next();
                          });
  }

  void serve() {
    if (cmd_ == cmd_start) {
      log_.lateness_ns.clear();
      log_.missed = 0;
      asio::write(sock_, asio::buffer(&cmd_, 1));
    } else if (cmd_ == cmd_stop) {
      stop_reply r{log_.lateness_ns.size(), log_.missed};
      asio::write(sock_, asio::buffer(&r, sizeof r));
      asio::write(sock_, asio::buffer(log_.lateness_ns));
      log_.lateness_ns.clear();
      log_.missed = 0;
    }
  }

  asio::io_context ctx_;
  asio::posix::stream_descriptor sock_;
  tick_log log_;
  asio_ticker ticker_;
  char cmd_ = 0;
};

// Nearest-rank percentile of `v` (sorted), in us; NaN when empty.
double pct_us(const std::vector<std::int64_t>& v, double q) {
  if (v.empty())
    return std::nan("");
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  rank = std::clamp<std::size_t>(rank, 1, v.size());
  return static_cast<double>(v[rank - 1]) / 1e3;
}

double median_of(std::vector<double> v) {
  std::erase_if(v, [](double x) { return std::isnan(x); });
  if (v.empty())
    return std::nan("");
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// What the batches of one (program, contender, in-flight count) collected.
struct pooled {
  tick_log log; // in-call and lateness samples of every batch
  std::vector<std::int64_t> bystander;
  std::int64_t bystander_missed = 0;
  bool bystander_ok = true;
  std::int64_t launches = 0;
  double seconds = 0;
  std::vector<double> throughput;
};

resp_record summarize(const std::string& prog, const std::string& cont, int n,
                      pooled& p) {
  resp_record r;
  r.program = prog;
  r.contender = cont;
  r.in_flight = n;
  r.batches = static_cast<int>(p.throughput.size());
  r.launches = p.launches;
  r.seconds = p.seconds;
  r.throughput_reps = p.throughput;
  r.throughput = median_of(p.throughput);
  auto& in_call = p.log.in_call_ns;
  std::sort(in_call.begin(), in_call.end());
  r.in_call_p50 = pct_us(in_call, 0.5);
  r.in_call_p99 = pct_us(in_call, 0.99);
  r.in_call_p999 = pct_us(in_call, 0.999);
  r.in_call_max = pct_us(in_call, 1);
  auto& ticks = p.log.lateness_ns;
  std::sort(ticks.begin(), ticks.end());
  r.ticks = static_cast<std::int64_t>(ticks.size());
  r.missed = p.log.missed;
  r.tick_p50 = pct_us(ticks, 0.5);
  r.tick_p99 = pct_us(ticks, 0.99);
  r.tick_max = pct_us(ticks, 1);
  if (!p.bystander_ok)
    p.bystander.clear();
  std::sort(p.bystander.begin(), p.bystander.end());
  r.bystander_ticks = static_cast<std::int64_t>(p.bystander.size());
  r.bystander_missed = p.bystander_ok ? p.bystander_missed : -1;
  r.bystander_p50 = pct_us(p.bystander, 0.5);
  r.bystander_p99 = pct_us(p.bystander, 0.99);
  r.bystander_max = pct_us(p.bystander, 1);
  return r;
}

} // namespace

int bystander_main(int fd) {
  try {
    bystander_server server(fd);
    return server.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "aspawn-bench --bystander: %s\n", e.what());
    return 1;
  }
}

std::vector<resp_record> run_responsiveness(
    const resp_settings& s, const std::vector<resp_program>& programs,
    const std::vector<const contender*>& contenders, const resp_hooks& hooks) {
  std::unique_ptr<bystander> by;
  try {
    by = std::make_unique<bystander>();
  } catch (const std::exception& e) {
    hooks.failed(std::string("bystander: ") + e.what() +
                 "; the phase runs without it");
  }
  const int reps = std::max(1, s.reps);
  const int per_rep_launches = std::max(1, (s.launches + reps - 1) / reps);
  const double per_rep_seconds = s.seconds / reps;
  using key = std::tuple<std::string, std::string, int>;
  std::map<key, pooled> acc;
  std::map<key, int> counts;
  std::set<std::string> without;

  for (int rep = 0; rep < reps; ++rep) {
    for (const auto& prog : programs) {
      const char* path = prog.path.c_str();
      for (int n : s.in_flight) {
        for (const contender* c : hooks.order(rep)) {
          if (without.count(c->name))
            continue;
          hooks.guarded(*c, [&] {
            session ss = hooks.open(*c);
            if (!ss.run_batch_ticking) {
              without.insert(c->name);
              return;
            }
            const key k{prog.label, c->name, n};
            pooled& p = acc[k];
            // Warm (its stacks, or whatever it keeps, for n in flight), and
            // the first time, a pilot for the size of the batches.
            tick_log log;
            const int pilot = std::max(8, n);
            log.reset(pilot, 1);
            std::int64_t t = now_ns();
            ss.run_batch_ticking(path, pilot, n, log);
            double secs = static_cast<double>(now_ns() - t) / 1e9;
            auto it = counts.find(k);
            if (it == counts.end()) {
              // The launches asked for, but lasting at least a third of
              // the time box (enough ticks for their p99) and at most the
              // time box; at least min_rounds rounds of n.
              const int least = std::max(1, s.min_rounds) * n;
              const double rate = pilot / std::max(secs, 1e-9);
              const auto most = static_cast<int>(rate * per_rep_seconds);
              const auto third = static_cast<int>(rate * per_rep_seconds / 3);
              int m = std::min(most, std::max(per_rep_launches, third));
              m = std::clamp(m, least, 1'000'000);
              it = counts.emplace(k, m).first;
            }
            const int count = it->second;
            log.reset(count, per_rep_seconds * 4 + 1);
            bool with_bystander = false;
            if (by) {
              try {
                by->start();
                with_bystander = true;
              } catch (const bystander_lost& e) {
                hooks.failed(std::string("bystander: ") + e.what());
                by.reset();
              }
            }
            t = now_ns();
            ss.run_batch_ticking(path, count, n, log);
            secs = static_cast<double>(now_ns() - t) / 1e9;
            if (with_bystander) {
              try {
                by->stop(p.bystander, p.bystander_missed);
              } catch (const bystander_lost& e) {
                hooks.failed(std::string("bystander: ") + e.what());
                by.reset();
                p.bystander_ok = false;
              }
            } else {
              p.bystander_ok = false;
            }
            p.launches += count;
            p.seconds += secs;
            p.throughput.push_back(count / std::max(secs, 1e-9));
            p.log.in_call_ns.insert(p.log.in_call_ns.end(),
                                    log.in_call_ns.begin(),
                                    log.in_call_ns.end());
            p.log.lateness_ns.insert(p.log.lateness_ns.end(),
                                     log.lateness_ns.begin(),
                                     log.lateness_ns.end());
            p.log.missed += log.missed;
          });
        }
      }
    }
    hooks.progress("   rep " + std::to_string(rep + 1) + "/" +
                   std::to_string(reps));
  }
  by.reset();
  for (const auto& name : without)
    hooks.progress("   " + name + ": no ticking batch, left out");

  std::vector<resp_record> out;
  for (const auto& prog : programs)
    for (const contender* c : contenders)
      for (int n : s.in_flight)
        if (auto it = acc.find({prog.label, c->name, n});
            it != acc.end() && !it->second.throughput.empty())
          out.push_back(summarize(prog.label, c->name, n, it->second));
  return out;
}

} // namespace aspawn_bench
