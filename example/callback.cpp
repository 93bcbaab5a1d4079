// Classic completion handlers: launch, then wait, with errors as error_code.
#include <aspawn/aspawn.hpp>

#include <boost/asio.hpp>

#include <cstdio>
#include <memory>

namespace asio = boost::asio;

int main() {
  asio::io_context ctx;

  aspawn::command ok("sh", {"-c", "exit 3"});
  aspawn::async_spawn(ctx, ok, [](aspawn::error_code ec, aspawn::process p) {
    if (ec) {
      std::printf("launch failed: %s\n", ec.message().c_str());
      return;
    }
    auto child = std::make_shared<aspawn::process>(std::move(p));
    child->async_wait([child](aspawn::error_code ec, int code) {
      std::printf("pid %d exited with %d (%s)\n", child->id(), code,
                  ec ? ec.message().c_str() : "ok");
    });
  });

  aspawn::command missing("/no/such/program");
  aspawn::async_execute(ctx, missing, [](aspawn::error_code ec, int) {
    std::printf("missing program: %s\n", ec.message().c_str());
  });

  ctx.run();
}
