//
// aspawn/asio/stack_pool.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~
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
// The launch thread
// -----------------
// `clone` is most of a launch's cost (the kernel sets up the child's
// kernel stack and task), and an event-loop thread that clones competes
// for the CPU with every child it has just made: measured on 2 cores with
// 16 children in flight, that thread's timers ran 1.5-1.8x later than a
// bystander process's. So by default `async_spawn` only prepares the launch
// on the calling thread (checks, stack, the child's data: a few
// microseconds), and one thread per pool, with every signal blocked, makes
// the pipes, clones and hands the status pipe to the watcher. The child
// still starts with the caller's signal mask. Commands tied to the calling
// thread (`command::binds_calling_thread()`) are cloned inline, as are
// launches on executors the pool does not watch. See docs/design.md, "The
// launch thread", for the measurements; `set_launch_thread(false)` clones
// on the calling thread, inside the call.
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
// Layer asio/: the Asio objects (stack pool and its watcher, process, reaper,
// async_spawn). It may use child/, command/ and core/.
//

#ifndef ASPAWN_ASIO_STACK_POOL_HPP
#define ASPAWN_ASIO_STACK_POOL_HPP

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <linux/futex.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#include <boost/asio/execution_context.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/detail/throw_error.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <aspawn/core/launch.hpp>

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

  // For a launch handed to the launch thread (`submitted`): where it
  // stands (see stack_pool::cancel_launch); the launch itself (prepared by
  // the caller, then started by the thread); and the error of its start, if
  // it failed (the entry then fires with no events).
  enum class stage : unsigned char { direct, queued, watched, fired };
  std::atomic<stage> at{stage::direct};
  bool submitted = false;
  launched job;
  error_code launch_error;
  stack_cache* stacks = nullptr;
};

// Whether `ex` is a type-erased io_context executor, of a context running
// on this thread, that lets a dispatched function run inline (not
// blocking.never). Dispatched through the type erasure, a function is first
// moved into memory of its own (Asio's executor_function, from a per-thread
// cache of two blocks, which the completions of a busy loop overrun), only
// to be run at once here.
template <typename Executor> bool runs_inline_here(const Executor& ex) {
  if constexpr (std::is_same_v<Executor, boost::asio::any_io_executor>) {
    using plain =
        boost::asio::io_context::basic_executor_type<std::allocator<void>, 0>;
    using tracked =
        boost::asio::io_context::basic_executor_type<std::allocator<void>, 4>;
    if (const plain* t = ex.template target<plain>())
      return t->running_in_this_thread();
    if (const tracked* t = ex.template target<tracked>())
      return t->running_in_this_thread();
  }
  return false;
}

