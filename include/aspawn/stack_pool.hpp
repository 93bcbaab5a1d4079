//
// aspawn/stack_pool.hpp
// ~~~~~~~~~~~~~~~~~~~~~
//
// The per-execution-context pool of child stacks.
//
// Overview
// --------
// Every launch runs its child, until exec, on a stack of its own: a private
// anonymous mapping with a `PROT_NONE` guard page below it. Mapping one costs
// two system calls and page faults, so stacks are kept for reuse in an Asio
// service of the execution context that launches: `stack_pool`. A stack is
// lent out at clone time and comes back when the child's status pipe reports
// EOF (exec done, or the child died), never earlier.
//
// The same service watches, for an `io_context`, the status pipes of the
// launches in flight: one epoll instance of its own, itself watched by one
// Asio descriptor, holds every pending launch's status pipe (one-shot), so a
// launch costs the reactor no descriptor of its own (see docs/design.md,
// "Watching status pipes").
//
// Thread safety
// -------------
// All members are safe to call from any thread.
//
// Example
// -------
// @code
// boost::asio::io_context ctx;
// auto& pool = aspawn::stack_pool::of(ctx);
// pool.set_stack_size(128 * 1024);
// ...
// std::printf("%zu stacks mapped\n", pool.created());
// @endcode
//

#ifndef ASPAWN_STACK_POOL_HPP
#define ASPAWN_STACK_POOL_HPP

#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <concepts>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

#include <boost/asio/execution_context.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/detail/throw_error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <aspawn/core.hpp>

namespace aspawn {

namespace detail {

// How a watched launch resumes: posted to its executor; dispatched to it
// (run inline, by the watcher, wherever that executor permits, and queued
// otherwise); or destroyed unresumed because the context shuts down.
enum class fire_mode { post, dispatch, destroy };

// A launch whose status pipe the pool watches. It lives in the parent area
// of the launch's stack, which stays the launch's until the operation has
// seen the pipe's event, and is followed there by the operation itself.
struct watch_entry {
  // Called once: with the epoll events, or with fire_mode::destroy when the
  // context shuts down.
  void (*fire)(watch_entry* e, std::uint32_t events, fire_mode mode) = nullptr;
  watch_entry* prev = nullptr;
  watch_entry* next = nullptr;
  int fd = -1; // the status pipe
  int pidfd = -1;
  // The events that fired; 0 until then.
  std::atomic<std::uint32_t> events{0};
  // Set by a cancellation request, from the operation's executor.
  std::atomic<bool> cancelled{false};
};

} // namespace detail

/// The execution-context service holding the cached child stacks.
class stack_pool : public boost::asio::execution_context::service {
public:
  /// The service's identity.
  static inline boost::asio::execution_context::id id;

  explicit stack_pool(boost::asio::execution_context& ctx)
      : boost::asio::execution_context::service(ctx) {
    head_.prev = head_.next = &head_;
  }

  /// The pool of `ctx`, created on first use.
  static stack_pool& of(boost::asio::execution_context& ctx) {
    return boost::asio::use_service<stack_pool>(ctx);
  }

  /// The cache itself (for `aspawn::launch`).
  stack_cache& cache() noexcept { return cache_; }

  /// Usable bytes of each pooled stack (default 256 KiB, at least 64 KiB).
  /// A launch whose data does not fit gets a one-off larger stack.
  void set_stack_size(std::size_t bytes) { cache_.set_stack_size(bytes); }
  std::size_t stack_size() const noexcept { return cache_.stack_size(); }

  /// How many idle stacks to keep (default 64).
  void set_max_cached(std::size_t n) { cache_.set_max_cached(n); }
  std::size_t max_cached() const noexcept { return cache_.max_cached(); }

  /// Stacks mapped since the pool was created.
  std::size_t created() const noexcept { return cache_.created(); }
  /// Idle stacks held now.
  std::size_t cached() const noexcept { return cache_.cached(); }
  /// Stacks lent to children that have not exec'd yet.
  std::size_t in_use() const noexcept { return cache_.in_use(); }

  /// Unmaps the idle stacks.
  void trim() noexcept { cache_.trim(); }

  /// Launches whose status pipe the pool is watching now (see the
  /// overview); launches watched by a descriptor of their own are not
  /// counted.
  std::size_t watching() const noexcept {
    return watching_.load(std::memory_order_relaxed);
  }

