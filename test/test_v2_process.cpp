// The Boost.Process v2 surface of basic_process: launching constructors,
// attaching, exit status with resource usage, async_stop, the launcher.
#include "common.hpp"

#include <boost/filesystem/path.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <spawn.h>
#include <string_view>

using aspawn::error_code;
using test::asio::io_context;
namespace asio = test::asio;
using namespace std::chrono_literals;

namespace {

// A path type known only by its native() member.
struct custom_path {
  std::string s;
  const std::string& native() const { return s; }
};

// A child of this process that aspawn does not own.
int posix_spawn_helper(const char* mode, const char* arg) {
  std::string h = test::helper();
  char* argv[] = {h.data(), const_cast<char*>(mode), const_cast<char*>(arg),
                  nullptr};
  pid_t pid;
  REQUIRE(::posix_spawn(&pid, h.c_str(), nullptr, nullptr, argv, environ) ==
          0);
  return pid;
}

} // namespace

TEST_CASE("v2 constructors launch with every path and argument form",
          "[v2][process]") {
  io_context ctx;
  const std::string h = test::helper();

  aspawn::process a(ctx, h, {"exit", "1"});
  aspawn::process b(ctx, std::string_view(h), {"exit", "2"});
  aspawn::process c(ctx, h.c_str(), {"exit", "3"});
  aspawn::process d(ctx, std::filesystem::path(h), {"exit", "4"});
  aspawn::process e(ctx, boost::filesystem::path(h), {"exit", "5"});
  aspawn::process f(ctx, custom_path{h}, {"exit", "6"});
  std::vector<std::string> strings{"exit", "7"};
  aspawn::process g(ctx.get_executor(), h, strings);
  std::vector<std::string_view> views{"exit", "8"};
  aspawn::process i(ctx, h, views);
  const char* raw[] = {"exit", "9"};
  aspawn::process j(ctx.get_executor(), h, raw);
  std::array<std::string, 2> arr{"exit", "10"};
  aspawn::process k(ctx.get_executor(), h, arr);

  int expected = 1;
  for (auto* p : {&a, &b, &c, &d, &e, &f, &g, &i, &j, &k}) {
    CHECK(p->is_open());
    CHECK(p->id() > 0);
    CHECK(p->wait() == expected++);
  }
}

TEST_CASE("argv[0] is the path as given; a bare name is not searched in PATH",
          "[v2][process]") {
  io_context ctx;
  asio::readable_pipe out(ctx);
  aspawn::process p(ctx, test::helper(), {"args"},
                    aspawn::process_stdio{{}, out, {}});
  CHECK(test::read_to_eof(out) == "arg[0]=" + test::helper() + "\narg[1]=args\n");
  CHECK(p.wait() == 0);

  // "sh" exists in PATH, but v2 paths are paths: ./sh does not exist here.
  error_code ec;
  aspawn::process q(ctx, ec, "sh", {"-c", "exit 0"},
                    aspawn::process_start_dir("/"));
  CHECK(ec == boost::system::errc::no_such_file_or_directory);
  CHECK_FALSE(q.is_open());

  // A relative path is resolved from the start directory.
  auto dir = std::filesystem::path(test::helper()).parent_path();
  auto name = std::filesystem::path(test::helper()).filename().string();
  aspawn::process r(ctx, name, {"exit", "12"}, aspawn::process_start_dir(dir));
  CHECK(r.wait() == 12);
}

TEST_CASE("launch failures throw, or report through error_code, and leave "
          "nothing",
          "[v2][process][errors]") {
  io_context ctx;
  {
    aspawn::process warm(ctx, test::helper(), {"exit", "0"});
    warm.wait();
  }
  const auto fds = test::open_fds();

  try {
    aspawn::process p(ctx, "/nonexistent/program", {"x"});
    FAIL("no exception");
  } catch (const aspawn::system_error& e) {
    CHECK(e.code() == boost::system::errc::no_such_file_or_directory);
    CHECK(aspawn::failed_step_kind(e.code()) == aspawn::step_kind::exec);
    CHECK(std::string(e.what()).find("/nonexistent/program") !=
          std::string::npos);
  }

  error_code ec;
  aspawn::process empty_exe(ctx.get_executor(), ec, "", {});
  CHECK(ec == aspawn::errc::empty_executable);
  CHECK_FALSE(empty_exe.is_open());

  aspawn::process nul_arg(ctx, ec, test::helper(),
                          {std::string_view("a\0b", 3)});
  CHECK(ec == aspawn::errc::embedded_nul);

  std::vector<std::string> args{"exit", "0"};
  aspawn::process bad_dir(ctx.get_executor(), ec, test::helper(), args,
                          aspawn::process_start_dir("/nonexistent/dir"));
  CHECK(ec == boost::system::errc::no_such_file_or_directory);
  CHECK(aspawn::failed_step_kind(ec) == aspawn::step_kind::chdir);

  {
    aspawn::process ok(ctx, ec, test::helper(), args);
    CHECK_FALSE(ec);
    CHECK(ok.wait() == 0);
  }

  CHECK_FALSE(test::has_children());
  CHECK(test::open_fds() == fds);
}

