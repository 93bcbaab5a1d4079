// Children that must not outlive this program: kill_on_parent_death, and the
// exit status of children the kernel reaps itself.
#include "common.hpp"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cstdlib>
#include <string>

using aspawn::command;
using test::asio::io_context;

namespace {

// The program that exits under its child: $ASPAWN_TEST_ORPHAN_PARENT, or
// next to the helper.
std::string orphan_parent() {
  if (const char* p = std::getenv("ASPAWN_TEST_ORPHAN_PARENT"))
    return p;
  std::string h = test::helper();
  return h.substr(0, h.rfind('/') + 1) + "aspawn-test-orphan-parent";
}

// Makes this process the reaper of orphaned descendants for a test's
// duration, so that a grandchild whose parent exited can be waited for here.
struct subreaper {
  subreaper() { REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0); }
  ~subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0); }
};

struct orphan {
  int pid = -1;
  std::string mechanism;
};

// Runs the orphan parent in `mode`; returns the child it left behind.
orphan make_orphan(const std::string& mode) {
  auto r = test::run(command(orphan_parent(), {test::helper(), mode}));
  REQUIRE_FALSE(r.ec);
  INFO("orphan parent output: " << r.out);
  REQUIRE(r.code == 0);
  orphan o;
  auto sp = r.out.find(' ');
  REQUIRE(r.out.rfind("child=", 0) == 0);
  REQUIRE(sp != std::string::npos);
  o.pid = std::stoi(r.out.substr(6, sp - 6));
  o.mechanism = r.out.substr(r.out.find("mechanism=") + 10);
  if (!o.mechanism.empty() && o.mechanism.back() == '\n')
    o.mechanism.pop_back();
  return o;
}

// Waits up to `ms` for the (adopted) orphan to end; returns its wait
// status, or -1 if it is still running.
int wait_orphan(int pid, int ms) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0)
    return errno == ESRCH ? 0 : -2; // gone and reaped already
  pollfd p{fd, POLLIN, 0};
  int n = ::poll(&p, 1, ms);
  ::close(fd);
  if (n == 0)
    return -1;
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid)
    return 0; // reaped by the kernel (CLONE_AUTOREAP)
  return status;
}

} // namespace

TEST_CASE("kill_on_parent_death: the child dies with the program that "
          "launched it",
          "[lifetime]") {
  subreaper adopt_orphans;
  auto mode = GENERATE(std::string("kill"), std::string("kill-nnp"),
                       std::string("kill-pdeathsig"));
  INFO("mode " << mode);
  orphan o = make_orphan(mode);
  INFO("mechanism " << o.mechanism);
  if (mode == "kill-pdeathsig")
    CHECK(o.mechanism == "pdeathsig");
  else
    CHECK((o.mechanism == "pdeathsig" || o.mechanism == "autokill"));
  int status = wait_orphan(o.pid, 10000);
  REQUIRE(status != -1); // it did not outlive its parent
  if (o.mechanism == "pdeathsig") {
    // Reparented to this process, which reaps it: killed by SIGKILL.
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
  }
  CHECK_FALSE(test::has_children());
}

TEST_CASE("kill_on_parent_death survives credential steps given after it",
          "[lifetime]") {
  if (::geteuid() != 0) {
    WARN("skipped: changing the child's uid needs root");
    return;
  }
  subreaper adopt_orphans;
  orphan o = make_orphan("kill-uid");
  CHECK(o.mechanism == "pdeathsig");
  int status = wait_orphan(o.pid, 10000);
  REQUIRE(status != -1); // it did not outlive its parent
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("without kill_on_parent_death the child outlives its parent",
          "[lifetime]") {
  subreaper adopt_orphans;
  orphan o = make_orphan("none");
  CHECK(o.mechanism == "unknown");
  CHECK(wait_orphan(o.pid, 300) == -1); // still running
  CHECK(::kill(o.pid, SIGKILL) == 0);
  int status = wait_orphan(o.pid, 10000);
  CHECK(WIFSIGNALED(status));
  CHECK_FALSE(test::has_children());
}

TEST_CASE("kill_on_parent_death leaves a child alone while its parent lives",
          "[lifetime]") {
  io_context ctx;
  command cmd(test::helper(), {"exit", "7"});
  cmd.kill_on_parent_death();
  int code = -1;
  aspawn::async_execute(ctx, cmd, [&](error_code ec, int c) {
    CHECK_FALSE(ec);
    code = c;
  });
  ctx.run();
  CHECK(code == 7); // a normal exit, status delivered either way
  CHECK(aspawn::kill_on_parent_death_mechanism() !=
        aspawn::parent_death_mechanism::unknown);
  CHECK_FALSE(test::has_children());

  // The same through the Boost.Process v2 style initializer.
  aspawn::process p(ctx, test::helper(), {"exit", "9"},
                    aspawn::process_kill_on_parent_death{});
  CHECK(p.wait() == 9);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("the exit status of a child the kernel reaps itself comes from "
          "PIDFD_GET_INFO",
          "[lifetime]") {
  // A child reaped the usual way leaves its exit information in the pidfd
  // (Linux 6.15): reading it like an autoreaped child's must give the
  // same status.
  aspawn::stack_cache stacks;
  for (int expected : {0, 42 << 8, SIGKILL}) {
    command cmd(test::helper());
    if (expected == SIGKILL)
      cmd.args({"raise", "9"});
    else
      cmd.args({"exit", std::to_string(expected >> 8)});
    aspawn::launched l;
    REQUIRE_FALSE(aspawn::detail::launch_blocking(cmd, stacks, l));
    int status = -1;
    REQUIRE(aspawn::reap(l.pidfd, l.pid, true, status) == 1);
    CHECK(status == expected);
    int info_status = -1;
    struct rusage ru;
    ru.ru_maxrss = 12345;
    int r = aspawn::reap(l.pidfd, l.pid, true, info_status, &ru, true);
    ::close(l.pidfd);
    if (r == -ENOTTY || r == -EINVAL) {
      WARN("skipped: this kernel has no PIDFD_GET_INFO exit information");
      return;
    }
    REQUIRE(r == 1);
    CHECK(info_status == expected);
    CHECK(ru.ru_maxrss == 0);
  }
  CHECK_FALSE(test::has_children());
}
