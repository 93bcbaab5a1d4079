// libFuzzer target: the command builder, its validation and its packing.
//
// The input bytes are decoded into a sequence of builder calls (arguments,
// environment edits, redirections, fd maps, setup steps, prepare, packing).
// Next to the real `aspawn::command`, a model follows the documented rules
// (command.hpp, error.hpp): which input is invalid and with which error, and
// what an accepted command holds. Checked for every input:
//
// * no crash, no undefined behaviour, no leak (ASan, UBSan, LeakSanitizer),
//   no descriptor left open;
// * every input the rules reject leaves `error()` set to the first such
//   error, and only rejected input does;
// * an accepted command packs exactly `packed_size()` bytes (into a buffer of
//   exactly that size) with a header consistent with the command: sizes,
//   offsets and strings in bounds, argv and environment as given, step
//   count, scratch descriptors above every named one;
// * packing is deterministic: a prepared command, an unprepared copy and the
//   same calls replayed without `prepare()` pack the same bytes.
//
// Only lib/command/command.cpp and lib/command/error.cpp are linked in:
// nothing here can clone or exec.

#include <aspawn/command/command.hpp>
#include <aspawn/child/step.hpp>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

namespace {

using aspawn::child_function_type;
using aspawn::command;
using aspawn::errc;
using aspawn::error_code;
using aspawn::redirect;
using aspawn::detail::blob_header;
using aspawn::detail::step;

[[noreturn]] void fail(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "fuzz_command: %s%s%s\n", what, detail.empty() ? "" : ": ",
               detail.c_str());
  std::abort();
}

#define FUZZ_CHECK(cond, ...)                                                  \
  do {                                                                         \
    if (!(cond))                                                               \
      fail("check failed: " #cond __VA_OPT__(, ) __VA_ARGS__);                 \
  } while (0)

// ---- input decoding ---------------------------------------------------------

class reader {
public:
  reader(const std::uint8_t* p, std::size_t n) : p_(p), n_(n) {}
  bool empty() const { return n_ == 0; }
  std::uint8_t u8() {
    if (!n_)
      return 0;
    --n_;
    return *p_++;
  }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i)
      v = v << 8 | u8();
    return v;
  }
  std::uint64_t u64() { return std::uint64_t{u32()} << 32 | u32(); }
  bool flag() { return u8() & 1; }

  // A string of up to 63 bytes; one byte in 8 picks a special one.
  std::string str() {
    std::uint8_t h = u8();
    if ((h & 7) == 7) {
      static const char* const special[] = {
          "", "=", "K=V", "PATH", "HOME=/root", "/tmp", "/nonexistent/dir", "a=b=c"};
      return special[(h >> 3) & 7];
    }
    std::size_t len = std::min<std::size_t>(h >> 2, n_);
    std::string s(reinterpret_cast<const char*>(p_), len);
    p_ += len;
    n_ -= len;
    return s;
  }

  // A descriptor number: mostly small, sometimes an extreme.
  int fd() {
    std::uint8_t b = u8();
    switch (b >> 5) {
    case 0:
    case 1:
    case 2:
      return b & 15; // 0..15
    case 3:
      return 16 + (b & 31);
    case 4:
      return -1 - (b & 3);
    case 5: {
      static const int extremes[] = {INT_MAX, INT_MAX - 1, INT_MIN, 1 << 20,
                                     65535, 65536, 1023, 1024};
      return extremes[b & 7];
    }
    default:
      return static_cast<int>(u32());
    }
  }

  int small_int() { return static_cast<int>(static_cast<std::int8_t>(u8())); }

private:
  const std::uint8_t* p_;
  std::size_t n_;
};

// ---- the model --------------------------------------------------------------

error_code sys(int e) { return error_code(e, boost::system::system_category()); }

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

std::string_view key_of(std::string_view entry) {
  return entry.substr(0, entry.find('='));
}

