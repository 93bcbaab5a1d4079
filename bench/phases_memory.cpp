//
// bench/phases_memory.cpp
// ~~~~~~~~~~~~~~~~~~~~~~~
//
// The parent-size phase of aspawn-bench ("memory"): worker processes, each
// holding a size of touched memory, launch on the runner's request, the
// sizes taking turns batch by batch (see phases.hpp).
//

#include "phases.hpp"

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <fstream>
#include <stdexcept>

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace aspawn_bench {
namespace {

double mem_available_gib() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  long long kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:")
      return static_cast<double>(kib) / (1024.0 * 1024.0);
  return -1;
}

// Anonymous memory the parent holds and has written to, in 4 KiB pages (no
// transparent huge pages, so fork has one page-table entry per page to copy).
class held_memory {
public:
  explicit held_memory(double gib) {
    size_ = static_cast<std::size_t>(gib * 1024.0 * 1024.0 * 1024.0);
    if (size_ == 0)
      return;
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      throw_errno(errno, "mmap(parent memory)");
    base_ = static_cast<char*>(p);
    ::madvise(base_, size_, MADV_NOHUGEPAGE);
#if defined(MADV_POPULATE_WRITE)
    if (::madvise(base_, size_, MADV_POPULATE_WRITE) == 0)
      return;
#endif
    const long page = ::sysconf(_SC_PAGESIZE);
    for (std::size_t off = 0; off < size_; off += static_cast<std::size_t>(page))
      base_[off] = 1;
  }
  held_memory(const held_memory&) = delete;
  held_memory& operator=(const held_memory&) = delete;
  ~held_memory() {
    if (base_ != nullptr)
      ::munmap(base_, size_);
  }

private:
  char* base_ = nullptr;
  std::size_t size_ = 0;
};

enum { op_open = 1, op_batch = 2, op_close = 3 };

} // namespace

// Each parent size is held by a worker process of its own, forked from
// this one before the phase, which touches its memory once and then runs
// the batches it is asked for. The sizes take turns batch by batch (0, 1,
// 4, 0, 1, 4, ... GiB, about 0.1 s each, in a rotated order): a
// throughput batch on this shared virtual machine moves by 10-20% from
// one moment to the next, and a size held for a whole stretch of the run
// (as when one process mapped, touched and freed each size in turn) took
// in that stretch's drift, by up to 17% either way. The contenders that
// fork go in a pass of their own, after the others: forking a 4 GiB
// parent copies 8 MiB of page tables per launch and slows the machine for
// whatever runs next.
void runner::phase_memory() {
  if (count_threads() != 1) {
    // fork() would leave the workers with a lock some other thread holds.
    std::cerr << "!! parent-size runs skipped: the process is not "
                 "single-threaded"
              << std::endl;
    return;
  }
  for (bool forking : {false, true})
    memory_pass(forking);
  check_strays("memory");
}

struct runner::worker_request {
  int op = 0; // op_open, op_batch or op_close
  int contender = 0;
  int program = 0;
  int count = 0;
  int in_flight = 0;
};
struct runner::worker_reply {
  int ok = 0;
  std::int64_t wall_ns = 0;
  std::int64_t cpu_ns = 0;
  char error[240] = {};
};

// A worker that exited or cannot be reached: the pass ends, and no
// contender is blamed.
struct runner::worker_lost : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A process holding `gib` of touched memory, launching on request over a
// socket pair (a write to a dead worker fails with EPIPE, without
// SIGPIPE).
class runner::size_worker {
public:
  size_worker(runner& r, double gib, const std::vector<int>& close_in_child)
      : gib_(gib) {
    std::cout.flush();
    std::cerr.flush();
    int fd = -1;
    pid_ = fork_with_socket(fd);
    if (pid_ == 0) {
      // Only this worker's end: another worker's would keep that one
      // from seeing its end of file.
      for (int other : close_in_child)
        ::close(other);
      r.serve(fd, gib); // does not return
    }
    fd_ = fd;
    worker_reply ready = receive();
    if (!ready.ok) {
      shut();
      throw worker_lost(std::string("parent-size worker: ") + ready.error);
    }
    touch_ns_ = ready.wall_ns;
  }
  size_worker(const size_worker&) = delete;
  size_worker& operator=(const size_worker&) = delete;
  ~size_worker() { shut(); }

  double gib() const noexcept { return gib_; }
  std::int64_t touch_ns() const noexcept { return touch_ns_; }
  int fd() const noexcept { return fd_; }

