// environment: this process's environment, and process_environment.
#include "common.hpp"

#include <map>
#include <sstream>
#include <unordered_map>

using aspawn::error_code;
using test::asio::io_context;
namespace asio = test::asio;
namespace env = aspawn::environment;

namespace {

// The helper's "env" output when launched with `init`.
template <typename Init> std::string child_env(Init&& init) {
  io_context ctx;
  asio::readable_pipe out(ctx);
  aspawn::process p(ctx, test::helper(), {"env"}, std::forward<Init>(init),
                    aspawn::process_stdio{{}, out, {}});
  auto text = test::read_to_eof(out);
  CHECK(p.wait() == 0);
  return text;
}

} // namespace

TEST_CASE("environment: keys, values and entries", "[v2][environment]") {
  env::key_value_pair_view kv("PATH=/bin:/usr/bin");
  CHECK(kv.key() == "PATH");
  CHECK(kv.value() == "/bin:/usr/bin");
  auto [k, v] = kv;
  CHECK(k.string() == "PATH");
  CHECK(v.native() == "/bin:/usr/bin");

  std::vector<std::string> parts;
  for (auto part : kv.value())
    parts.emplace_back(part);
  CHECK(parts == std::vector<std::string>{"/bin", "/usr/bin"});

  env::value list("a::b:");
  parts.clear();
  for (auto part : list)
    parts.emplace_back(part);
  CHECK(parts == std::vector<std::string>{"a", "", "b"});
  list.push_back("c");
  CHECK(list.string() == "a::b::c");
  const env::value none;
  CHECK(none.begin() == none.end());

  env::key_value_pair owned(env::key_view("K"), env::value_view("V"));
  CHECK(owned.string() == "K=V");
  CHECK(owned.key() == "K");
  CHECK(owned.get<0>() == "K");
  CHECK(owned.get<1>() == "V");
  env::key_value_pair joined(env::key_view("P"), {"x", "y"});
  CHECK(joined.native() == "P=x:y");
  env::key_value_pair from_pair(std::pair<std::string, std::string>("A", "1"));
  CHECK(from_pair.c_str() == std::string("A=1"));

  // A leading '=' belongs to the key.
  env::key_value_pair_view odd("=C:=x");
  CHECK(odd.key() == "=C:");
  CHECK(odd.value() == "x");
  env::key_value_pair_view no_eq("NOVALUE");
  CHECK(no_eq.key() == "NOVALUE");
  CHECK(no_eq.value().empty());

  // Ordering and hashing, for containers.
  CHECK(env::key("A") < "B");
  std::unordered_map<env::key, env::value> m;
  m[env::key("X")] = env::value("1");
  CHECK(m.at(env::key("X")) == "1");
  std::ostringstream os;
  os << env::key("K") << '=' << env::value("V");
  CHECK(os.str() == "K=V");
}

TEST_CASE("environment: this process's", "[v2][environment]") {
  env::set("ASPAWN_V2_ENV", "one");
  CHECK(env::get("ASPAWN_V2_ENV") == "one");
  bool seen = false;
  for (auto [k, v] : env::current())
    if (k == "ASPAWN_V2_ENV") {
      seen = true;
      CHECK(v == "one");
    }
  CHECK(seen);
  CHECK(env::current().native_handle() == environ);

  env::unset("ASPAWN_V2_ENV");
  error_code ec;
  auto missing = env::get("ASPAWN_V2_ENV", ec);
  CHECK(ec == boost::system::errc::no_such_file_or_directory);
  CHECK(missing.empty());
  CHECK_THROWS_AS(env::get("ASPAWN_V2_ENV"), aspawn::system_error);

  env::set("", "x", ec);
  CHECK(ec == boost::system::errc::invalid_argument);
  CHECK_THROWS_AS(env::set("A=B", "x"), aspawn::system_error);
  env::unset("", ec);
  CHECK(ec == boost::system::errc::invalid_argument);

  CHECK(env::home() == std::filesystem::path(std::getenv("HOME")
                                                 ? std::getenv("HOME")
                                                 : ""));
  std::map<std::string, std::string> fake{{"HOME", "/home/someone"}};
  CHECK(env::home(fake) == "/home/someone");
}