struct model {
  error_code first; // the first error the rules predict
  bool have_exe = true;
  std::string exe;
  std::vector<std::string> argv;
  bool env_replace = false;
  std::vector<std::string> env_set;   // "K=V", in packing order
  std::vector<std::string> env_unset; // "K"
  redirect::kind stdio[3] = {redirect::kind::inherit, redirect::kind::inherit,
                             redirect::kind::inherit};
  int stdio_fd[3] = {-1, -1, -1};
  std::vector<int> targets;  // map_fd targets above 2
  std::vector<int> closes;   // close_fd numbers
  std::vector<int> sources;  // parent fds steps read (dup, fchdir, tcsetpgrp)
  std::size_t user_steps = 0;
  std::size_t scratch = 0;   // dup steps with source != target
  bool close_others = true;
  bool has_mask = false;
  std::uint64_t mask = 0;
  bool holds_exe = false;

  void reject(error_code ec) {
    if (!first)
      first = ec;
  }
  bool text_ok(std::string_view s) {
    if (has_nul(s)) {
      reject(errc::embedded_nul);
      return false;
    }
    return true;
  }
  bool fd_ok(int fd) {
    if (fd < 0 || fd >= (1 << 30)) {
      reject(errc::bad_fd);
      return false;
    }
    return true;
  }
};

// One builder call, recorded so that it can be replayed.
struct call {
  int op;
  std::string s1, s2;
  int i1 = 0, i2 = 0, i3 = 0;
  std::uint64_t x = 0, y = 0;
  std::vector<int> ints;
  std::vector<std::uint8_t> bytes;
};

ASPAWN_CHILD_FN int child_fn_a(void*, std::size_t) { return 0; }
ASPAWN_CHILD_FN int child_fn_b(void*, std::size_t) { return -EPERM; }

enum op_code : int {
  op_arg,
  op_argv0,
  op_env_set,
  op_env_unset,
  op_env_entry,
  op_env_clear,
  op_env_inherit,
  op_stdio,
  op_map_fd,
  op_close_fd,
  op_inherit_fd,
  op_close_other_fds,
  op_chdir,
  op_chdir_fd,
  op_new_session,
  op_process_group,
  op_foreground,
  op_signal_mask,
  op_signal_default,
  op_signal_ignore,
  op_groups,
  op_gid,
  op_uid,
  op_umask,
  op_no_new_privs,
  op_limit,
  op_nice,
  op_cpu_affinity,
  op_pdeathsig,
  op_child_function,
  op_hold_executable,
  op_copy,
  op_prepare,
  op_pack,
  op_count
};

redirect make_redirect(const call& c) {
  switch (c.i2 % 8) {
  case 0:
    return redirect::inherit();
  case 1:
    return redirect::null();
  case 2:
    return redirect::file(c.s1, c.i3, static_cast<unsigned>(c.x));
  case 3:
    return redirect::write_file(c.s1);
  case 4:
    return redirect::append_file(c.s1);
  case 5:
    return redirect::from_fd(c.i3);
  case 6:
    return redirect::to_stdout();
  default:
    return redirect::closed();
  }
}

