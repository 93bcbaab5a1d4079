// Signal discipline: what the child inherits, on both clone paths.
#include "common.hpp"

using aspawn::error_code;

#include <csignal>
#include <pthread.h>

namespace {

volatile sig_atomic_t usr1_seen = 0;
void on_usr1(int) { usr1_seen = 1; }

struct signal_setup {
  struct sigaction old_usr1{}, old_pipe{};
  sigset_t old_mask{};
  signal_setup() {
    struct sigaction sa{};
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGUSR1, &sa, &old_usr1);
    struct sigaction ign{};
    ign.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ign, &old_pipe);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    ::pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  }
  ~signal_setup() {
    ::sigaction(SIGUSR1, &old_usr1, nullptr);
    ::sigaction(SIGPIPE, &old_pipe, nullptr);
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  }
};

} // namespace

TEST_CASE("the child gets default handlers, kept ignores and the parent's mask",
          "[signals]") {
  auto method = GENERATE(aspawn::clone_method::clone3,
                         aspawn::clone_method::legacy_clone);
  INFO("clone method " << static_cast<int>(method));
  signal_setup setup;
  aspawn::set_clone_method(method);
  auto r = test::run(test::helper_cmd({"status"}));
  aspawn::set_clone_method(aspawn::clone_method::automatic);
  REQUIRE_FALSE(r.ec);
  auto caught = test::hex(test::field(r.out, "SigCgt"));
  auto ignored = test::hex(test::field(r.out, "SigIgn"));
  auto blocked = test::hex(test::field(r.out, "SigBlk"));
  CHECK(caught == 0);
  CHECK((ignored & test::sigbit(SIGPIPE)) != 0);
  CHECK(blocked == test::sigbit(SIGUSR2));
  // The parent's own state is untouched.
  sigset_t now;
  ::pthread_sigmask(SIG_SETMASK, nullptr, &now);
  CHECK(sigismember(&now, SIGUSR2));
  CHECK_FALSE(sigismember(&now, SIGUSR1));
  struct sigaction cur{};
  ::sigaction(SIGUSR1, nullptr, &cur);
  CHECK(cur.sa_handler == on_usr1);
}

TEST_CASE("the parent's cancellation state is restored after a launch",
          "[signals]") {
  int state = -1;
  auto r = test::run(test::helper_cmd({"exit", "0"}));
  CHECK_FALSE(r.ec);
  ::pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &state);
  CHECK(state == PTHREAD_CANCEL_ENABLE);
}

TEST_CASE("a signal storm on the parent neither breaks launches nor runs "
          "handlers in children",
          "[signals][stress]") {
  signal_setup setup;
  usr1_seen = 0;
  std::atomic<bool> stop{false};
  pthread_t main_thread = ::pthread_self();
  std::thread storm([&] {
    while (!stop.load())
      ::pthread_kill(main_thread, SIGUSR1);
  });
  test::asio::io_context ctx;
  aspawn::command cmd = test::helper_cmd({"status"});
  test::pipe_pair out;
  cmd.stdout_(aspawn::redirect::from_fd(out.wr));
  cmd.prepare();
  int ok = 0;
  for (int i = 0; i < 100; ++i)
    aspawn::async_execute(ctx, cmd, [&](error_code ec, int code) {
      if (!ec && code == 0)
        ++ok;
    });
  out.close_wr();
  std::string text;
  std::thread reader([&] { text = out.read_all(); });
  ctx.run();
  stop = true;
  storm.join();
  reader.join();
  CHECK(ok == 100);
  CHECK(usr1_seen == 1);
  // No child ever had a handler installed at exec.
  for (auto& line : test::lines(text))
    if (line.rfind("SigCgt:", 0) == 0)
      CHECK(test::hex(line.substr(7)) == 0);
}
