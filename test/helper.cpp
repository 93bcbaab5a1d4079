// Child program for the aspawn test suite.
//
// Usage: helper MODE [ARG] [MODE [ARG]]...
//
// Modes run left to right; output goes to stdout and is written with
// write(2) directly, so nothing is buffered when a later mode raises a
// signal or exits. The program never changes its own signal state, so
// `status` reports exactly what it inherited.
//
//   exit N             exit with status N
//   sleep MS           sleep MS milliseconds
//   raise SIG          kill(getpid(), SIG); continue if still alive
//   args               arg[i]=VALUE for every argv entry
//   env                env:KEY=VALUE for every environ entry
//   getenv KEY         KEY=VALUE or "KEY unset"
//   cwd                cwd=PATH
//   fds                fds=0 1 2 ... (open descriptors)
//   fdinfo FD          "fd FD -> TARGET" or "fd FD closed"
//   status             Sig*, ShdPnd, Uid, Gid, Groups, NoNewPrivs, Umask
//                      lines of /proc/self/status
//   limits             /proc/self/limits
//   cgroup             /proc/self/cgroup
//   ids                pid=.. ppid=.. pgid=.. sid=.. tpgid=..
//   cat                copy stdin to stdout until EOF
//   echo TEXT          TEXT and a newline to stdout
//   echoerr TEXT       TEXT and a newline to stderr
//   write FD TEXT      TEXT (no newline) to descriptor FD
//   nice               nice=N
//   sched              policy=N nice=N (sched_getscheduler, getpriority)
//   affinity           affinity=CPU,CPU,...
//   count-to-stdout N  N bytes of 'x' to stdout
//   pause              block in pause() forever
//   wait-fd FD         read one byte from FD (or EOF), then continue
//
// An unknown mode or a missing/invalid argument prints a message to
// stderr and exits with status 2. After the last mode the exit status is 0.

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

extern char** environ;

