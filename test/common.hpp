// Shared test utilities.
#ifndef ASPAWN_TEST_COMMON_HPP
#define ASPAWN_TEST_COMMON_HPP

#include <aspawn/aspawn.hpp>

#include <boost/asio.hpp>

#include <catch2/catch.hpp>

#include "proc_util.hpp"

#include <cstdlib>
#include <filesystem>
#include <dirent.h>
#include <fcntl.h>
#include <set>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

using aspawn::error_code;

namespace test {

namespace asio = boost::asio;
using aspawn::error_code;

/// The helper child program (test/helper.cpp).
inline std::string helper() {
  const char* p = std::getenv("ASPAWN_TEST_HELPER");
  REQUIRE(p != nullptr);
  return p;
}

inline std::string srcdir() {
  const char* p = std::getenv("ASPAWN_TEST_SRCDIR");
  REQUIRE(p != nullptr);
  return p;
}

/// The helper with the given modes.
inline aspawn::command helper_cmd(std::initializer_list<std::string_view> args) {
  return aspawn::command(helper(), args);
}

/// Whether `fd` is open with FD_CLOEXEC.
inline bool is_cloexec(int fd) {
  int fl = ::fcntl(fd, F_GETFD);
  REQUIRE(fl >= 0);
  return (fl & FD_CLOEXEC) != 0;
}

/// Reads `s` (a synchronous Asio stream) to end-of-file.
template <typename Stream> std::string read_to_eof(Stream& s) {
  std::string out;
  error_code ec;
  asio::read(s, asio::dynamic_buffer(out), ec);
  CHECK(ec == asio::error::eof);
  return out;
}

/// An io_context whose shutdown() (normally called by its destructor) a test
/// can call first.
struct inspectable_context : asio::io_context {
  using asio::io_context::shutdown;
};

/// The open fds of this process.
inline std::set<int> open_fds() {
  auto fds = proc::open_fds();
  REQUIRE(fds.has_value());
  return *fds;
}

/// Whether this process has any child left (running or zombie).
inline bool has_children() { return proc::has_children(); }

/// A fresh directory under the system temp dir, named `prefix` and a
/// unique suffix, removed with its content.
struct temp_dir {
  std::string path;
  explicit temp_dir(const std::string& prefix) {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / (prefix + "XXXXXX"))
            .string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = std::filesystem::canonical(tmpl).string();
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  std::string operator/(const std::string& name) const {
    return path + "/" + name;
  }
};

/// A pipe whose read end is close-on-exec in the parent.
struct pipe_pair {
  int rd = -1, wr = -1;
  pipe_pair() { REQUIRE(::pipe2(&rd, O_CLOEXEC) == 0); }
  ~pipe_pair() { close_rd(); close_wr(); }
  void close_rd() { if (rd >= 0) ::close(rd); rd = -1; }
  void close_wr() { if (wr >= 0) ::close(wr); wr = -1; }
  std::string read_all() {
    close_wr();
    std::string out;
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(rd, buf, sizeof buf);
      if (n > 0) { out.append(buf, static_cast<std::size_t>(n)); continue; }
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    return out;
  }
};

/// Runs `cmd` with stdout captured; returns {exit code, output}.
struct run_result {
  error_code ec;
  int code = -1;
  std::string out;
};

inline run_result run(aspawn::command cmd) {
  pipe_pair p;
  cmd.stdout_(aspawn::redirect::from_fd(p.wr));
  asio::io_context ctx;
  run_result r;
  aspawn::async_execute(ctx, cmd, [&](error_code ec, int code) {
    r.ec = ec;
    r.code = code;
  });
  p.close_wr();
  // Read while the io_context runs the launch: the child may write a lot.
  std::string out;
  std::thread reader([&] { out = p.read_all(); });
  ctx.run();
  reader.join();
  r.out = std::move(out);
  return r;
}

/// Runs `cmd` (no capture) and returns the launch/wait error.
inline error_code run_error(const aspawn::command& cmd, int* code = nullptr) {
  asio::io_context ctx;
  error_code result;
  aspawn::async_execute(ctx, cmd, [&](error_code ec, int c) {
    result = ec;
    if (code)
      *code = c;
  });
  ctx.run();
  return result;
}

inline std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> v;
  std::size_t pos = 0;
  while (pos < s.size()) {
    auto nl = s.find('\n', pos);
    if (nl == std::string::npos) nl = s.size();
    v.push_back(s.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return v;
}

/// The value of a /proc/self/status-style line "Name:\tvalue" in `out`.
inline std::string field(const std::string& out, const std::string& name) {
  for (auto& l : lines(out))
    if (l.rfind(name + ":", 0) == 0) {
      auto v = l.substr(name.size() + 1);
      auto b = v.find_first_not_of(" \t");
      return b == std::string::npos ? "" : v.substr(b);
    }
  return "<missing>";
}

inline std::uint64_t hex(const std::string& s) {
  return std::stoull(s, nullptr, 16);
}

inline std::uint64_t sigbit(int sig) { return 1ull << (sig - 1); }

// Launches `cmd`, expects the launch to fail in the child at a step of
// `kind` with errno `err`, and checks that nothing is left behind.
inline aspawn::error_code expect_step_failure(const aspawn::command& cmd, aspawn::step_kind kind,
                                       int err) {
  REQUIRE_FALSE(cmd.error());
  auto before = test::open_fds();
  aspawn::error_code result;
  bool called = false;
  {
    asio::io_context ctx;
    aspawn::async_spawn(ctx, cmd, [&](aspawn::error_code ec, auto p) {
      called = true;
      result = ec;
      CHECK_FALSE(p.is_open());
      if (!ec) {
        aspawn::error_code ignored;
        p.terminate(ignored);
      }
    });
    ctx.run();
  }
  REQUIRE(called);
  INFO("launch result: " << result.message());
  CHECK(result.category() == aspawn::child_category());
  CHECK(aspawn::failed_step_kind(result) == kind);
  CHECK(aspawn::child_errno(result) == err);
  CHECK(result.message().find("(" + std::string(aspawn::to_string(kind)) +
                              ")") != std::string::npos);
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
  return result;
}
// Expects `cmd` to be invalid with `expected`, and a launch of it to fail
// with that error before anything is cloned or opened.
inline void expect_invalid(const aspawn::command& cmd, aspawn::error_code expected) {
  CHECK(cmd.error() == expected);
  auto before = test::open_fds();
  aspawn::error_code result;
  bool called = false;
  std::size_t stacks = 99;
  {
    asio::io_context ctx;
    aspawn::async_spawn(ctx, cmd, [&](aspawn::error_code ec, auto p) {
      called = true;
      result = ec;
      CHECK_FALSE(p.is_open());
    });
    ctx.run();
    stacks = aspawn::stack_pool::of(ctx).created();
  }
  REQUIRE(called);
  CHECK(result == expected);
  CHECK(stacks == 0);
  CHECK(test::open_fds() == before);
  CHECK_FALSE(test::has_children());
}

/// Starts an `async_wait` on `p` that a cancellation signal can end, runs
/// the context's ready handlers, and requires the wait still pending; then
/// cancels it (terminal) and requires `operation_aborted`.
template <typename Process>
void expect_wait_pending_then_cancelled(asio::io_context& ctx, Process& p) {
  asio::cancellation_signal sig;
  bool done = false;
  error_code result;
  p.async_wait(asio::bind_cancellation_slot(sig.slot(), [&](error_code ec, int) {
    result = ec;
    done = true;
  }));
  ctx.poll();
  CHECK_FALSE(done);
  sig.emit(asio::cancellation_type::terminal);
  ctx.restart();
  ctx.run_one();
  CHECK(done);
  CHECK(result == asio::error::operation_aborted);
}

/// A child function that blocks reading one byte from the fd stored in its
/// data; fails the step with -EPIPE on EOF.
ASPAWN_CHILD_FN inline int block_on_fd(void* data, std::size_t) {
  int fd = *static_cast<int*>(data);
  char c;
  long r;
  do
    r = aspawn::sys::read(fd, &c, 1);
  while (r == -EINTR);
  return r == 1 ? 0 : -EPIPE;
}

} // namespace test

#endif
