//
// aspawn/v2/environment.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~
//
// Environments: this process's, and the one a child is launched with.
//
// Overview
// --------
// Two parts, with the names of Boost.Process v2:
//
// * Namespace `environment`: access to this process's environment.
//   `current()` is a view of it (a range of `key_value_pair_view`, which
//   have `key()` and `value()` and decompose with structured bindings);
//   `get`, `set` and `unset` read and change single variables; `home()`
//   finds the home directory and `find_executable(name)` searches `PATH`
//   for a program, returning an empty path if there is none. The view
//   types (`key_view`, `value_view`, `key_value_pair_view`) and the owning
//   ones (`key`, `value`, `key_value_pair`) convert to and from strings;
//   a `value` such as `PATH` iterates over its `:`-separated parts.
//
// * `process_environment`: the initializer that gives a child exactly the
//   environment listed, replacing the inherited one, as in v2. It is built
//   from "KEY=VALUE" strings (a braced list or any range of strings), from a
//   map of key to value (`std::map`, `std::unordered_map`, with string or
//   `environment::key`/`value` elements), or from `environment::current()`.
//   An entry that is not `KEY=VALUE` with a non-empty key makes the launch
//   fail with `errc::bad_environment_entry`.
//
// The environment of this process is shared by all its threads: as with
// `getenv` and `setenv`, reading it while another thread changes it is a
// data race. Launches read it too (a child inherits it unless given a
// `process_environment`): a program that changes its environment while
// other threads launch must serialize the two.
//
// Example
// -------
// @code
// std::unordered_map<std::string, std::string> env;
// for (auto [k, v] : aspawn::environment::current())
//   env[k.string()] = v.string();
// env["LC_ALL"] = "C";
// aspawn::process proc(ctx, aspawn::environment::find_executable("sort"), {},
//                      aspawn::process_environment(env));
// @endcode
//
// Layer v2/: the Boost.Process v2 surface (initializers, popen, execute,
// launcher). It may use every layer below it.
//

#ifndef ASPAWN_V2_ENVIRONMENT_HPP
#define ASPAWN_V2_ENVIRONMENT_HPP

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <ostream>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include <boost/throw_exception.hpp>

#include <aspawn/command/command.hpp>
#include <aspawn/command/error.hpp>
#include <aspawn/command/initializer.hpp>

extern "C" {
extern char** environ;
}

namespace aspawn {

namespace environment {

/// The character type of environment strings.
using char_type = char;
/// Separates a key from its value.
inline constexpr char_type equality_sign = '=';
/// Separates the parts of a list value such as `PATH`.
inline constexpr char_type delimiter = ':';

/// Iterates over the `:`-separated parts of a value (a trailing empty part
/// is not visited).
class value_iterator {
public:
  using value_type = std::string_view;
  using difference_type = std::ptrdiff_t;
  using reference = std::string_view;
  using pointer = void;
  using iterator_category = std::forward_iterator_tag;

  value_iterator() noexcept = default;
  /// The part starting at `offset` of `whole` (`whole.size()`: the end).
  explicit value_iterator(std::string_view whole,
                          std::size_t offset = 0) noexcept
      : rest_(whole.substr(offset)) {}

