// The command: validation, PATH resolution and packing.

#include <aspawn/command/command.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <signal.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace aspawn {

namespace {

constexpr int max_fd_number = 1 << 30;

bool has_nul(std::string_view s) noexcept {
  return s.find('\0') != std::string_view::npos;
}

// execvp's search: empty PATH entries mean the current directory; a
// candidate that exists but may not be executed (EACCES) is remembered and
// reported if nothing better is found; other failures mean "not here".
error_code resolve(std::string_view name, std::string& out) {
  if (name.find('/') != std::string_view::npos) {
    out.assign(name);
    return {};
  }
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/bin:/usr/bin";
  bool saw_eacces = false;
  std::string candidate;
  for (;;) {
    auto colon = dirs.find(':');
    std::string_view dir = dirs.substr(0, colon);
    candidate.assign(dir.empty() ? "." : dir);
    candidate += '/';
    candidate += name;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      if (::access(candidate.c_str(), X_OK) == 0) {
        out = std::move(candidate);
        return {};
      }
      saw_eacces = true;
    } else if (errno == EACCES) {
      saw_eacces = true;
    }
    if (colon == std::string_view::npos)
      break;
    dirs.remove_prefix(colon + 1);
  }
  return error_code(saw_eacces ? EACCES : ENOENT,
                    boost::system::system_category());
}

std::size_t align_up(std::size_t n, std::size_t a) noexcept {
  return (n + a - 1) & ~(a - 1);
}

std::string_view env_key(std::string_view entry) noexcept {
  return entry.substr(0, entry.find('='));
}

} // namespace

command::command(std::string_view executable) {
  if (executable.empty()) {
    fail(errc::empty_executable);
    return;
  }
  if (has_nul(executable)) {
    fail(errc::embedded_nul);
    return;
  }
  argv0_.assign(executable);
  if (auto ec = resolve(executable, exe_))
    fail(ec);
}

command::command(std::string_view executable,
                 std::initializer_list<std::string_view> a)
    : command(executable) {
  args(a);
}

void command::fail(error_code ec) {
  if (!error_)
    error_ = ec;
  modified();
}

bool command::check_text(std::string_view s) {
  if (has_nul(s)) {
    fail(errc::embedded_nul);
    return false;
  }
  return true;
}

bool command::check_fd(int fd) {
  // The kernel caps descriptor numbers at fs.nr_open (at most 2^30 - 8);
  // larger ones could never exist, and would overflow the scratch numbering.
  if (fd < 0 || fd >= max_fd_number) {
    fail(errc::bad_fd);
    return false;
  }
  return true;
}

command::step_spec& command::add_step(step_kind k) {
  modified();
  auto& s = steps_.emplace_back();
  s.st.kind = k;
  s.st.str = detail::no_string;
  return s;
}

command& command::arg(std::string_view a) {
  if (check_text(a))
    args_.emplace_back(a);
  modified();
  return *this;
}

command& command::argv0(std::string_view a) {
  if (check_text(a))
    argv0_.assign(a);
  modified();
  return *this;
}

std::vector<std::string> command::argv() const {
  std::vector<std::string> v;
  v.reserve(args_.size() + 1);
  v.push_back(argv0_);
  v.insert(v.end(), args_.begin(), args_.end());
  return v;
}

command& command::env_inherit() {
  env_replace_ = false;
  modified();
  return *this;
}

command& command::env_clear() {
  env_replace_ = true;
  env_set_.clear();
  env_unset_.clear();
  modified();
  return *this;
}

command& command::env_set(std::string_view key, std::string_view value) {
  if (key.empty() || key.find('=') != std::string_view::npos) {
    fail(errc::bad_environment_entry);
    return *this;
  }
  if (!check_text(key) || !check_text(value))
    return *this;
  std::string entry;
  entry.reserve(key.size() + value.size() + 1);
  entry.append(key).append(1, '=').append(value);
  std::erase_if(env_set_,
                [&](const std::string& e) { return env_key(e) == key; });
  std::erase(env_unset_, key);
  env_set_.push_back(std::move(entry));
  modified();
  return *this;
}