// Resumes `op`, a parked operation, on `ex` as `mode` says (not for
// fire_mode::destroy), with the arguments `args`. Dispatched where `ex` lets
// it run here, it runs here.
template <typename Executor, typename Op, typename... Args>
void resume(const Executor& ex, Op&& op, fire_mode mode, Args&&... args) {
  if (mode == fire_mode::dispatch && runs_inline_here(ex)) {
    std::forward<Op>(op)(std::forward<Args>(args)...);
    return;
  }
  auto go = [&](auto&& f) {
    if (mode == fire_mode::dispatch)
      boost::asio::dispatch(ex, std::forward<decltype(f)>(f));
    else
      boost::asio::post(ex, std::forward<decltype(f)>(f));
  };
  if constexpr (sizeof...(Args) == 0)
    go(std::forward<Op>(op));
  else
    go(boost::asio::append(std::forward<Op>(op), std::forward<Args>(args)...));
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

// The launch thread's scheduling policy while it sleeps. A thread woken
// under SCHED_OTHER preempts its waker at once, on the waker's CPU, if it
// has slept long enough to be owed the CPU (the fair class's wakeup
// preemption), and the waker is the event loop, in the middle of a launch
// call: measured on 2 busy cores with 16 /bin/true in flight, 191 of the
// loop's 244 preemptions were by the launch thread, and the launch call's
// p99 was 0.7-0.9 ms (p50 0.4 us; 4-5 us at p99 since). A SCHED_BATCH
// thread never preempts on wakeup: it runs on an idle core, or when the
// waker's CPU next reschedules. So the thread turns SCHED_BATCH before it
// sleeps and back after, and clones only as what it was (its children
// inherit its policy; the nice value is kept across the switch). A thread
// that started with another policy (real-time, SCHED_IDLE, SCHED_BATCH
// already) keeps it.
struct batch_while_asleep {
  int policy = ::sched_getscheduler(0);
  bool on = policy >= 0 && (policy & ~SCHED_RESET_ON_FORK) == SCHED_OTHER;

  // Before a sleep; true if the policy changed (`leave` restores it).
  bool enter() noexcept {
    if (!on)
      return false;
    const sched_param zero{};
    if (::sched_setscheduler(0, SCHED_BATCH | (policy & SCHED_RESET_ON_FORK),
                             &zero) == 0)
      return true;
    on = false; // not permitted here (seccomp, an LSM): never tried again
    return false;
  }
  void leave() noexcept {
    const sched_param zero{};
    ::sched_setscheduler(0, policy, &zero);
  }
};

// Memory for the pool watcher's one wait (there is at most one at a time,
// but for a wait closed with an old epoll instance after a fork), so that
// arming the watcher never allocates, from any thread. Left to Asio's
// per-thread cache, the wait's memory competed for the cache's few slots
// with the operations it serves: one launch in about 30 then allocated.
class wait_memory {
public:
  void* take(std::size_t size) {
    if (size <= sizeof(buf_) && !used_.exchange(true, std::memory_order_acquire))
      return buf_;
    return ::operator new(size);
  }
  void give(void* p, std::size_t) noexcept {
    if (p == buf_)
      used_.store(false, std::memory_order_release);
    else
      ::operator delete(p);
  }

private:
  alignas(std::max_align_t) unsigned char buf_[256];
  std::atomic<bool> used_{false};
};

// An allocator on `Source`, which hands out memory aligned for any type by
// size (`take(bytes)`, `give(p, bytes)`): the watcher's wait's
// (wait_memory), the pool's blocks (stack_pool's take/give).
template <typename T, typename Source> struct source_allocator {
  using value_type = T;
  Source* source;
  explicit source_allocator(Source* s) noexcept : source(s) {}
  template <typename U>
  source_allocator(const source_allocator<U, Source>& o) noexcept
      : source(o.source) {}
  T* allocate(std::size_t n) {
    static_assert(alignof(T) <= alignof(std::max_align_t));
    if (n > std::size_t(-1) / sizeof(T))
      throw std::bad_array_new_length();
    return static_cast<T*>(source->take(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    source->give(p, n * sizeof(T));
  }
  template <typename U>
  bool operator==(const source_allocator<U, Source>& o) const noexcept {
    return source == o.source;
  }
};

// The allocator the watcher's wait handler is bound to.
template <typename T> using wait_allocator = source_allocator<T, wait_memory>;

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

  ~stack_pool() override {
    stop_worker();
    while (wait_block* b = free_blocks_) {
      free_blocks_ = b->next;
      delete_block(b);
    }
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

  /// Whether `async_spawn` clones on the pool's launch thread (default
  /// true; see the overview). Applies to launches started from now on.
  void set_launch_thread(bool on) noexcept {
    launch_thread_.store(on, std::memory_order_relaxed);
  }
  bool launch_thread() const noexcept {
    return launch_thread_.load(std::memory_order_relaxed);
  }

  /// Launches handed to the launch thread that it has not cloned yet.
  std::size_t queued() const noexcept {
    return queued_.load(std::memory_order_acquire);
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
    if (!arm_and_add(fd, e))
      return false;
    try {
      construct();
    } catch (...) {
      ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
      disarm_if_empty();
      throw;
    }
    if (owner) {
      e->owner = owner;
      *owner = e;
    }
    e->fd = fd;
    link(e);
    return true;
  }

  /// Internal: hands the launch of `e`, which `construct()` builds in place
  /// under the pool's lock (setting `e->job` to a launch `prepare_launch`
  /// made), to the launch thread. The thread clones it and watches its
  /// status pipe, then fires `e` as `watch` would; or fires it, posted,
  /// with no events: with `e->launch_error` set if the launch failed to
  /// start (or was cancelled before), else because the pipe could not be
  /// watched (the operation watches it itself). False, and nothing
  /// constructed, if the pool cannot take it: the caller starts the launch.
  template <typename Executor, typename Construct>
  bool submit(const Executor& ex, detail::watch_entry* e,
              Construct&& construct) {
    {
      std::lock_guard lk(mutex_);
      if (fork_pending_)
        refork();
      if (shut_ || worker_stop_.load(std::memory_order_relaxed) ||
          in_fork_child_ || (epfd_ < 0 && !set_up(ex)))
        return false;
      if (!worker_running_ && !start_worker())
        return false;
      // The watcher is armed here, by the caller (a thread of the context,
      // normally, whose recycled handler memory the wait takes: no
      // allocation), rather than by the launch thread, and stays armed
      // until the launch is on the watch list (see `pending_`).
      const bool armed_here = waits_ == 0;
      if (armed_here)
        arm();
      try {
        construct();
      } catch (...) {
        if (armed_here)
          disarm_if_empty();
        throw;
      }
      e->submitted = true;
      e->stacks = &cache_;
      e->at.store(detail::watch_entry::stage::queued, std::memory_order_relaxed);
      ++pending_;
      queued_.fetch_add(1, std::memory_order_relaxed);
      push(incoming_, e);
    }
    wake_worker();
    return true;
  }

  /// Internal: a cancellation request for the submitted launch `e`, from
  /// its operation's executor. It takes no lock: the launch thread never
  /// waits for the context's threads, nor they for it. Unless the pipe has
  /// reported already, the request is recorded in the entry, and:
  /// - still queued: the launch thread, when it comes to it, fires it with
  ///   `operation_aborted`, unstarted;
  /// - being cloned: the launch thread kills the child once it exists;
  /// - watched (or fired with no events because the pool could not watch
  ///   the pipe): the child is killed here.
  /// Between the thread and this call, the flag and the stage are each
  /// written before the other is read (sequentially consistent), so at
  /// least one of the two sees the other's and kills the child.
  void cancel_launch(detail::watch_entry* e) noexcept {
    using stage = detail::watch_entry::stage;
    if (e->events.load(std::memory_order_acquire) != 0)
      return; // reported: the launch completes
    e->cancelled.store(true, std::memory_order_seq_cst);
    const stage at = e->at.load(std::memory_order_seq_cst);
    if (at != stage::watched && at != stage::fired)
      return; // the launch thread sees the flag
    // Fired with an error: never started, nothing to kill. (The error is
    // written before the stage.)
    if (at == stage::fired && e->launch_error)
      return;
    if (e->events.load(std::memory_order_acquire) == 0 && e->pidfd >= 0)
      aspawn::send_signal(e->pidfd, SIGKILL);
  }

  /// Internal: the size of the blocks `take_wait_block` gives.
  static constexpr std::size_t wait_block_size = 512;

  /// Internal: memory for a process object's exit wait whose handler has
  /// no allocator of its own: a block of `wait_block_size` bytes, aligned
  /// for any type. Blocks given back are kept (up to `max_cached()`, as
  /// stacks are), so that a warm event loop with many children waited on
  /// allocates none, however many exit at once.
  void* take_wait_block() {
    {
      std::lock_guard lk(blocks_mutex_);
      if (wait_block* b = free_blocks_) {
        free_blocks_ = b->next;
        --free_count_;
        return b;
      }
    }
    return ::operator new(wait_block_size, block_align);
  }
  /// Internal: blocks kept for exit waits now (see `take_wait_block`).
  std::size_t wait_blocks_kept() const {
    std::lock_guard lk(blocks_mutex_);
    return free_count_;
  }
  /// Internal: called after a launch has taken its stack. For each stack
  /// mapped since the last call, puts a block by for an exit wait (within
  /// `max_cached()`), so that the waits of a loop's children find their
  /// memory ready up to as many as it has had launches in flight at once,
  /// however their exits and their waits fall. A block that cannot be had
  /// now is simply made when it is first needed.
  void reserve_wait_blocks() noexcept {
    const std::size_t stacks = cache_.created();
    if (blocks_reserved_.load(std::memory_order_relaxed) >= stacks)
      return;
    std::lock_guard lk(blocks_mutex_);
    const std::size_t keep = cache_.max_cached();
    for (std::size_t n = blocks_reserved_.load(std::memory_order_relaxed);
         n < stacks && free_count_ < keep; ++n) {
      void* p = ::operator new(wait_block_size, block_align, std::nothrow);
      if (!p)
        break;
      keep_block(p);
    }
    blocks_reserved_.store(stacks, std::memory_order_relaxed);
  }
  /// Internal: `bytes` bytes aligned for any type: a block from
  /// `take_wait_block` where they fit one, else from operator new; and
  /// their release (the allocator detail::source_allocator draws on).
  void* take(std::size_t bytes) {
    if (bytes <= wait_block_size)
      return take_wait_block();
    return ::operator new(bytes, block_align);
  }
  void give(void* p, std::size_t bytes) noexcept {
    if (bytes <= wait_block_size)
      give_wait_block(p);
    else
      delete_block(p);
  }
  /// Internal: gives back a block from `take_wait_block`.
  void give_wait_block(void* p) noexcept {
    const std::size_t keep = cache_.max_cached();
    {
      std::lock_guard lk(blocks_mutex_);
      if (free_count_ < keep) {
        keep_block(p);
        return;
      }
    }
    delete_block(p);
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
    disarm_if_empty();
  }

private:
  // Called with the lock held: `e` leaves the watch list.
  void unlink(detail::watch_entry* e) noexcept {
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = nullptr;
    e->at.store(detail::watch_entry::stage::fired, std::memory_order_release);
    forget(e);
  }

  // Called with the lock held: `e` joins the watch list; `link` counts it
  // in `watching()` (the launch thread counts its launches itself).
  void insert(detail::watch_entry* e) noexcept {
    e->prev = head_.prev;
    e->next = &head_;
    head_.prev->next = e;
    head_.prev = e;
  }
  void link(detail::watch_entry* e) noexcept {
    if (e->counted)
      watching_.fetch_add(1, std::memory_order_relaxed);
    insert(e);
  }

  // Pushes `e` on the lock-free stack `top` (linked through `next`).
  static void push(std::atomic<detail::watch_entry*>& top,
                   detail::watch_entry* e) noexcept {
    detail::watch_entry* old = top.load(std::memory_order_relaxed);
    do
      e->next = old;
    while (!top.compare_exchange_weak(old, e, std::memory_order_release,
                                      std::memory_order_relaxed));
  }

  // Takes every entry off the stack `top`; returns them oldest first (a
  // null-terminated list through `next`).
  static detail::watch_entry*
  take_all(std::atomic<detail::watch_entry*>& top) noexcept {
    detail::watch_entry* e = top.exchange(nullptr, std::memory_order_acquire);
    detail::watch_entry* fifo = nullptr;
    while (e) {
      detail::watch_entry* next = e->next;
      e->next = fifo;
      fifo = e;
      e = next;
    }
    return fifo;
  }

  // Called with the lock held: the launches the launch thread has cloned
  // since (`started_`) join the watch list. Their pipes are added to the
  // epoll instance after they are pushed there, so an event the instance
  // reports is for an entry on the list once this has run.
  void drain_started() noexcept {
    for (detail::watch_entry* e = take_all(started_); e;) {
      detail::watch_entry* next = e->next;
      insert(e);
      --pending_;
      e = next;
    }
  }

  // Called with the lock held: the launch thread, with every signal
  // blocked (the children it clones start from the caller's mask, saved by
  // `prepare_launch`, and no handler of the program's may run on it).
  bool start_worker() noexcept {
    sigset_t all, old;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old);
    const int r = ::pthread_create(&worker_, nullptr, &stack_pool::worker_main,
                                   this);
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (r != 0)
      return false;
    worker_running_ = true;
    return true;
  }

  static void* worker_main(void* self) {
    ::pthread_setname_np(::pthread_self(), "aspawn-launch");
    static_cast<stack_pool*>(self)->run_worker();
    return nullptr;
  }

  // The launch thread: clones the queued launches one at a time, in order.
  //
  // It never takes `mutex_`, which the context's threads take on every
  // launch and exit wait, except on the rare paths where a launch fails: a
  // thread preempted while holding a lock, on a machine whose cores are
  // busy with the children it launches, leaves every other taker waiting a
  // scheduler slice or more (measured: the event loop waited up to 3 ms on
  // it, 28 times in a second, at 16 in flight). So:
  // - launches come through a lock-free stack (`incoming_`), which the
  //   thread empties into a batch of its own (`batch_`);
  // - a cloned launch goes on another (`started_`), which the event loop
  //   empties into its watch list, before the thread adds the pipe to the
  //   epoll instance;
  // - the thread sleeps on a futex of its own, woken only when it sleeps
  //   (`worker_sleeping_`);
  // - a cancellation request records itself in the entry (`cancel_launch`).
  //
  // It holds `fork_mutex_` while it takes launches (released when there is
  // none left or a fork is wanted), so that a fork announced with
  // `fork_prepare` never finds one half done. The epoll instance it reads
  // stays open while it runs: shutdown() stops the thread before closing
  // it, and only a child of fork(), which has no launch thread, replaces
  // it.
  void run_worker() {
    detail::batch_while_asleep sleep_policy;
    while (wait_for_work(sleep_policy)) {
      std::lock_guard fk(fork_mutex_);
      while (!worker_stop_.load(std::memory_order_acquire) &&
             !fork_wanted_.load(std::memory_order_acquire)) {
        if (!batch_)
          batch_ = take_all(incoming_);
        detail::watch_entry* e = batch_;
        if (!e)
          break;
        batch_ = e->next;
        launch_one(e);
      }
    }
  }

  // The launch thread: whether it has launches to take now.
  bool has_work() const noexcept {
    return !fork_wanted_.load(std::memory_order_seq_cst) &&
           (batch_ || incoming_.load(std::memory_order_seq_cst));
  }

  // The launch thread: sleeps until it has work (true) or is to stop
  // (false). It says that it sleeps before it looks a last time: a caller
  // that pushes a launch (or sets a flag) after that look sees it sleeping
  // and wakes it (`wake_worker`), and one that pushed before is seen. It
  // sleeps as SCHED_BATCH (see detail::batch_while_asleep).
  bool wait_for_work(detail::batch_while_asleep& sleep_policy) noexcept {
    for (;;) {
      if (worker_stop_.load(std::memory_order_seq_cst))
        return false;
      const std::uint32_t seq = wake_seq_.load(std::memory_order_seq_cst);
      if (has_work())
        return true;
      worker_sleeping_.store(true, std::memory_order_seq_cst);
      if (!worker_stop_.load(std::memory_order_seq_cst) && !has_work()) {
        const bool batch = sleep_policy.enter();
        ::syscall(SYS_futex, futex_word(), FUTEX_WAIT_PRIVATE, seq, nullptr,
                  nullptr, 0);
        if (batch)
          sleep_policy.leave();
      }
      worker_sleeping_.store(false, std::memory_order_relaxed);
    }
  }

  // Wakes the launch thread if it sleeps (or is about to): a system call
  // only then.
  void wake_worker() noexcept {
    if (worker_sleeping_.exchange(false, std::memory_order_seq_cst)) {
      wake_seq_.fetch_add(1, std::memory_order_seq_cst);
      ::syscall(SYS_futex, futex_word(), FUTEX_WAKE_PRIVATE, 1, nullptr,
                nullptr, 0);
    }
  }

  std::uint32_t* futex_word() noexcept {
    static_assert(sizeof(wake_seq_) == sizeof(std::uint32_t) &&
                  std::atomic<std::uint32_t>::is_always_lock_free);
    return reinterpret_cast<std::uint32_t*>(&wake_seq_);
  }

  // The launch thread: starts the launch of `e`, unless it was cancelled
  // while queued, and hands it to the watcher. Once its pipe is in the
  // epoll instance, the entry may fire, and end, at any moment: it is not
  // touched again unless the add failed.
  void launch_one(detail::watch_entry* e) noexcept {
    using stage = detail::watch_entry::stage;
    // start_launch blocks every signal around the clone itself: the
    // thread's own mask (start_worker) leaves out the two glibc keeps for
    // itself, SIGCANCEL and SIGSETXID, and must (a setuid() in a threaded
    // program waits until every thread has taken SIGSETXID).
    error_code ec = e->cancelled.load(std::memory_order_acquire)
                        ? error_code(boost::asio::error::operation_aborted)
                        : start_launch(e->job);
    if (ec) {
      e->launch_error = ec;
      e->at.store(stage::fired, std::memory_order_release);
      queued_.fetch_sub(1, std::memory_order_release);
      {
        std::lock_guard lk(mutex_);
        --pending_;
        disarm_if_empty(); // the wait armed for it may have nothing left
      }
      fire_posted(e);
      return;
    }
    const int fd = e->job.status_fd;
    e->fd = fd;
    e->pidfd = e->job.pidfd;
    e->at.store(stage::watched, std::memory_order_seq_cst);
    if (e->cancelled.load(std::memory_order_seq_cst))
      aspawn::send_signal(e->pidfd, SIGKILL);
    if (e->counted)
      watching_.fetch_add(1, std::memory_order_relaxed);
    push(started_, e); // the watcher may list it from here on
    // After the entry is counted as watched: whoever sees none queued sees
    // it.
    queued_.fetch_sub(1, std::memory_order_release);
    if (add(epfd_, fd, e))
      return;
    {
      // Without a registration, nothing fires it.
      std::lock_guard lk(mutex_);
      drain_started();
      unlink(e);
      disarm_if_empty();
    }
    fire_posted(e);
  }

  // Fires `e` with no events, posted. Should posting fail (no memory), the
  // operation, taken out of the entry already, is destroyed as the
  // exception leaves, and abandons its launch.
  static void fire_posted(detail::watch_entry* e) noexcept {
    try {
      e->fire(e, 0, detail::fire_mode::post);
    } catch (...) {
    }
  }

  // Stops the launch thread once it is between launches, and waits for it.
  // Not with the lock held.
  // No thread starts after this (`submit` refuses then).
  void stop_worker() noexcept {
    pthread_t worker;
    {
      std::lock_guard lk(mutex_);
      worker_stop_.store(true, std::memory_order_seq_cst);
      if (!worker_running_)
        return;
      worker_running_ = false;
      worker = worker_;
    }
    wake_worker();
    ::pthread_join(worker, nullptr);
  }

  // Called with the lock held, with no launch thread running (stopped, or
  // the parent's, in a child of fork()): takes every launch not yet cloned
  // (the thread's batch, then those queued after it); returns the first (a
  // null-terminated list, in order).
  detail::watch_entry* take_queue() noexcept {
    detail::watch_entry* first = std::exchange(batch_, nullptr);
    detail::watch_entry** tail = &first;
    while (*tail)
      tail = &(*tail)->next;
    *tail = take_all(incoming_);
    for (detail::watch_entry* e = first; e; e = e->next) {
      e->at.store(detail::watch_entry::stage::fired, std::memory_order_release);
      --pending_;
      queued_.fetch_sub(1, std::memory_order_relaxed);
    }
    return first;
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

  // Called with the lock held: `add` (below) on the pool's own epoll
  // instance.
  bool add(int fd, detail::watch_entry* e) noexcept {
    return add(epfd_, fd, e);
  }
  // One shot, for the status pipe (or pidfd) `fd` of `e`, in the epoll
  // instance `epfd`. A pidfd waited on before is still registered, disabled
  // since it fired: it is re-armed.
  static bool add(int epfd, int fd, detail::watch_entry* e) noexcept {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.ptr = e;
    if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
      return true;
    return errno == EEXIST && ::epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) == 0;
  }

  // Called with the lock held: watches `fd` for `e`, arming the watcher
  // first if it has no wait pending. The order matters when the caller is
  // not the context's thread: the reactor watches the epoll instance
  // edge-triggered and `async_wait` does not look at readiness, so an event
  // that came between the add and the wait, while the context's thread sat
  // in the reactor, would be consumed with no wait to complete, and lost.
  // False (the watcher left as it was) if it cannot be done.
  bool arm_and_add(int fd, detail::watch_entry* e) noexcept {
    const bool armed_here = waits_ == 0;
    if (!ensure_armed())
      return false;
    if (add(fd, e))
      return true;
    if (armed_here)
      disarm_if_empty();
    return false;
  }

  // Called with the lock held: arms the watcher unless a wait is pending.
  // False if it cannot (no memory).
  bool ensure_armed() noexcept {
    if (waits_ > 0)
      return true;
    try {
      arm();
    } catch (...) {
      return false;
    }
    return true;
  }

  // Called with the lock held: a wait of the watcher with nothing to watch
  // would keep the context's work count up for nothing; it is cancelled
  // (`on_ready` counts it off).
  void disarm_if_empty() noexcept {
    if (head_.next == &head_ && pending_ == 0 && waits_ > 0 && watcher_ &&
        !fork_pending_) {
      boost::system::error_code ignored;
      watcher_->cancel(ignored);
    }
  }

  // Called with the lock held. One wait at a time (`waits_` counts it until
  // its handler has run, whatever its outcome), and only while something is
  // watched or on its way there (`pending_`): an idle pool keeps no work on
  // its context.
  void arm() {
    watcher_->async_wait(
        boost::asio::posix::descriptor_base::wait_read,
        boost::asio::bind_allocator(
            detail::wait_allocator<void>(&wait_memory_),
            [this, gen = gen_](boost::system::error_code) { on_ready(gen); }));
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
      drain_started(); // after the wait: every entry it reports is listed
      for (int i = 0; i < r; ++i) {
        auto* e = static_cast<detail::watch_entry*>(evs[i].data.ptr);
        // One shot: the registration is disabled now, and goes away with
        // the pipe's (or pidfd's) last copy.
        unlink(e);
        ready[n] = e;
        events[n++] = evs[i].events;
      }
      if ((head_.next != &head_ || pending_ > 0) && waits_ == 0) {
        // Should this fail (no memory), the launches taken above still go
        // on below; the rest wait for the next launch to arm the watcher.
        try {
          arm();
        } catch (...) {
          first_error = std::current_exception();
        }
      }
    }
    // Each operation goes to its own executor, dispatched: it runs here,
    // completion handler included, wherever its executor permits (the
    // context's own executor, an idle strand of it, an inline executor),
    // which saves the event loop a pass and the memory of a queued
    // function (posted, a batch of completions took more of Asio's
    // per-thread cache than it keeps, and allocated), and is queued
    // otherwise. Once one has thrown (its handler, or a failure to queue),
    // the rest are posted, so that the exception cannot keep any of them
    // from running. Should posting one fail (no memory), that operation
    // abandons its child, and the others still go.
    for (int i = 0; i < n; ++i) {
      try {
        ready[i]->fire(ready[i], events[i],
                       first_error ? detail::fire_mode::post
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
  //
  // The launch thread does not survive a fork. `fork_prepare` waits until
  // it is between launches and holds it there (its locks are taken) until
  // `fork_parent` or `fork_child`; in the child, the launches still queued
  // complete with `operation_aborted`, unstarted, and later launches clone
  // inline (the child starts no thread).
  void notify_fork(boost::asio::execution_context::fork_event event) override {
    using ctx = boost::asio::execution_context;
    if (event == ctx::fork_prepare) {
      {
        // The launch thread takes no further launch from here on (it would
        // otherwise retake its lock between launches, and the fork wait for
        // the whole queue).
        std::lock_guard lk(mutex_);
        fork_wanted_.store(true, std::memory_order_seq_cst);
      }
      fork_mutex_.lock();
      mutex_.lock();
      fork_held_ = true;
      return;
    }
    if (fork_held_) {
      fork_held_ = false;
      fork_wanted_.store(false, std::memory_order_seq_cst);
      mutex_.unlock();
      fork_mutex_.unlock();
      if (event != ctx::fork_child)
        wake_worker();
    }
    if (event != ctx::fork_child)
      return;
    detail::watch_entry* aborted = nullptr;
    {
      std::lock_guard lk(mutex_);
      worker_running_ = false; // the parent's: not this process's to join
      // No thread is started in a child of fork(), which may hold locks of
      // threads it does not have: its launches clone inline.
      in_fork_child_ = true;
      aborted = take_queue();
      for (auto* e = aborted; e; e = e->next)
        e->launch_error = boost::asio::error::operation_aborted;
      if (watcher_ && !fork_pending_) {
        fork_pending_ = true;
        boost::asio::post(watcher_->get_executor(), [this] {
          std::lock_guard lk(mutex_);
          if (fork_pending_)
            refork();
        });
      }
    }
    for (auto* e = aborted; e;) {
      auto* next = e->next;
      fire_posted(e);
      e = next;
    }
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
    drain_started(); // cloned by the parent's thread before the fork
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
  // Launches still queued are abandoned unstarted, once the launch thread
  // has stopped.
  void shutdown() override {
    // First: the launch thread adds pipes to the epoll instance without the
    // lock (see run_worker), so it must be gone before the instance closes.
    stop_worker();
    detail::watch_entry* first;
    detail::watch_entry* queued;
    {
      std::lock_guard lk(mutex_);
      shut_ = true;
      drain_started();
      queued = take_queue();
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
    for (auto* e = queued; e;) {
      auto* next = e->next;
      e->fire(e, 0, detail::fire_mode::destroy);
      e = next;
    }
    for (auto* e = first; e && e != &head_;) {
      auto* next = e->next;
      e->fire(e, 0, detail::fire_mode::destroy);
      e = next;
    }
  }

  stack_cache cache_;
  detail::wait_memory wait_memory_; // the watcher's wait's
  // Exit waits' memory kept for reuse (take_wait_block).
  struct wait_block {
    wait_block* next;
  };
  static constexpr std::align_val_t block_align{alignof(std::max_align_t)};
  static void delete_block(void* p) noexcept {
    ::operator delete(p, block_align);
  }
  // With blocks_mutex_ held: `p`, a block, joins the kept ones.
  void keep_block(void* p) noexcept {
    auto* b = static_cast<wait_block*>(p);
    b->next = free_blocks_;
    free_blocks_ = b;
    ++free_count_;
  }
  mutable std::mutex blocks_mutex_;
  wait_block* free_blocks_ = nullptr;
  std::size_t free_count_ = 0;
  // Stacks for which reserve_wait_blocks has put a block by.
  std::atomic<std::size_t> blocks_reserved_{0};
  std::mutex fork_mutex_; // held by the launch thread while it clones
  std::mutex mutex_;
  // Between the callers and the launch thread (see run_worker): launches
  // submitted, newest first; the thread's own batch taken from there, in
  // order; launches it has cloned, for the watch list; its futex.
  std::atomic<detail::watch_entry*> incoming_{nullptr};
  detail::watch_entry* batch_ = nullptr;
  std::atomic<detail::watch_entry*> started_{nullptr};
  std::atomic<std::uint32_t> wake_seq_{0};
  std::atomic<bool> worker_sleeping_{false};
  pthread_t worker_{};
  bool worker_running_ = false;
  std::atomic<bool> worker_stop_{false};
  bool fork_held_ = false;
  std::atomic<bool> fork_wanted_{false}; // between fork_prepare and the fork
  bool in_fork_child_ = false;
  std::atomic<bool> launch_thread_{true};
  std::atomic<std::size_t> queued_{0};
  // Submitted launches not yet on the watch list (nor fired), under the
  // lock: the watcher stays armed for them.
  std::size_t pending_ = 0;
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

#endif // ASPAWN_ASIO_STACK_POOL_HPP
