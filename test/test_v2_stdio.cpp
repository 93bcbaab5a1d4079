// process_stdio: every kind of binding, and bad input.
#include "common.hpp"

#include <filesystem>

using aspawn::error_code;
using test::asio::io_context;
namespace asio = test::asio;

namespace {

struct temp_file {
  std::string name = "/tmp/aspawn-v2-stdio-XXXXXX";
  temp_file() {
    int fd = ::mkstemp(name.data());
    REQUIRE(fd >= 0);
    ::close(fd);
  }
  ~temp_file() { ::unlink(name.c_str()); }
  std::string content() const {
    std::string s;
    int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
    char buf[256];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0)
      s.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    return s;
  }
};

} // namespace

TEST_CASE("process_stdio: inherit by default", "[v2][stdio]") {
  io_context ctx;
  aspawn::process_stdio io;
  CHECK(io.in.get().which() == aspawn::redirect::kind::inherit);
  CHECK(io.out.get().which() == aspawn::redirect::kind::inherit);
  CHECK(io.err.get().which() == aspawn::redirect::kind::inherit);

  // The child's stdout is the parent's: a pipe installed as fd 1 here.
  test::pipe_pair p;
  int saved = ::dup(1);
  REQUIRE(::dup2(p.wr, 1) == 1);
  aspawn::process proc(ctx, test::helper(), {"echo", "inherited"},
                       aspawn::process_stdio{});
  ::dup2(saved, 1);
  ::close(saved);
  CHECK(proc.wait() == 0);
  CHECK(p.read_all() == "inherited\n");
}

TEST_CASE("process_stdio: pipes are created for unopened pipe objects",
          "[v2][stdio]") {
  io_context ctx;
  asio::writable_pipe in(ctx);
  asio::readable_pipe out(ctx), err(ctx);
  aspawn::process proc(ctx, test::helper(), {"cat", "echoerr", "done"},
                       aspawn::process_stdio{in, out, err});
  CHECK(in.is_open());
  CHECK(out.is_open());
  CHECK(err.is_open());
  asio::write(in, asio::buffer(std::string("abc")));
  in.close();
  CHECK(test::read_to_eof(out) == "abc");
  CHECK(test::read_to_eof(err) == "done\n");
  CHECK(proc.wait() == 0);
}

TEST_CASE("process_stdio: designated initializers", "[v2][stdio]") {
  io_context ctx;
  asio::readable_pipe out(ctx);
  aspawn::process proc(ctx, test::helper(), {"fdinfo", "2", "echoerr", "x"},
                       aspawn::process_stdio{.out = out, .err = nullptr});
  CHECK(test::read_to_eof(out) == "fd 2 -> /dev/null\n");
  CHECK(proc.wait() == 0);
}

TEST_CASE("process_stdio: descriptors, FILE* and I/O objects",
          "[v2][stdio]") {
  io_context ctx;

  SECTION("an int") {
    test::pipe_pair p;
    aspawn::process proc(ctx, test::helper(), {"echo", "fd"},
                         aspawn::process_stdio{{}, p.wr, {}});
    CHECK(proc.wait() == 0);
    CHECK(p.read_all() == "fd\n");
  }

  SECTION("a FILE*") {
    FILE* f = std::tmpfile();
    REQUIRE(f != nullptr);
    aspawn::process proc(ctx, test::helper(), {"echoerr", "file"},
                         aspawn::process_stdio{{}, {}, f});
    CHECK(proc.wait() == 0);
    char buf[16] = {};
    CHECK(::pread(::fileno(f), buf, sizeof buf - 1, 0) == 5);
    CHECK(std::string(buf) == "file\n");
    std::fclose(f);
  }

  SECTION("an open pipe object of the other direction is used as is") {
    // An open readable_pipe given as stdin: its descriptor is duplicated.
    test::pipe_pair p;
    asio::readable_pipe child_in(ctx, ::dup(p.rd));
    asio::readable_pipe out(ctx);
    aspawn::process proc(ctx, test::helper(), {"cat"},
                         aspawn::process_stdio{child_in, out, {}});
    child_in.close();
    REQUIRE(::write(p.wr, "xyz", 3) == 3);
    p.close_wr();
    CHECK(test::read_to_eof(out) == "xyz");
    CHECK(proc.wait() == 0);
  }

  SECTION("a socket") {
    asio::local::stream_protocol::socket a(ctx), b(ctx);
    asio::local::connect_pair(a, b);
    aspawn::process proc(ctx, test::helper(), {"echo", "over a socket"},
                         aspawn::process_stdio{{}, b, {}});
    b.close();
    CHECK(test::read_to_eof(a) == "over a socket\n");
    CHECK(proc.wait() == 0);
  }
}