namespace {

// Writes all of `data` to `fd`, retrying on EINTR and short writes.
// Returns false if the descriptor refuses the data (closed, EPIPE, ...).
bool write_all(int fd, std::string_view data)
{
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

void out(std::string_view s) { write_all(STDOUT_FILENO, s); }

[[noreturn]] void fail(std::string_view msg)
{
    std::string line(msg);
    line += '\n';
    write_all(STDERR_FILENO, line);
    ::_exit(2);
}

template <typename T>
T parse_num(const char* mode, const char* text)
{
    T value{};
    std::string_view sv(text);
    auto [ptr, ec] = std::from_chars(sv.data(), sv.data() + sv.size(), value);
    if (ec != std::errc{} || ptr != sv.data() + sv.size() || sv.empty())
        fail(std::string("invalid number for ") + mode + ": " + text);
    return value;
}

// Reads a whole file with open/read (no stdio buffering, no caching).
// Returns false if the file cannot be opened.
bool read_file(const char* path, std::string& content)
{
    int fd;
    do {
        fd = ::open(path, O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return false;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (n == 0)
            break;
        content.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return true;
}

void dump_file(const char* path)
{
    std::string content;
    if (!read_file(path, content)) {
        std::string msg = std::string("cannot open ") + path + ": " + std::strerror(errno) + "\n";
        write_all(STDERR_FILENO, msg);
        return;
    }
    out(content);
}

void mode_sleep(long long ms)
{
    if (ms <= 0)
        return;
    timespec req{};
    req.tv_sec = static_cast<time_t>(ms / 1000);
    req.tv_nsec = static_cast<long>((ms % 1000) * 1000000);
    timespec rem{};
    while (::nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;
}

void mode_args(int argc, char** argv)
{
    std::string s;
    for (int i = 0; i < argc; ++i) {
        s += "arg[";
        s += std::to_string(i);
        s += "]=";
        s += argv[i];
        s += '\n';
    }
    out(s);
}

void mode_env()
{
    std::string s;
    if (environ != nullptr) {
        for (char** e = environ; *e != nullptr; ++e) {
            s += "env:";
            s += *e;
            s += '\n';
        }
    }
    out(s);
}

void mode_getenv(const char* key)
{
    const char* value = ::getenv(key);
    std::string s(key);
    if (value != nullptr) {
        s += '=';
        s += value;
    } else {
        s += " unset";
    }
    s += '\n';
    out(s);
}

void mode_cwd()
{
    std::vector<char> buf(PATH_MAX);
    for (;;) {
        if (::getcwd(buf.data(), buf.size()) != nullptr)
            break;
        if (errno != ERANGE) {
            out(std::string("cwd error: ") + std::strerror(errno) + "\n");
            return;
        }
        buf.resize(buf.size() * 2);
    }
    out(std::string("cwd=") + buf.data() + "\n");
}

void mode_fds()
{
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) {
        out(std::string("fds error: ") + std::strerror(errno) + "\n");
        return;
    }
    int self = ::dirfd(dir);
    std::vector<int> fds;
    while (dirent* ent = ::readdir(dir)) {
        std::string_view name(ent->d_name);
        if (name.empty() || name[0] == '.')
            continue;
        int fd = -1;
        auto [ptr, ec] = std::from_chars(name.data(), name.data() + name.size(), fd);
        if (ec != std::errc{} || ptr != name.data() + name.size())
            continue;
        if (fd == self)
            continue;
        fds.push_back(fd);
    }
    ::closedir(dir);
    std::sort(fds.begin(), fds.end());
    std::string s = "fds=";
    for (std::size_t i = 0; i < fds.size(); ++i) {
        if (i != 0)
            s += ' ';
        s += std::to_string(fds[i]);
    }
    s += '\n';
    out(s);
}

void mode_fdinfo(int fd)
{
    std::string path = "/proc/self/fd/" + std::to_string(fd);
    std::vector<char> buf(PATH_MAX + 1);
    ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
    std::string s = "fd " + std::to_string(fd);
    if (n < 0) {
        s += " closed\n";
    } else {
        s += " -> ";
        s.append(buf.data(), static_cast<std::size_t>(n));
        s += '\n';
    }
    out(s);
}

void mode_status()
{
    std::string content;
    if (!read_file("/proc/self/status", content)) {
        out(std::string("status error: ") + std::strerror(errno) + "\n");
        return;
    }
    static constexpr std::string_view keep[] = {
        "Sig", "ShdPnd:", "Uid:", "Gid:", "Groups:", "NoNewPrivs:", "Umask:",
    };
    std::string s;
    std::string_view rest(content);
    while (!rest.empty()) {
        std::size_t nl = rest.find('\n');
        std::string_view line = rest.substr(0, nl);
        rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
        for (std::string_view k : keep) {
            if (line.starts_with(k)) {
                s += line;
                s += '\n';
                break;
            }
        }
    }
    out(s);
}

void mode_ids()
{
    std::string s;
    s += "pid=" + std::to_string(::getpid());
    s += " ppid=" + std::to_string(::getppid());
    s += " pgid=" + std::to_string(::getpgrp());
    s += " sid=" + std::to_string(::getsid(0));
    s += " tpgid=" + std::to_string(::tcgetpgrp(STDIN_FILENO));
    s += '\n';
    out(s);
}

void mode_cat()
{
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        if (n == 0)
            return;
        if (!write_all(STDOUT_FILENO, std::string_view(buf, static_cast<std::size_t>(n))))
            return;
    }
}

void mode_nice()
{
    errno = 0;
    int prio = ::getpriority(PRIO_PROCESS, 0);
    if (prio == -1 && errno != 0) {
        out(std::string("nice error: ") + std::strerror(errno) + "\n");
        return;
    }
    out("nice=" + std::to_string(prio) + "\n");
}

void mode_sched()
{
    errno = 0;
    int prio = ::getpriority(PRIO_PROCESS, 0);
    int policy = ::sched_getscheduler(0);
    if (policy < 0 || (prio == -1 && errno != 0)) {
        out(std::string("sched error: ") + std::strerror(errno) + "\n");
        return;
    }
    out("policy=" + std::to_string(policy) + " nice=" + std::to_string(prio) + "\n");
}

void mode_affinity()
{
    for (std::size_t ncpus = 1024; ncpus <= (std::size_t{1} << 20); ncpus *= 2) {
        cpu_set_t* set = CPU_ALLOC(ncpus);
        if (set == nullptr)
            break;
        std::size_t size = CPU_ALLOC_SIZE(ncpus);
        CPU_ZERO_S(size, set);
        if (::sched_getaffinity(0, size, set) != 0) {
            int err = errno;
            CPU_FREE(set);
            if (err == EINVAL)
                continue;
            out(std::string("affinity error: ") + std::strerror(err) + "\n");
            return;
        }
        std::string s = "affinity=";
        bool first = true;
        for (std::size_t cpu = 0; cpu < ncpus; ++cpu) {
            if (CPU_ISSET_S(cpu, size, set)) {
                if (!first)
                    s += ',';
                s += std::to_string(cpu);
                first = false;
            }
        }
        CPU_FREE(set);
        s += '\n';
        out(s);
        return;
    }
    out("affinity error\n");
}

void mode_count(unsigned long long n)
{
    static const std::string chunk(65536, 'x');
    while (n > 0) {
        std::size_t len = n < chunk.size() ? static_cast<std::size_t>(n) : chunk.size();
        if (!write_all(STDOUT_FILENO, std::string_view(chunk.data(), len)))
            return;
        n -= len;
    }
}

[[noreturn]] void mode_pause()
{
    for (;;)
        ::pause();
}

void mode_wait_fd(int fd)
{
    char c;
    for (;;) {
        ssize_t n = ::read(fd, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        return;
    }
}

} // namespace

int main(int argc, char** argv)
{
    int i = 1;
    auto need = [&](const char* mode) -> const char* {
        if (i >= argc)
            fail(std::string("missing argument for ") + mode);
        return argv[i++];
    };

    while (i < argc) {
        std::string_view mode(argv[i]);
        const char* m = argv[i];
        ++i;

        if (mode == "exit") {
            int code = parse_num<int>(m, need(m));
            ::_exit(code);
        } else if (mode == "sleep") {
            mode_sleep(parse_num<long long>(m, need(m)));
        } else if (mode == "raise") {
            int sig = parse_num<int>(m, need(m));
            ::kill(::getpid(), sig);
        } else if (mode == "args") {
            mode_args(argc, argv);
        } else if (mode == "env") {
            mode_env();
        } else if (mode == "getenv") {
            mode_getenv(need(m));
        } else if (mode == "cwd") {
            mode_cwd();
        } else if (mode == "fds") {
            mode_fds();
        } else if (mode == "fdinfo") {
            mode_fdinfo(parse_num<int>(m, need(m)));
        } else if (mode == "status") {
            mode_status();
        } else if (mode == "limits") {
            dump_file("/proc/self/limits");
        } else if (mode == "cgroup") {
            dump_file("/proc/self/cgroup");
        } else if (mode == "ids") {
            mode_ids();
        } else if (mode == "cat") {
            mode_cat();
        } else if (mode == "echo") {
            out(std::string(need(m)) + "\n");
        } else if (mode == "echoerr") {
            write_all(STDERR_FILENO, std::string(need(m)) + "\n");
        } else if (mode == "write") {
            int fd = parse_num<int>(m, need(m));
            write_all(fd, need(m));
        } else if (mode == "nice") {
            mode_nice();
        } else if (mode == "sched") {
            mode_sched();
        } else if (mode == "affinity") {
            mode_affinity();
        } else if (mode == "count-to-stdout") {
            mode_count(parse_num<unsigned long long>(m, need(m)));
        } else if (mode == "pause") {
            mode_pause();
        } else if (mode == "wait-fd") {
            mode_wait_fd(parse_num<int>(m, need(m)));
        } else {
            fail(std::string("unknown mode ") + m);
        }
    }
    return 0;
}