command& command::env_entry(std::string_view kv) {
  auto eq = kv.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    fail(errc::bad_environment_entry);
    return *this;
  }
  return env_set(kv.substr(0, eq), kv.substr(eq + 1));
}

command& command::env_unset(std::string_view key) {
  if (key.empty() || key.find('=') != std::string_view::npos) {
    fail(errc::bad_environment_entry);
    return *this;
  }
  if (!check_text(key))
    return *this;
  std::erase_if(env_set_,
                [&](const std::string& e) { return env_key(e) == key; });
  if (!env_replace_ &&
      std::find(env_unset_.begin(), env_unset_.end(), key) == env_unset_.end())
    env_unset_.emplace_back(key);
  modified();
  return *this;
}

command& command::stdio(int child_fd, redirect r) {
  if (child_fd < 0 || child_fd > 2) {
    fail(errc::bad_fd);
    return *this;
  }
  if (r.which() == redirect::kind::file && !check_text(r.path()))
    return *this;
  if (r.which() == redirect::kind::fd && !check_fd(r.fd()))
    return *this;
  if (r.which() == redirect::kind::to_stdout && child_fd != 2) {
    fail(errc::conflicting_options);
    return *this;
  }
  if (r.which() == redirect::kind::file && r.path().empty()) {
    fail(error_code(ENOENT, boost::system::system_category()));
    return *this;
  }
  stdio_[child_fd] = std::move(r);
  modified();
  return *this;
}

command& command::map_fd(int target, int source) {
  if (!check_fd(target) || !check_fd(source))
    return *this;
  if (target <= 2) {
    if (stdio_[target].which() != redirect::kind::inherit) {
      fail(errc::duplicate_target_fd);
      return *this;
    }
    return stdio(target, redirect::from_fd(source));
  }
  if (std::find(targets_.begin(), targets_.end(), target) != targets_.end()) {
    fail(errc::duplicate_target_fd);
    return *this;
  }
  targets_.push_back(target);
  auto& s = add_step(step_kind::dup);
  s.st.a = source;
  s.st.b = target;
  return *this;
}

command& command::close_fd(int fd) {
  if (!check_fd(fd))
    return *this;
  if (std::find(targets_.begin(), targets_.end(), fd) != targets_.end()) {
    fail(errc::conflicting_options);
    return *this;
  }
  add_step(step_kind::close).st.a = fd;
  return *this;
}

command& command::close_other_fds(bool on) {
  close_others_ = on;
  modified();
  return *this;
}

command& command::chdir(std::string_view path) {
  if (path.empty()) {
    fail(error_code(ENOENT, boost::system::system_category()));
    return *this;
  }
  if (check_text(path))
    add_step(step_kind::chdir).text.assign(path);
  return *this;
}

command& command::chdir_fd(int dirfd) {
  if (check_fd(dirfd))
    add_step(step_kind::fchdir).st.a = dirfd;
  return *this;
}

command& command::new_session() {
  add_step(step_kind::setsid);
  return *this;
}

command& command::process_group(int pgid) {
  if (pgid < 0) {
    fail(error_code(EINVAL, boost::system::system_category()));
    return *this;
  }
  add_step(step_kind::setpgid).st.a = pgid;
  return *this;
}

command& command::foreground(int tty_fd) {
  if (check_fd(tty_fd))
    add_step(step_kind::tcsetpgrp).st.a = tty_fd;
  return *this;
}

command& command::signal_mask(std::uint64_t mask) {
  has_mask_ = true;
  mask_ = mask;
  modified();
  return *this;
}

command& command::signal_default(std::uint64_t set) {
  constexpr std::uint64_t fixed =
      (1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1));
  if (set & fixed) { // their disposition cannot be changed at all
    fail(error_code(EINVAL, boost::system::system_category()));
    return *this;
  }
  add_step(step_kind::signal_default).st.x = set;
  return *this;
}

command& command::signal_ignore(std::uint64_t set) {
  constexpr std::uint64_t unblockable =
      (1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1));
  if (set & unblockable) {
    fail(error_code(EINVAL, boost::system::system_category()));
    return *this;
  }
  add_step(step_kind::signal_ignore).st.x = set;
  return *this;
}