  // Runs one request. Throws worker_lost if the worker is gone, and
  // runtime_error with the worker's message if the request failed.
  worker_reply call(const worker_request& q) {
    if (::send(fd_, &q, sizeof q, MSG_NOSIGNAL) !=
        static_cast<ssize_t>(sizeof q))
      throw worker_lost(lost_message());
    worker_reply a = receive();
    if (!a.ok)
      throw std::runtime_error(a.error);
    return a;
  }

private:
  std::string lost_message() const {
    char b[96];
    std::snprintf(b, sizeof b, "the parent-size worker holding %g GiB exited",
                  gib_);
    return b;
  }

  worker_reply receive() {
    worker_reply a{};
    if (!read_exact(fd_, &a, sizeof a))
      throw worker_lost(lost_message());
    return a;
  }

  // Closing the socket ends the worker; it is reaped here.
  void shut() noexcept {
    if (fd_ >= 0)
      ::close(std::exchange(fd_, -1));
    if (pid_ > 0) {
      int st;
      while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
    }
  }

  double gib_;
  pid_t pid_ = -1;
  int fd_ = -1;
  std::int64_t touch_ns_ = 0;
};

// The worker's side, in the child of fork(): touches the memory, then
// answers requests until the socket closes. It never returns into the
// parent's code.
void runner::serve(int fd, double gib) noexcept {
  try {
    serve_requests(fd, gib);
  } catch (...) {
  }
  ::_exit(1);
}

void runner::serve_requests(int fd, double gib) {
  auto send = [&](const worker_reply& a) {
    if (::send(fd, &a, sizeof a, MSG_NOSIGNAL) !=
        static_cast<ssize_t>(sizeof a))
      ::_exit(1);
  };
  auto fail = [&](const char* what) {
    worker_reply a{};
    std::snprintf(a.error, sizeof a.error, "%s", what);
    send(a);
  };
  std::unique_ptr<held_memory> mem;
  try {
    std::int64_t t = now_ns();
    mem = std::make_unique<held_memory>(gib);
    worker_reply a{};
    a.ok = 1;
    a.wall_ns = now_ns() - t;
    send(a);
  } catch (const std::exception& e) {
    fail(e.what());
    ::_exit(1);
  }
  std::unique_ptr<session> s;
  worker_request q;
  // (read_exact retries after EINTR: a contender's SIGCHLD handler.)
  while (read_exact(fd, &q, sizeof q)) {
    worker_reply a{};
    try {
      const char* path =
          programs_.at(static_cast<std::size_t>(q.program)).path.c_str();
      if (q.op == op_open) {
        s.reset();
        s = std::make_unique<session>(open_session(
            *contenders_.at(static_cast<std::size_t>(q.contender))));
        // Warm: its stacks (or whatever it keeps) for the batches.
        s->run_batch(path, q.count, q.in_flight);
      } else if (q.op == op_batch) {
        if (!s)
          throw std::runtime_error("no session open");
        std::int64_t c0 = thread_cpu_ns();
        std::int64_t t0 = now_ns();
        s->run_batch(path, q.count, q.in_flight);
        a.wall_ns = now_ns() - t0;
        a.cpu_ns = thread_cpu_ns() - c0;
      } else {
        s.reset();
      }
      a.ok = 1;
      send(a);
    } catch (const std::exception& e) {
      s.reset();
      reap_strays(o_); // what the failed contender left behind
      fail(e.what());
    }
  }
  s.reset();
  ::_exit(reap_strays(o_) == 0 ? 0 : 1);
}

int runner::count_threads() {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    if (key == "Threads:") {
      int n = 0;
      in >> n;
      return n;
    }
    std::string rest;
    std::getline(in, rest);
  }
  return -1;
}

