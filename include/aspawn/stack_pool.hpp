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
// "Watching status pipes"). Process objects' exit waits go through it too
// ("Watching for exits").
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
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
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
  int fd = -1; // the status pipe, or the pidfd of an exit wait
  int pidfd = -1;
  // A launch's status pipe (counted by watching()), or a process object's
  // wait for its child's exit.
  bool counted = true;
  // Where the owner of an exit wait keeps track of it: the pool clears it,
  // under its lock, when the entry leaves the watch list.
  watch_entry** owner = nullptr;
  // The events that fired; 0 until then.
  std::atomic<std::uint32_t> events{0};
  // Set by a cancellation request, from the operation's executor.
  std::atomic<bool> cancelled{false};
};

// Resumes `f`, the continuation of a parked operation, on `ex` as `mode`
// says (not for fire_mode::destroy).
template <typename Executor, typename F>
void resume(const Executor& ex, F&& f, fire_mode mode) {
  if (mode == fire_mode::dispatch)
    boost::asio::dispatch(ex, std::forward<F>(f));
  else
    boost::asio::post(ex, std::forward<F>(f));
}

// An operation parked with the pool's watcher: the entry the watcher knows,
// then the operation itself, with work held on the executor it will resume
// on (its handler's), as a reactor operation would hold it.
template <typename Self> struct parked_op : watch_entry {
  using work_type = decltype(boost::asio::make_work_guard(
      std::declval<const typename Self::executor_type&>()));
  work_type work;
  Self self;
  explicit parked_op(Self&& s)
      : work(boost::asio::make_work_guard(s.get_executor())),
        self(std::move(s)) {}
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
  /// overview); launches watched by a descriptor of their own, and process
  /// objects' exit waits, are not counted.
  std::size_t watching() const noexcept {
    return watching_.load(std::memory_order_relaxed);
  }

  /// Whether the pool can watch for operations on `Executor`'s: those of
  /// an io_context, possibly through strands or `any_io_executor` (which is
  /// looked through at run time).
  template <typename Executor> static constexpr bool may_watch() noexcept {
    if constexpr (requires(const Executor& ex) { ex.get_inner_executor(); })
      return may_watch<std::decay_t<decltype(
          std::declval<const Executor&>().get_inner_executor())>>();
    else if constexpr (std::is_same_v<Executor, boost::asio::any_io_executor>)
      return true;
    else
      return requires(const Executor& ex) {
        { ex.context() } -> std::same_as<boost::asio::io_context&>;
      };
  }

  /// Internal: watches `fd` (one shot) for `e`, which `construct()` builds
  /// in place under the watcher's lock, before any event can reach it;
  /// should it throw, the fd is not watched and the exception propagates.
  /// The first call sets the watcher up on `ex`'s io_context. With an
  /// `owner` (an exit wait), the pool keeps `*owner` pointing at the entry
  /// while it is watched, and refuses a second entry for the same owner.
  /// False if the fd cannot be watched (nothing was constructed then): the
  /// caller watches it itself.
  template <typename Executor, typename Construct>
  bool watch(const Executor& ex, int fd, detail::watch_entry* e,
             Construct&& construct, detail::watch_entry** owner = nullptr) {
    std::lock_guard lk(mutex_);
    if (owner && *owner)
      return false; // one exit wait per owner here; the others go elsewhere
    if (fork_pending_)
      refork();
    if (shut_ || (epfd_ < 0 && !set_up(ex)))
      return false;
    if (!add(fd, e))
      return false;
    if (waits_ == 0) {
      try {
        arm();
      } catch (...) {
        ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
        return false;
      }
    }
    try {
      construct();
    } catch (...) {
      // A spare wait of the watcher, if armed above, finds nothing.
      ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
      throw;
    }
    if (e->counted)
      watching_.fetch_add(1, std::memory_order_relaxed);
    if (owner) {
      e->owner = owner;
      *owner = e;
    }
    e->fd = fd;
    e->prev = head_.prev;
    e->next = &head_;
    head_.prev->next = e;
    head_.prev = e;
    return true;
  }

  /// Internal: takes the exit wait tracked in `*owner` off the watch list,
  /// unless it has fired (or was never watched). Returns it, unfired: the
  /// caller fires it. Null if there was none.
  detail::watch_entry* unwatch(detail::watch_entry** owner) noexcept {
    std::lock_guard lk(mutex_);
    detail::watch_entry* e = *owner;
    if (!e)
      return nullptr;
    unlink(e);
    // In a child of fork(), before the move to an instance of its own, the
    // instance is still the parent's: its registrations are left alone (the
    // move skips this entry, which has left the list).
    if (!fork_pending_ && epfd_ >= 0)
      ::epoll_ctl(epfd_, EPOLL_CTL_DEL, e->fd, nullptr);
    return e;
  }

  /// Internal: after `unwatch`, once the entry has fired. With nothing
  /// left to watch, the watcher's pending wait would keep the context's
  /// work count up for nothing: it is cancelled.
  void disarm_if_idle() noexcept {
    std::lock_guard lk(mutex_);
    if (head_.next == &head_ && waits_ > 0 && watcher_ && !fork_pending_) {
      boost::system::error_code ignored;
      watcher_->cancel(ignored); // `on_ready` counts it off
    }
  }

private:
  // Called with the lock held: `e` leaves the watch list.
  void unlink(detail::watch_entry* e) noexcept {
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = nullptr;
    forget(e);
  }

  // Called with the lock held, for an entry off the list.
  void forget(detail::watch_entry* e) noexcept {
    if (e->counted)
      watching_.fetch_sub(1, std::memory_order_relaxed);
    if (e->owner) {
      *e->owner = nullptr;
      e->owner = nullptr;
    }
  }

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

  // Called with the lock held: one shot, for the status pipe (or pidfd)
  // `fd` of `e`. A pidfd waited on before is still registered, disabled
  // since it fired: it is re-armed.
  bool add(int fd, detail::watch_entry* e) noexcept {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.ptr = e;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0)
      return true;
    return errno == EEXIST && ::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) == 0;
  }

  // Called with the lock held. One wait at a time (`waits_` counts it until
  // its handler has run, whatever its outcome), and only while something is
  // watched: an idle pool keeps no work on its context.
  void arm() {
    watcher_->async_wait(
        boost::asio::posix::descriptor_base::wait_read,
        [this, gen = gen_](boost::system::error_code) { on_ready(gen); });
    ++waits_;
  }

  // The watcher's wait completed: with events, or cancelled by
  // `disarm_if_idle` (entries may have come since: they are looked at all
  // the same), or by the close of a watcher that is no more (another
  // generation's: ignored).
  void on_ready(unsigned gen) {
    constexpr int batch = 64;
    detail::watch_entry* ready[batch];
    std::uint32_t events[batch];
    int n = 0;
    std::exception_ptr first_error;
    {
      std::lock_guard lk(mutex_);
      if (gen != gen_)
        return;
      --waits_;
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
        // the pipe's (or pidfd's) last copy.
        unlink(e);
        ready[n] = e;
        events[n++] = evs[i].events;
      }
      if (head_.next != &head_ && waits_ == 0) {
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
    ++gen_; // the old watcher's wait is closed with it
    waits_ = 0;
    watcher_->close(ignored); // the child's copy of the parent's instance
    watcher_.reset();
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
      for (auto* e = first; e && e != &head_; e = e->next)
        forget(e);
    }
    if (watcher_) {
      boost::system::error_code ignored;
      watcher_->close(ignored); // every registration goes with it
      watcher_.reset();
      epfd_ = -1;
    }
    for (auto* e = first; e && e != &head_;) {
      auto* next = e->next;
      e->fire(e, 0, detail::fire_mode::destroy);
      e = next;
    }
  }

  stack_cache cache_;
  std::mutex mutex_;
  detail::watch_entry head_; // sentinel of the watched launches
  int waits_ = 0;    // the watcher's outstanding waits: 0 or 1
  unsigned gen_ = 0; // the watcher's generation, one per epoll instance
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