TEST_CASE("initializers: the callable and on_setup forms", "[v2][process]") {
  io_context ctx;
  asio::readable_pipe out(ctx);
  struct add_env {
    error_code on_setup(aspawn::command& c) const {
      c.env_set("FROM_MEMBER", "1");
      return {};
    }
  };
  aspawn::process p(ctx, test::helper(),
                    {"getenv", "FROM_LAMBDA", "getenv", "FROM_MEMBER"},
                    [](aspawn::command& c) { c.env_set("FROM_LAMBDA", "2"); },
                    add_env{}, aspawn::process_stdio{{}, out, {}});
  CHECK(test::read_to_eof(out) == "FROM_LAMBDA=2\nFROM_MEMBER=1\n");
  CHECK(p.wait() == 0);

  // An initializer's error stops the launch.
  error_code ec;
  aspawn::process q(ctx, ec, test::helper(), {},
                    [](aspawn::command&) {
                      return error_code(EPERM,
                                        boost::system::system_category());
                    });
  CHECK(ec == boost::system::errc::operation_not_permitted);
  CHECK_FALSE(q.is_open());
}

TEST_CASE("make_command translates initializers for async_spawn",
          "[v2][process]") {
  io_context ctx;
  asio::readable_pipe out(ctx);
  int code = -1;
  {
    // The pipe end the child gets belongs to `io`: it must stay open until
    // the launch has been initiated.
    aspawn::process_stdio io{{}, out, {}};
    aspawn::command cmd = aspawn::make_command(
        test::helper(), {"cwd", "getenv", "ONLY"},
        aspawn::process_environment{"ONLY=this"},
        aspawn::process_start_dir("/"), io);
    aspawn::async_execute(ctx, cmd, [&](error_code ec, int c) {
      CHECK_FALSE(ec);
      code = c;
    });
  }
  ctx.run();
  CHECK(code == 0);
  CHECK(test::read_to_eof(out) == "cwd=/\nONLY=this\n");

  aspawn::command bad;
  CHECK(aspawn::make_command(bad, "", std::vector<std::string>{}) ==
        aspawn::errc::empty_executable);
  CHECK_THROWS_AS(aspawn::make_command("", {}), aspawn::system_error);
}

TEST_CASE("default_process_launcher", "[v2][process]") {
  io_context ctx;
  aspawn::default_process_launcher launch;
  auto p = launch(ctx, test::helper(), {"exit", "3"});
  static_assert(std::is_same_v<decltype(p),
                               aspawn::basic_process<io_context::executor_type>>);
  CHECK(p.wait() == 3);

  std::vector<std::string> args{"exit", "4"};
  aspawn::process q = launch(ctx.get_executor(), test::helper(), args);
  CHECK(q.wait() == 4);

  error_code ec;
  auto r = launch(ctx, ec, "/nonexistent/program", {});
  CHECK(ec == boost::system::errc::no_such_file_or_directory);
  CHECK_FALSE(r.is_open());
  auto s = launch(ctx.get_executor(), ec, test::helper(), args);
  CHECK_FALSE(ec);
  CHECK(s.wait() == 4);
  CHECK_THROWS_AS(launch(ctx, "/nonexistent/program", {}),
                  aspawn::system_error);
}

TEST_CASE("attaching to a child by pid", "[v2][process]") {
  io_context ctx;

  SECTION("waits, signals and exit codes go through the new pidfd") {
    int pid = posix_spawn_helper("pause", nullptr);
    aspawn::process p(ctx.get_executor(), pid);
    CHECK(p.id() == pid);
    CHECK(p.native_handle() >= 0);
    CHECK(p.running());
    p.request_exit();
    int code = -1;
    p.async_wait([&](error_code ec, int c) {
      CHECK_FALSE(ec);
      code = c;
    });
    ctx.run();
    CHECK(code == SIGTERM);
  }

  SECTION("from a context, with error_code") {
    int pid = posix_spawn_helper("exit", "5");
    error_code ec;
    aspawn::process p(ctx, pid, ec);
    CHECK_FALSE(ec);
    CHECK(p.wait() == 5);
  }

  SECTION("a pid and a pidfd") {
    int pid = posix_spawn_helper("exit", "6");
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    REQUIRE(fd >= 0);
    aspawn::process p(ctx, pid, fd);
    CHECK(p.native_handle() == fd);
    CHECK(p.wait() == 6);
  }

  SECTION("the destructor kills an attached child") {
    int pid = posix_spawn_helper("pause", nullptr);
    { aspawn::process p(ctx, pid); }
    ctx.run();
    CHECK(::kill(pid, 0) == -1);
  }

  SECTION("bad pids") {
    error_code ec;
    aspawn::process zero(ctx.get_executor(), 0, ec);
    CHECK(ec == boost::system::errc::invalid_argument);
    CHECK_FALSE(zero.is_open());

    int gone = posix_spawn_helper("exit", "0");
    int st;
    REQUIRE(::waitpid(gone, &st, 0) == gone);
    aspawn::process reaped(ctx.get_executor(), gone, ec);
    CHECK(ec == boost::system::errc::no_such_process);
    CHECK_THROWS_AS(aspawn::process(ctx, gone), aspawn::system_error);
  }
}