  std::string_view operator*() const noexcept {
    return rest_.substr(0, rest_.find(delimiter));
  }
  value_iterator& operator++() noexcept {
    auto d = rest_.find(delimiter);
    rest_.remove_prefix(d == std::string_view::npos ? rest_.size() : d + 1);
    return *this;
  }
  value_iterator operator++(int) noexcept {
    auto old = *this;
    ++*this;
    return old;
  }
  friend bool operator==(const value_iterator& l,
                         const value_iterator& r) noexcept {
    return l.rest_.data() == r.rest_.data() &&
           l.rest_.size() == r.rest_.size();
  }

private:
  std::string_view rest_;
};

namespace detail {
// The shared behaviour of the string wrappers below.
template <typename Derived> struct string_ops {
  std::string string() const { return std::string(view()); }
  std::string native_string() const { return string(); }
  bool empty() const noexcept { return view().empty(); }
  const char_type* data() const noexcept { return view().data(); }
  std::size_t size() const noexcept { return view().size(); }
  int compare(std::string_view o) const noexcept { return view().compare(o); }
  operator std::string_view() const noexcept { return view(); }

  friend bool operator==(const Derived& l, std::string_view r) noexcept {
    return l.view() == r;
  }
  friend auto operator<=>(const Derived& l, std::string_view r) noexcept {
    return l.view() <=> r;
  }
  friend std::ostream& operator<<(std::ostream& os, const Derived& d) {
    return os << d.view();
  }

private:
  std::string_view view() const noexcept {
    return static_cast<const Derived&>(*this).native();
  }
};

inline std::pair<std::string_view, std::string_view>
split_entry(std::string_view kv) noexcept {
  // A leading '=' belongs to the key (as Boost.Process v2 reads it).
  auto eq = kv.find(equality_sign, kv.empty() || kv[0] != '=' ? 0 : 1);
  if (eq == std::string_view::npos)
    return {kv, std::string_view()};
  return {kv.substr(0, eq), kv.substr(eq + 1)};
}

// A non-owning string wrapper (key_view, value_view, key_value_pair_view).
template <typename Derived> class basic_view : public string_ops<Derived> {
public:
  using value_type = char_type;
  using string_view_type = std::string_view;
  using string_type = std::string;

  basic_view() noexcept = default;
  basic_view(std::string_view s) noexcept : v_(s) {}
  basic_view(const char_type* s) noexcept : v_(s) {}
  basic_view(const std::string& s) noexcept : v_(s) {}
  std::string_view native() const noexcept { return v_; }

protected:
  std::string_view v_;
};

// An owning string wrapper (key, value, key_value_pair) and its view type.
template <typename Derived, typename View>
class basic_owned : public string_ops<Derived> {
public:
  using value_type = char_type;
  using string_view_type = std::string_view;
  using string_type = std::string;

  basic_owned() = default;
  basic_owned(std::string s) noexcept : s_(std::move(s)) {}
  basic_owned(std::string_view s) : s_(s) {}
  basic_owned(const char_type* s) : s_(s) {}
  explicit basic_owned(View v) : s_(v.native()) {}
  const std::string& native() const noexcept { return s_; }
  const char_type* c_str() const noexcept { return s_.c_str(); }
  operator View() const noexcept { return View(s_); }

protected:
  std::string s_;
};
} // namespace detail

/// A view of a variable name.
class key_view : public detail::basic_view<key_view> {
public:
  using detail::basic_view<key_view>::basic_view;
};

/// A view of a variable's value.
class value_view : public detail::basic_view<value_view> {
public:
  using detail::basic_view<value_view>::basic_view;

  /// The `:`-separated parts.
  value_iterator begin() const noexcept { return value_iterator(v_); }
  value_iterator end() const noexcept { return value_iterator(v_, v_.size()); }
};

/// A view of a `KEY=VALUE` entry.
class key_value_pair_view : public detail::basic_view<key_value_pair_view> {
public:
  using detail::basic_view<key_value_pair_view>::basic_view;

  key_view key() const noexcept { return detail::split_entry(v_).first; }
  value_view value() const noexcept { return detail::split_entry(v_).second; }

  template <std::size_t I> auto get() const noexcept {
    if constexpr (I == 0)
      return key();
    else
      return value();
  }
};

/// A variable name.
class key : public detail::basic_owned<key, key_view> {
public:
  using detail::basic_owned<key, key_view>::basic_owned;
};

/// A variable's value.
class value : public detail::basic_owned<value, value_view> {
public:
  using detail::basic_owned<value, value_view>::basic_owned;

  /// Appends a part to a list value (`PATH`-like).
  void push_back(std::string_view part) {
    if (!s_.empty())
      s_ += delimiter;
    s_ += part;
  }

