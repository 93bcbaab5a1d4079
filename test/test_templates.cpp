// Reusable templates: held executables, cgroup placement, Asio pipes.
#include "common.hpp"

#include <cstdio>
#include <cstring>
#include <sys/stat.h>

using aspawn::command;
namespace asio = test::asio;

TEST_CASE("a held executable survives the path being replaced",
          "[templates]") {
  std::string path = "/tmp/aspawn-held-" + std::to_string(::getpid());
  {
    // Copy the helper so that the copy can be removed.
    int in = ::open(test::helper().c_str(), O_RDONLY);
    int out = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0755);
    REQUIRE(in >= 0);
    REQUIRE(out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = ::read(in, buf, sizeof buf)) > 0)
      REQUIRE(::write(out, buf, static_cast<std::size_t>(n)) == n);
    ::close(in);
    ::close(out);
  }
  command cmd(path, {"echo", "held"});
  cmd.hold_executable();
  REQUIRE_FALSE(cmd.error());
  REQUIRE(cmd.executable_fd() >= 0);
  ::unlink(path.c_str()); // the path is gone; the fd still runs it
  auto r = test::run(cmd);
  CHECK_FALSE(r.ec);
  CHECK(r.out == "held\n");
  // The held fd does not leak into the child.
  auto fds = test::run(command(cmd).args({"fds"}));
  CHECK(fds.out == "held\nfds=0 1 2\n");
}

TEST_CASE("a held script still runs through its interpreter", "[templates]") {
  std::string path = "/tmp/aspawn-script-" + std::to_string(::getpid());
  {
    int out = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0755);
    REQUIRE(out >= 0);
    std::string text = "#!/bin/sh\necho \"script $*\"\n";
    REQUIRE(::write(out, text.data(), text.size()) ==
            static_cast<ssize_t>(text.size()));
    ::close(out);
  }
  command cmd(path, {"a", "b"});
  cmd.hold_executable();
  auto r = test::run(cmd);
  ::unlink(path.c_str());
  CHECK_FALSE(r.ec);
  CHECK(r.out == "script a b\n");
}

TEST_CASE("a held executable at a mapped fd number is moved out of the way",
          "[templates]") {
  command cmd(test::helper());
  cmd.hold_executable();
  int held = cmd.executable_fd();
  REQUIRE(held >= 0);
  test::pipe_pair p;
  // Map the pipe onto the held fd's own number: the child must still exec
  // the held executable, and see the pipe at that number.
  cmd.args({"write", std::to_string(held), "via-held-number", "echo", "ran"});
  cmd.map_fd(held, p.wr);
  auto r = test::run(cmd);
  CHECK_FALSE(r.ec);
  CHECK(r.out == "ran\n");
  CHECK(p.read_all() == "via-held-number");
}

