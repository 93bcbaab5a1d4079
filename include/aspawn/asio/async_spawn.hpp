//
// aspawn/asio/async_spawn.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// Launching without blocking.
//
// Overview
// --------
// `async_spawn` clones the child and returns: the calling thread waits
// neither for the child's setup nor for its exec. The operation completes
// once the child has exec'd (its status pipe closed with no data) with a
// `basic_process` that owns the child, or with the error of the step that
// failed in the child (see `aspawn/command/error.hpp`), in which case the
// child has been reaped and nothing is left behind.
//
// `async_execute` launches and waits: it completes with the exit code.
//
// Example
// -------
// @code
// aspawn::command git("git", {"rev-parse", "HEAD"});
// git.prepare();
// auto p = co_await aspawn::async_spawn(ex, git, asio::use_awaitable);
// int code = co_await p.async_wait(asio::use_awaitable);
// @endcode
//
// Layer asio/: the Asio objects (stack pool and its watcher, process, reaper,
// async_spawn). It may use child/, command/ and core/.
//

#ifndef ASPAWN_ASIO_ASYNC_SPAWN_HPP
#define ASPAWN_ASIO_ASYNC_SPAWN_HPP

#include <array>
#include <memory>
#include <type_traits>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/is_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/query.hpp>

#include <aspawn/asio/process.hpp>
#include <aspawn/asio/stack_pool.hpp>
#include <aspawn/command/command.hpp>
#include <aspawn/core/launch.hpp>

