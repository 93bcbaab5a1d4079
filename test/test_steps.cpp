// Setup steps, each observed from inside the child through the helper:
// descriptor maps, working directory, environment, session and group,
// signals, umask, no_new_privs, limits, nice, affinity, credentials, user
// functions, and the rejection of bad input.
#include "common.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/audit.h>
#include <linux/close_range.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/resource.h>
#include <sys/stat.h>

extern char** environ;

using aspawn::command;
using aspawn::redirect;
using aspawn::step_kind;
using test::asio::io_context;

namespace {


// An owned descriptor.
struct fd_guard {
  int fd = -1;
  explicit fd_guard(int f) : fd(f) { REQUIRE(fd >= 0); }
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() {
    if (fd >= 0)
      ::close(fd);
  }
};

// /dev/null opened without close-on-exec at the lowest free number not
// below `at`.
int inheritable_null(int at) {
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  int moved = ::fcntl(fd, F_DUPFD, at);
  ::close(fd);
  REQUIRE(moved >= at);
  return moved;
}

std::string link_of(int fd) {
  char buf[PATH_MAX];
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  REQUIRE(n > 0);
  return std::string(buf, static_cast<std::size_t>(n));
}

// "fds=0 1 2 ..." for a set of descriptors.
std::string fds_line(const std::set<int>& fds) {
  std::string s = "fds=";
  bool first = true;
  for (int fd : fds) {
    if (!first)
      s += ' ';
    s += std::to_string(fd);
    first = false;
  }
  return s + "\n";
}


// A seccomp filter for a child function to install, playing an older
// kernel: close_range refusing CLOSE_RANGE_CLOEXEC with EINVAL (Linux 5.9,
// 5.10), or, with `missing`, close_range failing with ENOSYS (before 5.9).
std::vector<sock_filter> old_close_range_filter(bool missing) {
#if defined(__x86_64__)
  constexpr unsigned arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
  constexpr unsigned arch = AUDIT_ARCH_AARCH64;
#endif
  auto load = [](std::size_t at) -> sock_filter {
    return BPF_STMT(BPF_LD | BPF_W | BPF_ABS, static_cast<unsigned>(at));
  };
  auto ret = [](unsigned v) -> sock_filter { return BPF_STMT(BPF_RET | BPF_K, v); };
  std::vector<sock_filter> f = {
      load(offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0),
      ret(SECCOMP_RET_ALLOW),
      load(offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_close_range, 1, 0),
      ret(SECCOMP_RET_ALLOW)};
  if (missing) {
    f.push_back(ret(SECCOMP_RET_ERRNO | ENOSYS));
  } else {
    f.push_back(load(offsetof(seccomp_data, args[2]))); // flags, low half
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLOSE_RANGE_CLOEXEC, 0, 1));
    f.push_back(ret(SECCOMP_RET_ERRNO | EINVAL));
    f.push_back(ret(SECCOMP_RET_ALLOW));
  }
  return f;
}

// A child function installing the filter its data (a sock_fprog) points
// to: the parent's memory, which the child shares until it execs.
ASPAWN_CHILD_FN int install_filter(void* data, std::size_t) {
  long r = aspawn::sys::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  if (r < 0)
    return static_cast<int>(r);
  r = aspawn::sys::syscall3(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0,
                            reinterpret_cast<long>(data));
  return static_cast<int>(r);
}

// Runs `cmd`, requires success and exit status 0, returns stdout.
std::string output_of(const command& cmd) {
  auto r = test::run(cmd);
  INFO("launch result: " << r.ec.message());
  REQUIRE_FALSE(r.ec);
  CHECK(r.code == 0);
  return r.out;
}



std::map<std::string, long> parse_ids(const std::string& out) {
  std::map<std::string, long> m;
  std::istringstream in(out);
  std::string tok;
  while (in >> tok) {
    auto eq = tok.find('=');
    if (eq != std::string::npos)
      m[tok.substr(0, eq)] = std::stol(tok.substr(eq + 1));
  }
  return m;
}

std::uint64_t to_bits(const sigset_t& set) {
  std::uint64_t bits = 0;
  for (int sig = 1; sig <= 64; ++sig)
    if (sigismember(&set, sig) == 1)
      bits |= test::sigbit(sig);
  return bits;
}

// The soft and hard values of limit `name` in a /proc/PID/limits dump.
std::pair<std::string, std::string> limit_values(const std::string& dump,
                                                 const std::string& name) {
  for (auto& l : test::lines(dump))
    if (l.rfind(name + "  ", 0) == 0) {
      std::istringstream in(l.substr(name.size()));
      std::string soft, hard;
      in >> soft >> hard;
      return {soft, hard};
    }
  return {"<missing>", "<missing>"};
}

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(::sched_getaffinity(0, sizeof set, &set) == 0);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set))
      cpus.push_back(c);
  return cpus;
}

std::vector<std::string> sorted_lines(const std::string& out) {
  auto v = test::lines(out);
  std::sort(v.begin(), v.end());
  return v;
}

// User functions: run in the child, may use aspawn::sys only.

ASPAWN_CHILD_FN int write_user_data(void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    long n = aspawn::sys::write(1, p, size);
    if (n == -EINTR)
      continue;
    if (n < 0)
      return static_cast<int>(n);
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return 0;
}

// Changes its private copy of the data, then writes it.
ASPAWN_CHILD_FN int bump_and_write(void* data, std::size_t size) {
  auto* p = static_cast<unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i)
    p[i] = static_cast<unsigned char>(p[i] + 1);
  long n = aspawn::sys::write(1, data, size);
  return n < 0 ? static_cast<int>(n) : 0;
}

ASPAWN_CHILD_FN int refuse(void*, std::size_t) { return -EPERM; }

} // namespace

// ---- map_fd, inherit_fd, close_fd, close_other_fds -------------------------

