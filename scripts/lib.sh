# Shared by scripts/demo, scripts/test and scripts/bench. Sourced, not run.

# Installs the Debian packages named in "$@" that are missing. Idempotent:
# nothing is downloaded when everything is there.
aspawn_install() {
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

aspawn_base_packages=(g++ meson ninja-build pkg-config libboost1.81-dev catch2)

# Configures (or reconfigures) a build directory: aspawn_setup DIR ARGS...
aspawn_setup() {
  local dir="$1"
  shift
  if [ -f "$dir/build.ninja" ]; then
    meson configure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
}
