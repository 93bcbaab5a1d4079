// Launching: exit codes, failures, leaks, non-blocking launch, stack reuse.
#include "common.hpp"

using aspawn::error_code;

#include <sys/stat.h>

using aspawn::command;
using test::asio::io_context;

TEST_CASE("exit codes and death by signal are reported like Boost.Process",
          "[spawn]") {
  int code = -1;
  CHECK_FALSE(test::run_error(test::helper_cmd({"exit", "0"}), &code));
  CHECK(code == 0);
  CHECK_FALSE(test::run_error(test::helper_cmd({"exit", "42"}), &code));
  CHECK(code == 42);
  CHECK_FALSE(test::run_error(test::helper_cmd({"raise", "9"}), &code));
  CHECK(code == SIGKILL);
  CHECK_FALSE(test::run_error(test::helper_cmd({"raise", "15"}), &code));
  CHECK(code == SIGTERM);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("arguments reach the child unchanged", "[spawn]") {
  auto r = test::run(
      test::helper_cmd({"echo", "", "echo", "two words", "echo", "ünïcödé"}));
  REQUIRE_FALSE(r.ec);
  CHECK(r.out == "\ntwo words\nünïcödé\n");
  r = test::run(test::helper_cmd({"args"}).argv0("custom-zero"));
  CHECK(r.out == "arg[0]=custom-zero\narg[1]=args\n");
}

namespace {

// Launches cmd, expects failure with `expected` errno from the exec step,
// and checks nothing is left behind.
void expect_exec_failure(const command& cmd, int expected) {
  auto before = test::open_fds();
  error_code result;
  bool done = false;
  {
    io_context ctx;
    aspawn::async_spawn(ctx, cmd, [&](error_code ec, aspawn::process p) {
      result = ec;
      done = true;
      CHECK_FALSE(p.is_open());
    });
    ctx.run();
    CHECK(aspawn::stack_pool::of(ctx).in_use() == 0);
  }
  REQUIRE(done);
  CHECK(aspawn::child_errno(result) == expected);
  CHECK(aspawn::failed_step_kind(result) == aspawn::step_kind::exec);
  CHECK(result.message().find("exec") != std::string::npos);
  CHECK_FALSE(test::has_children());
  CHECK(test::open_fds() == before);
}

} // namespace

TEST_CASE("a missing executable fails with ENOENT and leaves nothing",
          "[spawn][errors]") {
  expect_exec_failure(command("/nonexistent/program"), ENOENT);
}

TEST_CASE("a file without execute permission fails with EACCES",
          "[spawn][errors]") {
  expect_exec_failure(command(test::srcdir() + "/not_executable.txt"), EACCES);
}

TEST_CASE("a directory fails with EACCES", "[spawn][errors]") {
  expect_exec_failure(command("/tmp"), EACCES);
}

TEST_CASE("a file of bad format fails with ENOEXEC", "[spawn][errors]") {
  // Copy with the exec bit: the source tree may not keep modes.
  std::string path = "/tmp/aspawn-bad-format-" + std::to_string(::getpid());
  {
    std::string data = "\x7fXLF\x02\x01\x01";
    data.append(40, '\0');
    int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0755);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, data.data(), data.size()) ==
            static_cast<ssize_t>(data.size()));
    ::close(fd);
  }
  expect_exec_failure(command(path), ENOEXEC);
  ::unlink(path.c_str());
}

