//
// aspawn/v2/start_dir.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~
//
// The working directory a child starts in, Boost.Process v2 style.
//
// Overview
// --------
// `process_start_dir` makes the child change to a directory before it
// executes the program (a `chdir` step of the command, run in the child, so
// the parent's working directory is never touched). A relative executable
// path is then resolved from that directory, as with Boost.Process v2.
//
// A directory that does not exist makes the launch fail with the child's
// error, e.g. "step 0 (chdir) failed: No such file or directory"
// (`ec == errc::no_such_file_or_directory`); nothing is left behind.
//
// @code
// aspawn::process make(ctx, "/usr/bin/make", {"-j4"},
//                      aspawn::process_start_dir("build"));
// @endcode
//
// Layer v2/: the Boost.Process v2 surface (initializers, popen, execute,
// launcher). It may use every layer below it.
//

#ifndef ASPAWN_V2_START_DIR_HPP
#define ASPAWN_V2_START_DIR_HPP

#include <filesystem>
#include <string>
#include <utility>

#include <aspawn/command/command.hpp>
#include <aspawn/command/error.hpp>
#include <aspawn/command/initializer.hpp>

namespace aspawn {

/// The initializer for the child's working directory.
struct process_start_dir {
  /// The directory.
  std::filesystem::path start_dir;

  /// From a `std::filesystem::path`.
  process_start_dir(std::filesystem::path dir) : start_dir(std::move(dir)) {}

  /// From any path-like value (a string, a `boost::filesystem::path`...).
  template <path_like Path>
    requires(!std::is_convertible_v<const Path&, std::filesystem::path>)
  process_start_dir(const Path& dir)
      : start_dir(std::string(path_view(dir))) {}

  /// Makes the child change to the directory.
  error_code on_setup(command& cmd) const {
    cmd.chdir(start_dir.native());
    return {};
  }
};

} // namespace aspawn

#endif // ASPAWN_V2_START_DIR_HPP