TEST_CASE("attaching to a process that is not a child", "[v2][process]") {
  io_context ctx;
  // This very process: it can be watched, never waited for or killed.
  {
    aspawn::process self(ctx, aspawn::current_pid());
    CHECK(self.is_open());
    // An asynchronous wait is watched until the process exits: the reap it
    // tries first fails (not a child) and must not end the wait.
    test::expect_wait_pending_then_cancelled(ctx, self);
    error_code ec;
    self.wait(ec);
    CHECK(ec == aspawn::errc::status_unavailable);
  } // the destructor must not send SIGKILL to a process that is not a child
  CHECK(aspawn::current_pid() == ::getpid());
}

TEST_CASE("exit_status: how the child ended and what it used",
          "[v2][process][status]") {
  io_context ctx;

  SECTION("exited") {
    aspawn::process p(ctx, test::helper(),
                      {"count-to-stdout", "2000000", "exit", "3"},
                      aspawn::process_stdio{{}, nullptr, {}});
    CHECK(p.status().running());
    aspawn::exit_status st;
    p.async_wait_status([&](error_code ec, aspawn::exit_status s) {
      CHECK_FALSE(ec);
      st = s;
    });
    ctx.run();
    CHECK_FALSE(st.running());
    CHECK(st.exited());
    CHECK_FALSE(st.signaled());
    CHECK(st.exit_code() == 3);
    CHECK(st.code() == 3);
    CHECK(st.term_signal() == 0);
    CHECK(st.max_rss_bytes() > 0);
    CHECK(st.user_time() + st.system_time() >= 0us);
    CHECK(st.native() == p.native_exit_code());
    CHECK(p.status().max_rss_bytes() == st.max_rss_bytes());
  }

  SECTION("signalled, through the synchronous wait") {
    aspawn::process p(ctx, test::helper(), {"raise", "9"});
    p.wait();
    auto st = p.status();
    CHECK(st.signaled());
    CHECK(st.term_signal() == SIGKILL);
    CHECK(st.exit_code() == -1);
    CHECK(st.code() == SIGKILL);
    CHECK_FALSE(st.core_dumped());
    CHECK(st.max_rss_bytes() > 0);
  }

  SECTION("the v2 exit-code functions") {
    CHECK(aspawn::process_is_running(aspawn::still_active));
    CHECK_FALSE(aspawn::process_is_running(3 << 8));
    CHECK_FALSE(aspawn::process_is_running(SIGTERM));
    CHECK(aspawn::evaluate_exit_code(3 << 8) == 3);
    CHECK(aspawn::evaluate_exit_code(SIGTERM) == SIGTERM);
    static_assert(std::is_same_v<aspawn::pid_type, int>);
    static_assert(std::is_same_v<aspawn::native_exit_code_type, int>);
  }

  SECTION("no process") {
    aspawn::process empty(ctx);
    error_code result;
    empty.async_wait_status([&](error_code ec, aspawn::exit_status s) {
      result = ec;
      CHECK(s.running());
    });
    ctx.run();
    CHECK(result == aspawn::errc::no_process);
  }
}

