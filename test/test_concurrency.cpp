// Many launches at once, from several threads.
#include "common.hpp"

using aspawn::error_code;

TEST_CASE("4 threads each launching 250 children at once on one io_context",
          "[concurrency]") {
  auto fds_before = test::open_fds();
  auto ctx_ptr = std::make_unique<test::asio::io_context>();
  auto& ctx = *ctx_ptr;
  aspawn::command cmd = test::helper_cmd({"exit", "0"});
  cmd.prepare();
  std::atomic<int> spawned{0}, exited{0}, failures{0};
  std::vector<std::thread> threads;
  // Launch from 4 threads that also run the context.
  auto guard = test::asio::make_work_guard(ctx);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 250; ++i)
        test::asio::post(ctx, [&] {
          aspawn::async_spawn(ctx, cmd, [&](error_code ec, aspawn::process p) {
            if (ec) {
              ++failures;
              return;
            }
            ++spawned;
            auto holder = std::make_shared<aspawn::process>(std::move(p));
            holder->async_wait([&, holder](error_code ec2, int code) {
              if (ec2 || code != 0)
                ++failures;
              ++exited;
            });
          });
        });
      ctx.run();
    });
  // Release the work guard once every child has been waited for.
  while (exited.load() + failures.load() < 1000)
    std::this_thread::yield();
  guard.reset();
  for (auto& th : threads)
    th.join();
  CHECK(failures == 0);
  CHECK(spawned == 1000);
  CHECK(exited == 1000);
  auto& pool = aspawn::stack_pool::of(ctx);
  CHECK(pool.in_use() == 0);
  INFO("stacks created: " << pool.created());
  CHECK(pool.created() <= 1000);
  CHECK_FALSE(test::has_children());
  ctx_ptr.reset();
  CHECK(test::open_fds() == fds_before);
}

TEST_CASE("several io_contexts launch at once, each with its own pool",
          "[concurrency]") {
  constexpr int contexts = 3, per = 100;
  std::vector<std::unique_ptr<test::asio::io_context>> ctxs;
  std::atomic<int> ok{0};
  aspawn::command cmd = test::helper_cmd({"exit", "1"});
  cmd.prepare();
  for (int c = 0; c < contexts; ++c) {
    ctxs.push_back(std::make_unique<test::asio::io_context>());
    for (int i = 0; i < per; ++i)
      aspawn::async_execute(*ctxs.back(), cmd, [&](error_code ec, int code) {
        if (!ec && code == 1)
          ++ok;
      });
  }
  std::vector<std::thread> threads;
  for (auto& c : ctxs)
    threads.emplace_back([&c] { c->run(); });
  for (auto& t : threads)
    t.join();
  CHECK(ok == contexts * per);
  for (auto& c : ctxs)
    CHECK(aspawn::stack_pool::of(*c).in_use() == 0);
  CHECK_FALSE(test::has_children());
}