  /// Internal: watches `fd` (one shot) for `e`, which `construct()` builds
  /// in place under the watcher's lock, before any event can reach it, and
  /// must not throw. The first call sets the watcher up on `ex`'s
  /// io_context. False if the fd cannot be watched (nothing was constructed
  /// then): the caller watches it itself.
  template <typename Executor, typename Construct>
  bool watch(const Executor& ex, int fd, detail::watch_entry* e,
             Construct&& construct) {
    std::lock_guard lk(mutex_);
    if (fork_pending_)
      refork();
    if (shut_ || (epfd_ < 0 && !set_up(ex)))
      return false;
    if (!add(fd, e))
      return false;
    if (!armed_) {
      try {
        arm();
      } catch (...) {
        ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
        return false;
      }
    }
    construct();
    watching_.fetch_add(1, std::memory_order_relaxed);
    e->fd = fd;
    e->prev = head_.prev;
    e->next = &head_;
    head_.prev->next = e;
    head_.prev = e;
    return true;
  }

private:
  template <std::uintptr_t Bits>
  using io_executor =
      boost::asio::io_context::basic_executor_type<std::allocator<void>, Bits>;

  // The watcher runs on the io_context itself: not in a strand the first
  // launch came from, and without keeping the context's work count up.
  // Nothing for executors of other contexts: those launches use a
  // descriptor each.
  template <typename Executor>
  static std::optional<boost::asio::any_io_executor>
  watcher_executor(const Executor& ex) {
    if constexpr (requires { ex.get_inner_executor(); }) {
      return watcher_executor(ex.get_inner_executor());
    } else if constexpr (std::is_same_v<Executor, boost::asio::any_io_executor>) {
      // Type-erased: look through to the io_context's own executor kinds.
      std::optional<boost::asio::any_io_executor> r;
      auto try_as = [&]<typename T>(std::type_identity<T>) {
        if (!r)
          if (const T* t = ex.template target<T>())
            r = watcher_executor(*t);
      };
      [&]<std::uintptr_t... B>(std::integer_sequence<std::uintptr_t, B...>) {
        (try_as(std::type_identity<io_executor<B>>{}), ...);
        (try_as(std::type_identity<boost::asio::strand<io_executor<B>>>{}), ...);
      }(std::make_integer_sequence<std::uintptr_t, 8>{});
      return r;
    } else if constexpr (requires {
                           {
                             ex.context()
                             } -> std::same_as<boost::asio::io_context&>;
                         }) {
      return boost::asio::any_io_executor(ex.context().get_executor());
    } else {
      return std::nullopt;
    }
  }

  // Called with the lock held: an epoll instance of the pool's own, watched
  // by one descriptor.
  template <typename Executor> bool set_up(const Executor& ex) {
    auto wex = watcher_executor(ex);
    if (!wex)
      return false;
    watcher_.emplace(std::move(*wex));
    int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) {
      watcher_.reset();
      return false;
    }
    boost::system::error_code ec;
    watcher_->assign(fd, ec);
    if (ec) {
      watcher_.reset();
      ::close(fd);
      return false;
    }
    epfd_ = fd;
    return true;
  }

  // Called with the lock held: one shot, for the status pipe `fd` of `e`.
  bool add(int fd, detail::watch_entry* e) noexcept {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.ptr = e;
    return ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0;
  }

  // Called with the lock held. One wait at a time, and only while launches
  // are watched: an idle pool keeps no work on its context.
  void arm() {
    watcher_->async_wait(boost::asio::posix::descriptor_base::wait_read,
                         [this](boost::system::error_code ec) { on_ready(ec); });
    armed_ = true;
  }