// Decodes one call from the input.
call decode(reader& in) {
  call c;
  c.op = in.u8() % op_count;
  switch (c.op) {
  case op_arg:
  case op_argv0:
  case op_env_unset:
  case op_env_entry:
  case op_chdir:
    c.s1 = in.str();
    break;
  case op_env_set:
    c.s1 = in.str();
    c.s2 = in.str();
    break;
  case op_stdio:
    c.i1 = in.flag() ? in.fd() : in.u8() % 3;
    c.i2 = in.u8();
    if (c.i2 % 8 == 2 || c.i2 % 8 == 3 || c.i2 % 8 == 4)
      c.s1 = in.str();
    c.i3 = c.i2 % 8 == 5 ? in.fd() : static_cast<int>(in.u32());
    c.x = in.u32() & 07777;
    break;
  case op_map_fd:
    c.i1 = in.fd();
    c.i2 = in.fd();
    break;
  case op_close_fd:
  case op_inherit_fd:
  case op_chdir_fd:
  case op_foreground:
    c.i1 = in.fd();
    break;
  case op_close_other_fds:
    c.i1 = in.flag();
    break;
  case op_process_group:
  case op_nice:
  case op_pdeathsig:
    c.i1 = in.small_int();
    break;
  case op_signal_mask:
  case op_signal_default:
  case op_signal_ignore:
    c.x = in.u64();
    break;
  case op_groups: {
    int n = in.u8() % 8;
    for (int i = 0; i < n; ++i)
      c.ints.push_back(static_cast<int>(in.u32()));
    break;
  }
  case op_gid:
  case op_uid:
  case op_umask:
    c.i1 = static_cast<int>(in.u32());
    break;
  case op_limit:
    c.i1 = in.small_int();
    c.x = in.flag() ? in.u64() : in.u8();
    c.y = in.flag() ? in.u64() : in.u8();
    break;
  case op_cpu_affinity: {
    int n = in.u8() % 6;
    for (int i = 0; i < n; ++i) {
      std::uint8_t b = in.u8();
      c.ints.push_back(b < 200 ? b : b < 250 ? 8000 + (b - 200) * 4
                                             : -static_cast<int>(b - 249));
    }
    break;
  }
  case op_child_function: {
    c.i1 = in.u8() % 3; // 0: null, 1: a, 2: b
    std::uint8_t sz = in.u8();
    // Sizes around the 256 KiB limit are given with a buffer that big.
    c.i2 = sz < 250 ? sz % 64
           : sz < 253 ? 256 * 1024
           : sz < 255 ? 256 * 1024 + 1
                      : 300 * 1024;
    for (int i = 0; i < std::min(c.i2, 16); ++i)
      c.bytes.push_back(in.u8());
    break;
  }
  default:
    break;
  }
  return c;
}

// ---- applying a call to the command and the model ----------------------------

child_function_type fn_of(int i) {
  return i == 0 ? nullptr : i == 1 ? child_fn_a : child_fn_b;
}

void apply(command& cmd, const call& c) {
  switch (c.op) {
  case op_arg:
    cmd.arg(c.s1);
    break;
  case op_argv0:
    cmd.argv0(c.s1);
    break;
  case op_env_set:
    cmd.env_set(c.s1, c.s2);
    break;
  case op_env_unset:
    cmd.env_unset(c.s1);
    break;
  case op_env_entry:
    cmd.env_entry(c.s1);
    break;
  case op_env_clear:
    cmd.env_clear();
    break;
  case op_env_inherit:
    cmd.env_inherit();
    break;
  case op_stdio:
    cmd.stdio(c.i1, make_redirect(c));
    break;
  case op_map_fd:
    cmd.map_fd(c.i1, c.i2);
    break;
  case op_close_fd:
    cmd.close_fd(c.i1);
    break;
  case op_inherit_fd:
    cmd.inherit_fd(c.i1);
    break;
  case op_close_other_fds:
    cmd.close_other_fds(c.i1 != 0);
    break;
  case op_chdir:
    cmd.chdir(c.s1);
    break;
  case op_chdir_fd:
    cmd.chdir_fd(c.i1);
    break;
  case op_new_session:
    cmd.new_session();
    break;
  case op_process_group:
    cmd.process_group(c.i1);
    break;
  case op_foreground:
    cmd.foreground(c.i1);
    break;
  case op_signal_mask:
    cmd.signal_mask(c.x);
    break;
  case op_signal_default:
    cmd.signal_default(c.x);
    break;
  case op_signal_ignore:
    cmd.signal_ignore(c.x);
    break;
  case op_groups: {
    std::vector<unsigned> g;
    for (int v : c.ints)
      g.push_back(static_cast<unsigned>(v));
    cmd.groups(std::move(g));
    break;
  }
  case op_gid:
    cmd.gid(static_cast<unsigned>(c.i1));
    break;
  case op_uid:
    cmd.uid(static_cast<unsigned>(c.i1));
    break;
  case op_umask:
    cmd.umask(static_cast<unsigned>(c.i1));
    break;
  case op_no_new_privs:
    cmd.no_new_privs();
    break;
  case op_limit:
    cmd.limit({c.i1, c.x, c.y});
    break;
  case op_nice:
    cmd.nice(c.i1);
    break;
  case op_cpu_affinity:
    cmd.cpu_affinity(c.ints);
    break;
  case op_pdeathsig:
    cmd.parent_death_signal(c.i1);
    break;
  case op_child_function: {
    std::vector<std::uint8_t> data(static_cast<std::size_t>(c.i2));
    std::copy(c.bytes.begin(), c.bytes.end(), data.begin());
    cmd.child_function(fn_of(c.i1), data.empty() ? nullptr : data.data(),
                       data.size());
    break;
  }
  case op_hold_executable:
    cmd.hold_executable();
    break;
  case op_copy: {
    command copy = cmd;
    command moved = std::move(copy);
    cmd = moved;
    break;
  }
  default:
    break;
  }
}

