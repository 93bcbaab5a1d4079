//
// bench/harness.cpp
// ~~~~~~~~~~~~~~~~~
//
// Helpers shared by the contenders.
//

#include "harness.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace aspawn_bench {

void throw_errno(int err, const char* what) {
  throw std::runtime_error(std::string(what) + ": " + std::strerror(err));
}

void check_wait_status(int wait_status, const char* who) {
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0)
    return;
  std::string msg = std::string(who) + ": child ";
  if (WIFEXITED(wait_status))
    msg += "exited with status " + std::to_string(WEXITSTATUS(wait_status));
  else if (WIFSIGNALED(wait_status))
    msg += "killed by signal " + std::to_string(WTERMSIG(wait_status));
  else
    msg += "ended with wait status " + std::to_string(wait_status);
  throw std::runtime_error(msg);
}

int wait_status_of(int code, int status) noexcept {
  switch (code) {
  case CLD_EXITED:
    return (status & 0xff) << 8;
  case CLD_KILLED:
    return status & 0x7f;
  case CLD_DUMPED:
    return (status & 0x7f) | 0x80;
  default:
    return 0x7f | ((status & 0xff) << 8); // a stop, never seen with WEXITED
  }
}

int kill_pidfd(int pidfd) noexcept {
  return static_cast<int>(
      ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0u));
}

pid_t fork_with_socket(int& fd) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    throw_errno(errno, "socketpair");
  const pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(sv[0]);
    ::close(sv[1]);
    throw_errno(err, "fork");
  }
  ::close(sv[pid == 0 ? 0 : 1]);
  fd = sv[pid == 0 ? 1 : 0];
  return pid;
}

bool read_exact(int fd, void* buf, std::size_t size) noexcept {
  auto* p = static_cast<char*>(buf);
  std::size_t got = 0;
  while (got < size) {
    ssize_t k = ::read(fd, p + got, size - got);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return false;
    got += static_cast<std::size_t>(k);
  }
  return true;
}

int kill_children_named(const char* path) {
  std::string name = path;
  if (auto slash = name.rfind('/'); slash != std::string::npos)
    name.erase(0, slash + 1);
  if (name.size() > 15) // TASK_COMM_LEN - 1
    name.resize(15);

  const pid_t self = ::getpid();
  int killed = 0;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr)
    throw_errno(errno, "opendir(/proc)");
  while (dirent* e = ::readdir(proc)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    std::string stat_path = std::string("/proc/") + e->d_name + "/stat";
    int fd = ::open(stat_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      continue;
    char buf[512];
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0)
      continue;
    buf[n] = '\0';
    // "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
    char* open_paren = std::strchr(buf, '(');
    char* close_paren = std::strrchr(buf, ')');
    if (open_paren == nullptr || close_paren == nullptr ||
        close_paren < open_paren)
      continue;
    std::string comm(open_paren + 1, close_paren);
    char state = '\0';
    int ppid = 0;
    if (std::sscanf(close_paren + 1, " %c %d", &state, &ppid) != 2)
      continue;
    if (ppid != self || comm != name || state == 'Z')
      continue;
    if (::kill(static_cast<pid_t>(std::stol(e->d_name)), SIGKILL) == 0)
      ++killed;
  }
  ::closedir(proc);
  return killed;
}

} // namespace aspawn_bench
