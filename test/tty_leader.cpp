// Session leader with a pseudo-terminal as its controlling terminal, for the
// terminal tests (test/test_terminal.cpp). Linked with aspawn.
//
// Usage: aspawn-test-tty-leader HELPER MODE
//
// Becomes a session leader (if it is not one already), opens a new pty and
// makes its slave the controlling terminal, then launches `HELPER ids` with
// stdin on the slave and stdout on a pipe, and with the steps of MODE:
//
//   slave        process_group(0), foreground(slave fd)
//   master       process_group(0), foreground(master fd)
//   new-session  new_session(), foreground(slave fd): the child has no
//                controlling terminal, so the step fails
//
// Output, one line each (all values are numbers unless noted):
//
//   leader pid=.. pgid=.. sid=.. ctty_sid=..
//   before tpgid=..                 foreground group before the launch
//   child pid=.. ppid=.. ... tpgid=.. (the helper's line, if it ran)
//   launch failed=0|1 step=NAME errno=.. code=..
//   after tpgid=..                  foreground group after the child exited
//   leftover children=0|1 fds_changed=0|1   left behind by the launch
//
// Exits 0 once everything was printed; 3 if the terminal could not be set
// up (with a message on stderr).

#include <aspawn/aspawn.hpp>

#include "proc_util.hpp"

#include <boost/asio.hpp>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

namespace {

void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

void out(const std::string& line) { write_all(STDOUT_FILENO, line + "\n"); }

[[noreturn]] void fail(const std::string& what) {
  write_all(STDERR_FILENO,
            "tty-leader: " + what + ": " + std::strerror(errno) + "\n");
  std::exit(3);
}




} // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    write_all(STDERR_FILENO, "usage: aspawn-test-tty-leader HELPER MODE\n");
    return 2;
  }
  const std::string helper = argv[1];
  const std::string_view mode = argv[2];
  if (mode != "slave" && mode != "master" && mode != "new-session") {
    write_all(STDERR_FILENO, "tty-leader: unknown mode\n");
    return 2;
  }

  // A hangup of the terminal (the master closing at exit) must not decide
  // the exit status.
  std::signal(SIGHUP, SIG_IGN);

  if (::getsid(0) != ::getpid() && ::setsid() < 0)
    fail("setsid");

  int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0)
    fail("posix_openpt");
  if (::fcntl(master, F_SETFD, FD_CLOEXEC) < 0)
    fail("fcntl master");
  if (::grantpt(master) != 0)
    fail("grantpt");
  if (::unlockpt(master) != 0)
    fail("unlockpt");
  const char* name = ::ptsname(master);
  if (name == nullptr)
    fail("ptsname");
  // A session leader without a controlling terminal acquires the first
  // terminal it opens without O_NOCTTY; TIOCSCTTY makes sure of it.
  int slave = ::open(name, O_RDWR | O_CLOEXEC);
  if (slave < 0)
    fail(std::string("open ") + name);
  if (::ioctl(slave, TIOCSCTTY, 0) != 0)
    fail("TIOCSCTTY");
  if (::tcgetsid(slave) != ::getpid())
    fail("the pty is not the controlling terminal");

  out("leader pid=" + std::to_string(::getpid()) +
      " pgid=" + std::to_string(::getpgrp()) +
      " sid=" + std::to_string(::getsid(0)) +
      " ctty_sid=" + std::to_string(::tcgetsid(slave)));
  out("before tpgid=" + std::to_string(::tcgetpgrp(slave)));

  auto before = test::proc::open_fds();
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0)
    fail("pipe2");

  aspawn::command cmd(helper, {"ids"});
  cmd.stdin_(aspawn::redirect::from_fd(slave))
      .stdout_(aspawn::redirect::from_fd(pipe_fds[1]));
  if (mode == "new-session")
    cmd.new_session().foreground(slave);
  else
    cmd.process_group(0).foreground(mode == "master" ? master : slave);

  aspawn::error_code ec;
  int code = -1;
  {
    boost::asio::io_context ctx;
    aspawn::async_execute(ctx, cmd, [&](aspawn::error_code e, int c) {
      ec = e;
      code = c;
    });
    ctx.run();
  }
  ::close(pipe_fds[1]);
  // The helper writes one short line: it fits in the pipe.
  std::string child = test::proc::read_to_eof(pipe_fds[0]);
  ::close(pipe_fds[0]);
  while (!child.empty() && child.back() == '\n')
    child.pop_back();
  if (!child.empty())
    out("child " + child);

  bool failed = aspawn::failed_step(ec) >= 0;
  out(std::string("launch failed=") + (ec ? "1" : "0") + " step=" +
      (failed ? std::string(aspawn::to_string(aspawn::failed_step_kind(ec)))
              : std::string("none")) +
      " errno=" + std::to_string(aspawn::child_errno(ec)) +
      " code=" + std::to_string(code));
  if (ec && !failed)
    write_all(STDERR_FILENO, "tty-leader: launch: " + ec.message() + "\n");
  out("after tpgid=" + std::to_string(::tcgetpgrp(slave)));

  auto after = test::proc::open_fds();
  out(std::string("leftover children=") + (test::proc::has_children() ? "1" : "0") +
      " fds_changed=" + (after == before ? "0" : "1"));
  return 0;
}
