// A downstream program: launches two children and checks their exit codes.
// Prints "consumer: ok" and exits 0 when both ran as expected.
#include <aspawn/aspawn.hpp>

#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <memory>
#include <utility>

namespace {

int checked = 0;
int failures = 0;

void expect_exit(boost::asio::io_context& ctx, aspawn::command& cmd,
                 int want, const char* what) {
  aspawn::async_spawn(ctx, cmd, [want, what](aspawn::error_code ec,
                                             aspawn::process p) {
    if (ec) {
      std::printf("consumer: %s: launch failed: %s\n", what,
                  ec.message().c_str());
      ++failures;
      return;
    }
    auto child = std::make_shared<aspawn::process>(std::move(p));
    child->async_wait([child, want, what](aspawn::error_code ec, int code) {
      ++checked;
      if (ec || code != want) {
        std::printf("consumer: %s: exit code %d, expected %d (%s)\n", what,
                    code, want, ec ? ec.message().c_str() : "no error");
        ++failures;
      }
    });
  });
}

}  // namespace

int main() {
  boost::asio::io_context ctx;
  aspawn::command t("/bin/true");
  aspawn::command three("sh", {"-c", "exit 3"});
  expect_exit(ctx, t, 0, "/bin/true");
  expect_exit(ctx, three, 3, "sh -c 'exit 3'");
  ctx.run();
  if (failures != 0 || checked != 2) {
    std::printf("consumer: FAILED (%d checked, %d failures)\n", checked,
                failures);
    return 1;
  }
  std::printf("consumer: ok\n");
  return 0;
}