void model_stdio(model& m, int child_fd, redirect::kind k, const call& c) {
  if (child_fd < 0 || child_fd > 2) {
    m.reject(errc::bad_fd);
    return;
  }
  if (k == redirect::kind::file && !m.text_ok(c.s1))
    return;
  if (k == redirect::kind::fd && !m.fd_ok(c.i3))
    return;
  if (k == redirect::kind::to_stdout && child_fd != 2) {
    m.reject(errc::conflicting_options);
    return;
  }
  if (k == redirect::kind::file && c.s1.empty()) {
    m.reject(sys(ENOENT));
    return;
  }
  m.stdio[child_fd] = k;
  m.stdio_fd[child_fd] = k == redirect::kind::fd ? c.i3 : -1;
}

void model_map(model& m, int target, int source) {
  if (!m.fd_ok(target) || !m.fd_ok(source))
    return;
  if (target <= 2) {
    if (m.stdio[target] != redirect::kind::inherit) {
      m.reject(errc::duplicate_target_fd);
      return;
    }
    m.stdio[target] = redirect::kind::fd;
    m.stdio_fd[target] = source;
    return;
  }
  if (std::find(m.targets.begin(), m.targets.end(), target) != m.targets.end()) {
    m.reject(errc::duplicate_target_fd);
    return;
  }
  m.targets.push_back(target);
  m.sources.push_back(source);
  ++m.user_steps;
  if (source != target)
    ++m.scratch;
}

void model_env_set(model& m, std::string_view key, std::string_view value) {
  if (key.empty() || key.find('=') != std::string_view::npos) {
    m.reject(errc::bad_environment_entry);
    return;
  }
  if (!m.text_ok(key) || !m.text_ok(value))
    return;
  std::erase_if(m.env_set, [&](const std::string& e) { return key_of(e) == key; });
  std::erase(m.env_unset, key);
  m.env_set.push_back(std::string(key) + "=" + std::string(value));
}

