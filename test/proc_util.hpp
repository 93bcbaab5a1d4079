// Process inspection for the tests and the test programs: no Catch2, no
// Asio, so that programs of their own (the stress program, the session
// leader) and forked children can use it.
#ifndef ASPAWN_TEST_PROC_UTIL_HPP
#define ASPAWN_TEST_PROC_UTIL_HPP

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>

#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

namespace test::proc {

/// The open fds of this process, or nothing if /proc cannot be read.
inline std::optional<std::set<int>> open_fds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr)
    return std::nullopt;
  std::set<int> fds;
  const int self = ::dirfd(d);
  while (auto* e = ::readdir(d)) {
    if (e->d_name[0] == '.')
      continue;
    int fd = std::atoi(e->d_name);
    if (fd != self)
      fds.insert(fd);
  }
  ::closedir(d);
  return fds;
}

/// Whether this process has any child left (running or zombie).
inline bool has_children() {
  siginfo_t info{};
  return ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0;
}

/// Everything `fd` gives until end-of-file (or an error).
inline std::string read_to_eof(int fd) {
  std::string s;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      s.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    return s;
  }
}

} // namespace test::proc

#endif // ASPAWN_TEST_PROC_UTIL_HPP