TEST_CASE("arguments over the kernel's limit fail with E2BIG",
          "[spawn][errors]") {
  // One argument over MAX_ARG_STRLEN (32 pages): the kernel refuses it.
  expect_exec_failure(command("/bin/true").arg(std::string(200 * 1024, 'x')),
                      E2BIG);
  // In total over ARG_MAX: refused before anything is cloned.
  command huge("/bin/true");
  std::string chunk(100 * 1024, 'y');
  long arg_max = ::sysconf(_SC_ARG_MAX);
  for (long n = 0; n <= arg_max / static_cast<long>(chunk.size()) + 1; ++n)
    huge.arg(chunk);
  auto before = test::open_fds();
  auto ec = test::run_error(huge);
  CHECK(ec == aspawn::errc::arguments_too_large);
  CHECK(ec == boost::system::errc::argument_list_too_long);
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

TEST_CASE("invalid commands fail before anything is cloned",
          "[spawn][errors]") {
  using namespace std::string_literals;
  auto before = test::open_fds();
  auto ctx_ptr = std::make_unique<io_context>();
  auto& ctx = *ctx_ptr;
  error_code r1, r2;
  aspawn::async_spawn(ctx, command("/bin/true").arg("x\0y"s),
                      [&](error_code ec, aspawn::process) { r1 = ec; });
  aspawn::async_spawn(ctx, command(),
                      [&](error_code ec, aspawn::process) { r2 = ec; });
  ctx.run();
  CHECK(r1 == aspawn::errc::embedded_nul);
  CHECK(r2 == aspawn::errc::empty_command);
  CHECK(aspawn::stack_pool::of(ctx).created() == 0);
  ctx_ptr.reset();
  CHECK(test::open_fds() == before);
}


TEST_CASE("the caller is not blocked while the child sets itself up",
          "[spawn]") {
  // The child blocks in its setup until the parent writes to a pipe, which
  // the parent does only after async_spawn has returned: a launcher that
  // waited for exec would deadlock here.
  test::pipe_pair gate;
  int fd = gate.rd;
  command cmd = test::helper_cmd({"exit", "7"});
  cmd.inherit_fd(gate.rd).child_function(test::block_on_fd, &fd, sizeof fd);
  io_context ctx;
  bool spawned = false;
  int code = -1;
  aspawn::process proc(ctx);
  aspawn::async_spawn(ctx, cmd, [&](error_code ec, aspawn::process p) {
    REQUIRE_FALSE(ec);
    spawned = true;
    proc = std::move(p);
    proc.async_wait([&](error_code ec2, int c) {
      CHECK_FALSE(ec2);
      code = c;
    });
  });
  // async_spawn returned with the child blocked in its setup.
  CHECK_FALSE(spawned);
  CHECK(aspawn::stack_pool::of(ctx).in_use() == 1);
  ctx.poll();
  CHECK_FALSE(spawned);
  REQUIRE(::write(gate.wr, "g", 1) == 1);
  ctx.run();
  CHECK(spawned);
  CHECK(code == 7);
  CHECK(aspawn::stack_pool::of(ctx).in_use() == 0);
}

TEST_CASE("1,000 sequential launches reuse at most 2 stacks",
          "[spawn][stacks]") {
  io_context ctx;
  command cmd("/bin/true");
  cmd.prepare();
  int done = 0;
  std::function<void()> next = [&] {
    aspawn::async_execute(ctx, cmd, [&](error_code ec, int code) {
      REQUIRE_FALSE(ec);
      REQUIRE(code == 0);
      if (++done < 1000)
        next();
    });
  };
  next();
  ctx.run();
  CHECK(done == 1000);
  auto& pool = aspawn::stack_pool::of(ctx);
  CHECK(pool.created() <= 2);
  CHECK(pool.in_use() == 0);
  CHECK(pool.cached() == pool.created());
}

TEST_CASE("launch data larger than a pooled stack gets a one-off stack",
          "[spawn][stacks]") {
  io_context ctx;
  auto& pool = aspawn::stack_pool::of(ctx);
  pool.set_stack_size(64 * 1024);
  command cmd = test::helper_cmd({"exit", "0"});
  for (int i = 0; i < 40; ++i)
    cmd.arg(std::string(4000, 'a' + i % 26));
  int code = -1;
  aspawn::async_execute(ctx, cmd, [&](error_code ec, int c) {
    REQUIRE_FALSE(ec);
    code = c;
  });
  ctx.run();
  CHECK(code == 0);
  CHECK(pool.in_use() == 0);
  CHECK(pool.cached() == 0); // the large stack was unmapped, not cached
}

TEST_CASE("a command may be destroyed right after the launch is initiated",
          "[spawn]") {
  io_context ctx;
  int code = -1;
  {
    command cmd = test::helper_cmd({"exit", "5"});
    aspawn::async_execute(ctx, cmd, [&](error_code ec, int c) {
      REQUIRE_FALSE(ec);
      code = c;
    });
  }
  ctx.run();
  CHECK(code == 5);
}

TEST_CASE("both clone paths launch", "[spawn][clone]") {
  auto method = GENERATE(aspawn::clone_method::clone3,
                         aspawn::clone_method::legacy_clone);
  aspawn::set_clone_method(method);
  auto r = test::run(test::helper_cmd({"echo", "hi"}));
  aspawn::set_clone_method(aspawn::clone_method::automatic);
  CHECK_FALSE(r.ec);
  CHECK(r.out == "hi\n");
  CHECK(r.code == 0);
}

TEST_CASE("a user child function that crashes kills only the child",
          "[spawn]") {
  struct local {
    // Recurses until the guard page is hit (the depth never runs out).
    ASPAWN_CHILD_FN static int overflow(void* p, std::size_t depth) {
      volatile char buf[4096];
      buf[0] = 1;
      if (depth == 0)
        return buf[0];
      return overflow(p, depth + 1) + buf[1];
    }
  };
  io_context ctx;
  command cmd("/bin/true");
  int data = 0;
  cmd.child_function(&local::overflow, &data, sizeof data);
  int code = -1;
  error_code ec;
  aspawn::async_execute(ctx, cmd, [&](error_code e, int c) {
    ec = e;
    code = c;
  });
  ctx.run();
  CHECK_FALSE(ec); // died before exec: the launch "succeeded", the wait tells
  CHECK(code == SIGSEGV);
  CHECK(aspawn::stack_pool::of(ctx).in_use() == 0);
}