TEST_CASE("environment: find_executable", "[v2][environment]") {
  auto sh = env::find_executable("sh");
  REQUIRE_FALSE(sh.empty());
  CHECK(sh.is_absolute());
  CHECK(sh.filename() == "sh");
  CHECK(env::find_executable("aspawn-no-such-program").empty());
  CHECK(env::find_executable("").empty());

  // In an environment of one's own: a map, or KEY=VALUE strings.
  auto helper = std::filesystem::path(test::helper());
  const std::string dir = helper.parent_path().string();
  const std::string name = helper.filename().string();
  std::map<std::string, std::string> m{{"PATH", "/nonexistent:" + dir}};
  CHECK(env::find_executable(name, m) == helper);
  std::vector<std::string> entries{"PATH=" + dir};
  CHECK(env::find_executable(name, entries) == helper);
  std::vector<std::string> no_path{"HOME=/"};
  CHECK(env::find_executable(name, no_path).empty());

  // Not a regular executable file: skipped.
  std::vector<std::string> src{"PATH=" + test::srcdir()};
  CHECK(env::find_executable("not_executable.txt", src).empty());

  // The result launches.
  io_context ctx;
  aspawn::process p(ctx, sh, {"-c", "exit 9"});
  CHECK(p.wait() == 9);
}

TEST_CASE("process_environment replaces the child's environment",
          "[v2][environment]") {
  SECTION("a braced list") {
    CHECK(child_env(aspawn::process_environment{"A=1", "B=2"}) ==
          "env:A=1\nenv:B=2\n");
  }
  SECTION("empty") {
    CHECK(child_env(aspawn::process_environment{}) == "");
  }
  SECTION("a vector of strings, of string_views, of entries") {
    std::vector<std::string> s{"S=1"};
    CHECK(child_env(aspawn::process_environment(s)) == "env:S=1\n");
    std::vector<std::string_view> v{"V=2"};
    CHECK(child_env(aspawn::process_environment(v)) == "env:V=2\n");
    std::vector<env::key_value_pair> kv{env::key_value_pair("E=3")};
    CHECK(child_env(aspawn::process_environment(kv)) == "env:E=3\n");
  }
  SECTION("maps") {
    std::map<std::string, std::string> m{{"M", "1"}, {"N", "2"}};
    CHECK(child_env(aspawn::process_environment(m)) == "env:M=1\nenv:N=2\n");
    std::unordered_map<env::key, env::value> u{{env::key("U"), env::value("x")}};
    CHECK(child_env(aspawn::process_environment(u)) == "env:U=x\n");
  }
  SECTION("this process's, edited") {
    std::map<std::string, std::string> m;
    for (auto [k, v] : env::current())
      m[k.string()] = v.string();
    m["ASPAWN_EDITED"] = "yes";
    auto text = child_env(aspawn::process_environment(m));
    CHECK(text.find("env:ASPAWN_EDITED=yes\n") != std::string::npos);
    CHECK(text.find("env:PATH=") != std::string::npos);
  }
  SECTION("reusable") {
    aspawn::process_environment e{"R=1"};
    CHECK(child_env(e) == "env:R=1\n");
    CHECK(child_env(e) == "env:R=1\n");
  }
}

TEST_CASE("process_environment: a bad entry fails the launch",
          "[v2][environment][errors]") {
  io_context ctx;
  error_code ec;
  aspawn::process p(ctx, ec, test::helper(), {},
                    aspawn::process_environment{"NOEQUALS"});
  CHECK(ec == aspawn::errc::bad_environment_entry);
  aspawn::process q(ctx, ec, test::helper(), {},
                    aspawn::process_environment{"=x"});
  CHECK(ec == aspawn::errc::bad_environment_entry);
  CHECK_FALSE(test::has_children());
}