command& command::groups(std::vector<unsigned> gids) {
  auto& s = add_step(step_kind::setgroups);
  for (unsigned g : gids)
    s.ints.push_back(static_cast<std::int32_t>(g));
  s.st.len = static_cast<std::uint32_t>(gids.size());
  creds_ = true;
  return *this;
}

command& command::gid(unsigned g) {
  auto& s = add_step(step_kind::setresgid);
  s.st.a = s.st.b = s.st.c = static_cast<std::int32_t>(g);
  creds_ = true;
  return *this;
}

command& command::uid(unsigned u) {
  auto& s = add_step(step_kind::setresuid);
  s.st.a = s.st.b = s.st.c = static_cast<std::int32_t>(u);
  creds_ = true;
  return *this;
}

command& command::umask(unsigned mask) {
  add_step(step_kind::umask).st.a = static_cast<std::int32_t>(mask & 0777);
  return *this;
}

command& command::no_new_privs() {
  no_new_privs_ = true;
  add_step(step_kind::no_new_privs);
  return *this;
}

command& command::limit(resource_limit l) {
  if (l.resource < 0 || l.soft > l.hard) {
    fail(error_code(EINVAL, boost::system::system_category()));
    return *this;
  }
  auto& s = add_step(step_kind::prlimit);
  s.st.a = l.resource;
  s.st.x = l.soft;
  s.st.y = l.hard;
  return *this;
}

command& command::nice(int value) {
  add_step(step_kind::nice).st.a = value;
  return *this;
}

command& command::cpu_affinity(const std::vector<int>& cpus) {
  if (cpus.empty()) {
    fail(error_code(EINVAL, boost::system::system_category()));
    return *this;
  }
  int top = *std::max_element(cpus.begin(), cpus.end());
  if (*std::min_element(cpus.begin(), cpus.end()) < 0 || top >= 8192) {
    fail(error_code(EINVAL, boost::system::system_category()));
    return *this;
  }
  auto& s = add_step(step_kind::affinity);
  std::size_t words = static_cast<std::size_t>(top) / 64 + 1;
  s.bytes.assign(words * 8, std::byte{0});
  for (int c : cpus)
    s.bytes[static_cast<std::size_t>(c) / 8] |= std::byte(1u << (c % 8));
  s.st.len = static_cast<std::uint32_t>(words);
  return *this;
}

command& command::parent_death_signal(int sig) {
  if (sig <= 0 || sig > 64) {
    fail(error_code(EINVAL, boost::system::system_category()));
    return *this;
  }
  auto& s = add_step(step_kind::pdeathsig);
  s.st.a = sig;
  s.st.b = static_cast<std::int32_t>(::getpid());
  return *this;
}

command& command::kill_on_parent_death() {
  if (kill_on_parent_death_)
    return *this;
  kill_on_parent_death_ = true;
  // Skipped by the child when the clone was made with CLONE_PIDFD_AUTOKILL.
  auto& s = add_step(step_kind::pdeathsig);
  s.st.a = SIGKILL;
  s.st.b = static_cast<std::int32_t>(::getpid());
  s.st.c = 1;
  return *this;
}

bool command::binds_calling_thread() const noexcept {
  // Without close_other_fds, the child keeps whatever the caller has open
  // at the clone.
  if (exe_fd_ || cgroup_fd_ || kill_on_parent_death_ || !close_others_)
    return true;
  for (const auto& r : stdio_)
    if (r.which() == redirect::kind::fd)
      return true;
  for (const auto& s : steps_) {
    switch (s.st.kind) {
    case step_kind::dup: // the caller's source fd
    case step_kind::fchdir:
    case step_kind::tcsetpgrp:
    case step_kind::pdeathsig:
    case step_kind::user_function:
      return true;
    default:
      break;
    }
  }
  return false;
}

command::held_fd::~held_fd() {
  if (fd >= 0)
    ::close(fd);
}