void runner::memory_pass(bool forking) {
  std::vector<const contender*> cs;
  for (const contender* c : contenders_)
    if (c->copies_parent == forking)
      cs.push_back(c);
  if (cs.empty())
    return;
  progress(forking ? "   the contenders that fork"
                   : "   the contenders that do not fork");
  const int n = o_.memory_in_flight;
  std::vector<std::unique_ptr<size_worker>> workers;
  std::vector<int> parent_fds;
  for (double gib : o_.parent_gib) {
    double avail = mem_available_gib();
    if (gib > 0 && avail >= 0 && gib + 1.0 > avail) {
      std::cerr << "!! skipping a " << gib << " GiB parent: only " << avail
                << " GiB available" << std::endl;
      continue;
    }
    try {
      workers.push_back(
          std::make_unique<size_worker>(*this, gib, parent_fds));
    } catch (const std::exception& e) {
      std::cerr << "!! skipping a " << gib << " GiB parent: " << e.what()
                << std::endl;
      continue;
    }
    parent_fds.push_back(workers.back()->fd());
    progress("   a worker holds " + std::to_string(gib).substr(0, 4) +
             " GiB (touched in " + fmt_seconds(workers.back()->touch_ns()) +
             ")");
  }
  const std::size_t nw = workers.size();
  if (nw == 0)
    return;
  for (int rep = 0; rep < o_.reps; ++rep) {
    for (std::size_t pi = 0; pi < programs_.size(); ++pi) {
      const auto& prog = programs_[pi];
      for (const contender* c : order(rep)) {
        if (c->copies_parent != forking)
          continue;
        const int ci = index_of(c);
        const int p = static_cast<int>(pi);
        bool lost = false;
        guarded(*c, "memory", [&] {
          try {
            memory_batches(*c, ci, p, prog, n, forking, rep, workers);
          } catch (const worker_lost& e) {
            std::cerr << "!! " << e.what()
                      << "; this pass of the parent-size runs ends here"
                      << std::endl;
            res_.failures.push_back({"(parent-size worker)", "memory",
                                     e.what()});
            lost = true;
          }
        });
        if (lost)
          return;
      }
    }
    progress("   rep " + std::to_string(rep + 1) + "/" +
             std::to_string(o_.reps));
  }
}

// One contender's batches in every worker, the sizes taking turns.
void runner::memory_batches(
    const contender& c, int ci, int pi, const program& prog, int n,
    bool forking, int rep,
    std::vector<std::unique_ptr<size_worker>>& workers) {
  const std::size_t nw = workers.size();
  std::vector<int> counts(nw);
  for (std::size_t w = 0; w < nw; ++w) {
    // Warm with n in flight; a forking contender with one launch only
    // (a round of them takes a second with 4 GiB).
    workers[w]->call(forking ? worker_request{op_open, ci, pi, 1, 1}
                             : worker_request{op_open, ci, pi,
                                              std::max(8, n), n});
    // A contender that does not fork gets one count for every size (the
    // first size's), so that the batches compared are alike; one that
    // forks, a count per size, at least one round of n (a batch at
    // 0 GiB would otherwise take minutes at 4 GiB).
    counts[w] = forking || w == 0
                    ? calibrated_in(*workers[w], ci, pi, n,
                                    o_.memory_batch_seconds,
                                    forking ? workers[w]->gib() : -1)
                    : counts[0];
  }
  // Parts of a batch, each a sample, as long as each still holds a round
  // of n at every size.
  int parts = o_.memory_batches;
  for (int k : counts)
    parts = std::min(parts, std::max(1, k / n));
  for (int part = 0; part < parts; ++part) {
    for (std::size_t k = 0; k < nw; ++k) {
      const std::size_t w = (k + static_cast<std::size_t>(rep + part)) % nw;
      const int m = std::max(n, counts[w] / parts);
      worker_reply a = workers[w]->call({op_batch, ci, pi, m, n});
      const double secs = static_cast<double>(a.wall_ns) / 1e9;
      res_.add("parent_size_throughput", prog.label, c.name,
               workers[w]->gib(), m / secs);
      res_.add("parent_size_cpu_us", prog.label, c.name, workers[w]->gib(),
               static_cast<double>(a.cpu_ns) / 1e3 / m);
    }
  }
  for (auto& w : workers)
    w->call({op_close, ci, pi, 0, 0});
}

// The number of launches that makes a batch in `w` last about
// `batch_seconds`, at least one round of `n`; found with a pilot batch
// the first time for the contender, program and `gib` (-1: any size).
int runner::calibrated_in(size_worker& w, int ci, int pi, int n,
                          double batch_seconds, double gib) {
  const std::string key =
      "mem/" + contenders_[static_cast<std::size_t>(ci)]->name + "/" +
      programs_[static_cast<std::size_t>(pi)].label + "/" +
      std::to_string(gib);
  auto it = counts_.find(key);
  if (it != counts_.end())
    return it->second;
  const int pilot = std::max(n, 8);
  worker_reply a = w.call({op_batch, ci, pi, pilot, n});
  const double secs = std::max(static_cast<double>(a.wall_ns) / 1e9, 1e-9);
  int k = static_cast<int>(pilot / secs * batch_seconds);
  k = std::clamp(k, n, 1'000'000);
  counts_[key] = k;
  return k;
}

int runner::index_of(const contender* c) const {
  for (std::size_t i = 0; i < contenders_.size(); ++i)
    if (contenders_[i] == c)
      return static_cast<int>(i);
  return -1;
}

} // namespace aspawn_bench