  value_iterator begin() const noexcept { return value_iterator(s_); }
  value_iterator end() const noexcept {
    return value_iterator(s_, s_.size());
  }
};

/// A `KEY=VALUE` entry.
class key_value_pair
    : public detail::basic_owned<key_value_pair, key_value_pair_view> {
public:
  using detail::basic_owned<key_value_pair, key_value_pair_view>::basic_owned;
  key_value_pair() = default;
  key_value_pair(key_view k, value_view v) {
    s_.reserve(k.size() + 1 + v.size());
    s_.append(k.native()) += equality_sign;
    s_.append(v.native());
  }
  /// A `PATH`-like entry from its parts.
  key_value_pair(key_view k, std::initializer_list<std::string_view> parts) {
    s_.assign(k.native());
    s_ += equality_sign;
    bool first = true;
    for (auto p : parts) {
      if (!first)
        s_ += delimiter;
      s_ += p;
      first = false;
    }
  }
  /// An entry from a map element.
  template <typename K, typename V>
    requires std::is_convertible_v<const K&, std::string_view> &&
             std::is_convertible_v<const V&, std::string_view>
  key_value_pair(const std::pair<K, V>& kv)
      : key_value_pair(key_view(std::string_view(kv.first)),
                       value_view(std::string_view(kv.second))) {}


  key_view key() const noexcept { return detail::split_entry(s_).first; }
  value_view value() const noexcept { return detail::split_entry(s_).second; }

  template <std::size_t I> auto get() const noexcept {
    if constexpr (I == 0)
      return key();
    else
      return value();
  }
};

/// A view of this process's environment: a range of `key_value_pair_view`.
/**
 * Not owning: it reads `environ` as it iterates. Changing the environment
 * (`set`, `unset`, `setenv`...) invalidates the iterators.
 */
class current_view {
public:
  using value_type = key_value_pair_view;

  class iterator {
  public:
    using value_type = key_value_pair_view;
    using difference_type = std::ptrdiff_t;
    using reference = key_value_pair_view;
    using pointer = void;
    using iterator_category = std::forward_iterator_tag;

    iterator() noexcept = default;
    explicit iterator(char** p) noexcept : p_(p) {}
    key_value_pair_view operator*() const noexcept {
      return key_value_pair_view(*p_);
    }
    iterator& operator++() noexcept {
      ++p_;
      return *this;
    }
    iterator operator++(int) noexcept {
      auto old = *this;
      ++p_;
      return old;
    }
    friend bool operator==(const iterator& l, const iterator& r) noexcept {
      return l.p_ == r.p_;
    }

  private:
    char** p_ = nullptr;
  };

  /// The native handle: `environ`.
  char** native_handle() const noexcept { return environ; }

  iterator begin() const noexcept { return iterator(environ); }
  iterator end() const noexcept {
    char** p = environ;
    if (p)
      while (*p)
        ++p;
    return iterator(p);
  }
};

/// A view of this process's environment.
inline current_view current() noexcept { return current_view(); }

namespace detail {

// The value of `k` in an environment-like range: elements convertible to
// key_value_pair_view ("KEY=VALUE"), or map elements (first, second).
template <typename Environment>
std::string find_key(const Environment& env, std::string_view k) {
  for (auto&& e : env) {
    using E = std::remove_cvref_t<decltype(e)>;
    if constexpr (requires { e.first; e.second; }) {
      if (std::string_view(e.first) == k)
        return std::string(std::string_view(e.second));
    } else {
      static_assert(std::is_convertible_v<const E&, key_value_pair_view>,
                    "an environment is a range of KEY=VALUE entries or of "
                    "key/value pairs");
      key_value_pair_view kv(e);
      if (kv.key().native() == k)
        return kv.value().string();
    }
  }
  return {};
}

inline bool is_executable(const std::filesystem::path& p) noexcept {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         ::access(p.c_str(), X_OK) == 0;
}

} // namespace detail

/// The home directory named by `HOME` in `env`, or an empty path.
template <typename Environment = current_view>
std::filesystem::path home(const Environment& env = current()) {
  return detail::find_key(env, "HOME");
}

/// Searches `PATH` in `env` for an executable regular file `name`.
/**
 * Each entry of `PATH` is joined with `name` (an absolute `name` stands for
 * itself); the first that is a regular file this process may execute is
 * returned.
 * @returns the path found, or an empty path.
 */
template <path_like Name, typename Environment = current_view>
std::filesystem::path find_executable(const Name& name,
                                      const Environment& env = current()) {
  const std::filesystem::path n(std::string(path_view(name)));
  if (n.empty())
    return {};
  const std::string path = detail::find_key(env, "PATH");
  for (std::string_view dir : value_view(path)) {
    auto candidate = std::filesystem::path(std::string(dir)) / n;
    if (detail::is_executable(candidate))
      return candidate;
  }
  return {};
}

/// The value of variable `k` of this process; `ENOENT` if it is not set.
inline value get(key_view k, error_code& ec) {
  ec.clear();
  std::string name(k.native());
  const char* v = ::getenv(name.c_str());
  if (!v) {
    ec = error_code(ENOENT, boost::system::system_category());
    return {};
  }
  return value(v);
}
/// @overload Throws `system_error` if the variable is not set.
inline value get(key_view k) {
  error_code ec;
  auto v = get(k, ec);
  if (ec)
    boost::throw_exception(
        system_error(ec, "aspawn::environment::get " + k.string()));
  return v;
}

/// Sets variable `k` of this process to `v`.
inline void set(key_view k, value_view v, error_code& ec) {
  ec.clear();
  std::string name(k.native()), val(v.native());
  if (::setenv(name.c_str(), val.c_str(), 1) != 0)
    ec = error_code(errno, boost::system::system_category());
}
/// @overload Throws `system_error` (`EINVAL` for an empty name or one with
/// `=`).
inline void set(key_view k, value_view v) {
  error_code ec;
  set(k, v, ec);
  if (ec)
    boost::throw_exception(
        system_error(ec, "aspawn::environment::set " + k.string()));
}

/// Removes variable `k` from this process's environment.
inline void unset(key_view k, error_code& ec) {
  ec.clear();
  std::string name(k.native());
  if (::unsetenv(name.c_str()) != 0)
    ec = error_code(errno, boost::system::system_category());
}
/// @overload Throws `system_error`.
inline void unset(key_view k) {
  error_code ec;
  unset(k, ec);
  if (ec)
    boost::throw_exception(
        system_error(ec, "aspawn::environment::unset " + k.string()));
}

} // namespace environment

/// The initializer for the child's whole environment (see the overview).
struct process_environment {
  /// The entries, as "KEY=VALUE".
  std::vector<std::string> env;