command& command::hold_executable() {
  if (error_ || exe_.empty())
    return *this;
  int fd = ::open(exe_.c_str(), O_PATH | O_CLOEXEC);
  if (fd < 0) {
    fail(error_code(errno, boost::system::system_category()));
    return *this;
  }
  // A script's interpreter would be handed /dev/fd/N, closed at exec: keep
  // launching scripts by path.
  int rfd = ::open(exe_.c_str(), O_RDONLY | O_CLOEXEC);
  char magic[2] = {0, 0};
  bool script = rfd >= 0 && ::read(rfd, magic, 2) == 2 && magic[0] == '#' &&
                magic[1] == '!';
  if (rfd >= 0)
    ::close(rfd);
  if (script) {
    ::close(fd);
    return *this;
  }
  exe_fd_ = std::make_shared<const held_fd>(fd);
  modified();
  return *this;
}

command& command::cgroup(std::string_view path) {
  if (!check_text(path))
    return *this;
  std::string p(path);
  int fd = ::open(p.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    fail(error_code(errno, boost::system::system_category()));
    return *this;
  }
  cgroup_fd_ = std::make_shared<const held_fd>(fd);
  modified();
  return *this;
}

command& command::child_function(child_function_type fn, const void* data,
                                 std::size_t size) {
  if (!fn) {
    fail(error_code(EINVAL, boost::system::system_category()));
    return *this;
  }
  if (size > 256 * 1024) {
    fail(errc::user_data_too_large);
    return *this;
  }
  auto& s = add_step(step_kind::user_function);
  s.st.fn = reinterpret_cast<std::uintptr_t>(fn);
  const auto* p = static_cast<const std::byte*>(data);
  if (size)
    s.bytes.assign(p, p + size);
  s.st.len = static_cast<std::uint32_t>(size);
  return *this;
}

const error_code& command::prepare() {
  if (error_ || !packed_.empty())
    return error_;
  if (exe_.empty()) {
    fail(errc::empty_command);
    return error_;
  }
  std::vector<std::byte> blob(compute_size());
  pack(blob.data());
  packed_ = std::move(blob);
  return error_;
}

std::size_t command::packed_size() const noexcept {
  return packed_.empty() ? compute_size() : packed_.size();
}

// The blob layout, written by one walk that either counts or writes:
//   header | argv offsets | env offsets | unset offsets | steps | payload
namespace {

struct writer {
  std::byte* out; // null: count only
  std::size_t pos = 0;

  std::uint32_t reserve(std::size_t n, std::size_t align) {
    pos = align_up(pos, align);
    auto at = static_cast<std::uint32_t>(pos);
    pos += n;
    return at;
  }
  std::uint32_t put(const void* p, std::size_t n, std::size_t align) {
    auto at = reserve(n, align);
    if (out && n)
      std::memcpy(out + at, p, n);
    return at;
  }
  std::uint32_t put_str(std::string_view s) {
    auto at = reserve(s.size() + 1, 1);
    if (out) {
      std::memcpy(out + at, s.data(), s.size());
      out[at + s.size()] = std::byte{0};
    }
    return at;
  }
  template <typename T> void set(std::uint32_t at, const T& v) {
    if (out)
      std::memcpy(out + at, &v, sizeof v);
  }
};

} // namespace

std::size_t command::compute_size() const noexcept { return pack(nullptr); }

void command::pack_into(std::byte* out) const noexcept {
  if (!packed_.empty())
    std::memcpy(out, packed_.data(), packed_.size());
  else
    pack(out);
}