TEST_CASE("process_stdio: paths", "[v2][stdio]") {
  io_context ctx;
  temp_file f;

  aspawn::process w(ctx, test::helper(), {"echo", "0123456789"},
                    aspawn::process_stdio{{}, f.name, {}});
  CHECK(w.wait() == 0);
  CHECK(f.content() == "0123456789\n");

  // Not truncated, as in Boost.Process v2: the new text overwrites the start.
  aspawn::process w2(ctx, test::helper(), {"echo", "ab"},
                     aspawn::process_stdio{{}, std::filesystem::path(f.name),
                                           {}});
  CHECK(w2.wait() == 0);
  CHECK(f.content() == "ab\n3456789\n");

  asio::readable_pipe out(ctx);
  aspawn::process r(ctx, test::helper(), {"cat"},
                    aspawn::process_stdio{f.name.c_str(), out, {}});
  CHECK(test::read_to_eof(out) == "ab\n3456789\n");
  CHECK(r.wait() == 0);

  // A file created with mode 0660 (less the umask).
  std::string created = f.name + ".new";
  aspawn::process c(ctx, test::helper(), {"echoerr", "new"},
                    aspawn::process_stdio{{}, {}, std::string_view(created)});
  CHECK(c.wait() == 0);
  struct stat st;
  REQUIRE(::stat(created.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777 & ~0660) == 0);
  ::unlink(created.c_str());
}

TEST_CASE("process_stdio: bad input fails clearly and leaves nothing",
          "[v2][stdio][errors]") {
  io_context ctx;
  {
    asio::readable_pipe warm(ctx);
    aspawn::process p(ctx, test::helper(), {"exit", "0"},
                      aspawn::process_stdio{{}, warm, {}});
    p.wait();
  }
  const auto fds = test::open_fds();
  error_code ec;

  SECTION("a negative descriptor") {
    aspawn::process p(ctx, ec, test::helper(), {},
                      aspawn::process_stdio{-1, {}, {}});
    CHECK(ec == aspawn::errc::bad_fd);
  }
  SECTION("a null FILE*") {
    FILE* none = nullptr;
    aspawn::process p(ctx, ec, test::helper(), {},
                      aspawn::process_stdio{{}, none, {}});
    CHECK(ec == aspawn::errc::bad_fd);
  }
  SECTION("an unopened pipe object of the other direction") {
    asio::writable_pipe wrong(ctx);
    aspawn::process p(ctx, ec, test::helper(), {},
                      aspawn::process_stdio{{}, wrong, {}});
    CHECK(ec == aspawn::errc::bad_fd);
  }
  SECTION("a pipe object that is already open") {
    asio::readable_pipe open_pipe(ctx);
    asio::writable_pipe other(ctx);
    asio::connect_pipe(open_pipe, other);
    const auto with_pipe = test::open_fds();
    aspawn::process p(ctx, ec, test::helper(), {},
                      aspawn::process_stdio{{}, open_pipe, {}});
    CHECK(ec == asio::error::already_open);
    CHECK(test::open_fds() == with_pipe);
  }
  SECTION("a file that cannot be opened in the child") {
    aspawn::process p(ctx, ec, test::helper(), {},
                      aspawn::process_stdio{"/nonexistent/input", {}, {}});
    CHECK(ec == boost::system::errc::no_such_file_or_directory);
    CHECK(aspawn::failed_step_kind(ec) == aspawn::step_kind::open);
    INFO(ec.message());
  }
  SECTION("the same stream set twice") {
    aspawn::process p(ctx, ec, test::helper(), {},
                      aspawn::process_stdio{{}, nullptr, {}},
                      aspawn::posix::bind_fd(1, nullptr));
    CHECK(ec == aspawn::errc::duplicate_target_fd);
  }
  CHECK_FALSE(test::has_children());
  CHECK(test::open_fds() == fds);
}

TEST_CASE("process_stdio: the parent's end of a created pipe is closed "
          "with the initializer",
          "[v2][stdio]") {
  io_context ctx;
  asio::readable_pipe out(ctx);
  const auto before = test::open_fds();
  {
    aspawn::process_stdio io{{}, out, {}};
    CHECK(test::open_fds().size() == before.size() + 2);
    aspawn::process_stdio moved(std::move(io)); // move-only, owns the fd
    CHECK(test::open_fds().size() == before.size() + 2);
  }
  CHECK(test::open_fds().size() == before.size() + 1); // out's end only
}
