// The foreground step (tcsetpgrp): a launched child's process group made the
// foreground group of a terminal, and the failures of the step.
//
// The test process has no controlling terminal it could give away, so the
// success path runs inside aspawn-test-tty-leader (test/tty_leader.cpp): a
// session leader whose controlling terminal is a new pty, which launches the
// helper with the step and reports what it saw.
#include "common.hpp"

#include <cerrno>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>

using aspawn::command;
using aspawn::redirect;
using aspawn::step_kind;

namespace {

// An owned descriptor.
struct owned_fd {
  int fd = -1;
  explicit owned_fd(int f) : fd(f) { REQUIRE(fd >= 0); }
  owned_fd(const owned_fd&) = delete;
  owned_fd& operator=(const owned_fd&) = delete;
  ~owned_fd() {
    if (fd >= 0)
      ::close(fd);
  }
};

// The session leader program: $ASPAWN_TEST_TTY_LEADER, or next to the
// helper.
std::string tty_leader() {
  if (const char* p = std::getenv("ASPAWN_TEST_TTY_LEADER"))
    return p;
  std::string h = test::helper();
  auto slash = h.rfind('/');
  REQUIRE(slash != std::string::npos);
  return h.substr(0, slash + 1) + "aspawn-test-tty-leader";
}

// The leader's report: line name -> key -> value.
using leader_report = std::map<std::string, std::map<std::string, std::string>>;

leader_report parse_report(const std::string& out) {
  leader_report r;
  for (auto& l : test::lines(out)) {
    std::istringstream in(l);
    std::string name, tok;
    in >> name;
    auto& fields = r[name];
    while (in >> tok) {
      auto eq = tok.find('=');
      if (eq != std::string::npos)
        fields[tok.substr(0, eq)] = tok.substr(eq + 1);
    }
  }
  return r;
}

long num(leader_report& r, const std::string& line, const std::string& key) {
  INFO("report line '" << line << "', key '" << key << "'");
  REQUIRE(r.count(line));
  REQUIRE(r[line].count(key));
  return std::stol(r[line][key]);
}

// Runs the leader in a new session with `mode`; returns its report.
leader_report run_leader(const std::string& mode) {
  auto before = test::open_fds();
  auto res = test::run(command(tty_leader(), {test::helper(), mode})
                           .new_session()
                           .stdin_(redirect::null()));
  INFO("leader launch: " << res.ec.message() << "\nleader output:\n"
                         << res.out);
  REQUIRE_FALSE(res.ec);
  REQUIRE(res.code == 0);
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
  auto r = parse_report(res.out);
  // The leader leads its own session, with the pty as controlling terminal,
  // and is the terminal's foreground group before the launch.
  long leader = num(r, "leader", "pid");
  CHECK(num(r, "leader", "pgid") == leader);
  CHECK(num(r, "leader", "sid") == leader);
  CHECK(num(r, "leader", "ctty_sid") == leader);
  CHECK(num(r, "before", "tpgid") == leader);
  // The launch left nothing behind in the leader either.
  CHECK(num(r, "leftover", "children") == 0);
  CHECK(num(r, "leftover", "fds_changed") == 0);
  return r;
}

// Checks a successful foreground launch reported by the leader.
void check_moved_to_foreground(leader_report& r) {
  INFO("launch: step=" << r["launch"]["step"]);
  REQUIRE(num(r, "launch", "failed") == 0);
  CHECK(num(r, "launch", "code") == 0);
  long leader = num(r, "leader", "pid");
  long child = num(r, "child", "pid");
  CHECK(num(r, "child", "ppid") == leader);
  // A new group, in the leader's session...
  CHECK(num(r, "child", "pgid") == child);
  CHECK(num(r, "child", "pgid") != leader);
  CHECK(num(r, "child", "sid") == leader);
  // ... which the child, once running, finds in the foreground, where the
  // leader's group was before.
  CHECK(num(r, "child", "tpgid") == child);
  CHECK(num(r, "child", "tpgid") != num(r, "before", "tpgid"));
  // It stays the foreground group until someone changes it.
  CHECK(num(r, "after", "tpgid") == child);
}

} // namespace

TEST_CASE("foreground makes the child's group the terminal's foreground "
          "group",
          "[steps][terminal]") {
  SECTION("given the terminal's slave descriptor") {
    auto r = run_leader("slave");
    check_moved_to_foreground(r);
  }
  SECTION("given the pty master descriptor") {
    auto r = run_leader("master");
    check_moved_to_foreground(r);
  }
}

TEST_CASE("foreground fails with ENOTTY for a terminal that is not the "
          "child's controlling terminal",
          "[steps][terminal][errors]") {
  SECTION("a child in a new session has no controlling terminal") {
    auto r = run_leader("new-session");
    CHECK(num(r, "launch", "failed") == 1);
    CHECK(r["launch"]["step"] == "tcsetpgrp");
    CHECK(num(r, "launch", "errno") == ENOTTY);
    CHECK(num(r, "launch", "code") == -1);
    CHECK(r.count("child") == 0); // the helper never ran
    // The terminal is left as it was.
    CHECK(num(r, "after", "tpgid") == num(r, "before", "tpgid"));
  }
  SECTION("a pty the launching process does not have as its terminal") {
    owned_fd master(::posix_openpt(O_RDWR | O_NOCTTY));
    REQUIRE(::fcntl(master.fd, F_SETFD, FD_CLOEXEC) == 0);
    REQUIRE(::grantpt(master.fd) == 0);
    REQUIRE(::unlockpt(master.fd) == 0);
    const char* name = ::ptsname(master.fd);
    REQUIRE(name != nullptr);
    owned_fd slave(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
    REQUIRE(::isatty(slave.fd) == 1);
    test::expect_step_failure(
        test::helper_cmd({"ids"}).process_group(0).foreground(slave.fd),
        step_kind::tcsetpgrp, ENOTTY);
    test::expect_step_failure(
        test::helper_cmd({"ids"}).process_group(0).foreground(master.fd),
        step_kind::tcsetpgrp, ENOTTY);
  }
}

TEST_CASE("foreground on a descriptor that is not a terminal fails the "
          "launch with ENOTTY",
          "[steps][terminal][errors]") {
  SECTION("/dev/null") {
    owned_fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    auto ec = test::expect_step_failure(
        test::helper_cmd({"ids"}).process_group(0).foreground(null.fd),
        step_kind::tcsetpgrp, ENOTTY);
    CHECK(aspawn::failed_step(ec) >= 1); // after the setpgid step
  }
  SECTION("a pipe") {
    test::pipe_pair p;
    test::expect_step_failure(test::helper_cmd({"ids"}).foreground(p.rd),
                              step_kind::tcsetpgrp, ENOTTY);
    test::expect_step_failure(test::helper_cmd({"ids"}).foreground(p.wr),
                              step_kind::tcsetpgrp, ENOTTY);
  }
  SECTION("a descriptor that is not open: EBADF") {
    // High enough that no descriptor the launch itself opens can take it.
    const int fd = 900000;
    REQUIRE(::fcntl(fd, F_GETFD) == -1);
    REQUIRE(errno == EBADF);
    test::expect_step_failure(test::helper_cmd({"ids"}).foreground(fd),
                              step_kind::tcsetpgrp, EBADF);
  }
  SECTION("a negative descriptor is rejected before anything is cloned") {
    test::expect_invalid(test::helper_cmd({"ids"}).foreground(-1),
                         aspawn::errc::bad_fd);
  }
  CHECK_FALSE(test::has_children());
}