namespace aspawn {

namespace detail {

template <typename T>
concept asio_executor = boost::asio::execution::is_executor<T>::value ||
                        boost::asio::is_executor<T>::value;

template <typename T>
concept execution_context_ref =
    std::is_convertible_v<T&, boost::asio::execution_context&>;

// Owns a launch between clone and the moment its stack is free. The
// descriptor watching the child (status pipe, then pidfd on failure) lives in
// the stack's parent area, at a stable address: an Asio I/O object cannot
// travel inside the handlers of its own operations. If the guard is destroyed
// early (the operation was abandoned, e.g. its context destroyed), the child
// is killed, its exit from the stack awaited and it is reaped: a stack is
// never unmapped or reused under a running child.
template <typename Executor> struct launch_guard {
  using descriptor = boost::asio::posix::basic_stream_descriptor<Executor>;
  static_assert(sizeof(descriptor) <= parent_storage_size);
  static_assert(alignof(descriptor) <= 16);

  launched l;
  stack_cache* stacks = nullptr;
  descriptor* desc = nullptr; // in parent_storage(l.stack)
  bool desc_is_pidfd = false;

  launch_guard() = default;
  launch_guard(launch_guard&& o) noexcept
      : l(std::exchange(o.l, launched{})), stacks(o.stacks),
        desc(std::exchange(o.desc, nullptr)), desc_is_pidfd(o.desc_is_pidfd) {}
  launch_guard& operator=(launch_guard&&) = delete;
  ~launch_guard() {
    if (desc) {
      int fd = desc->release();
      (desc_is_pidfd ? l.pidfd : l.status_fd) = fd;
      drop_desc();
    }
    if (l.stack || l.pidfd >= 0 || l.status_fd >= 0)
      abandon_launch(l, *stacks);
    close_pipes(l);
  }

  // Watches `fd` with a descriptor in the stack's parent area. If the
  // reactor refuses it, the fd goes back where it came from (so that the
  // guard still waits for the child before freeing the stack) and
  // system_error is thrown.
  void watch(const Executor& ex, int fd, bool is_pidfd) {
    drop_desc();
    desc = new (parent_storage(l.stack)) descriptor(ex);
    desc_is_pidfd = is_pidfd;
    error_code ec;
    desc->assign(fd, ec);
    if (ec) {
      drop_desc();
      (is_pidfd ? l.pidfd : l.status_fd) = fd;
      boost::throw_exception(boost::system::system_error(ec));
    }
  }

  void drop_desc() noexcept {
    if (desc) {
      desc->~descriptor();
      desc = nullptr;
    }
  }

  // The child is off the stack (EOF seen) and the descriptor gone.
  void release_stack() noexcept {
    drop_desc();
    if (l.stack) {
      stacks->release(l.stack);
      l.stack = stack_region{};
    }
    if (l.credentials) {
      end_credential_launch();
      l.credentials = false;
    }
  }
};

template <typename Executor> struct spawn_op {
  using process_type = basic_process<Executor>;

  Executor ex_;
  const command* cmd_;
  launch_guard<Executor> guard_{};
  std::size_t got_ = 0;
  error_code result_{};
  bool cancelled_ = false;
  int state_ = 0;
  // Where the operation waits for the pool (its stack's parent area),
  // until it has read its entry there; only the object that holds the
  // operation's state has it (a move takes it along).
  void* parked_at_ = nullptr;

  enum : int { start, watched, reading, reaping, done_posted };

  spawn_op(Executor ex, const command* cmd) : ex_(std::move(ex)), cmd_(cmd) {}
  spawn_op(spawn_op&& o) noexcept
      : ex_(std::move(o.ex_)), cmd_(o.cmd_), guard_(std::move(o.guard_)),
        got_(o.got_), result_(o.result_), cancelled_(o.cancelled_),
        state_(o.state_), parked_at_(std::exchange(o.parked_at_, nullptr)) {}
  spawn_op& operator=(spawn_op&&) = delete;

  // Destroyed after the pool fired its entry but before reading it (a
  // resumption posted to a context that is destroyed instead of running
  // it): a launch the pool's thread started is still in the entry, and is
  // abandoned from there (its child killed, the stack given back, the child
  // reaped).
  ~spawn_op() {
    if (state_ == watched && parked_at_) {
      auto* e = static_cast<watch_entry*>(parked_at_);
      const bool submitted = e->submitted;
      launched job = e->job;
      stack_cache* stacks = e->stacks;
      e->~watch_entry();
      if (submitted)
        abandon_launch(job, *stacks);
    }
  }

  template <typename Self>
  void operator()(Self& self, error_code ec = {}, std::size_t n = 0) {
    switch (state_) {
    case start: {
      auto& pool = stack_pool::of(
          boost::asio::query(ex_, boost::asio::execution::context));
      guard_.stacks = &pool.cache();
      if (on_launch_thread<Self>(pool)) {
        // Only the preparation here: the pool's thread clones.
        result_ = aspawn::prepare_launch(*cmd_, pool.cache(), guard_.l);
        pool.reserve_wait_blocks();
        cmd_ = nullptr; // everything the child reads is on its stack now
        if (!result_ && submit_to_pool(self, pool))
          return; // `self` (and this object) now live in the stack's parent area
        if (!result_ && (result_ = aspawn::start_launch(guard_.l))) {
          pool.cache().release(guard_.l.stack);
          guard_.l = launched{};
        }
      } else {
        result_ = aspawn::launch(*cmd_, pool.cache(), guard_.l);
        pool.reserve_wait_blocks();
        cmd_ = nullptr; // everything the child reads is on its stack now
      }
      if (!result_ && watch_in_pool(self, pool))
        return; // `self` (and this object) now live in the stack's parent area
      watch_here(self);
      return;
    }
    case watched: {
      // Resumed by the pool's watcher, on this operation's executor.
      // A late cancellation must not reach the entry, which ends here.
      self.get_cancellation_state().slot().clear();
      auto* e = static_cast<watch_entry*>(std::exchange(parked_at_, nullptr));
      const std::uint32_t events = e->events.load(std::memory_order_acquire);
      const bool cancelled = e->cancelled.load(std::memory_order_acquire);
      const bool submitted = e->submitted;
      const error_code launch_error = e->launch_error;
      if (submitted)
        guard_.l = e->job; // cloned (or not) by the pool's thread
      e->~watch_entry();
      if (submitted && (launch_error || events == 0)) {
        if (launch_error) {
          // Not started (or cancelled while queued): only the stack to give
          // back.
          guard_.release_stack();
          guard_.l = launched{};
          self.complete(launch_error, process_type(ex_));
          return;
        }
        // Started, but the pool could not watch its pipe.
        if (cancelled) {
          cancelled_ = true;
          kill();
        }
        watch_here(self);
        return;
      }
      bool reported = false;
      if (events & EPOLLIN) {
        // A failure record, written at once (at most PIPE_BUF bytes) before
        // the child exits: one read takes it whole, without blocking.
        std::byte* buf = status_area(guard_.l.stack);
        ssize_t got = ::read(guard_.l.status_fd, buf, status_area_size);
        if (got < 0) {
          result_ = error_code(errno, boost::system::system_category());
        } else if (got > 0) {
          result_ = decode_status(buf, static_cast<std::size_t>(got));
          reported = result_ != errc::protocol_error;
          if (!result_)
            result_ = errc::protocol_error;
        }
      }
      // Without data the pipe closed: the child exec'd or died, and its stack
      // is free.
      if (!result_ && cancelled)
        result_ = boost::asio::error::operation_aborted;
      ::close(std::exchange(guard_.l.status_fd, -1));
      if (!result_) {
        complete_launched(self);
        return;
      }
      // A failed launch: reap the child (its exit also tells that it is off
      // its stack). One that reported its failure exits by itself.
      if (!reported)
        kill();
      start_reaping(self);
      return;
    }
    case reading:
      got_ += n;
      if (!ec) {
        if (got_ >= status_area_size) { // protocol broken: stop listening
          result_ = errc::protocol_error;
          kill();
          got_ = 0;
        }
        read(self);
        return;
      }
      if (ec == boost::asio::error::eof) {
        // The child exec'd or died: it no longer uses its stack.
        if (!result_)
          result_ = decode_status(status_area(guard_.l.stack), got_);
        if (!result_ && cancelled_)
          result_ = boost::asio::error::operation_aborted;
        if (!result_) {
          complete_launched(self);
          return;
        }
        // A failed launch: reap the child before completing.
        start_reaping(self);
        return;
      }
      if (ec == boost::asio::error::operation_aborted) {
        // Cancelled: kill the child, then wait for it as usual.
        cancelled_ = true;
        kill();
        read(self);
        return;
      }
      // An unexpected read error: the guard kills the child and waits for
      // it synchronously.
      {
        error_code err = ec;
        guard_.~launch_guard();
        new (&guard_) launch_guard<Executor>();
        self.complete(err, process_type(ex_));
      }
      return;
    case reaping: {
      int status;
      int r = aspawn::reap(guard_.desc->native_handle(), guard_.l.pid, false,
                           status, nullptr, guard_.l.autoreaped);
      if (r == 0) { // not yet (or the wait was cancelled): reaping is due
        wait_exit(self);
        return;
      }
      guard_.desc->close();
      guard_.l.pid = -1;
      guard_.release_stack();
      close_pipes(guard_.l);
      self.complete(result_, process_type(ex_));
      return;
    }
    default:
      self.complete(result_, process_type(ex_));
    }
  }

private:
  // After a launch on this thread (or one the pool started but cannot
  // watch): the status pipe is read through a descriptor of the
  // operation's own, or the error is posted.
  template <typename Self> void watch_here(Self& self) {
    if (!result_) {
      try {
        guard_.watch(ex_, std::exchange(guard_.l.status_fd, -1), false);
      } catch (const boost::system::system_error& e) {
        // Cannot watch the pipe: the guard abandons the child right away.
        result_ = e.code();
        guard_.~launch_guard();
        new (&guard_) launch_guard<Executor>();
      }
    }
    if (result_) {
      state_ = done_posted;
      boost::asio::post(ex_, std::move(self));
      return;
    }
    state_ = reading;
    read(self);
  }

  void kill() {
    if (guard_.l.pidfd >= 0)
      aspawn::send_signal(guard_.l.pidfd, SIGKILL);
  }

  // The operation as it waits in the stack's parent area for the pool's
  // watcher.
  template <typename Self> struct waiting : parked_op<Self> {
    using typename parked_op<Self>::work_type;
    using parked_op<Self>::parked_op;

    static void on_fire(watch_entry* e, std::uint32_t events, fire_mode mode) {
      auto* w = static_cast<waiting*>(e);
      // Out of the stack first: destroying the operation may give the stack
      // back.
      Self op(std::move(w->self));
      work_type work(std::move(w->work));
      w->self.~Self();
      w->work.~work_type();
      if (mode == fire_mode::destroy) {
        // The context shuts down: `op` abandons its child as it goes (the
        // launch is in its guard, or for one the pool's thread took, in the
        // entry: see ~spawn_op).
        op.get_cancellation_state().slot().clear();
        return;
      }
      w->events.store(events, std::memory_order_release);
      auto ex = op.get_executor();
      resume(ex, std::move(op), mode);
    }
  };

  // Kills the child of a launch the pool watches, unless the pipe has
  // reported already (the child may have exec'd: the launch is complete
  // then, as a descriptor's finished read would be).
  struct cancel_watch {
    watch_entry* e;
    void operator()(boost::asio::cancellation_type t) const {
      if (t == boost::asio::cancellation_type::none ||
          e->events.load(std::memory_order_acquire) != 0)
        return;
      e->cancelled.store(true, std::memory_order_release);
      aspawn::send_signal(e->pidfd, SIGKILL);
    }
  };

  // A launch the pool's thread starts: cancellation goes through the pool,
  // which knows where the launch stands.
  struct cancel_launch {
    watch_entry* e;
    stack_pool* pool;
    void operator()(boost::asio::cancellation_type t) const {
      if (t != boost::asio::cancellation_type::none)
        pool->cancel_launch(e);
    }
  };

  // Whether the operation can wait in the stack's parent area.
  template <typename Self> static constexpr bool fits() noexcept {
    using entry = waiting<Self>;
    return sizeof(entry) <= parent_storage_size && alignof(entry) <= 16;
  }

  // Whether this launch goes to the pool's launch thread (see
  // stack_pool.hpp, "The launch thread").
  template <typename Self> bool on_launch_thread(stack_pool& pool) const {
    if constexpr (!fits<Self>() || !stack_pool::may_watch<Executor>())
      return false;
    else
      return pool.launch_thread() && !cmd_->binds_calling_thread();
  }

  // Moves `self` into the stack's parent area at `at`, as the entry that
  // `hand_over(e, construct)` gives the pool, which runs `construct` under
  // its lock; `fill(w)` completes the entry there. False (and nothing
  // moved) if the operation does not fit or the pool does not take it.
  template <typename Self, typename MakeCancel, typename HandOver,
            typename Fill>
  bool park(Self& self, void* at, MakeCancel make_cancel, HandOver hand_over,
            Fill fill) {
    using entry = waiting<Self>;
    if constexpr (!fits<Self>()) {
      return false;
    } else {
      auto* e = static_cast<entry*>(at);
      state_ = watched;
      parked_at_ = at;
      bool ok = hand_over(e, [&] {
        // The handler first (it runs only once the entry is built): should
        // it throw, nothing has moved.
        auto slot = self.get_cancellation_state().slot();
        if (slot.is_connected())
          slot.template emplace<decltype(make_cancel(e))>(make_cancel(e));
        auto* w = new (at) entry(std::move(self));
        w->fire = &entry::on_fire;
        fill(w);
      });
      if (!ok) {
        state_ = start;
        parked_at_ = nullptr;
      }
      return ok;
    }
  }

  // Hands the prepared launch to the pool's launch thread, moving `self`
  // into the stack's parent area; the entry holds the launch from then on.
  // False (and nothing moved) if the pool cannot take it.
  template <typename Self> bool submit_to_pool(Self& self, stack_pool& pool) {
    void* at = parent_storage(guard_.l.stack);
    const launched job = std::exchange(guard_.l, launched{});
    bool ok = false;
    try {
      ok = park(
          self, at, [&](watch_entry* e) { return cancel_launch{e, &pool}; },
          [&](watch_entry* e, auto&& construct) {
            return pool.submit(ex_, e, construct);
          },
          [&](watch_entry* w) { w->job = job; });
    } catch (...) {
      // Nothing moved (the handler's slot is set first, and the rest does
      // not throw): the launch is this object's again.
      state_ = start;
      parked_at_ = nullptr;
      guard_.l = job;
      throw;
    }
    if (!ok)
      guard_.l = job;
    return ok;
  }

  // Hands the status pipe to the pool's watcher, moving `self` into the
  // stack's parent area. False (and nothing moved) where the pool does not
  // watch, or the operation does not fit there.
  template <typename Self> bool watch_in_pool(Self& self, stack_pool& pool) {
    const int fd = guard_.l.status_fd;
    const int pidfd = guard_.l.pidfd;
    return park(
        self, parent_storage(guard_.l.stack),
        [](watch_entry* e) { return cancel_watch{e}; },
        [&](watch_entry* e, auto&& construct) {
          return pool.watch(ex_, fd, e, construct);
        },
        [&](watch_entry* w) { w->pidfd = pidfd; });
  }

  // The child exec'd: the stack goes back, the process object takes it.
  template <typename Self> void complete_launched(Self& self) {
    guard_.release_stack();
    process_type p(ex_, std::move(guard_.l));
    self.complete(error_code{}, std::move(p));
  }

  // Waits for a failed (or cancelled) launch's child to exit, then reaps it
  // and completes with `result_`.
  template <typename Self> void start_reaping(Self& self) {
    state_ = reaping;
    try {
      guard_.watch(ex_, std::exchange(guard_.l.pidfd, -1), true);
    } catch (const boost::system::system_error&) {
      // Cannot watch it: the child reported its failure (or was killed) and
      // exits at once, so reaping it here is brief.
      int status;
      aspawn::reap(guard_.l.pidfd, guard_.l.pid, true, status, nullptr,
                   guard_.l.autoreaped);
      ::close(std::exchange(guard_.l.pidfd, -1));
      guard_.l.pid = -1;
      guard_.release_stack();
      close_pipes(guard_.l);
      self.complete(result_, process_type(ex_));
      return;
    }
    wait_exit(self);
  }

  template <typename Self> void read(Self& self) {
    std::byte* buf = status_area(guard_.l.stack);
    guard_.desc->async_read_some(
        boost::asio::buffer(buf + got_, status_area_size - got_),
        std::move(self));
  }

  template <typename Self> void wait_exit(Self& self) {
    guard_.desc->async_wait(boost::asio::posix::descriptor_base::wait_read,
                            std::move(self));
  }
};

template <typename Executor> struct execute_op {
  Executor ex_;
  const command* cmd_;
  // The process is waited on where it stands: on the heap, not in the op,
  // which moves from handler to handler.
  std::unique_ptr<basic_process<Executor>> proc_;
  bool refused_ = false;

  template <typename Self> void operator()(Self& self) {
    if (refused_) {
      self.complete(error_code(errc::unclaimed_pipes), -1);
      return;
    }
    if (cmd_->makes_pipes()) {
      // Nobody could take the pipes: the child would wait on its stdin or
      // block on a full stdout. Refuse before launching.
      refused_ = true;
      boost::asio::post(ex_, std::move(self));
      return;
    }
    async_spawn_impl(self);
  }
  template <typename Self>
  void operator()(Self& self, error_code ec, basic_process<Executor> p) {
    if (ec) {
      self.complete(ec, -1);
      return;
    }
    proc_ = std::make_unique<basic_process<Executor>>(std::move(p));
    auto* proc = proc_.get();
    proc->async_wait(std::move(self));
  }
  template <typename Self>
  void operator()(Self& self, error_code ec, int code) {
    self.complete(ec, code);
  }

  template <typename Self> void async_spawn_impl(Self& self);
};

} // namespace detail

/// Launches `cmd` without blocking.
/**
 * The calling thread returns as soon as the child exists. Everything the
 * child needs is copied onto its stack before that, so `cmd` may be changed
 * or destroyed once the operation has been initiated (for lazy tokens such as
 * `deferred`, that is when the operation is launched, not when it is
 * created).
 *
 * @par Completion signature
 * `void(error_code ec, basic_process<Executor> p)`. On success `p` owns the
 * child, which has exec'd. On failure `p` is empty and `ec` is the command's
 * validation error, the parent's system error (EAGAIN, EMFILE, ENOMEM...),
 * or the failing child step's error (`child_category()`); the child, if any,
 * has been reaped.
 *
 * @par Per-operation cancellation
 * Terminal, partial and total: the child is killed and reaped, and the
 * operation completes with `operation_aborted`.
 *
 * @par Executor
 * Work is tracked on `ex`; the handler runs on its associated executor, or
 * else on `ex`. Never inside this call.
 */
template <detail::asio_executor Executor,
          typename Token = boost::asio::default_completion_token_t<Executor>>
auto async_spawn(const Executor& ex, const command& cmd, Token&& token = {}) {
  return boost::asio::async_compose<Token,
                                    void(error_code, basic_process<Executor>)>(
      detail::spawn_op<Executor>(ex, &cmd), token,
      ex);
}

/// Launches `cmd` on `ctx`'s executor; see the executor overload.
template <detail::execution_context_ref ExecutionContext,
          typename Token = boost::asio::default_completion_token_t<
              typename ExecutionContext::executor_type>>
auto async_spawn(ExecutionContext& ctx, const command& cmd, Token&& token = {}) {
  return async_spawn(ctx.get_executor(), cmd, std::forward<Token>(token));
}

/// Launches `cmd` and waits for it to exit.
/**
 * @par Completion signature
 * `void(error_code ec, int exit_code)`: the Boost.Process v2 exit code, or
 * -1 with the launch's or the wait's error; `errc::unclaimed_pipes`, before
 * anything is launched, for a command that makes pipes
 * (`redirect::pipe()`), which nobody could take here.
 */
template <detail::asio_executor Executor,
          typename Token = boost::asio::default_completion_token_t<Executor>>
auto async_execute(const Executor& ex, const command& cmd, Token&& token = {}) {
  return boost::asio::async_compose<Token, void(error_code, int)>(
      detail::execute_op<Executor>{ex, &cmd, {}}, token, ex);
}

/// Launches `cmd` on `ctx`'s executor and waits for it to exit.
template <detail::execution_context_ref ExecutionContext,
          typename Token = boost::asio::default_completion_token_t<
              typename ExecutionContext::executor_type>>
auto async_execute(ExecutionContext& ctx, const command& cmd,
                   Token&& token = {}) {
  return async_execute(ctx.get_executor(), cmd, std::forward<Token>(token));
}

namespace detail {
template <typename Executor>
template <typename Self>
void execute_op<Executor>::async_spawn_impl(Self& self) {
  const command* c = cmd_;
  cmd_ = nullptr;
  aspawn::async_spawn(ex_, *c, std::move(self));
}
} // namespace detail

} // namespace aspawn

#endif // ASPAWN_ASIO_ASYNC_SPAWN_HPP
