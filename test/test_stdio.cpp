// Standard streams: /dev/null, files, parent descriptors, 2>&1, closed.
#include "common.hpp"

#include <cerrno>
#include <climits>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include <sys/stat.h>

using aspawn::command;
using aspawn::redirect;
using aspawn::step_kind;
using test::asio::io_context;

namespace {


std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void spew(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

// Writes `text` into the pipe and closes its write end, so that a reader
// sees the text and then EOF.
void feed(test::pipe_pair& p, const std::string& text) {
  REQUIRE(::write(p.wr, text.data(), text.size()) ==
          static_cast<ssize_t>(text.size()));
  p.close_wr();
}



// Launches `cmd` (the helper, set up by the caller) with `wait-fd` appended
// so that it blocks, reads what its descriptor `fd` refers to through /proc
// while it waits, then lets it exit and reaps it. Returns the link target,
// or "closed".
std::string child_fd_target(command cmd, int fd) {
  // The child writes to `ready` once it runs its main: until then the
  // dynamic loader may hold a library open on the lowest free descriptor,
  // which is the one a closed stream leaves.
  test::pipe_pair ready, gate;
  constexpr int ready_fd = 8, gate_fd = 9;
  cmd.map_fd(ready_fd, ready.wr).arg("write").arg(std::to_string(ready_fd)).arg("r");
  cmd.map_fd(gate_fd, gate.rd).arg("wait-fd").arg(std::to_string(gate_fd));
  std::string target = "<not launched>";
  int code = -1;
  io_context ctx;
  aspawn::async_spawn(ctx, cmd, [&](aspawn::error_code ec, auto p) {
    REQUIRE_FALSE(ec);
    ready.close_wr(); // a child that dies first gives EOF, not a hang
    char c;
    while (::read(ready.rd, &c, 1) < 0 && errno == EINTR) {
    }
    std::string link =
        "/proc/" + std::to_string(p.id()) + "/fd/" + std::to_string(fd);
    char buf[PATH_MAX];
    ssize_t n = ::readlink(link.c_str(), buf, sizeof buf);
    target = n < 0 ? std::string("closed")
                   : std::string(buf, static_cast<std::size_t>(n));
    gate.close_wr(); // EOF on the child's fd 9: it exits
    code = p.wait();
  });
  ctx.run();
  CHECK(code == 0);
  return target;
}

} // namespace

TEST_CASE("stdin, stdout and stderr can each be opened on /dev/null",
          "[stdio]") {
  auto before = test::open_fds();

  SECTION("stdin and stderr, seen by the child") {
    auto r = test::run(test::helper_cmd({"fdinfo", "0", "fdinfo", "2", "cat"})
                           .stdin_(redirect::null())
                           .stderr_(redirect::null()));
    REQUIRE_FALSE(r.ec);
    CHECK(r.code == 0);
    // `cat` read EOF at once: /dev/null is empty.
    CHECK(r.out == "fd 0 -> /dev/null\nfd 2 -> /dev/null\n");
  }
  SECTION("stdout: what the child writes there is gone") {
    CHECK(child_fd_target(
              test::helper_cmd({"echo", "lost"}).stdout_(redirect::null()),
              1) == "/dev/null");
  }
  SECTION("/dev/null is open for reading and writing") {
    // The child writes to its stdin (the same /dev/null description) and
    // reads EOF from it, then reports on stdout.
    auto r = test::run(
        test::helper_cmd({"write", "0", "discarded", "cat", "echo", "done"})
            .stdin_(redirect::null()));
    REQUIRE_FALSE(r.ec);
    CHECK(r.code == 0);
    CHECK(r.out == "done\n");
  }
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("standard streams can be files opened in the child",
          "[stdio][files]") {
  test::temp_dir dir("aspawn-stdio-");
  auto before = test::open_fds();

  SECTION("write_file creates or truncates") {
    std::string out = dir / "out.txt";
    spew(out, "old content, longer than the new one\n");
    auto ec = test::run_error(
        test::helper_cmd({"echo", "new"}).stdout_(redirect::write_file(out)));
    REQUIRE_FALSE(ec);
    CHECK(slurp(out) == "new\n");

    std::string fresh = dir / "fresh.txt";
    mode_t mask = ::umask(0);
    ::umask(mask);
    REQUIRE_FALSE(
        test::run_error(test::helper_cmd({"echo", "made"})
                            .stdout_(redirect::write_file(fresh, 0640))));
    CHECK(slurp(fresh) == "made\n");
    struct stat st;
    REQUIRE(::stat(fresh.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == (0640 & ~mask));
  }
  SECTION("append_file keeps what was there") {
    std::string log = dir / "log.txt";
    spew(log, "zero\n");
    auto cmd =
        test::helper_cmd({"echo", "one"}).stdout_(redirect::append_file(log));
    REQUIRE_FALSE(test::run_error(cmd));
    REQUIRE_FALSE(test::run_error(cmd));
    CHECK(slurp(log) == "zero\none\none\n");

    std::string created = dir / "created.txt";
    REQUIRE_FALSE(
        test::run_error(test::helper_cmd({"echo", "first"})
                            .stdout_(redirect::append_file(created))));
    CHECK(slurp(created) == "first\n");
  }
  SECTION("stderr to a file") {
    std::string err = dir / "err.txt";
    auto r = test::run(test::helper_cmd({"echoerr", "oops", "echo", "fine"})
                           .stderr_(redirect::write_file(err)));
    REQUIRE_FALSE(r.ec);
    CHECK(r.out == "fine\n");
    CHECK(slurp(err) == "oops\n");
  }
  SECTION("stdin from a file, with any flags") {
    std::string in = dir / "in.txt";
    spew(in, std::string("line one\nline two\0binary\n", 25));
    auto r = test::run(
        test::helper_cmd({"fdinfo", "0", "cat"}).stdin_(redirect::file(in)));
    REQUIRE_FALSE(r.ec);
    CHECK(r.out == "fd 0 -> " + in + "\n" +
                       std::string("line one\nline two\0binary\n", 25));

    // O_CLOEXEC among the flags does not make the stream vanish at exec.
    r = test::run(test::helper_cmd({"cat"}).stdin_(
        redirect::file(in, O_RDONLY | O_CLOEXEC)));
    REQUIRE_FALSE(r.ec);
    CHECK(r.out.size() == 25);
  }
  SECTION("a file with the three streams at once, stdin first") {
    std::string in = dir / "in.txt";
    std::string out = dir / "out.txt";
    spew(in, "through\n");
    auto ec = test::run_error(test::helper_cmd({"cat", "echoerr", "after"})
                                  .stderr_(redirect::to_stdout())
                                  .stdout_(redirect::write_file(out))
                                  .stdin_(redirect::file(in)));
    REQUIRE_FALSE(ec);
    CHECK(slurp(out) == "through\nafter\n");
  }
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a file that cannot be opened fails the open step and leaves "
          "nothing behind",
          "[stdio][files][errors]") {
  test::temp_dir dir("aspawn-stdio-");

  SECTION("a missing input file is ENOENT") {
    auto ec = test::expect_step_failure(
        test::helper_cmd({"cat"}).stdin_(redirect::file(dir / "missing")),
        step_kind::open, ENOENT);
    CHECK(aspawn::failed_step(ec) == 0);
    CHECK(ec == boost::system::errc::no_such_file_or_directory);
    CHECK(ec.message().find("step 0 (open)") != std::string::npos);
  }
  SECTION("an output file in a missing directory is ENOENT") {
    auto ec = test::expect_step_failure(
        test::helper_cmd({"echo", "x"})
            .stdin_(redirect::null())
            .stdout_(redirect::write_file(dir / "no/such/dir/out")),
        step_kind::open, ENOENT);
    CHECK(aspawn::failed_step(ec) == 1); // stdin is step 0
  }
  SECTION("O_EXCL on an existing file is EEXIST") {
    std::string f = dir / "exists";
    spew(f, "keep me");
    test::expect_step_failure(
        test::helper_cmd({"echo", "x"})
            .stderr_(redirect::file(f, O_WRONLY | O_CREAT | O_EXCL)),
        step_kind::open, EEXIST);
    CHECK(slurp(f) == "keep me");
  }
  SECTION("a directory opened for writing is EISDIR") {
    test::expect_step_failure(
        test::helper_cmd({"echo", "x"}).stdout_(redirect::write_file(dir.path)),
        step_kind::open, EISDIR);
  }
}

TEST_CASE("a standard stream can be a copy of a parent descriptor",
          "[stdio][fd]") {
  auto before = test::open_fds();

  SECTION("stdin from a pipe") {
    test::pipe_pair in;
    feed(in, "piped input\n");
    auto r =
        test::run(test::helper_cmd({"cat"}).stdin_(redirect::from_fd(in.rd)));
    REQUIRE_FALSE(r.ec);
    CHECK(r.out == "piped input\n");
    // The parent's descriptor is untouched, close-on-exec included.
    CHECK(test::is_cloexec(in.rd));
  }
  SECTION("stderr to a pipe") {
    test::pipe_pair err;
    auto r = test::run(
        test::helper_cmd({"echoerr", "to the pipe", "echo", "to stdout"})
            .stderr_(redirect::from_fd(err.wr)));
    REQUIRE_FALSE(r.ec);
    CHECK(r.out == "to stdout\n");
    CHECK(err.read_all() == "to the pipe\n");
  }
  SECTION("the child has the very same open file, not a reopened one") {
    test::pipe_pair p;
    char link[PATH_MAX];
    std::string self = "/proc/self/fd/" + std::to_string(p.rd);
    ssize_t n = ::readlink(self.c_str(), link, sizeof link);
    REQUIRE(n > 0);
    auto r = test::run(
        test::helper_cmd({"fdinfo", "0"}).stdin_(redirect::from_fd(p.rd)));
    REQUIRE_FALSE(r.ec);
    CHECK(r.out ==
          "fd 0 -> " + std::string(link, static_cast<std::size_t>(n)) + "\n");
  }
  SECTION("sources whose numbers are also scratch numbers") {
    // Two pipes whose write ends sit at 3 and 4 in the parent, sent to
    // stdout (from 4) and stderr (from 3): each source is read before
    // anything is written over it.
    int x[2], y[2];
    REQUIRE(::pipe2(x, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(y, O_CLOEXEC) == 0);
    int xr = ::fcntl(x[0], F_DUPFD_CLOEXEC, 100);
    int xw = ::fcntl(x[1], F_DUPFD_CLOEXEC, 100);
    int yr = ::fcntl(y[0], F_DUPFD_CLOEXEC, 100);
    int yw = ::fcntl(y[1], F_DUPFD_CLOEXEC, 100);
    for (int fd : {x[0], x[1], y[0], y[1]})
      ::close(fd);
    auto fds = test::open_fds();
    REQUIRE(fds.count(3) == 0);
    REQUIRE(fds.count(4) == 0);
    REQUIRE(::dup3(xw, 3, O_CLOEXEC) == 3);
    REQUIRE(::dup3(yw, 4, O_CLOEXEC) == 4);
    ::close(xw);
    ::close(yw);

    auto ec =
        test::run_error(test::helper_cmd({"echo", "out", "echoerr", "err"})
                            .stdout_(redirect::from_fd(4))
                            .stderr_(redirect::from_fd(3)));
    ::close(3);
    ::close(4);
    CHECK_FALSE(ec);
    auto drain = [](int fd) {
      std::string s;
      char buf[256];
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof buf)) > 0)
        s.append(buf, static_cast<std::size_t>(n));
      ::close(fd);
      return s;
    };
    CHECK(drain(yr) == "out\n");
    CHECK(drain(xr) == "err\n");
  }
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a parent descriptor that is not open fails the dup step",
          "[stdio][fd][errors]") {
  int unused = 900;
  REQUIRE(test::open_fds().count(unused) == 0);
  auto ec = test::expect_step_failure(
      test::helper_cmd({"cat"}).stdin_(redirect::from_fd(unused)),
      step_kind::dup, EBADF);
  CHECK(aspawn::failed_step(ec) == 0);
}

TEST_CASE("stderr merged into stdout follows stdout wherever it goes",
          "[stdio]") {
  auto before = test::open_fds();
  SECTION("into a pipe") {
    auto r = test::run(
        test::helper_cmd({"echo", "out", "echoerr", "err", "echo", "out again"})
            .stderr_(redirect::to_stdout()));
    REQUIRE_FALSE(r.ec);
    CHECK(r.out == "out\nerr\nout again\n");
  }
  SECTION("into a file, sharing one offset") {
    test::temp_dir dir("aspawn-stdio-");
    std::string f = dir / "both.txt";
    REQUIRE_FALSE(test::run_error(
        test::helper_cmd({"echo", "1", "echoerr", "2", "echo", "3"})
            .stdout_(redirect::write_file(f))
            .stderr_(redirect::to_stdout())));
    CHECK(slurp(f) == "1\n2\n3\n");
  }
  SECTION("onto /dev/null") {
    CHECK(child_fd_target(test::helper_cmd({"echoerr", "gone"})
                              .stdout_(redirect::null())
                              .stderr_(redirect::to_stdout()),
                          2) == "/dev/null");
  }
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("only stderr can be merged into stdout", "[stdio][errors]") {
  test::expect_invalid(test::helper_cmd({"echo", "x"}).stdout_(redirect::to_stdout()),
                 aspawn::errc::conflicting_options);
  test::expect_invalid(test::helper_cmd({"echo", "x"}).stdin_(redirect::to_stdout()),
                 aspawn::errc::conflicting_options);
}

TEST_CASE("a closed standard stream is closed in the child", "[stdio]") {
  auto before = test::open_fds();
  SECTION("stdin") {
    auto r = test::run(
        test::helper_cmd({"fdinfo", "0", "fds"}).stdin_(redirect::closed()));
    REQUIRE_FALSE(r.ec);
    CHECK(r.out == "fd 0 closed\nfds=1 2\n");
  }
  SECTION("stderr") {
    auto r = test::run(
        test::helper_cmd({"fdinfo", "2", "fds"}).stderr_(redirect::closed()));
    REQUIRE_FALSE(r.ec);
    CHECK(r.out == "fd 2 closed\nfds=0 1\n");
  }
  SECTION("stdout") {
    CHECK(child_fd_target(
              test::helper_cmd({"echo", "nowhere"}).stdout_(redirect::closed()),
              1) == "closed");
  }
  SECTION("stderr merged into a closed stdout fails the dup step") {
    auto ec = test::expect_step_failure(test::helper_cmd({"echo", "x"})
                                      .stdout_(redirect::closed())
                                      .stderr_(redirect::to_stdout()),
                                  step_kind::dup, EBADF);
    CHECK(aspawn::failed_step(ec) == 1);
  }
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("bad standard stream redirections are rejected before launching",
          "[stdio][errors]") {
  test::expect_invalid(test::helper_cmd({"cat"}).stdin_(redirect::from_fd(-1)),
                 aspawn::errc::bad_fd);
  test::expect_invalid(
      test::helper_cmd({"cat"}).stdin_(redirect::file(std::string("a\0b", 3))),
      aspawn::errc::embedded_nul);
  test::expect_invalid(test::helper_cmd({"cat"}).stdio(3, redirect::null()),
                 aspawn::errc::bad_fd);
  test::expect_invalid(
      test::helper_cmd({"cat"}).stdout_(redirect::null()).map_fd(1, 2),
      aspawn::errc::duplicate_target_fd);
}