TEST_CASE("async_stop: SIGTERM, then SIGKILL after the grace period",
          "[v2][process][stop]") {
  io_context ctx;
  auto stop = [&](aspawn::process& p, auto grace) {
    error_code result;
    aspawn::exit_status st;
    p.async_stop(grace, [&](error_code ec, aspawn::exit_status s) {
      result = ec;
      st = s;
    });
    ctx.run();
    ctx.restart();
    CHECK_FALSE(result);
    return st;
  };

  SECTION("a child that obeys SIGTERM stops at once") {
    aspawn::process p(ctx, test::helper(), {"pause"});
    auto t0 = std::chrono::steady_clock::now();
    auto st = stop(p, 30s);
    CHECK(std::chrono::steady_clock::now() - t0 < 20s);
    CHECK(st.term_signal() == SIGTERM);
    CHECK(p.exit_code() == SIGTERM);
  }

  SECTION("a child that ignores SIGTERM is killed after the grace period") {
    aspawn::process p(ctx, test::helper(), {"pause"},
                      [](aspawn::command& c) {
                        c.signal_ignore(test::sigbit(SIGTERM));
                      });
    auto st = stop(p, 50ms);
    CHECK(st.term_signal() == SIGKILL);
  }

  SECTION("a child that already exited is just reaped") {
    aspawn::process p(ctx, test::helper(), {"exit", "4"});
    // Wait for the exit without reaping: the pidfd becomes readable.
    pollfd pfd{p.native_handle(), POLLIN, 0};
    REQUIRE(::poll(&pfd, 1, -1) == 1);
    auto st = stop(p, 1s);
    CHECK(st.exit_code() == 4);
  }

  SECTION("no process") {
    aspawn::process p(ctx);
    error_code result;
    p.async_stop(1s, [&](error_code ec, aspawn::exit_status) { result = ec; });
    ctx.run();
    CHECK(result == aspawn::errc::no_process);
  }

  SECTION("cancelled: completes with operation_aborted, the child lives on") {
    aspawn::process p(ctx, test::helper(), {"pause"},
                      [](aspawn::command& c) {
                        c.signal_ignore(test::sigbit(SIGTERM));
                      });
    asio::cancellation_signal sig;
    error_code result;
    p.async_stop(30s, asio::bind_cancellation_slot(
                          sig.slot(), [&](error_code ec, aspawn::exit_status s) {
                            result = ec;
                            CHECK(s.running());
                          }));
    asio::post(ctx, [&] { sig.emit(asio::cancellation_type::terminal); });
    ctx.run();
    CHECK(result == asio::error::operation_aborted);
    CHECK(p.running());
    p.terminate();
    CHECK(p.exit_code() == SIGKILL);
  }
}

TEST_CASE("bounding a wait with a timer", "[v2][process][timeout]") {
  io_context ctx;
  aspawn::process p(ctx, test::helper(), {"pause"});

  // The timer cancels the wait when it fires; the wait cancels the timer
  // when the child exits first.
  asio::steady_timer deadline(ctx, 50ms);
  asio::cancellation_signal cancel_wait;
  error_code wait_result;
  bool timed_out = false;
  deadline.async_wait([&](error_code ec) {
    if (!ec) {
      timed_out = true;
      cancel_wait.emit(asio::cancellation_type::terminal);
    }
  });
  p.async_wait(asio::bind_cancellation_slot(cancel_wait.slot(),
                                            [&](error_code ec, int) {
                                              wait_result = ec;
                                              deadline.cancel();
                                            }));
  ctx.run();
  ctx.restart();
  CHECK(timed_out);
  CHECK(wait_result == asio::error::operation_aborted);
  CHECK(p.running()); // cancelling the wait left the child alone

  // The same with a child that exits in time.
  aspawn::process q(ctx, test::helper(), {"exit", "2"});
  asio::steady_timer long_deadline(ctx, 60s);
  int code = -1;
  long_deadline.async_wait([&](error_code ec) {
    if (!ec)
      q.terminate();
  });
  q.async_wait([&](error_code ec, int c) {
    CHECK_FALSE(ec);
    code = c;
    long_deadline.cancel();
  });
  ctx.run();
  CHECK(code == 2);
  p.terminate();
}

TEST_CASE("partial and total cancellation reach async_wait", "[v2][process]") {
  io_context ctx;
  aspawn::process p(ctx, test::helper(), {"pause"});
  for (auto type : {asio::cancellation_type::partial,
                    asio::cancellation_type::total}) {
    asio::cancellation_signal sig;
    error_code result;
    p.async_wait(asio::bind_cancellation_slot(
        sig.slot(), [&](error_code ec, int) { result = ec; }));
    asio::post(ctx, [&] { sig.emit(type); });
    ctx.run();
    ctx.restart();
    CHECK(result == asio::error::operation_aborted);
  }
  CHECK(p.running());
}

TEST_CASE("terminate while async_wait is pending completes the wait",
          "[v2][process]") {
  io_context ctx;
  aspawn::process p(ctx, test::helper(), {"pause"});
  int code = -1;
  error_code result;
  p.async_wait([&](error_code ec, int c) {
    result = ec;
    code = c;
  });
  asio::post(ctx, [&] { p.terminate(); });
  ctx.run();
  CHECK_FALSE(result);
  CHECK(code == SIGKILL);
}

TEST_CASE("suspend, resume and signal on a v2-launched process",
          "[v2][process]") {
  io_context ctx;
  aspawn::process p(ctx, test::helper(), {"pause"});
  p.suspend();
  p.resume();
  p.signal(SIGUSR1);
  CHECK(p.wait() == SIGUSR1);
  CHECK_FALSE(p.running());
  CHECK(p.wait() == SIGUSR1); // the stored status, again
}
