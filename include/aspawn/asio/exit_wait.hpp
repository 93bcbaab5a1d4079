//
// aspawn/asio/exit_wait.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~
//
// A process object's exit wait, as the stack pool's watcher holds it.
//
// `basic_process::async_wait` parks its operation on the execution
// context's `stack_pool`, which watches the pidfd with the status pipes of
// the launches in flight (see docs/design.md, "Watching for exits"): the
// operation lives in an `exit_waiting` entry, in memory of its own, until
// the pidfd becomes readable or the wait is taken off the watcher.
// `async_wait_status` is `async_wait` delivering the whole `exit_status`.
//
// Layer asio/: the Asio objects (stack pool and its watcher, process, reaper,
// async_spawn). It may use child/, command/ and core/.
//

#ifndef ASPAWN_ASIO_EXIT_WAIT_HPP
#define ASPAWN_ASIO_EXIT_WAIT_HPP

#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/recycling_allocator.hpp>

#include <aspawn/asio/stack_pool.hpp>
#include <aspawn/command/error.hpp>

namespace aspawn::detail {

// The allocator for `T` that an operation `op` allocates with: its handler's
// associated allocator, or else a recycling one (as Asio's own operations
// do, so that a warm event loop reuses the memory).
template <typename T, typename Op> auto op_allocator(const Op& op) {
  auto a = boost::asio::get_associated_allocator(op);
  if constexpr (std::is_same_v<decltype(a), std::allocator<void>>)
    return boost::asio::recycling_allocator<T>();
  else
    return typename std::allocator_traits<decltype(a)>::template rebind_alloc<
        T>(a);
}

// Whether an entry `T` for the operation `Op` takes its memory from the
// pool's blocks (stack_pool::take_wait_block): when the handler has no
// allocator of its own and the entry fits a block. Asio's per-thread cache,
// the alternative, keeps two blocks, and a loop waiting on many children
// frees more than two at once whenever several exit together.
template <typename T, typename Op>
inline constexpr bool in_pool_block =
    std::is_same_v<boost::asio::associated_allocator_t<Op>,
                   std::allocator<void>> &&
    sizeof(T) <= stack_pool::wait_block_size &&
    alignof(T) <= alignof(std::max_align_t);

// Memory for one `T`, the entry of the operation `op`, and its release.
template <typename T, typename Op>
T* allocate_entry(stack_pool& pool, const Op& op) {
  if constexpr (in_pool_block<T, Op>)
    return static_cast<T*>(pool.take_wait_block());
  else
    return op_allocator<T>(op).allocate(1);
}
template <typename T, typename Op>
void deallocate_entry(stack_pool& pool, const Op& op, T* p) noexcept {
  if constexpr (in_pool_block<T, Op>)
    pool.give_wait_block(p);
  else
    op_allocator<T>(op).deallocate(p, 1);
}

// A process object's exit wait as the stack pool's watcher holds it, in
// memory of its own (allocate_entry, from `pool`).
template <typename Self> struct exit_waiting : parked_op<Self> {
  using typename parked_op<Self>::work_type;
  stack_pool* pool;

  exit_waiting(Self&& s, stack_pool& p)
      : parked_op<Self>(std::move(s)), pool(&p) {
    this->counted = false;
    this->fire = &on_fire;
  }

  // The operation resumes with success when the pidfd became readable
  // (`events` from the watcher), and with `operation_aborted` when the
  // wait was taken off the watcher (no events: cancelled, or the process
  // object let go of its child).
  static void on_fire(watch_entry* e, std::uint32_t events, fire_mode mode) {
    auto* w = static_cast<exit_waiting*>(e);
    Self op(std::move(w->self));
    work_type work(std::move(w->work));
    // The memory goes back before the operation resumes, as with Asio's
    // own operations.
    stack_pool* pool = w->pool;
    w->~exit_waiting();
    deallocate_entry(*pool, op, w);
    if (mode == fire_mode::destroy) {
      op.get_cancellation_state().slot().clear();
      return;
    }
    error_code ec;
    if (events == 0)
      ec = boost::asio::error::operation_aborted;
    auto ex = op.get_executor();
    resume(ex, std::move(op), mode, ec);
  }
};

// The io_context executor of type `Target` that `e` is, or that it wraps
// (an any_io_executor); null if neither.
template <typename Target, typename E>
const Target* context_target(const E& e) noexcept {
  if constexpr (std::is_same_v<E, Target>)
    return &e;
  else if constexpr (std::is_same_v<E, boost::asio::any_io_executor>)
    return e.template target<Target>();
  else
    return nullptr;
}

// The io_context `e` is an executor of, plain or outstanding-work tracked,
// itself or in an any_io_executor; null if it is none of those.
template <typename E>
boost::asio::io_context* context_of(const E& e) noexcept {
  using plain =
      boost::asio::io_context::basic_executor_type<std::allocator<void>, 0>;
  using tracked =
      boost::asio::io_context::basic_executor_type<std::allocator<void>, 4>;
  if (const plain* t = context_target<plain>(e))
    return &t->context();
  if (const tracked* t = context_target<tracked>(e))
    return &t->context();
  return nullptr;
}

// Posts `op` to its associated executor (`ex` by default). Where that and
// `ex` are both an executor of one io_context (plain or outstanding-work
// tracked, themselves or in an any_io_executor: not strands) and the
// handler has no allocator of its own, the queued function takes a block
// of that io_context's stack pool and is queued on the io_context's
// executor directly. Posted through the type erasure, it took two blocks
// of Asio's per-thread cache (the type-erased function and the queued
// operation), which keeps two of each kind for the whole loop, and now and
// then found none free and allocated (measured: about one launch in 100
// whose handler waited on a child that had exited already). Operations
// too large for a block with what Asio wraps around them (its queue entry,
// the work guard, the binders: 128 bytes is ample), or aligned beyond
// max_align_t, are posted as Asio posts them, as is everything else.
template <typename Executor, typename Op>
void post_in_block(const Executor& ex, Op&& op) {
  using op_type = std::decay_t<Op>;
  if constexpr (std::is_same_v<boost::asio::associated_allocator_t<op_type>,
                               std::allocator<void>> &&
                sizeof(op_type) + 128 <= stack_pool::wait_block_size &&
                alignof(op_type) <= alignof(std::max_align_t)) {
    boost::asio::io_context* ctx = context_of(ex);
    if (ctx &&
        context_of(boost::asio::get_associated_executor(op, ex)) == ctx) {
      source_allocator<void, stack_pool> blocks(&stack_pool::of(*ctx));
      // Bound to the context's executor, so that nothing dispatches it
      // back through the type erasure when it runs; runnable there and
      // then.
      auto runs_on = boost::asio::prefer(
          ctx->get_executor(), boost::asio::execution::blocking.possibly);
      boost::asio::post(
          runs_on, boost::asio::bind_executor(
                       runs_on, boost::asio::bind_allocator(
                                    blocks, std::forward<Op>(op))));
      return;
    }
  }
  boost::asio::post(ex, std::forward<Op>(op));
}

// `async_wait_status`: an exit wait that completes with the process
// object's `status()`.
template <typename Process> struct wait_status_op {
  Process* self_;

  template <typename Self> void operator()(Self& self) {
    self.reset_cancellation_state(boost::asio::enable_total_cancellation());
    self_->async_wait(std::move(self));
  }
  template <typename Self> void operator()(Self& self, error_code ec, int) {
    self.complete(ec, self_->status());
  }
};

} // namespace aspawn::detail

#endif // ASPAWN_ASIO_EXIT_WAIT_HPP