TEST_CASE("a child starts in the cgroup the command names", "[templates][cgroup]") {
  // The cgroup v2 hierarchy: /sys/fs/cgroup, or .../unified on hybrid
  // systems.
  std::string root;
  if (FILE* m = std::fopen("/proc/self/mounts", "r")) {
    char dev[256], mnt[512], type[64];
    while (std::fscanf(m, "%255s %511s %63s %*[^\n]", dev, mnt, type) == 3)
      if (std::string(type) == "cgroup2" && root.empty())
        root = mnt;
    std::fclose(m);
  }
  if (::geteuid() != 0 || root.empty()) {
    WARN("skipped: needs root and a cgroup v2 hierarchy");
    return;
  }
  std::string name = "aspawn-test-" + std::to_string(::getpid());
  std::string dir = root + "/" + name;
  if (::mkdir(dir.c_str(), 0755) != 0) {
    WARN("skipped: cannot create " << dir << ": " << std::strerror(errno));
    return;
  }
  command cmd = test::helper_cmd({"cgroup"});
  cmd.cgroup(dir);
  REQUIRE_FALSE(cmd.error());
  auto r = test::run(cmd);
  if (r.ec == aspawn::errc::unsupported_by_kernel ||
      r.ec == boost::system::errc::operation_not_permitted ||
      r.ec == boost::system::errc::device_or_resource_busy) {
    ::rmdir(dir.c_str());
    WARN("skipped: the kernel or cgroup refused placement: " << r.ec.message());
    return;
  }
  CHECK_FALSE(r.ec);
  // The v2 line (a hybrid system lists v1 controllers too).
  CHECK(r.out.find("0::/" + name + "\n") != std::string::npos);
  CHECK(::rmdir(dir.c_str()) == 0); // empty again: the child was reaped

  // The legacy clone path cannot place a child in a cgroup: a clear error.
  aspawn::set_clone_method(aspawn::clone_method::legacy_clone);
  CHECK(test::run_error(cmd) == aspawn::errc::unsupported_by_kernel);
  aspawn::set_clone_method(aspawn::clone_method::automatic);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("a missing cgroup is an error when the command is built",
          "[templates][cgroup]") {
  command cmd("/bin/true");
  cmd.cgroup("/sys/fs/cgroup/aspawn-no-such-group");
  CHECK(cmd.error() == boost::system::errc::no_such_file_or_directory);
}

TEST_CASE("stdout captured and stdin fed through Asio pipes with coroutines",
          "[templates][pipes]") {
  asio::io_context ctx;
  std::string got;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        asio::readable_pipe out_r(ex), in_r(ex);
        asio::writable_pipe out_w(ex), in_w(ex);
        asio::connect_pipe(out_r, out_w);
        asio::connect_pipe(in_r, in_w);
        command cat(test::helper(), {"cat"});
        cat.stdin_(aspawn::redirect::from(in_r))
            .stdout_(aspawn::redirect::from(out_w));
        auto p = co_await aspawn::async_spawn(ex, cat, asio::use_awaitable);
        in_r.close();
        out_w.close();
        std::string text = "fed through a pipe\n";
        co_await asio::async_write(in_w, asio::buffer(text), asio::use_awaitable);
        in_w.close();
        auto [ec, n] = co_await asio::async_read(
            out_r, asio::dynamic_buffer(got), asio::as_tuple(asio::use_awaitable));
        CHECK(ec == asio::error::eof);
        CHECK(co_await p.async_wait(asio::use_awaitable) == 0);
      },
      asio::detached);
  ctx.run();
  CHECK(got == "fed through a pipe\n");
}

TEST_CASE("a two-process pipeline: producer | consumer", "[templates][pipes]") {
  asio::io_context ctx;
  asio::readable_pipe mid_r(ctx), out_r(ctx);
  asio::writable_pipe mid_w(ctx), out_w(ctx);
  asio::connect_pipe(mid_r, mid_w);
  asio::connect_pipe(out_r, out_w);
  command producer(test::helper(), {"count-to-stdout", "100000"});
  producer.stdout_(aspawn::redirect::from(mid_w));
  command consumer("wc", {"-c"});
  consumer.stdin_(aspawn::redirect::from(mid_r))
      .stdout_(aspawn::redirect::from(out_w));
  int codes = 0;
  auto on_exit = [&](error_code ec, int code) {
    CHECK_FALSE(ec);
    CHECK(code == 0);
    ++codes;
  };
  aspawn::async_execute(ctx, producer, on_exit);
  aspawn::async_execute(ctx, consumer, on_exit);
  // Both launches were initiated: the children hold their own copies.
  mid_r.close();
  mid_w.close();
  out_w.close();
  std::string text;
  asio::async_read(out_r, asio::dynamic_buffer(text),
                   [](error_code ec, std::size_t) {
                     CHECK(ec == asio::error::eof);
                   });
  ctx.run();
  CHECK(codes == 2);
  CHECK(text == "100000\n");
}
