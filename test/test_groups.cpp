// Signals to the child's process group.
#include "common.hpp"

#include <poll.h>
#include <sys/syscall.h>

#include <string>

using aspawn::command;
using aspawn::redirect;
using test::asio::io_context;
namespace asio = boost::asio;

namespace {

// Restores the automatic group signal method when a test ends.
struct method_guard {
  ~method_guard() {
    aspawn::set_group_signal_method(aspawn::group_signal_method::automatic);
  }
};

// Whether the process behind `pidfd` exits within five seconds.
bool exits_soon(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return ::poll(&p, 1, 5000) == 1;
}

// Launches a sleeping helper that leads a process group of its own and runs
// `body` with it from the launch's handler; checks nothing is left behind.
template <typename Body> void with_group_leader(Body body) {
  io_context ctx;
  command sleeper(test::helper(), {"sleep", "100000"});
  sleeper.process_group(0);
  bool done = false;
  aspawn::async_spawn(ctx, sleeper, [&](error_code ec, aspawn::process p) {
    REQUIRE_FALSE(ec);
    body(p);
    done = true;
  });
  ctx.run();
  CHECK(done);
  CHECK_FALSE(test::has_children());
}

} // namespace

TEST_CASE("a signal to the process group reaches the child and the "
          "processes it started",
          "[signals][groups]") {
  method_guard restore;
  auto method = GENERATE(aspawn::group_signal_method::automatic,
                         aspawn::group_signal_method::kill);
  aspawn::set_group_signal_method(method);
  INFO("method " << static_cast<int>(method));

  // A shell in a group of its own that starts a background job and reports
  // its pid, then waits for it.
  command sh("/bin/sh", {"-c", "sleep 1000 & echo $!; wait"});
  sh.process_group(0).stdout_(redirect::pipe());
  io_context ctx;
  int job_pidfd = -1;
  int code = -1;
  aspawn::async_spawn(ctx, sh, [&](error_code ec, aspawn::process p) {
    REQUIRE_FALSE(ec);
    auto out = std::make_shared<aspawn::process::output_pipe_type>(
        p.take_stdout_pipe());
    auto line = std::make_shared<std::string>();
    auto proc = std::make_shared<aspawn::process>(std::move(p));
    asio::async_read_until(
        *out, asio::dynamic_buffer(*line), '\n',
        [&, out, line, proc](error_code rec, std::size_t) {
          REQUIRE_FALSE(rec);
          int job = std::stoi(*line);
          REQUIRE(job > 0);
          job_pidfd = static_cast<int>(::syscall(SYS_pidfd_open, job, 0));
          REQUIRE(job_pidfd >= 0);
          CHECK(::getpgid(job) == proc->id()); // the shell leads the group
          proc->signal_group(SIGTERM);
          proc->async_wait([&, proc](error_code wec, int c) {
            CHECK_FALSE(wec);
            code = c;
          });
        });
  });
  ctx.run();
  CHECK(code == SIGTERM);
  REQUIRE(job_pidfd >= 0);
  CHECK(exits_soon(job_pidfd)); // the background job got it too
  ::close(job_pidfd);
}

TEST_CASE("a group signal that would reach the caller is refused",
          "[signals][groups][errors]") {
  method_guard restore;
  auto method = GENERATE(aspawn::group_signal_method::automatic,
                         aspawn::group_signal_method::kill);
  aspawn::set_group_signal_method(method);
  io_context ctx;
  // No process_group: the child shares the caller's group.
  command sleeper(test::helper(), {"sleep", "100000"});
  bool done = false;
  aspawn::async_spawn(ctx, sleeper, [&](error_code ec, aspawn::process p) {
    REQUIRE_FALSE(ec);
    error_code gec;
    p.signal_group(SIGKILL, gec);
    CHECK(gec == aspawn::errc::own_process_group);
    CHECK(gec == boost::system::errc::operation_not_permitted);
    CHECK(p.running()); // nothing was sent
    CHECK_THROWS_AS(p.signal_group(SIGKILL), boost::system::system_error);
    p.terminate();
    done = true;
  });
  ctx.run();
  CHECK(done);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("group signals need a child that is not reaped yet",
          "[signals][groups][errors]") {
  io_context ctx;
  aspawn::process none(ctx);
  error_code ec;
  none.signal_group(SIGTERM, ec);
  CHECK(ec == aspawn::errc::no_process);

  command quick(test::helper(), {"exit", "3"});
  quick.process_group(0);
  int code = -1;
  aspawn::async_spawn(ctx, quick, [&](error_code sec, aspawn::process p) {
    REQUIRE_FALSE(sec);
    auto proc = std::make_shared<aspawn::process>(std::move(p));
    proc->async_wait([&, proc](error_code wec, int c) {
      CHECK_FALSE(wec);
      code = c;
      error_code gec;
      proc->signal_group(SIGTERM, gec); // reaped: its group may be reused
      CHECK(gec == aspawn::errc::status_unavailable);
    });
  });
  ctx.run();
  CHECK(code == 3);
}

TEST_CASE("a child reaped elsewhere has no group to signal",
          "[signals][groups][errors]") {
  with_group_leader([](aspawn::process& p) {
    const int pid = p.id();
    p.signal(SIGKILL);
    int st = 0;
    REQUIRE(::waitpid(pid, &st, 0) == pid); // someone else reaps it
    error_code gec;
    p.signal_group(SIGTERM, gec); // its pid, and group, may be reused now
    CHECK(gec == aspawn::errc::status_unavailable);
  });
}

TEST_CASE("signal 0 probes the group; a bad signal number is EINVAL",
          "[signals][groups][errors]") {
  with_group_leader([](aspawn::process& p) {
    error_code gec;
    p.signal_group(0, gec);
    CHECK_FALSE(gec);
    CHECK(p.running());
    p.signal_group(65, gec);
    CHECK(gec == boost::system::errc::invalid_argument);
    p.signal_group(SIGKILL, gec);
    CHECK_FALSE(gec);
    CHECK(p.wait() == SIGKILL);
  });
}