void model_apply(model& m, const call& c) {
  switch (c.op) {
  case op_arg:
    if (m.text_ok(c.s1))
      m.argv.push_back(c.s1);
    break;
  case op_argv0:
    if (m.text_ok(c.s1))
      m.argv[0] = c.s1;
    break;
  case op_env_set:
    model_env_set(m, c.s1, c.s2);
    break;
  case op_env_unset: {
    std::string_view key = c.s1;
    if (key.empty() || key.find('=') != std::string_view::npos) {
      m.reject(errc::bad_environment_entry);
      break;
    }
    if (!m.text_ok(key))
      break;
    std::erase_if(m.env_set,
                  [&](const std::string& e) { return key_of(e) == key; });
    if (!m.env_replace && std::find(m.env_unset.begin(), m.env_unset.end(),
                                    key) == m.env_unset.end())
      m.env_unset.emplace_back(key);
    break;
  }
  case op_env_entry: {
    auto eq = c.s1.find('=');
    if (eq == std::string::npos || eq == 0) {
      m.reject(errc::bad_environment_entry);
      break;
    }
    model_env_set(m, std::string_view(c.s1).substr(0, eq),
                  std::string_view(c.s1).substr(eq + 1));
    break;
  }
  case op_env_clear:
    m.env_replace = true;
    m.env_set.clear();
    m.env_unset.clear();
    break;
  case op_env_inherit:
    m.env_replace = false;
    break;
  case op_stdio:
    model_stdio(m, c.i1, make_redirect(c).which(), c);
    break;
  case op_map_fd:
    model_map(m, c.i1, c.i2);
    break;
  case op_inherit_fd:
    model_map(m, c.i1, c.i1);
    break;
  case op_close_fd:
    if (!m.fd_ok(c.i1))
      break;
    if (std::find(m.targets.begin(), m.targets.end(), c.i1) != m.targets.end()) {
      m.reject(errc::conflicting_options);
      break;
    }
    m.closes.push_back(c.i1);
    ++m.user_steps;
    break;
  case op_close_other_fds:
    m.close_others = c.i1 != 0;
    break;
  case op_chdir:
    if (c.s1.empty()) {
      m.reject(sys(ENOENT));
      break;
    }
    if (m.text_ok(c.s1))
      ++m.user_steps;
    break;
  case op_chdir_fd:
  case op_foreground:
    if (m.fd_ok(c.i1)) {
      m.sources.push_back(c.i1);
      ++m.user_steps;
    }
    break;
  case op_process_group:
    if (c.i1 < 0)
      m.reject(sys(EINVAL));
    else
      ++m.user_steps;
    break;
  case op_signal_mask:
    m.has_mask = true;
    m.mask = c.x;
    break;
  case op_signal_default:
  case op_signal_ignore: {
    // The dispositions of SIGKILL and SIGSTOP cannot be changed.
    constexpr std::uint64_t fixed =
        (1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1));
    if (c.x & fixed)
      m.reject(sys(EINVAL));
    else
      ++m.user_steps;
    break;
  }
  case op_limit:
    if (c.i1 < 0 || c.x > c.y)
      m.reject(sys(EINVAL));
    else
      ++m.user_steps;
    break;
  case op_cpu_affinity:
    if (c.ints.empty() ||
        *std::min_element(c.ints.begin(), c.ints.end()) < 0 ||
        *std::max_element(c.ints.begin(), c.ints.end()) >= 8192)
      m.reject(sys(EINVAL));
    else
      ++m.user_steps;
    break;
  case op_pdeathsig:
    if (c.i1 <= 0 || c.i1 > 64)
      m.reject(sys(EINVAL));
    else
      ++m.user_steps;
    break;
  case op_child_function:
    if (c.i1 == 0)
      m.reject(sys(EINVAL));
    else if (c.i2 > 256 * 1024)
      m.reject(errc::user_data_too_large);
    else
      ++m.user_steps;
    break;
  case op_new_session:
  case op_groups:
  case op_gid:
  case op_uid:
  case op_umask:
  case op_no_new_privs:
  case op_nice:
    ++m.user_steps;
    break;
  default:
    break;
  }
}

// ---- checking a packed command ----------------------------------------------

const char* str_in(const std::byte* blob, std::size_t size, std::uint32_t off) {
  FUZZ_CHECK(off < size, "string offset out of the blob");
  const void* nul = std::memchr(blob + off, 0, size - off);
  FUZZ_CHECK(nul != nullptr, "string runs past the blob");
  return reinterpret_cast<const char*>(blob + off);
}

std::uint32_t u32_at(const std::byte* blob, std::size_t size, std::uint32_t table,
                     std::size_t i) {
  FUZZ_CHECK(table + 4 * (i + 1) <= size, "offset table out of the blob");
  std::uint32_t v;
  std::memcpy(&v, blob + table + 4 * i, 4);
  return v;
}

std::unique_ptr<std::byte[]> pack(const command& cmd, std::size_t& size) {
  size = cmd.packed_size();
  FUZZ_CHECK(size >= sizeof(blob_header));
  // Exactly packed_size() bytes, zeroed: ASan reports any write past them,
  // and the alignment gaps compare equal between packs.
  auto buf = std::make_unique<std::byte[]>(size);
  FUZZ_CHECK(reinterpret_cast<std::uintptr_t>(buf.get()) % 16 == 0);
  cmd.pack_into(buf.get());
  return buf;
}