  void on_ready(boost::system::error_code ec) {
    // Only closing the watcher cancels its wait, and that resets `armed_`.
    if (ec == boost::asio::error::operation_aborted)
      return;
    constexpr int batch = 64;
    detail::watch_entry* ready[batch];
    std::uint32_t events[batch];
    int n = 0;
    std::exception_ptr first_error;
    {
      std::lock_guard lk(mutex_);
      armed_ = false;
      if (shut_)
        return;
      if (fork_pending_) {
        refork(); // never wait on the parent's instance
        return;
      }
      epoll_event evs[batch];
      int r = ::epoll_wait(epfd_, evs, batch, 0);
      for (int i = 0; i < r; ++i) {
        auto* e = static_cast<detail::watch_entry*>(evs[i].data.ptr);
        // One shot: the registration is disabled now, and goes away with
        // the pipe's last copy.
        e->prev->next = e->next;
        e->next->prev = e->prev;
        watching_.fetch_sub(1, std::memory_order_relaxed);
        ready[n] = e;
        events[n++] = evs[i].events;
      }
      if (head_.next != &head_) {
        // Should this fail (no memory), the launches taken above still go
        // on below; the rest wait for the next launch to arm the watcher.
        try {
          arm();
        } catch (...) {
          first_error = std::current_exception();
        }
      }
    }
    // Each operation goes to its own executor. All but the last are posted,
    // so that a throwing handler cannot keep any of them from running. The
    // last is dispatched: it runs here, completion handler included,
    // wherever its executor permits (the context's own executor, an idle
    // strand of it, an inline executor), which saves the event loop a pass,
    // and is queued otherwise. Should posting one fail (no memory), that
    // operation abandons its child, and the others still go.
    for (int i = 0; i < n; ++i) {
      try {
        ready[i]->fire(ready[i], events[i],
                       i + 1 < n ? detail::fire_mode::post
                                 : detail::fire_mode::dispatch);
      } catch (...) {
        if (!first_error)
          first_error = std::current_exception();
      }
    }
    if (first_error)
      std::rethrow_exception(first_error);
  }

  // In a child of fork(), the epoll instance is still the parent's, and
  // must not be waited on: the pending launches move to one of the child's
  // own and complete there too (their children are the parent's: waits on
  // them report `errc::status_unavailable`). The move waits until every
  // service of the context, the reactor included, has been told of the
  // fork: the next launch, the next wakeup, or a handler posted now, does
  // it.
  void notify_fork(boost::asio::execution_context::fork_event event) override {
    if (event != boost::asio::execution_context::fork_child)
      return;
    std::lock_guard lk(mutex_);
    if (!watcher_ || fork_pending_)
      return;
    fork_pending_ = true;
    boost::asio::post(watcher_->get_executor(), [this] {
      std::lock_guard lk(mutex_);
      if (fork_pending_)
        refork();
    });
  }

  // Called with the lock held, in a child of fork().
  void refork() {
    fork_pending_ = false;
    auto ex = watcher_->get_executor();
    boost::system::error_code ignored;
    watcher_->close(ignored); // the child's copy of the parent's instance
    watcher_.reset();
    armed_ = false;
    epfd_ = -1;
    auto fail = [](int err) {
      boost::asio::detail::throw_error(
          boost::system::error_code(err, boost::system::system_category()),
          "aspawn: status-pipe watcher after fork");
    };
    if (!set_up(ex))
      fail(errno ? errno : EMFILE);
    for (auto* e = head_.next; e != &head_; e = e->next)
      if (!add(e->fd, e))
        fail(errno);
    if (head_.next != &head_)
      arm();
  }

  // Pending launch operations are destroyed here (each kills its child,
  // waits for it to leave its stack, gives the stack back and reaps it);
  // so are those waiting on descriptors of their own, by the reactor. The
  // cache outlives the shutdown.
  void shutdown() override {
    detail::watch_entry* first;
    {
      std::lock_guard lk(mutex_);
      shut_ = true;
      first = head_.next;
      head_.prev->next = nullptr;
      head_.prev = head_.next = &head_;
    }
    if (watcher_) {
      boost::system::error_code ignored;
      watcher_->close(ignored); // every registration goes with it
      watcher_.reset();
      epfd_ = -1;
      armed_ = false;
    }
    for (auto* e = first; e && e != &head_;) {
      auto* next = e->next;
      watching_.fetch_sub(1, std::memory_order_relaxed);
      e->fire(e, 0, detail::fire_mode::destroy);
      e = next;
    }
  }

  stack_cache cache_;
  std::mutex mutex_;
  detail::watch_entry head_; // sentinel of the watched launches
  bool armed_ = false;
  bool shut_ = false;
  bool fork_pending_ = false;
  std::atomic<std::size_t> watching_{0};
  int epfd_ = -1;
  std::optional<
      boost::asio::posix::basic_stream_descriptor<boost::asio::any_io_executor>>
      watcher_;
};

} // namespace aspawn

#endif // ASPAWN_STACK_POOL_HPP