TEST_CASE("map_fd puts a parent descriptor at the requested child number",
          "[steps][fd]") {
  auto before = test::open_fds();
  {
    test::pipe_pair p;
    auto out = output_of(
        test::helper_cmd({"fds", "fdinfo", "7", "write", "7", "through 7"})
            .map_fd(7, p.wr));
    CHECK(out == "fds=0 1 2 7\nfd 7 -> " + link_of(p.wr) + "\n");
    CHECK(p.read_all() == "through 7");
    // The parent's descriptor is as it was: same number, close-on-exec.
    CHECK(test::is_cloexec(p.rd));
  }
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("map_fd(3, 4) and map_fd(4, 3) swap two descriptors", "[steps][fd]") {
  auto before = test::open_fds();
  REQUIRE(before.count(3) == 0);
  REQUIRE(before.count(4) == 0);
  // Two pipes, their read ends kept high and their write ends at 3 and 4.
  int a[2], b[2];
  REQUIRE(::pipe2(a, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(b, O_CLOEXEC) == 0);
  fd_guard a_rd(::fcntl(a[0], F_DUPFD_CLOEXEC, 100));
  fd_guard b_rd(::fcntl(b[0], F_DUPFD_CLOEXEC, 100));
  int a_wr_hi = ::fcntl(a[1], F_DUPFD_CLOEXEC, 100);
  int b_wr_hi = ::fcntl(b[1], F_DUPFD_CLOEXEC, 100);
  for (int fd : {a[0], a[1], b[0], b[1]})
    ::close(fd);
  REQUIRE(::dup3(a_wr_hi, 3, O_CLOEXEC) == 3);
  REQUIRE(::dup3(b_wr_hi, 4, O_CLOEXEC) == 4);
  ::close(a_wr_hi);
  ::close(b_wr_hi);
  std::string a_link = link_of(3), b_link = link_of(4);
  REQUIRE(a_link != b_link);

  auto r = test::run(
      test::helper_cmd({"fdinfo", "3", "fdinfo", "4", "write", "3",
                        "to child 3", "write", "4", "to child 4", "fds"})
          .map_fd(3, 4)
          .map_fd(4, 3));
  ::close(3);
  ::close(4);
  REQUIRE_FALSE(r.ec);
  CHECK(r.out ==
        "fd 3 -> " + b_link + "\nfd 4 -> " + a_link + "\nfds=0 1 2 3 4\n");
  CHECK(test::proc::read_to_eof(b_rd.fd) == "to child 3");
  CHECK(test::proc::read_to_eof(a_rd.fd) == "to child 4");
  CHECK(test::open_fds().count(3) == 0);
  CHECK(test::open_fds().count(4) == 0);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("stdio and map sources are all read before any target is written",
          "[steps][fd]") {
  // Targets 60 and 61; sources 63 and 62, just above the highest target,
  // where scratch copies of the sources would naturally go; stdin from 64.
  // A scratch copy must never be written over a source not yet read.
  auto before = test::open_fds();
  for (int fd = 60; fd <= 64; ++fd)
    REQUIRE(before.count(fd) == 0);
  test::pipe_pair p1, p2, in;
  {
    fd_guard s1(::fcntl(p1.wr, F_DUPFD_CLOEXEC, 63));
    fd_guard s2(::fcntl(p2.wr, F_DUPFD_CLOEXEC, 62));
    REQUIRE(::write(in.wr, "from stdin", 10) == 10);
    in.close_wr();
    fd_guard s_in(::fcntl(in.rd, F_DUPFD_CLOEXEC, 64));
    REQUIRE(s1.fd == 63);
    REQUIRE(s2.fd == 62);
    REQUIRE(s_in.fd == 64);
    auto out = output_of(test::helper_cmd({"cat", "write", "60", "child 60",
                                           "write", "61", "child 61", "fds"})
                             .stdin_(redirect::from_fd(64))
                             .map_fd(60, 63)
                             .map_fd(61, 62));
    CHECK(out == "from stdinfds=0 1 2 60 61\n");
  }
  CHECK(p1.read_all() == "child 60");
  CHECK(p2.read_all() == "child 61");
  CHECK_FALSE(test::has_children());
}

TEST_CASE("inherit_fd keeps a close-on-exec descriptor at its number",
          "[steps][fd]") {
  auto before = test::open_fds();
  {
    test::pipe_pair p;
    REQUIRE(test::is_cloexec(p.wr));
    std::string n = std::to_string(p.wr);

    // Without it the descriptor does not reach the child.
    auto out = output_of(test::helper_cmd({"fdinfo", n, "fds"}));
    CHECK(out == "fd " + n + " closed\nfds=0 1 2\n");

    out = output_of(
        test::helper_cmd({"write", n, "inherited", "fds"}).inherit_fd(p.wr));
    CHECK(out == fds_line({0, 1, 2, p.wr}));
    // The child changed its own table, not the parent's.
    CHECK(test::is_cloexec(p.wr));
    CHECK(p.read_all() == "inherited");
  }
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("close_fd closes a descriptor in the child only", "[steps][fd]") {
  auto before = test::open_fds();
  {
    fd_guard keep(inheritable_null(40));
    fd_guard drop(inheritable_null(keep.fd + 1));
    REQUIRE(test::open_fds().count(500) == 0);
    std::string out = output_of(test::helper_cmd({"fds"})
                                    .close_other_fds(false)
                                    .close_fd(drop.fd)
                                    .close_fd(500)); // not open: fine
    std::set<int> expected{0, 1, 2};
    for (int fd : test::open_fds())
      if (!test::is_cloexec(fd) && fd != drop.fd)
        expected.insert(fd);
    CHECK(expected.count(keep.fd) == 1);
    CHECK(out == fds_line(expected));
    CHECK(test::open_fds().count(drop.fd) == 1);

    // Mapped fds survive close_other_fds; a closed one does not.
    test::pipe_pair p;
    out =
        output_of(test::helper_cmd({"fds"}).map_fd(9, p.wr).close_fd(keep.fd));
    CHECK(out == "fds=0 1 2 9\n");
  }
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("the child sees only 0, 1, 2 and the descriptors it is given",
          "[steps][fd]") {
  auto before = test::open_fds();
  {
    struct rlimit rl;
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &rl) == 0);
    std::vector<int> wanted = {5, 64, 1000};
    if (rl.rlim_cur > 2000 && rl.rlim_cur != RLIM_INFINITY)
      wanted.push_back(
          static_cast<int>(std::min<rlim_t>(rl.rlim_cur - 1, 65535)));
    std::vector<std::unique_ptr<fd_guard>> extra;
    std::vector<int> spots;
    for (int at : wanted) {
      extra.push_back(std::make_unique<fd_guard>(inheritable_null(at)));
      spots.push_back(extra.back()->fd);
    }

    CHECK(output_of(test::helper_cmd({"fds"})) == "fds=0 1 2\n");
    CHECK(output_of(test::helper_cmd({"fds"}).inherit_fd(spots[1])) ==
          fds_line({0, 1, 2, spots[1]}));
    CHECK(output_of(test::helper_cmd({"fds"}).map_fd(7, spots[2])) ==
          "fds=0 1 2 7\n");

    SECTION("close_other_fds(false) keeps every inheritable descriptor") {
      std::set<int> expected{0, 1, 2};
      for (int fd : test::open_fds())
        if (!test::is_cloexec(fd))
          expected.insert(fd);
      for (int at : spots)
        REQUIRE(expected.count(at) == 1);
      CHECK(output_of(test::helper_cmd({"fds"}).close_other_fds(false)) ==
            fds_line(expected));
      // Close-on-exec ones still vanish at exec; a map adds its target.
      test::pipe_pair p;
      REQUIRE(expected.count(77) == 0);
      expected.insert(77);
      CHECK(output_of(test::helper_cmd({"fds"}).close_other_fds(false).map_fd(
                77, p.wr)) == fds_line(expected));
    }
  }
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("other descriptors are closed on kernels without "
          "CLOSE_RANGE_CLOEXEC or close_range",
          "[steps][fd]") {
  // The child's last step marks the descriptors close-on-exec in one call
  // (Linux 5.11); refused (5.9, 5.10) it closes them with close_range, and
  // without close_range it walks /proc/self/fd. Older kernels are played
  // by a seccomp filter installed by an earlier step.
  auto before = test::open_fds();
  {
    fd_guard low(inheritable_null(5));
    fd_guard high(inheritable_null(300));
    for (bool missing : {false, true}) {
      INFO((missing ? "no close_range" : "CLOSE_RANGE_CLOEXEC refused"));
      std::vector<sock_filter> filter = old_close_range_filter(missing);
      sock_fprog prog{static_cast<unsigned short>(filter.size()),
                      filter.data()};
      auto cmd = [&] {
        return test::helper_cmd({"fds"}).child_function(install_filter, &prog,
                                                        sizeof prog);
      };
      CHECK(output_of(cmd()) == "fds=0 1 2\n");
      CHECK(output_of(cmd().inherit_fd(high.fd)) ==
            fds_line({0, 1, 2, high.fd}));
      CHECK(output_of(cmd().map_fd(9, low.fd)) == "fds=0 1 2 9\n");
    }
  }
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("no descriptor leaks into children while another thread opens "
          "and closes inheritable ones",
          "[steps][fd][threads]") {
  auto before = test::open_fds();
  std::atomic<bool> stop{false};
  std::atomic<long> churned{0};
  std::thread churn([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      int fds[4];
      for (int& fd : fds)
        fd = ::open("/dev/null", O_RDONLY); // no O_CLOEXEC on purpose
      int hi = ::fcntl(fds[0], F_DUPFD, 200);
      for (int fd : fds)
        if (fd >= 0)
          ::close(fd);
      if (hi >= 0)
        ::close(hi);
      churned.fetch_add(1, std::memory_order_relaxed);
    }
  });
  // Let the churn get going before the first launch.
  while (churned.load() < 10)
    std::this_thread::yield();

  int bad = 0;
  std::string first_bad;
  {
    io_context ctx;
    auto cmd = test::helper_cmd({"fds"});
    for (int i = 0; i < 200; ++i) {
      test::pipe_pair p;
      auto c = cmd;
      c.stdout_(redirect::from_fd(p.wr));
      aspawn::error_code err;
      int code = -1;
      aspawn::async_execute(ctx, c, [&](aspawn::error_code ec, int rc) {
        err = ec;
        code = rc;
      });
      ctx.restart();
      ctx.run();
      std::string out = p.read_all();
      if (err || code != 0 || out != "fds=0 1 2\n") {
        if (bad++ == 0)
          first_bad =
              err.message() + " / " + std::to_string(code) + " / " + out;
      }
    }
  }
  stop = true;
  churn.join();
  INFO("first bad launch: " << first_bad);
  CHECK(bad == 0);
  CHECK(churned.load() > 10);
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("map_fd from a descriptor that is not open fails the dup step",
          "[steps][fd][errors]") {
  REQUIRE(test::open_fds().count(901) == 0);
  auto ec = test::expect_step_failure(test::helper_cmd({"fds"}).map_fd(5, 901),
                                step_kind::dup, EBADF);
  CHECK(aspawn::failed_step(ec) == 0);

  // A target beyond the descriptor limit: the launch fails in the child
  // (it is not reported as a success of a child that never exec'd).
  struct rlimit rl;
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &rl) == 0);
  if (rl.rlim_cur < 1000000) {
    auto before = test::open_fds();
    test::pipe_pair p;
    int code = -1;
    auto err = test::run_error(test::helper_cmd({"fds"}).map_fd(
                                   static_cast<int>(rl.rlim_cur) + 10, p.wr),
                               &code);
    INFO(err.message() << ", exit code " << code);
    CHECK(err.category() == aspawn::child_category());
    CHECK(aspawn::failed_step_kind(err) == step_kind::dup);
    CHECK(aspawn::child_errno(err) != 0);
    CHECK(code == -1);
    p.close_rd();
    p.close_wr();
    CHECK(test::open_fds() == before);
    CHECK_FALSE(test::has_children());
  } else {
    WARN("RLIMIT_NOFILE is too high for the beyond-the-limit case");
  }
}

// ---- working directory -----------------------------------------------------

TEST_CASE("chdir and chdir_fd set the child's working directory",
          "[steps][chdir]") {
  test::temp_dir dir("aspawn-steps-");
  REQUIRE(::mkdir((dir / "sub").c_str(), 0755) == 0);
  char cwd[PATH_MAX];
  REQUIRE(::getcwd(cwd, sizeof cwd) != nullptr);
  auto before = test::open_fds();

  CHECK(output_of(test::helper_cmd({"cwd"}).chdir(dir.path)) ==
        "cwd=" + dir.path + "\n");
  // Steps run in order: a relative path starts from the previous chdir.
  CHECK(output_of(test::helper_cmd({"cwd"}).chdir(dir.path).chdir("sub")) ==
        "cwd=" + dir.path + "/sub\n");
  {
    fd_guard d(
        ::open((dir / "sub").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    CHECK(output_of(test::helper_cmd({"cwd", "fds"}).chdir_fd(d.fd)) ==
          "cwd=" + dir.path + "/sub\nfds=0 1 2\n");
  }
  {
    // The directory at 3 and 6, the first numbers above the highest
    // target (2, then 5): where the scratch copy of a dup source would go.
    // No scratch copy may be written over a descriptor a step reads.
    REQUIRE(test::open_fds().count(3) == 0);
    REQUIRE(test::open_fds().count(6) == 0);
    int raw = ::open((dir / "sub").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    REQUIRE(raw >= 0);
    if (raw != 3) {
      REQUIRE(::dup3(raw, 3, O_CLOEXEC) == 3);
      ::close(raw);
    }
    fd_guard d(3);
    fd_guard d6(::dup3(3, 6, O_CLOEXEC));
    CHECK(output_of(test::helper_cmd({"cwd"}).chdir_fd(3)) ==
          "cwd=" + dir.path + "/sub\n");
    test::pipe_pair p;
    CHECK(output_of(test::helper_cmd({"cwd", "write", "5", "mapped"})
                        .map_fd(5, p.wr)
                        .chdir_fd(6)) == "cwd=" + dir.path + "/sub\n");
    CHECK(p.read_all() == "mapped");
  }
  // The parent stays where it was.
  char after[PATH_MAX];
  REQUIRE(::getcwd(after, sizeof after) != nullptr);
  CHECK(std::string(after) == cwd);
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a chdir that cannot be done fails its step and leaves nothing",
          "[steps][chdir][errors]") {
  test::temp_dir dir("aspawn-steps-");
  SECTION("a missing directory is ENOENT") {
    auto ec =
        test::expect_step_failure(test::helper_cmd({"cwd"}).chdir(dir / "missing"),
                            step_kind::chdir, ENOENT);
    CHECK(aspawn::failed_step(ec) == 0);
    CHECK(ec == boost::system::errc::no_such_file_or_directory);
    CHECK(ec.message().find("step 0 (chdir)") != std::string::npos);
  }
  SECTION("a file is ENOTDIR") {
    fd_guard f(
        ::open((dir / "file").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    test::expect_step_failure(test::helper_cmd({"cwd"}).chdir(dir / "file"),
                        step_kind::chdir, ENOTDIR);
    test::expect_step_failure(test::helper_cmd({"cwd"}).chdir_fd(f.fd),
                        step_kind::fchdir, ENOTDIR);
  }
  SECTION("a descriptor that is not open is EBADF") {
    REQUIRE(test::open_fds().count(902) == 0);
    test::expect_step_failure(test::helper_cmd({"cwd"}).chdir_fd(902),
                        step_kind::fchdir, EBADF);
  }
  SECTION("the failing step is named by its index") {
    auto ec = test::expect_step_failure(test::helper_cmd({"cwd"})
                                      .stdin_(redirect::null())
                                      .umask(022)
                                      .chdir(dir.path)
                                      .chdir("missing"),
                                  step_kind::chdir, ENOENT);
    CHECK(aspawn::failed_step(ec) == 3);
  }
}

// ---- environment -----------------------------------------------------------

TEST_CASE("the environment is inherited by default, with edits",
          "[steps][env]") {
  // Variables the test runner put in this process's environment.
  const std::string helper = test::helper();
  const std::string srcdir = test::srcdir();
  auto before = test::open_fds();

  CHECK(output_of(test::helper_cmd({"getenv", "ASPAWN_TEST_SRCDIR"})) ==
        "ASPAWN_TEST_SRCDIR=" + srcdir + "\n");

  // Exactly the parent's environment.
  std::vector<std::string> parent;
  for (char** e = environ; *e; ++e)
    parent.push_back(std::string("env:") + *e);
  std::sort(parent.begin(), parent.end());
  CHECK(sorted_lines(output_of(test::helper_cmd({"env"}))) == parent);

  // Edits: set replaces, unset removes, entry splits at the first '='.
  auto cmd = test::helper_cmd({"env"})
                 .env_set("ASPAWN_TEST_SRCDIR", "child value")
                 .env_unset("ASPAWN_TEST_HELPER")
                 .env_entry("ASPAWN_STEPS_C=x=y")
                 .env_set("ASPAWN_STEPS_D", "");
  std::vector<std::string> expected;
  for (auto& l : parent)
    if (l.rfind("env:ASPAWN_TEST_SRCDIR=", 0) != 0 &&
        l.rfind("env:ASPAWN_TEST_HELPER=", 0) != 0)
      expected.push_back(l);
  expected.push_back("env:ASPAWN_TEST_SRCDIR=child value");
  expected.push_back("env:ASPAWN_STEPS_C=x=y");
  expected.push_back("env:ASPAWN_STEPS_D=");
  std::sort(expected.begin(), expected.end());
  CHECK(sorted_lines(output_of(cmd)) == expected);

  // The last word on a key wins.
  CHECK(output_of(test::helper_cmd({"getenv", "ASPAWN_TEST_SRCDIR"})
                      .env_set("ASPAWN_TEST_SRCDIR", "one")
                      .env_unset("ASPAWN_TEST_SRCDIR")) ==
        "ASPAWN_TEST_SRCDIR unset\n");
  CHECK(output_of(test::helper_cmd({"getenv", "ASPAWN_TEST_SRCDIR"})
                      .env_unset("ASPAWN_TEST_SRCDIR")
                      .env_set("ASPAWN_TEST_SRCDIR", "two")) ==
        "ASPAWN_TEST_SRCDIR=two\n");
  // A key that is a prefix of another touches only itself.
  CHECK(output_of(test::helper_cmd(
                      {"getenv", "ASPAWN_TEST", "getenv", "ASPAWN_TEST_HELPER"})
                      .env_unset("ASPAWN_TEST")
                      .env_unset("ASPAWN_TEST_HELPE")) ==
        "ASPAWN_TEST unset\nASPAWN_TEST_HELPER=" + helper + "\n");
  CHECK(output_of(test::helper_cmd(
                      {"getenv", "ASPAWN_TEST", "getenv", "ASPAWN_TEST_HELPER"})
                      .env_set("ASPAWN_TEST", "short")) ==
        "ASPAWN_TEST=short\nASPAWN_TEST_HELPER=" + helper + "\n");
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

namespace {

// In a forked copy of this process (so that this one's environment stays
// as it is): changes the environment with setenv, launches the helper's
// `getenv` with or without an environment edit, and returns what it
// printed, or the launch error.
std::string launch_after_setenv(bool with_edit) {
  int report[2];
  REQUIRE(::pipe2(report, O_CLOEXEC) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(report[0]);
    ::setenv("ASPAWN_STEPS_LATE", "set after start", 1);
    aspawn::command cmd(test::helper(), {"getenv", "ASPAWN_STEPS_LATE"});
    if (with_edit)
      cmd.env_set("ASPAWN_STEPS_OTHER", "1");
    cmd.stdout_(redirect::from_fd(report[1]));
    aspawn::error_code err;
    {
      io_context ctx;
      aspawn::async_execute(ctx, cmd,
                            [&](aspawn::error_code ec, int) { err = ec; });
      ctx.run();
    }
    if (err) {
      std::string msg = "launch failed: " + err.message();
      (void)!::write(report[1], msg.data(), msg.size());
    }
    ::_exit(0);
  }
  ::close(report[1]);
  std::string out = test::proc::read_to_eof(report[0]);
  ::close(report[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(status == 0);
  return out;
}

} // namespace

TEST_CASE("the environment is read at launch, also after setenv in the "
          "parent",
          "[steps][env]") {
  // setenv moves `environ` from the initial stack to the heap.
  CHECK(launch_after_setenv(true) == "ASPAWN_STEPS_LATE=set after start\n");
  CHECK(launch_after_setenv(false) == "ASPAWN_STEPS_LATE=set after start\n");
  CHECK_FALSE(test::has_children());
}

TEST_CASE("env_clear starts from an empty environment", "[steps][env]") {
  CHECK(output_of(test::helper_cmd({"env"}).env_clear()).empty());
  CHECK(sorted_lines(output_of(test::helper_cmd({"env"})
                                   .env_clear()
                                   .env_set("ONE", "1")
                                   .env_set("TWO", "2")
                                   .env_entry("THREE=3")
                                   .env_set("ONE", "uno")
                                   .env_unset("TWO"))) ==
        std::vector<std::string>{"env:ONE=uno", "env:THREE=3"});
  // env_clear drops the edits made before it; env_inherit brings the
  // parent's environment back.
  CHECK(output_of(test::helper_cmd({"env"}).env_set("GONE", "1").env_clear()) ==
        "");
  CHECK(output_of(
            test::helper_cmd({"getenv", "ASPAWN_TEST_SRCDIR", "getenv", "KEPT"})
                .env_clear()
                .env_set("KEPT", "yes")
                .env_inherit()) ==
        "ASPAWN_TEST_SRCDIR=" + test::srcdir() + "\nKEPT=yes\n");
  CHECK_FALSE(test::has_children());
}

TEST_CASE("invalid environment entries are rejected before anything is "
          "cloned",
          "[steps][env][errors]") {
  using aspawn::errc;
  auto h = [] { return test::helper_cmd({"env"}); };
  test::expect_invalid(h().env_set("A=B", "x"), errc::bad_environment_entry);
  test::expect_invalid(h().env_set("", "x"), errc::bad_environment_entry);
  test::expect_invalid(h().env_entry("NO_EQUALS_SIGN"), errc::bad_environment_entry);
  test::expect_invalid(h().env_entry("=value"), errc::bad_environment_entry);
  test::expect_invalid(h().env_unset(""), errc::bad_environment_entry);
  test::expect_invalid(h().env_unset("A=B"), errc::bad_environment_entry);
  test::expect_invalid(h().env_set("A", std::string("x\0y", 3)), errc::embedded_nul);
  test::expect_invalid(h().env_set(std::string("A\0B", 3), "x"), errc::embedded_nul);
  test::expect_invalid(h().env_entry(std::string("A=x\0y", 5)), errc::embedded_nul);
  test::expect_invalid(h().env_unset(std::string("A\0B", 3)), errc::embedded_nul);
  // A valid edit after an invalid one does not clear the error.
  test::expect_invalid(h().env_set("", "x").env_set("OK", "1"),
                 errc::bad_environment_entry);
}

// ---- session, group, signals, umask, no_new_privs ---------------------------

TEST_CASE("new_session makes the child a session and group leader",
          "[steps][session]") {
  auto ids = parse_ids(output_of(test::helper_cmd({"ids"}).new_session()));
  REQUIRE(ids.count("pid"));
  CHECK(ids["sid"] == ids["pid"]);
  CHECK(ids["pgid"] == ids["pid"]);
  CHECK(ids["ppid"] == ::getpid());
  CHECK(::getsid(0) != ids["sid"]);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("process_group puts the child in a process group",
          "[steps][session]") {
  SECTION("0: a new group the child leads, in the parent's session") {
    auto ids = parse_ids(output_of(test::helper_cmd({"ids"}).process_group(0)));
    CHECK(ids["pgid"] == ids["pid"]);
    CHECK(ids["sid"] == ::getsid(0));
  }
  SECTION("an existing group of the session") {
    auto ids = parse_ids(
        output_of(test::helper_cmd({"ids"}).process_group(::getpgrp())));
    CHECK(ids["pgid"] == ::getpgrp());
  }
  SECTION("a session leader cannot change group: EPERM") {
    auto ec = test::expect_step_failure(
        test::helper_cmd({"ids"}).new_session().process_group(0),
        step_kind::setpgid, EPERM);
    CHECK(aspawn::failed_step(ec) == 1);
  }
  SECTION("a group outside the session: EPERM") {
    test::expect_step_failure(test::helper_cmd({"ids"}).process_group(2000000000),
                        step_kind::setpgid, EPERM);
  }
  CHECK_FALSE(test::has_children());
}

TEST_CASE("the signal mask and dispositions can be set for the child",
          "[steps][signals]") {
  using test::sigbit;
  SECTION("signal_mask replaces the inherited mask") {
    std::uint64_t mask = sigbit(SIGUSR1) | sigbit(SIGTERM) | sigbit(41);
    auto out = output_of(test::helper_cmd({"status"}).signal_mask(mask));
    CHECK(test::hex(test::field(out, "SigBlk")) == mask);
    out = output_of(test::helper_cmd({"status"}).signal_mask(0));
    CHECK(test::hex(test::field(out, "SigBlk")) == 0);
  }
  SECTION("by default the child has the launching thread's mask") {
    sigset_t add, old;
    sigemptyset(&add);
    sigaddset(&add, SIGUSR2);
    REQUIRE(::pthread_sigmask(SIG_BLOCK, &add, &old) == 0);
    auto out = output_of(test::helper_cmd({"status"}));
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    CHECK(test::hex(test::field(out, "SigBlk")) ==
          (to_bits(old) | sigbit(SIGUSR2)));
  }
  SECTION("signal_ignore and signal_default, in the order given") {
    std::uint64_t set = sigbit(SIGUSR1) | sigbit(SIGHUP) | sigbit(50);
    auto out = output_of(test::helper_cmd({"status"}).signal_ignore(set));
    CHECK((test::hex(test::field(out, "SigIgn")) & set) == set);

    // An ignored disposition of the parent survives exec unless reset.
    struct sigaction ign = {};
    struct sigaction old = {};
    ign.sa_handler = SIG_IGN;
    REQUIRE(::sigaction(SIGUSR2, &ign, &old) == 0);
    auto inherited = output_of(test::helper_cmd({"status"}));
    auto reset =
        output_of(test::helper_cmd({"status"}).signal_default(sigbit(SIGUSR2)));
    auto both = output_of(test::helper_cmd({"status"})
                              .signal_default(sigbit(SIGUSR2))
                              .signal_ignore(sigbit(SIGUSR2)));
    ::sigaction(SIGUSR2, &old, nullptr);
    CHECK((test::hex(test::field(inherited, "SigIgn")) & sigbit(SIGUSR2)) != 0);
    CHECK((test::hex(test::field(reset, "SigIgn")) & sigbit(SIGUSR2)) == 0);
    CHECK((test::hex(test::field(both, "SigIgn")) & sigbit(SIGUSR2)) != 0);

    out = output_of(test::helper_cmd({"status"})
                        .signal_ignore(sigbit(SIGUSR1))
                        .signal_default(sigbit(SIGUSR1)));
    CHECK((test::hex(test::field(out, "SigIgn")) & sigbit(SIGUSR1)) == 0);
  }
  SECTION("SIGKILL cannot be given a disposition") {
    // Rejected when the command is built, before anything is launched.
    CHECK(test::helper_cmd({"status"}).signal_default(sigbit(SIGKILL)).error() ==
          boost::system::errc::invalid_argument);
    CHECK(test::helper_cmd({"status"}).signal_ignore(sigbit(SIGKILL)).error() ==
          boost::system::errc::invalid_argument);
  }
  CHECK_FALSE(test::has_children());
}

TEST_CASE("umask sets the child's file mode creation mask", "[steps][umask]") {
  mode_t parent = ::umask(0);
  ::umask(parent);
  CHECK(test::field(output_of(test::helper_cmd({"status"}).umask(027)),
                    "Umask") == "0027");
  CHECK(test::field(output_of(test::helper_cmd({"status"}).umask(0)),
                    "Umask") == "0000");
  CHECK(test::field(output_of(test::helper_cmd({"status"}).umask(0777)),
                    "Umask") == "0777");
  // Only the permission bits are kept.
  CHECK(test::field(output_of(test::helper_cmd({"status"}).umask(07022)),
                    "Umask") == "0022");
  mode_t now = ::umask(0);
  ::umask(now);
  CHECK(now == parent);
}

TEST_CASE("no_new_privs sets the flag in the child only",
          "[steps][no_new_privs]") {
  if (::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 0) {
    WARN("this process already has no_new_privs");
    return;
  }
  CHECK(test::field(output_of(test::helper_cmd({"status"})), "NoNewPrivs") ==
        "0");
  CHECK(test::field(output_of(test::helper_cmd({"status"}).no_new_privs()),
                    "NoNewPrivs") == "1");
  CHECK(::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0);
}

// ---- limits, nice, affinity, parent death signal ---------------------------

TEST_CASE("limit sets a resource limit of the child", "[steps][limits]") {
  struct rlimit before;
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &before) == 0);
  REQUIRE(before.rlim_max >= 512);

  auto out =
      output_of(test::helper_cmd({"limits"}).limit({RLIMIT_NOFILE, 256, 512}));
  CHECK(limit_values(out, "Max open files") ==
        std::make_pair(std::string("256"), std::string("512")));
  // Several limits at once.
  out = output_of(test::helper_cmd({"limits"})
                      .limit({RLIMIT_NOFILE, 64, 64})
                      .limit({RLIMIT_CORE, 0, 0}));
  CHECK(limit_values(out, "Max open files").first == "64");
  CHECK(limit_values(out, "Max core file size") ==
        std::make_pair(std::string("0"), std::string("0")));

  struct rlimit after;
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &after) == 0);
  CHECK(after.rlim_cur == before.rlim_cur);
  CHECK(after.rlim_max == before.rlim_max);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a limit the kernel refuses fails the prlimit step",
          "[steps][limits][errors]") {
  // Above fs.nr_open no one may raise RLIMIT_NOFILE, root included.
  std::ifstream f("/proc/sys/fs/nr_open");
  std::uint64_t nr_open = 0;
  f >> nr_open;
  REQUIRE(nr_open > 0);
  auto ec = test::expect_step_failure(
      test::helper_cmd({"limits"}).limit({RLIMIT_NOFILE, 256, nr_open + 1}),
      step_kind::prlimit, EPERM);
  CHECK(aspawn::failed_step(ec) == 0);
  // A soft limit above the hard one is caught when the command is built.
  CHECK(test::helper_cmd({"limits"}).limit({RLIMIT_NOFILE, 10, 5}).error() ==
        boost::system::errc::invalid_argument);
}

TEST_CASE("nice sets the child's nice value", "[steps][nice]") {
  errno = 0;
  int parent = ::getpriority(PRIO_PROCESS, 0);
  REQUIRE(errno == 0);
  if (parent <= 7 || ::geteuid() == 0)
    CHECK(output_of(test::helper_cmd({"nice"}).nice(7)) == "nice=7\n");
  CHECK(output_of(test::helper_cmd({"nice"}).nice(19)) == "nice=19\n");
  CHECK(::getpriority(PRIO_PROCESS, 0) == parent);

  // Lowering the nice value needs privilege.
  if (::geteuid() == 0) {
    test::expect_step_failure(
        test::helper_cmd({"nice"}).gid(65534).uid(65534).nice(parent - 5),
        step_kind::nice, EACCES);
    CHECK(::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1);
  } else {
    test::expect_step_failure(test::helper_cmd({"nice"}).nice(parent - 5),
                        step_kind::nice, EACCES);
  }
}

TEST_CASE("cpu_affinity restricts the CPUs the child may run on",
          "[steps][affinity]") {
  auto cpus = allowed_cpus();
  REQUIRE_FALSE(cpus.empty());
  int first = cpus.front();
  if (first != 0)
    WARN("CPU 0 is not available; using CPU " << first);
  CHECK(output_of(test::helper_cmd({"affinity"}).cpu_affinity({first})) ==
        "affinity=" + std::to_string(first) + "\n");
  if (cpus.size() > 1) {
    std::vector<int> two{cpus[0], cpus[1]};
    CHECK(output_of(test::helper_cmd({"affinity"}).cpu_affinity(two)) ==
          "affinity=" + std::to_string(cpus[0]) + "," +
              std::to_string(cpus[1]) + "\n");
  }
  CHECK(allowed_cpus() == cpus);
  // No CPU the child could run on.
  test::expect_step_failure(test::helper_cmd({"affinity"}).cpu_affinity({8000}),
                      step_kind::affinity, EINVAL);
  CHECK(test::helper_cmd({"affinity"}).cpu_affinity({}).error() ==
        boost::system::errc::invalid_argument);
}

TEST_CASE("a parent death signal can be armed", "[steps][pdeathsig]") {
  auto out = output_of(
      test::helper_cmd({"echo", "armed"}).parent_death_signal(SIGKILL));
  CHECK(out == "armed\n");
  CHECK(test::helper_cmd({"echo"}).parent_death_signal(0).error() ==
        boost::system::errc::invalid_argument);
  CHECK_FALSE(test::has_children());
}

// ---- credentials -----------------------------------------------------------

TEST_CASE("credentials: groups, gid and uid", "[steps][credentials]") {
  REQUIRE(::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1);
  auto before = test::open_fds();
  if (::geteuid() != 0) {
    // Without privilege, becoming root is refused.
    test::expect_step_failure(test::helper_cmd({"status"}).uid(0),
                        step_kind::setresuid, EPERM);
    CHECK(::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1);
    WARN("not root: the successful credential changes were not tested");
    return;
  }
  SECTION("all three, in order") {
    auto out = output_of(
        test::helper_cmd({"status"}).groups({65534}).gid(65534).uid(65534));
    CHECK(test::field(out, "Uid") == "65534\t65534\t65534\t65534");
    CHECK(test::field(out, "Gid") == "65534\t65534\t65534\t65534");
    CHECK(test::field(out, "Groups").rfind("65534", 0) == 0);
    CHECK(test::field(out, "Groups").find_first_not_of("65534 ") ==
          std::string::npos);
  }
  SECTION("no supplementary groups") {
    auto out = output_of(test::helper_cmd({"status"}).groups({}).gid(123));
    CHECK(test::field(out, "Groups").find_first_not_of(' ') ==
          std::string::npos);
    CHECK(test::field(out, "Gid") == "123\t123\t123\t123");
    CHECK(test::field(out, "Uid").rfind("0\t", 0) == 0);
  }
  SECTION("after dropping the uid, changing the gid is refused") {
    auto ec =
        test::expect_step_failure(test::helper_cmd({"status"}).uid(65534).gid(1),
                            step_kind::setresgid, EPERM);
    CHECK(aspawn::failed_step(ec) == 1);
  }
  // The parent kept its identity and got its dumpable flag back.
  CHECK(::getuid() == 0);
  CHECK(::getgid() == 0);
  CHECK(::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1);
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

// ---- user functions --------------------------------------------------------

TEST_CASE("a child function runs in the child with its own copy of the data",
          "[steps][function]") {
  auto before = test::open_fds();
  SECTION("its output is the data") {
    std::string data("user data\0with a NUL\n", 21);
    auto cmd = test::helper_cmd({}).child_function(write_user_data, data.data(),
                                                   data.size());
    data.assign("changed"); // the command holds its own copy
    CHECK(output_of(cmd) == std::string("user data\0with a NUL\n", 21));
  }
  SECTION("large data") {
    std::string data(100 * 1024, '\0');
    for (std::size_t i = 0; i < data.size(); ++i)
      data[i] = static_cast<char>('a' + i % 26);
    CHECK(output_of(test::helper_cmd({}).child_function(
              write_user_data, data.data(), data.size())) == data);
  }
  SECTION("no data") {
    CHECK(output_of(test::helper_cmd({"echo", "after"})
                        .child_function(write_user_data)) == "after\n");
  }
  SECTION("each launch gets a fresh copy it may change") {
    auto cmd = test::helper_cmd({}).child_function(bump_and_write, "HAL", 3);
    CHECK(output_of(cmd) == "IBM");
    CHECK(output_of(cmd) == "IBM");
    cmd.prepare();
    CHECK(output_of(cmd) == "IBM");
    CHECK(output_of(cmd) == "IBM");
  }
  SECTION("it runs among the steps, in order") {
    // stdout is already redirected when the function runs, and the
    // functions run in the order they were added.
    auto out = output_of(test::helper_cmd({"echo", "exec"})
                             .child_function(write_user_data, "one ", 4)
                             .child_function(write_user_data, "two ", 4));
    CHECK(out == "one two exec\n");
  }
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a child function that returns -EPERM stops the launch",
          "[steps][function][errors]") {
  test::temp_dir dir("aspawn-steps-");
  auto ec = test::expect_step_failure(test::helper_cmd({"echo", "never"})
                                    .chdir(dir.path)
                                    .child_function(refuse),
                                step_kind::user_function, EPERM);
  CHECK(aspawn::failed_step(ec) == 1);
  CHECK(ec == boost::system::errc::operation_not_permitted);
  // Nothing after it ran, the exec included.
  auto r = test::run(test::helper_cmd({"echo", "never"})
                         .child_function(write_user_data, "before", 6)
                         .child_function(refuse)
                         .child_function(write_user_data, "after", 5));
  CHECK(aspawn::failed_step_kind(r.ec) == step_kind::user_function);
  CHECK(r.out == "before");
  CHECK_FALSE(test::has_children());
}

// ---- bad input -------------------------------------------------------------

TEST_CASE("bad input is recorded and launching fails before anything is "
          "cloned",
          "[steps][errors]") {
  using aspawn::errc;
  test::pipe_pair p;
  SECTION("an embedded NUL in an argument") {
    test::expect_invalid(test::helper_cmd({"echo"}).arg(std::string("a\0b", 3)),
                   errc::embedded_nul);
    test::expect_invalid(test::helper_cmd({"echo", std::string_view("x\0", 2)}),
                   errc::embedded_nul);
    test::expect_invalid(test::helper_cmd({"echo"}).argv0(std::string("\0", 1)),
                   errc::embedded_nul);
    test::expect_invalid(test::helper_cmd({"cwd"}).chdir(std::string("/\0tmp", 5)),
                   errc::embedded_nul);
  }
  SECTION("a negative descriptor") {
    test::expect_invalid(test::helper_cmd({"fds"}).map_fd(-1, p.wr), errc::bad_fd);
    test::expect_invalid(test::helper_cmd({"fds"}).map_fd(5, -1), errc::bad_fd);
    test::expect_invalid(test::helper_cmd({"fds"}).inherit_fd(-3), errc::bad_fd);
    test::expect_invalid(test::helper_cmd({"fds"}).close_fd(-1), errc::bad_fd);
    test::expect_invalid(test::helper_cmd({"cwd"}).chdir_fd(-1), errc::bad_fd);
  }
  SECTION("two actions on one target") {
    test::expect_invalid(test::helper_cmd({"fds"}).map_fd(5, p.wr).map_fd(5, p.rd),
                   errc::duplicate_target_fd);
    test::expect_invalid(
        test::helper_cmd({"fds"}).inherit_fd(p.wr).map_fd(p.wr, p.rd),
        errc::duplicate_target_fd);
    test::expect_invalid(
        test::helper_cmd({"fds"}).stdout_(redirect::null()).map_fd(1, p.wr),
        errc::duplicate_target_fd);
    // Closing a mapped target contradicts the map.
    test::expect_invalid(test::helper_cmd({"fds"}).map_fd(5, p.wr).close_fd(5),
                   errc::conflicting_options);
  }
  SECTION("the first error sticks") {
    auto cmd = test::helper_cmd({"fds"})
                   .map_fd(-1, 3)
                   .arg(std::string("\0", 1))
                   .map_fd(5, p.wr)
                   .map_fd(5, p.wr);
    test::expect_invalid(cmd, errc::bad_fd);
    CHECK(cmd.prepare() == errc::bad_fd);
  }
  CHECK_FALSE(test::has_children());
}
