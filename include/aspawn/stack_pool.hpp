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

#include <boost/asio/execution_context.hpp>

#include <aspawn/core.hpp>

namespace aspawn {

/// The execution-context service holding the cached child stacks.
class stack_pool : public boost::asio::execution_context::service {
public:
  /// The service's identity.
  static inline boost::asio::execution_context::id id;

  explicit stack_pool(boost::asio::execution_context& ctx)
      : boost::asio::execution_context::service(ctx) {}

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

private:
  // Stacks lent out belong to pending launch operations, which give them
  // back (after killing their child if they are destroyed unfinished) when
  // the context shuts its services down; the cache outlives that.
  void shutdown() override {}

  stack_cache cache_;
};

} // namespace aspawn

#endif // ASPAWN_STACK_POOL_HPP
