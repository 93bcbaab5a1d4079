// posix::bind_fd: extra descriptors for the child.
#include "common.hpp"

using aspawn::error_code;
using aspawn::posix::bind_fd;
using test::asio::io_context;
namespace asio = test::asio;

namespace {

std::string run_capture(io_context& ctx,
                        std::initializer_list<std::string_view> args,
                        auto&&... inits) {
  asio::readable_pipe out(ctx);
  aspawn::process p(ctx, test::helper(), args, inits...,
                    aspawn::process_stdio{{}, out, {}});
  std::string text;
  error_code ec;
  asio::read(out, asio::dynamic_buffer(text), ec);
  CHECK(p.wait() == 0);
  return text;
}

} // namespace

TEST_CASE("bind_fd: a descriptor under another number", "[v2][bind_fd]") {
  io_context ctx;
  test::pipe_pair p;
  aspawn::process proc(ctx, test::helper(), {"write", "7", "seven"},
                       bind_fd(7, p.wr));
  CHECK(proc.wait() == 0);
  CHECK(p.read_all() == "seven");
}

TEST_CASE("bind_fd: the same number", "[v2][bind_fd]") {
  io_context ctx;
  test::pipe_pair p;
  auto text = run_capture(ctx, {"fdinfo", std::to_string(p.wr)},
                          bind_fd(p.wr));
  CHECK(text.find("pipe:") != std::string::npos);
  // Without it, the descriptor is closed in the child.
  auto closed = run_capture(ctx, {"fdinfo", std::to_string(p.wr)});
  CHECK(closed == "fd " + std::to_string(p.wr) + " closed\n");
}

TEST_CASE("bind_fd: FILE*, I/O objects, the null device, files",
          "[v2][bind_fd]") {
  io_context ctx;

  SECTION("FILE*") {
    FILE* f = std::tmpfile();
    REQUIRE(f != nullptr);
    aspawn::process p(ctx, test::helper(), {"write", "4", "file"},
                      bind_fd(4, f));
    CHECK(p.wait() == 0);
    char buf[8] = {};
    CHECK(::pread(::fileno(f), buf, 7, 0) == 4);
    std::fclose(f);
  }
  SECTION("an I/O object") {
    asio::readable_pipe r(ctx);
    asio::writable_pipe w(ctx);
    asio::connect_pipe(r, w);
    aspawn::process p(ctx, test::helper(), {"write", "9", "pipe"},
                      bind_fd(9, w));
    w.close();
    std::string text;
    error_code ec;
    asio::read(r, asio::dynamic_buffer(text), ec);
    CHECK(text == "pipe");
    CHECK(p.wait() == 0);
  }
  SECTION("nullptr") {
    CHECK(run_capture(ctx, {"fdinfo", "5"}, bind_fd(5, nullptr)) ==
          "fd 5 -> /dev/null\n");
  }
  SECTION("a path, and flags") {
    std::string name = "/tmp/aspawn-v2-bind-XXXXXX";
    int fd = ::mkstemp(name.data());
    REQUIRE(fd >= 0);
    ::close(fd);
    aspawn::process w(ctx, test::helper(), {"write", "6", "text"},
                      bind_fd(6, name));
    CHECK(w.wait() == 0);
    CHECK(run_capture(ctx, {"cat"},
                      bind_fd(0, std::filesystem::path(name), O_RDONLY)) ==
          "text");
    ::unlink(name.c_str());
  }
}

TEST_CASE("bind_fd: descriptors may be swapped", "[v2][bind_fd]") {
  io_context ctx;
  test::pipe_pair a, b;
  // The child's 3 is the parent's b, the child's 4 the parent's a, whatever
  // numbers those have.
  aspawn::process p(ctx, test::helper(), {"write", "3", "B", "write", "4", "A"},
                    bind_fd(3, b.wr), bind_fd(4, a.wr));
  CHECK(p.wait() == 0);
  CHECK(a.read_all() == "A");
  CHECK(b.read_all() == "B");
}

TEST_CASE("bind_fd: bad input fails clearly and leaves nothing",
          "[v2][bind_fd][errors]") {
  io_context ctx;
  {
    aspawn::process warm(ctx, test::helper(), {"exit", "0"});
    warm.wait();
  }
  const auto fds = test::open_fds();
  error_code ec;
  {
    bind_fd missing(5, "/nonexistent/file", O_RDONLY);
    CHECK(missing.ec == boost::system::errc::no_such_file_or_directory);
    aspawn::process p(ctx, ec, test::helper(), {}, std::move(missing));
    CHECK(ec == boost::system::errc::no_such_file_or_directory);
  }
  {
    aspawn::process p(ctx, ec, test::helper(), {}, bind_fd(5, -1));
    CHECK(ec == aspawn::errc::bad_fd);
  }
  {
    aspawn::process p(ctx, ec, test::helper(), {}, bind_fd(-1, 0));
    CHECK(ec == aspawn::errc::bad_fd);
  }
  {
    aspawn::process p(ctx, ec, test::helper(), {}, bind_fd(5, 0),
                      bind_fd(5, 1));
    CHECK(ec == aspawn::errc::duplicate_target_fd);
  }
  {
    // A file opened by bind_fd is closed with it, launched or not.
    bind_fd opened(5, "/dev/null");
    CHECK(opened.fd_needs_closing);
    CHECK(test::open_fds().size() == fds.size() + 1);
    bind_fd moved(std::move(opened));
    CHECK_FALSE(opened.fd_needs_closing);
  }
  CHECK_FALSE(test::has_children());
  CHECK(test::open_fds() == fds);
}