void check_blob(const command& cmd, const model& m, const std::byte* blob,
                std::size_t size) {
  blob_header h;
  std::memcpy(&h, blob, sizeof h);
  FUZZ_CHECK(h.size == size, std::to_string(h.size) + " != " + std::to_string(size));
  FUZZ_CHECK(h.size % 16 == 0);

  FUZZ_CHECK(std::string(str_in(blob, size, h.exe)) == cmd.executable());
  FUZZ_CHECK(h.argc == cmd.argc());
  FUZZ_CHECK(h.argc == m.argv.size());
  auto argv = cmd.argv();
  FUZZ_CHECK(argv == m.argv, "argv differs from the model");
  for (std::size_t i = 0; i < h.argc; ++i)
    FUZZ_CHECK(str_in(blob, size, u32_at(blob, size, h.argv, i)) == argv[i],
               "argv[" + std::to_string(i) + "]");

  unsigned want_mode = m.env_replace ? 2u
                       : (m.env_set.empty() && m.env_unset.empty()) ? 0u
                                                                    : 1u;
  FUZZ_CHECK(h.env_mode == want_mode);
  FUZZ_CHECK(h.env_count == m.env_set.size());
  FUZZ_CHECK(cmd.env_set_count() == m.env_set.size());
  for (std::size_t i = 0; i < h.env_count; ++i)
    FUZZ_CHECK(str_in(blob, size, u32_at(blob, size, h.env, i)) == m.env_set[i],
               "environment entry " + std::to_string(i));
  FUZZ_CHECK(h.unset_count == m.env_unset.size());
  for (std::size_t i = 0; i < h.unset_count; ++i)
    FUZZ_CHECK(str_in(blob, size, u32_at(blob, size, h.unset, i)) ==
                   m.env_unset[i],
               "unset key " + std::to_string(i));

  // Steps.
  std::size_t stdio_steps = 0, stdio_fds = 0;
  for (int i = 0; i < 3; ++i) {
    if (m.stdio[i] != redirect::kind::inherit)
      ++stdio_steps;
    if (m.stdio[i] == redirect::kind::fd)
      ++stdio_fds;
  }
  std::size_t want_steps = stdio_steps + m.user_steps + (m.close_others ? 1 : 0) +
                           m.scratch + stdio_fds;
  FUZZ_CHECK(h.step_count == want_steps,
             std::to_string(h.step_count) + " steps, model " +
                 std::to_string(want_steps));
  FUZZ_CHECK(h.steps % 8 == 0);
  FUZZ_CHECK(h.steps + std::size_t{h.step_count} * sizeof(step) <= size);

  std::int64_t named_max = 2;
  for (int t : m.targets)
    named_max = std::max<std::int64_t>(named_max, t);
  for (int c : m.closes)
    named_max = std::max<std::int64_t>(named_max, c);
  FUZZ_CHECK(static_cast<std::int64_t>(h.max_fd) >= named_max,
             "max_fd below a named descriptor");

  std::set<int> sources(m.sources.begin(), m.sources.end());
  for (int i = 0; i < 3; ++i)
    if (m.stdio[i] == redirect::kind::fd)
      sources.insert(m.stdio_fd[i]);
  for (std::uint32_t i = 0; i < h.step_count; ++i) {
    step s;
    std::memcpy(&s, blob + h.steps + i * sizeof(step), sizeof s);
    FUZZ_CHECK(s.kind < aspawn::step_kind::count_, "bad step kind");
    if (s.kind == aspawn::step_kind::dup && s.c == 1) {
      // A scratch copy: above every named descriptor, over no source.
      FUZZ_CHECK(s.b > named_max, "scratch descriptor not above the named ones");
      FUZZ_CHECK(static_cast<std::uint32_t>(s.b) <= h.max_fd);
      FUZZ_CHECK(!sources.count(s.b), "scratch descriptor over a source");
    }
    switch (s.kind) {
    case aspawn::step_kind::open:
    case aspawn::step_kind::chdir:
      str_in(blob, size, s.str);
      break;
    case aspawn::step_kind::setgroups:
    case aspawn::step_kind::close_others:
      if (s.len)
        FUZZ_CHECK(s.str + std::size_t{s.len} * 4 <= size);
      break;
    case aspawn::step_kind::affinity:
      FUZZ_CHECK(s.str % 16 == 0);
      FUZZ_CHECK(s.str + std::size_t{s.len} * 8 <= size);
      break;
    case aspawn::step_kind::user_function:
      FUZZ_CHECK(s.str % 16 == 0);
      FUZZ_CHECK(s.str + std::size_t{s.len} <= size);
      FUZZ_CHECK(s.fn != 0);
      break;
    default:
      break;
    }
    if (s.kind == aspawn::step_kind::close_others) {
      FUZZ_CHECK(i + 1 == h.step_count, "close_others is not the last step");
      std::vector<std::int32_t> keep(s.len);
      std::memcpy(keep.data(), blob + s.str, 4 * keep.size());
      FUZZ_CHECK(std::is_sorted(keep.begin(), keep.end()));
      FUZZ_CHECK(std::adjacent_find(keep.begin(), keep.end()) == keep.end());
      for (int fd : {0, 1, 2})
        FUZZ_CHECK(std::binary_search(keep.begin(), keep.end(), fd));
      for (int t : m.targets)
        FUZZ_CHECK(std::binary_search(keep.begin(), keep.end(), t));
    }
  }
  FUZZ_CHECK(h.exec_fd == cmd.executable_fd());
  FUZZ_CHECK((h.exec_fd >= 0) == m.holds_exe);
  FUZZ_CHECK(((h.flags & aspawn::detail::flag_sigmask) != 0) == m.has_mask);
  if (m.has_mask)
    FUZZ_CHECK(h.sigmask == m.mask);
}