std::size_t command::pack(std::byte* out) const noexcept {
  writer w{out};
  detail::blob_header h{};
  auto hdr = w.reserve(sizeof h, 16);
  std::size_t argc = 1 + args_.size();
  auto argv_at = w.reserve(4 * argc, 4);
  auto env_at = w.reserve(4 * env_set_.size(), 4);
  auto unset_at = w.reserve(4 * env_unset_.size(), 4);

  // Count steps as compute_size does.
  std::vector<int>::size_type scratch = 0;
  std::size_t nsteps = 0;
  for (int i = 0; i < 3; ++i)
    if (stdio_[i].which() != redirect::kind::inherit)
      ++nsteps;
  for (const auto& s : steps_)
    if (s.st.kind == step_kind::dup && s.st.a != s.st.b)
      ++scratch;
  for (int i = 0; i < 3; ++i)
    if (stdio_[i].which() == redirect::kind::fd)
      ++scratch;
  nsteps += steps_.size() + (close_others_ ? 1 : 0) + scratch;
  auto steps_at = w.reserve(sizeof(detail::step) * nsteps, 16);

  h.exe = w.put_str(exe_);
  std::uint32_t off = w.put_str(argv0_);
  w.set(argv_at, off);
  for (std::size_t i = 0; i < args_.size(); ++i) {
    off = w.put_str(args_[i]);
    w.set(static_cast<std::uint32_t>(argv_at + 4 * (i + 1)), off);
  }
  for (std::size_t i = 0; i < env_set_.size(); ++i) {
    off = w.put_str(env_set_[i]);
    w.set(static_cast<std::uint32_t>(env_at + 4 * i), off);
  }
  for (std::size_t i = 0; i < env_unset_.size(); ++i) {
    off = w.put_str(env_unset_[i]);
    w.set(static_cast<std::uint32_t>(unset_at + 4 * i), off);
  }

  // The highest fd any step names; scratch copies of dup sources go just
  // above it, so that a source can never be clobbered by an earlier target
  // (this makes swaps work), and the status pipe goes above those.
  int max_fd = 2;
  for (int t : targets_)
    max_fd = std::max(max_fd, t);
  for (const auto& s : steps_)
    if (s.st.kind == step_kind::close)
      max_fd = std::max(max_fd, s.st.a);
  // Parent descriptors the steps read (dup sources, fchdir and tcsetpgrp
  // fds): no scratch copy may be written over one of them before it is read.
  std::vector<int> in_use;
  for (int i = 0; i < 3; ++i)
    if (stdio_[i].which() == redirect::kind::fd)
      in_use.push_back(stdio_[i].fd());
  for (const auto& s : steps_)
    if (s.st.kind == step_kind::dup || s.st.kind == step_kind::fchdir ||
        s.st.kind == step_kind::tcsetpgrp)
      in_use.push_back(s.st.a);
  int next_scratch = max_fd + 1;
  auto take_scratch = [&] {
    while (std::find(in_use.begin(), in_use.end(), next_scratch) !=
           in_use.end())
      ++next_scratch;
    return next_scratch++;
  };

  std::size_t si = 0;
  auto emit = [&](const detail::step& st) {
    w.set(static_cast<std::uint32_t>(steps_at + sizeof(detail::step) * si),
          st);
    ++si;
  };
  auto blank = [](step_kind k) {
    detail::step st{};
    st.kind = k;
    st.str = detail::no_string;
    return st;
  };
  // Scratch copies first: every dup source, before any target is written.
  std::vector<int> scratch_for_stdio(3, -1);
  for (int i = 0; i < 3; ++i)
    if (stdio_[i].which() == redirect::kind::fd) {
      auto st = blank(step_kind::dup);
      st.a = stdio_[i].fd();
      st.b = take_scratch();
      st.c = 1; // scratch: close-on-exec
      scratch_for_stdio[static_cast<std::size_t>(i)] = st.b;
      emit(st);
    }
  std::vector<int> scratch_for_step(steps_.size(), -1);
  for (std::size_t k = 0; k < steps_.size(); ++k) {
    const auto& s = steps_[k];
    if (s.st.kind == step_kind::dup && s.st.a != s.st.b) {
      auto st = blank(step_kind::dup);
      st.a = s.st.a;
      st.b = take_scratch();
      st.c = 1;
      scratch_for_step[k] = st.b;
      emit(st);
    }
  }
  // Standard streams.
  std::uint32_t pipes = 0;
  for (int i = 0; i < 3; ++i) {
    const auto& r = stdio_[i];
    switch (r.which()) {
    case redirect::kind::inherit:
      break;
    case redirect::kind::null: {
      auto st = blank(step_kind::open);
      st.a = i;
      st.b = O_RDWR;
      st.str = w.put_str("/dev/null");
      emit(st);
      break;
    }
    case redirect::kind::file: {
      auto st = blank(step_kind::open);
      st.a = i;
      st.b = r.flags();
      st.c = static_cast<std::int32_t>(r.mode());
      st.str = w.put_str(r.path());
      emit(st);
      break;
    }
    case redirect::kind::fd: {
      auto st = blank(step_kind::dup);
      st.a = scratch_for_stdio[static_cast<std::size_t>(i)];
      st.b = i;
      emit(st);
      break;
    }
    case redirect::kind::to_stdout: {
      auto st = blank(step_kind::dup);
      st.a = 1;
      st.b = i;
      emit(st);
      break;
    }
    case redirect::kind::close: {
      auto st = blank(step_kind::close);
      st.a = i;
      emit(st);
      break;
    }
    case redirect::kind::pipe: {
      // The pipe is made at each launch; the child finds its end in slot i,
      // which it keeps above every fd named here (like the status pipe), so
      // no scratch copy is needed.
      auto st = blank(step_kind::dup);
      st.from_slot = 1;
      st.a = i;
      st.b = i;
      emit(st);
      pipes |= detail::flag_pipe_stdin << i;
      break;
    }
    }
  }
  // User steps, in order; parent-death signals last: a credential change
  // (setresuid...) clears the parent-death signal, so it is armed after all
  // of them.
  auto emit_user = [&](std::size_t k) {
    const auto& s = steps_[k];
    detail::step st = s.st;
    if (scratch_for_step[k] >= 0)
      st.a = scratch_for_step[k];
    if (!s.text.empty())
      st.str = w.put_str(s.text);
    if (!s.ints.empty())
      st.str = w.put(s.ints.data(), 4 * s.ints.size(), 4);
    if (!s.bytes.empty())
      st.str = w.put(s.bytes.data(), s.bytes.size(), 16);
    else if (s.st.kind == step_kind::user_function)
      st.str = static_cast<std::uint32_t>(w.reserve(0, 16));
    emit(st);
  };
  for (std::size_t k = 0; k < steps_.size(); ++k)
    if (steps_[k].st.kind != step_kind::pdeathsig)
      emit_user(k);
  for (std::size_t k = 0; k < steps_.size(); ++k)
    if (steps_[k].st.kind == step_kind::pdeathsig)
      emit_user(k);
  if (close_others_) {
    std::vector<std::int32_t> keep{0, 1, 2};
    // (the held executable fd is kept by the child itself, wherever it
    // moved it)
    for (int t : targets_)
      keep.push_back(t);
    std::sort(keep.begin(), keep.end());
    keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
    auto st = blank(step_kind::close_others);
    st.str = w.put(keep.data(), 4 * keep.size(), 4);
    st.len = static_cast<std::uint32_t>(keep.size());
    emit(st);
  }

  h.size = static_cast<std::uint32_t>(align_up(w.pos, 16));
  h.argc = static_cast<std::uint32_t>(argc);
  h.argv = argv_at;
  h.env_mode = env_replace_ ? 2u
               : (env_set_.empty() && env_unset_.empty()) ? 0u
                                                         : 1u;
  h.env_count = static_cast<std::uint32_t>(env_set_.size());
  h.env = env_at;
  h.unset_count = static_cast<std::uint32_t>(env_unset_.size());
  h.unset = unset_at;
  h.step_count = static_cast<std::uint32_t>(si);
  h.steps = steps_at;
  h.max_fd = static_cast<std::uint32_t>(next_scratch - 1);
  h.exec_fd = exe_fd_ ? exe_fd_->fd : -1;
  h.flags = (has_mask_ ? detail::flag_sigmask : 0u) | pipes |
            (kill_on_parent_death_ ? detail::flag_kill_on_parent_death : 0u) |
            (no_new_privs_ ? detail::flag_no_new_privs : 0u);
  h.sigmask = mask_;
  w.set(hdr, h);
  return h.size;
}

} // namespace aspawn
