// Error categories.

#include <aspawn/command/error.hpp>

#include <cstring>
#include <string>

namespace aspawn {

namespace {

class library_category_impl final : public boost::system::error_category {
public:
  // A fixed identifier makes the category unique across shared objects.
  library_category_impl() noexcept
      : error_category(0x6173706e6c696231ull) {}
  const char* name() const noexcept override { return "aspawn"; }

  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
    case errc::embedded_nul:
      return "a path, argument or environment entry contains a NUL character";
    case errc::empty_argv:
      return "the argument vector is empty";
    case errc::empty_executable:
      return "the executable name is empty";
    case errc::bad_environment_entry:
      return "an environment entry is not KEY=VALUE with a non-empty key "
             "free of '='";
    case errc::bad_fd:
      return "a file descriptor is negative or out of range";
    case errc::duplicate_target_fd:
      return "two actions target the same child file descriptor";
    case errc::arguments_too_large:
      return "the arguments and environment exceed the kernel's exec limit";
    case errc::conflicting_options:
      return "two options of the command contradict each other";
    case errc::unsupported_by_kernel:
      return "the running kernel lacks a feature this launch needs";
    case errc::no_process:
      return "the process object holds no process";
    case errc::status_unavailable:
      return "the child's exit status was collected elsewhere in the "
             "program (waitpid(-1)?)";
    case errc::protocol_error:
      return "the child sent unexpected data on the status pipe";
    case errc::user_data_too_large:
      return "the child function's user data is too large";
    case errc::empty_command:
      return "the command has no executable";
    case errc::own_process_group:
      return "the child is in this process's own process group: a signal to "
             "the group would reach this process too";
    case errc::unclaimed_pipes:
      return "the command makes pipes (redirect::pipe) that this launch "
             "cannot hand over: launch it with async_spawn, or pass pipes of "
             "one's own (redirect::from)";
    }
    return "unknown aspawn error " + std::to_string(ev);
  }

  boost::system::error_condition
  default_error_condition(int ev) const noexcept override {
    using boost::system::errc::make_error_condition;
    namespace gen = boost::system::errc;
    switch (static_cast<errc>(ev)) {
    case errc::embedded_nul:
    case errc::empty_argv:
    case errc::empty_executable:
    case errc::bad_environment_entry:
    case errc::conflicting_options:
    case errc::empty_command:
      return make_error_condition(gen::invalid_argument);
    case errc::bad_fd:
    case errc::duplicate_target_fd:
      return make_error_condition(gen::bad_file_descriptor);
    case errc::arguments_too_large:
    case errc::user_data_too_large:
      return make_error_condition(gen::argument_list_too_long);
    case errc::unsupported_by_kernel:
      return make_error_condition(gen::function_not_supported);
    case errc::no_process:
      return make_error_condition(gen::no_such_process);
    case errc::status_unavailable:
      return make_error_condition(gen::no_child_process);
    case errc::protocol_error:
      return make_error_condition(gen::protocol_error);
    case errc::own_process_group:
      return make_error_condition(gen::operation_not_permitted);
    case errc::unclaimed_pipes:
      return make_error_condition(gen::invalid_argument);
    }
    return boost::system::error_condition(ev, *this);
  }
};

// value = errno | (step + 1) << 12 | kind << 24; step -1 (signal reset
// before any step) is stored as 0.
constexpr int errno_bits = 12;
constexpr int step_bits = 12;

class child_category_impl final : public boost::system::error_category {
public:
  child_category_impl() noexcept : error_category(0x6173706e6368696cull) {}
  const char* name() const noexcept override { return "aspawn.child"; }

  std::string message(int ev) const override {
    int err = ev & ((1 << errno_bits) - 1);
    int step = ((ev >> errno_bits) & ((1 << step_bits) - 1)) - 1;
    auto kind = static_cast<step_kind>((ev >> (errno_bits + step_bits)) & 0x7f);
    std::string m;
    if (kind == step_kind::exec)
      m = "exec (step " + std::to_string(step) + ") failed: ";
    else if (step < 0)
      m = "child setup (" + std::string(to_string(kind)) + ") failed: ";
    else
      m = "step " + std::to_string(step) + " (" + std::string(to_string(kind)) +
          ") failed: ";
    char buf[128];
    m += ::strerror_r(err, buf, sizeof buf);
    return m;
  }

  boost::system::error_condition
  default_error_condition(int ev) const noexcept override {
    return boost::system::error_condition(ev & ((1 << errno_bits) - 1),
                                          boost::system::generic_category());
  }
};

const library_category_impl library_instance;
const child_category_impl child_instance;

} // namespace

const boost::system::error_category& library_category() noexcept {
  return library_instance;
}

const boost::system::error_category& child_category() noexcept {
  return child_instance;
}

std::string_view to_string(step_kind k) noexcept {
  static constexpr std::string_view names[] = {
      "exec",       "reset signal handlers",
      "open",       "dup2",
      "close",      "close other fds",
      "chdir",      "fchdir",
      "setsid",     "setpgid",
      "tcsetpgrp",  "signal mask",
      "signal default", "signal ignore",
      "setgroups",  "setresgid",
      "setresuid",  "umask",
      "no_new_privs", "prlimit",
      "nice",       "cpu affinity",
      "parent death signal", "child function",
      "restore dumpable"};
  static_assert(std::size(names) == static_cast<std::size_t>(step_kind::count_));
  auto i = static_cast<std::size_t>(k);
  return i < std::size(names) ? names[i] : "unknown step";
}

error_code make_child_error(int index, step_kind kind, int err) noexcept {
  if (err <= 0 || err >= (1 << errno_bits))
    err = EIO;
  int step = index + 1;
  if (step < 0 || step >= (1 << step_bits))
    step = (1 << step_bits) - 1;
  int v = err | (step << errno_bits) |
          (static_cast<int>(kind) << (errno_bits + step_bits));
  return error_code(v, child_category());
}

int child_errno(const error_code& ec) noexcept {
  return ec.category() == child_category()
             ? ec.value() & ((1 << errno_bits) - 1)
             : 0;
}

int failed_step(const error_code& ec) noexcept {
  if (ec.category() != child_category())
    return -1;
  return ((ec.value() >> errno_bits) & ((1 << step_bits) - 1)) - 1;
}

step_kind failed_step_kind(const error_code& ec) noexcept {
  return static_cast<step_kind>((ec.value() >> (errno_bits + step_bits)) & 0x7f);
}

} // namespace aspawn
