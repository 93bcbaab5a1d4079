// A parent that exits under its child, for the kill-on-parent-death tests
// (test/test_lifetime.cpp). Linked with aspawn.
//
// Usage: aspawn-test-orphan-parent HELPER MODE
//
// Launches `HELPER sleep 100000` with `async_spawn` and the options of MODE,
// prints one line and exits at once with _exit(0), leaving the child behind:
//
//   kill       kill_on_parent_death(), whatever mechanism the kernel offers
//   kill-nnp   the same with no_new_privs() (CLONE_NNP where it helps)
//   kill-pdeathsig  kill_on_parent_death() with CLONE_PIDFD_AUTOKILL refused
//              (allow_pidfd_autokill(false)): PR_SET_PDEATHSIG
//   kill-uid   as kill-pdeathsig, with uid and gid 65534 set by steps given
//              after kill_on_parent_death() (root only): a credential change
//              clears the parent-death signal, so it must be armed after
//   none       no option: the child outlives this program
//
// Output: `child=PID mechanism=NAME` where NAME is autokill, pdeathsig or
// unknown (MODE none). Exits 3 on a launch failure (message on stderr).

#include <aspawn/aspawn.hpp>

#include <boost/asio.hpp>

#include <cstdio>
#include <string>
#include <string_view>

#include <unistd.h>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s HELPER MODE\n", argv[0]);
    return 2;
  }
  const std::string_view mode = argv[2];
  aspawn::command cmd(argv[1], {"sleep", "100000"});
  // Nothing of the caller's: its output pipe must reach end-of-file when
  // this program exits.
  cmd.stdin_(aspawn::redirect::null())
      .stdout_(aspawn::redirect::null())
      .stderr_(aspawn::redirect::null());
  if (mode == "kill" || mode == "kill-pdeathsig") {
    cmd.kill_on_parent_death();
  } else if (mode == "kill-nnp") {
    cmd.no_new_privs().kill_on_parent_death();
  } else if (mode == "kill-uid") {
    cmd.kill_on_parent_death().gid(65534).uid(65534);
  } else if (mode != "none") {
    std::fprintf(stderr, "unknown mode %s\n", argv[2]);
    return 2;
  }
  if (mode == "kill-pdeathsig" || mode == "kill-uid")
    aspawn::allow_pidfd_autokill(false);

  boost::asio::io_context ctx;
  int pid = -1;
  aspawn::async_spawn(ctx, cmd,
                      [&](aspawn::error_code ec, aspawn::process p) {
                        if (ec) {
                          std::fprintf(stderr, "launch: %s\n",
                                       ec.message().c_str());
                          return;
                        }
                        pid = p.id();
                        p.detach(); // nothing here kills it
                        ctx.stop(); // the reaper would wait for it
                      });
  ctx.run();
  if (pid < 0)
    return 3;
  const char* mechanism = "unknown";
  switch (aspawn::kill_on_parent_death_mechanism()) {
  case aspawn::parent_death_mechanism::pidfd_autokill:
    mechanism = "autokill";
    break;
  case aspawn::parent_death_mechanism::parent_death_signal:
    mechanism = "pdeathsig";
    break;
  case aspawn::parent_death_mechanism::unknown:
    break;
  }
  std::string line = "child=" + std::to_string(pid) +
                     " mechanism=" + mechanism + "\n";
  if (::write(STDOUT_FILENO, line.data(), line.size()) < 0)
    return 3;
  ::_exit(0); // no destructor runs: the child is left as it is
}
