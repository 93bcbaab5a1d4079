// aspawn/asio/reaper.hpp: collects children nobody waits for any more.
//
// A process object destroyed while its child runs (or detached) hands the
// pidfd here; the service waits for it on the context's reactor and reaps it,
// so that no zombie is left and no thread blocks. Children killed by a
// destructor are reaped at shutdown at the latest (a blocking waitid on a
// SIGKILLed child is brief); detached ones still running at shutdown are left
// to run (a detached child cloned with CLONE_PIDFD_AUTOKILL keeps its pidfd
// open, since closing it would kill the child).
//
// Layer asio/: the Asio objects (stack pool and its watcher, process, reaper,
// async_spawn). It may use child/, command/ and core/.
//

#ifndef ASPAWN_ASIO_REAPER_HPP
#define ASPAWN_ASIO_REAPER_HPP

#include <list>
#include <memory>
#include <mutex>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <aspawn/core/launch.hpp>

namespace aspawn::detail {

class reaper : public boost::asio::execution_context::service {
public:
  static inline boost::asio::execution_context::id id;

  explicit reaper(boost::asio::execution_context& ctx)
      : boost::asio::execution_context::service(ctx) {}

  /// Takes ownership of `pidfd` (already killed if `killed`; reaped by the
  /// kernel if `autoreaped`).
  template <typename Executor>
  void adopt(const Executor& ex, int pid, int pidfd, bool killed,
             bool autoreaped = false) {
    int status;
    if (aspawn::reap(pidfd, pid, false, status, nullptr, autoreaped) != 0) {
      ::close(pidfd); // reaped now, or gone
      return;
    }
    std::lock_guard lk(mutex_);
    if (shut_down_) {
      finish(pid, pidfd, killed, autoreaped);
      return;
    }
    auto it = entries_.emplace(entries_.end(), boost::asio::any_io_executor(ex),
                               pid, killed, autoreaped);
    boost::system::error_code ec;
    it->fd.assign(pidfd, ec);
    if (ec) {
      finish(pid, pidfd, killed, autoreaped);
      entries_.erase(it);
      return;
    }
    watch(it);
  }

  /// Children adopted and not reaped yet.
  std::size_t pending() const {
    std::lock_guard lk(mutex_);
    return entries_.size();
  }

private:
  struct entry {
    entry(boost::asio::any_io_executor ex, int p, bool k, bool a)
        : fd(std::move(ex)), pid(p), killed(k), autoreaped(a) {}
    boost::asio::posix::basic_stream_descriptor<boost::asio::any_io_executor>
        fd;
    int pid;
    bool killed;
    bool autoreaped;
  };
  using iterator = std::list<entry>::iterator;

  static void finish(int pid, int pidfd, bool killed, bool autoreaped) noexcept {
    int status;
    if (killed) {
      aspawn::reap(pidfd, pid, true, status, nullptr, autoreaped);
    } else if (autoreaped) {
      // A detached child cloned with CLONE_PIDFD_AUTOKILL: closing its
      // pidfd would kill it. It was asked to live as long as this process:
      // the descriptor stays open (the kernel reaps the child).
      return;
    }
    ::close(pidfd);
  }

  void watch(iterator it) {
    it->fd.async_wait(
        boost::asio::posix::descriptor_base::wait_read,
        [this, it](const boost::system::error_code& ec) {
          std::lock_guard lk(mutex_);
          if (ec == boost::asio::error::operation_aborted && shut_down_)
            return;
          int status;
          int r = aspawn::reap(it->fd.native_handle(), it->pid, false, status,
                               nullptr, it->autoreaped);
          if (r == 0 && !ec) {
            watch(it);
            return;
          }
          entries_.erase(it);
        });
  }

  void shutdown() override {
    std::list<entry> left;
    {
      std::lock_guard lk(mutex_);
      shut_down_ = true;
      left.swap(entries_);
    }
    for (auto& e : left) {
      int pidfd = e.fd.release();
      finish(e.pid, pidfd, e.killed, e.autoreaped);
    }
  }

  mutable std::mutex mutex_;
  std::list<entry> entries_;
  bool shut_down_ = false;
};

} // namespace aspawn::detail

#endif // ASPAWN_ASIO_REAPER_HPP
