// The command builder: validation and resolution, without launching.
#include "common.hpp"

#include <climits>

using aspawn::error_code;

using aspawn::command;
using aspawn::errc;

TEST_CASE("a bare name is resolved through PATH when the command is built",
          "[command]") {
  command c("sh");
  CHECK_FALSE(c.error());
  CHECK(c.executable().find('/') != std::string::npos);
  CHECK(::access(c.executable().c_str(), X_OK) == 0);
  CHECK(c.argv() == std::vector<std::string>{"sh"});
}

TEST_CASE("a name missing from PATH is ENOENT before anything is launched",
          "[command]") {
  command c("aspawn-no-such-program-anywhere");
  CHECK(c.error() == boost::system::errc::no_such_file_or_directory);
}

TEST_CASE("a PATH entry that is not executable gives EACCES over ENOENT",
          "[command]") {
  char dir[] = "/tmp/aspawn-path-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  std::string file = std::string(dir) + "/tool";
  int fd = ::open(file.c_str(), O_CREAT | O_WRONLY, 0644);
  REQUIRE(fd >= 0);
  ::close(fd);
  const char* old = std::getenv("PATH");
  std::string saved = old ? old : "";
  ::setenv("PATH", (std::string("/nonexistent-dir::") + dir).c_str(), 1);
  command c("tool");
  ::setenv("PATH", saved.c_str(), 1);
  CHECK(c.error() == boost::system::errc::permission_denied);
  ::unlink(file.c_str());
  ::rmdir(dir);
}

TEST_CASE("a path with a slash is taken as it is", "[command]") {
  command c("./relative/tool");
  CHECK_FALSE(c.error());
  CHECK(c.executable() == "./relative/tool");
}

TEST_CASE("invalid input is recorded with a specific error", "[command]") {
  using namespace std::string_literals;
  CHECK(command("").error() == errc::empty_executable);
  CHECK(command("/bin/true").arg("a\0b"s).error() == errc::embedded_nul);
  CHECK(command("/bin/true").env_set("A=B", "c").error() ==
        errc::bad_environment_entry);
  CHECK(command("/bin/true").env_set("", "c").error() ==
        errc::bad_environment_entry);
  CHECK(command("/bin/true").env_entry("NOEQUALS").error() ==
        errc::bad_environment_entry);
  CHECK(command("/bin/true").map_fd(-1, 3).error() == errc::bad_fd);
  CHECK(command("/bin/true").map_fd(INT_MAX, 0).error() == errc::bad_fd);
  CHECK(command("/bin/true").close_fd(1 << 30).error() == errc::bad_fd);
  CHECK(command("/bin/true").map_fd(5, 3).map_fd(5, 4).error() ==
        errc::duplicate_target_fd);
  CHECK(command("/bin/true").stderr_(aspawn::redirect::null()).error() ==
        error_code());
  CHECK(command("/bin/true").stdout_(aspawn::redirect::to_stdout()).error() ==
        errc::conflicting_options);
  CHECK(command().prepare() == errc::empty_command);
}

TEST_CASE("the first error sticks and messages are clear", "[command]") {
  command c("/bin/true");
  c.map_fd(-3, 1).env_set("", "x");
  CHECK(c.error() == errc::bad_fd);
  CHECK(c.error().message().find("file descriptor") != std::string::npos);
  CHECK(c.error() == boost::system::errc::bad_file_descriptor);
}

TEST_CASE("prepare packs once and a change invalidates the pack",
          "[command]") {
  command c("/bin/true", {"a", "b"});
  CHECK_FALSE(c.prepared());
  auto unprepared = c.packed_size();
  CHECK_FALSE(c.prepare());
  CHECK(c.prepared());
  CHECK(c.packed_size() == unprepared);
  c.arg("a-longer-argument-than-padding");
  CHECK_FALSE(c.prepared());
  CHECK(c.packed_size() > unprepared);
  CHECK(c.packed_size() % 16 == 0);
}

TEST_CASE("child errors carry the step, its kind and the errno",
          "[command][error]") {
  auto ec = aspawn::make_child_error(3, aspawn::step_kind::chdir, ENOENT);
  CHECK(aspawn::failed_step(ec) == 3);
  CHECK(aspawn::failed_step_kind(ec) == aspawn::step_kind::chdir);
  CHECK(aspawn::child_errno(ec) == ENOENT);
  CHECK(ec == boost::system::errc::no_such_file_or_directory);
  CHECK(ec.message() == "step 3 (chdir) failed: No such file or directory");
  auto ex = aspawn::make_child_error(5, aspawn::step_kind::exec, EACCES);
  CHECK(ex.message() == "exec (step 5) failed: Permission denied");
  CHECK(aspawn::child_errno(error_code(ENOENT, boost::system::system_category())) == 0);
}

TEST_CASE("status records decode to child errors or protocol errors",
          "[command][error]") {
  aspawn::detail::failure_record rec{2, EACCES,
                                     static_cast<std::uint32_t>(aspawn::step_kind::open),
                                     aspawn::detail::failure_magic};
  auto ec = aspawn::decode_status(&rec, sizeof rec);
  CHECK(aspawn::failed_step(ec) == 2);
  CHECK(aspawn::child_errno(ec) == EACCES);
  CHECK_FALSE(aspawn::decode_status(nullptr, 0));
  CHECK(aspawn::decode_status(&rec, 3) == errc::protocol_error);
  rec.magic = 0;
  CHECK(aspawn::decode_status(&rec, sizeof rec) == errc::protocol_error);
}