  /// From "KEY=VALUE" strings.
  process_environment(std::initializer_list<std::string_view> entries) {
    env.reserve(entries.size());
    for (auto e : entries)
      env.emplace_back(e);
  }

  /// From a range of "KEY=VALUE" strings or entries, or of key/value pairs.
  template <typename Range>
    requires(!std::is_same_v<std::remove_cvref_t<Range>, process_environment>) &&
            requires(const Range& r) { std::begin(r); std::end(r); }
  process_environment(const Range& entries) {
    for (auto&& e : entries)
      env.push_back(to_entry(e));
  }

  /// Replaces the child's environment with the entries.
  error_code on_setup(command& cmd) const {
    cmd.env_clear();
    for (const auto& e : env)
      cmd.env_entry(e);
    return {};
  }

private:
  template <typename E> static std::string to_entry(const E& e) {
    if constexpr (requires { e.first; e.second; }) {
      std::string s(std::string_view(e.first));
      s += environment::equality_sign;
      s += std::string_view(e.second);
      return s;
    } else {
      static_assert(std::is_convertible_v<const E&, std::string_view>,
                    "process_environment takes KEY=VALUE strings or "
                    "key/value pairs");
      return std::string(std::string_view(e));
    }
  }
};

} // namespace aspawn

// Structured bindings: auto [k, v] = entry;
template <>
struct std::tuple_size<aspawn::environment::key_value_pair_view>
    : std::integral_constant<std::size_t, 2> {};
template <>
struct std::tuple_element<0, aspawn::environment::key_value_pair_view> {
  using type = aspawn::environment::key_view;
};
template <>
struct std::tuple_element<1, aspawn::environment::key_value_pair_view> {
  using type = aspawn::environment::value_view;
};
template <>
struct std::tuple_size<aspawn::environment::key_value_pair>
    : std::integral_constant<std::size_t, 2> {};
template <>
struct std::tuple_element<0, aspawn::environment::key_value_pair> {
  using type = aspawn::environment::key_view;
};
template <>
struct std::tuple_element<1, aspawn::environment::key_value_pair> {
  using type = aspawn::environment::value_view;
};

// Hashing, for unordered containers of keys and values.
template <> struct std::hash<aspawn::environment::key> {
  std::size_t operator()(const aspawn::environment::key& k) const noexcept {
    return std::hash<std::string_view>()(k.native());
  }
};
template <> struct std::hash<aspawn::environment::value> {
  std::size_t operator()(const aspawn::environment::value& v) const noexcept {
    return std::hash<std::string_view>()(v.native());
  }
};
template <> struct std::hash<aspawn::environment::key_value_pair> {
  std::size_t
  operator()(const aspawn::environment::key_value_pair& kv) const noexcept {
    return std::hash<std::string_view>()(kv.native());
  }
};

#endif // ASPAWN_V2_ENVIRONMENT_HPP