// The descriptor number the next open would get.
int lowest_free_fd() {
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd >= 0)
    ::close(fd);
  return fd;
}

// Executables the input picks from, after them a fuzzed name. A bare name is
// searched in PATH: only the library knows the outcome, which must then be
// success, ENOENT or EACCES.
struct exe_choice {
  const char* name;      // nullptr: default-constructed command
  error_code expected;   // the constructor's error (paths and bad names)
  bool holdable;         // hold_executable may open it...
  error_code hold_error; // ... with this result
};

const exe_choice exe_choices[] = {
    {nullptr, {}, false, {}},
    {"/bin/true", {}, true, {}},
    {"true", {}, true, {}},
    {"", errc::empty_executable, false, {}},
    {"/nonexistent/aspawn-fuzz", {}, true, sys(ENOENT)},
    {"aspawn-fuzz-not-in-path", {}, false, {}},
    {"./relative/aspawn-fuzz", {}, false, {}},
};
constexpr int fuzzed_exe = static_cast<int>(std::size(exe_choices));

bool bare_name(std::string_view s) {
  return !s.empty() && !has_nul(s) && s.find('/') == std::string_view::npos;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const int fd_mark = lowest_free_fd();
  reader in(data, size);

  // The executable.
  int choice = in.u8() % (fuzzed_exe + 2);
  std::string exe_name;
  std::optional<command> holder;
  model m;
  bool holdable = false;
  error_code hold_error;
  if (choice < fuzzed_exe) {
    const auto& e = exe_choices[choice];
    exe_name = e.name ? e.name : "";
    holder.emplace(e.name ? command(e.name) : command());
    m.first = e.expected;
    m.have_exe = e.name != nullptr;
    holdable = e.holdable;
    hold_error = e.hold_error;
  } else {
    exe_name = in.str();
    if (choice == fuzzed_exe + 1 && exe_name.find('/') == std::string::npos)
      exe_name.insert(0, "/"); // a path: no PATH search
    holder.emplace(command(exe_name));
    if (exe_name.empty())
      m.first = errc::empty_executable;
    else if (has_nul(exe_name))
      m.first = errc::embedded_nul;
  }
  command& cmd = *holder;
  if (bare_name(exe_name)) {
    // Resolved through PATH: adopt the library's answer.
    m.first = cmd.error();
    if (cmd.error())
      FUZZ_CHECK(cmd.error() == boost::system::errc::no_such_file_or_directory ||
                     cmd.error() == boost::system::errc::permission_denied,
                 cmd.error().message());
  }
  // argv[0] is the name as given, unless the name itself was rejected.
  m.argv.push_back(m.first == errc::empty_executable ||
                           m.first == errc::embedded_nul
                       ? std::string()
                       : exe_name);
  FUZZ_CHECK(cmd.error() == m.first, cmd.error().message());

  std::vector<call> calls;
  for (int n = 0; n < 48 && !in.empty(); ++n) {
    call c = decode(in);
    if (c.op == op_hold_executable && !holdable)
      continue;
    if (c.op == op_prepare) {
      const error_code& ec = cmd.prepare();
      if (!m.first && !m.have_exe)
        m.reject(errc::empty_command);
      FUZZ_CHECK(ec == m.first, ec.message() + " / model: " + m.first.message());
      FUZZ_CHECK(cmd.prepared() == !m.first);
      continue;
    }
    if (c.op == op_pack) {
      (void)cmd.packed_size(); // defined for any command
      if (m.first)
        continue;
      std::size_t n1 = 0, n2 = 0;
      auto b1 = pack(cmd, n1);
      check_blob(cmd, m, b1.get(), n1);
      // An unprepared copy packs the same bytes.
      command copy = cmd;
      copy.close_other_fds(m.close_others);
      FUZZ_CHECK(!copy.prepared());
      auto b2 = pack(copy, n2);
      FUZZ_CHECK(n1 == n2 && std::memcmp(b1.get(), b2.get(), n1) == 0,
                 "prepared and unprepared packs differ");
      continue;
    }
    calls.push_back(c);
    apply(cmd, c);
    if (c.op == op_hold_executable) {
      if (!m.first) {
        m.reject(hold_error);
        m.holds_exe = !hold_error;
      }
    } else {
      model_apply(m, c);
    }
    FUZZ_CHECK(cmd.error() == m.first,
               "after op " + std::to_string(c.op) + ": library '" +
                   cmd.error().message() + "', model '" + m.first.message() + "'");
  }

  // Final state: accepted commands pack, and so does a replay of the same
  // calls without prepare().
  if (!m.have_exe && !m.first) {
    FUZZ_CHECK(cmd.prepare() == errc::empty_command);
  } else if (!m.first) {
    std::size_t n1 = 0, n2 = 0;
    FUZZ_CHECK(!cmd.prepare());
    auto b1 = pack(cmd, n1);
    check_blob(cmd, m, b1.get(), n1);
    command replay(exe_name);
    for (const auto& c : calls)
      apply(replay, c);
    FUZZ_CHECK(!replay.error());
    FUZZ_CHECK(replay.packed_size() == n1);
    auto b2 = pack(replay, n2);
    // A held executable is a different descriptor in the replay.
    blob_header h1, h2;
    std::memcpy(&h1, b1.get(), sizeof h1);
    std::memcpy(&h2, b2.get(), sizeof h2);
    h1.exec_fd = h2.exec_fd = -1;
    std::memcpy(b1.get(), &h1, sizeof h1);
    std::memcpy(b2.get(), &h2, sizeof h2);
    FUZZ_CHECK(n1 == n2 && std::memcmp(b1.get(), b2.get(), n1) == 0,
               "a replay without prepare() packs other bytes");
  } else {
    FUZZ_CHECK(cmd.prepare() == m.first);
    FUZZ_CHECK(!cmd.prepared());
  }
  holder.reset();
  FUZZ_CHECK(lowest_free_fd() == fd_mark, "a descriptor was left open");
  return 0;
}
