#!/usr/bin/env bash
# Builds the downstream project of test/consumer/ the two ways a project gets
# aspawn, and runs the program each time:
#
#   1. subproject: a copy of the source tree as subprojects/aspawn, found by
#      dependency('aspawn', fallback: 'aspawn') (--force-fallback-for=aspawn,
#      so an installed aspawn cannot be picked up instead). aspawn's tests,
#      examples and benchmarks must be left out on their own.
#   2. pkg-config: aspawn configured on its own, installed into a scratch
#      prefix, and main.cpp compiled with `pkg-config --cflags --libs aspawn`.
#   3. CMake: the same installed tree, moved elsewhere first (the CMake
#      package must be relocatable), found by the CMake project of
#      CMakeLists.txt with find_package(aspawn 0.1 REQUIRED) through
#      -DCMAKE_PREFIX_PATH. A request for a version this release does not
#      satisfy (0.2, 1.0, and 0.0 while aspawn is 0.x) must fail with CMake's
#      ordinary message.
#
#   run.sh SOURCE_ROOT WORK_DIR
#
# WORK_DIR is emptied first and removed on success; on failure it is kept for
# inspection. CXX and CC name the compilers (default c++ and cc). Offline:
# nothing is downloaded. Needs meson, ninja, pkg-config and cmake.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 SOURCE_ROOT WORK_DIR" >&2
  exit 2
fi
src=$(cd "$1" && pwd -P)
work=$2
here=$(cd "$(dirname "$0")" && pwd -P)
jobs=2
cxx=${CXX:-c++}

for tool in meson ninja pkg-config cmake; do
  if ! command -v "$tool" >/dev/null; then
    echo "consumer: $tool not found (on Debian: apt-get install ${tool/ninja/ninja-build})"
    exit 1
  fi
done

rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd -P)

ok=0
cleanup() {
  if [ $ok -eq 1 ]; then
    rm -rf "$work"
  else
    echo "consumer: FAILED, files kept in $work"
  fi
}
trap cleanup EXIT

step() { echo "== consumer: $*"; }

# expect_libaspawn_from PROGRAM DIR [VAR=VALUE...]: fails unless PROGRAM,
# run with the environment given, loads libaspawn from DIR.
expect_libaspawn_from() {
  local program=$1 dir=$2 found
  shift 2
  found=$(env "$@" ldd "$program" | awk '$1 ~ /^libaspawn/ { print $3 }')
  if [ "$found" != "$dir/${found##*/}" ]; then
    echo "consumer: libaspawn resolved to '$found', not the one in $dir"
    exit 1
  fi
}

# Copies the source tree to $1: the files git knows of plus the untracked
# ones it does not ignore, without build directories. Without git (or when
# git refuses), everything but .git, build directories and unpacked
# subprojects.
copy_sources() {
  local dest=$1 list=$work/files.lst
  mkdir -p "$dest"
  if git -C "$src" ls-files -z --cached --others --exclude-standard \
      >"$list.all" 2>/dev/null; then
    local f top
    : >"$list"
    while IFS= read -r -d '' f; do
      top=${f%%/*}
      # Deleted but not yet unstaged, or inside a build directory that the
      # ignore rules do not cover (any directory Meson has configured).
      [ -e "$src/$f" ] || [ -L "$src/$f" ] || continue
      [ "$top" != "$f" ] && [ -e "$src/$top/meson-private" ] && continue
      printf '%s\0' "$f" >>"$list"
    done <"$list.all"
    tar -C "$src" --null -T "$list" -cf - | tar -C "$dest" -xf -
  else
    local excludes=(--exclude=./.git) d
    for d in "$src"/*/; do
      [ -e "$d/meson-private" ] && excludes+=("--exclude=./$(basename "$d")")
    done
    for d in "$src"/subprojects/*/; do
      [ -d "$d" ] && excludes+=("--exclude=./subprojects/$(basename "$d")")
    done
    tar -C "$src" "${excludes[@]}" -cf - . | tar -C "$dest" -xf -
  fi
}

# 1. aspawn as a Meson subproject.
step "subproject build"
proj=$work/project
mkdir -p "$proj/subprojects"
cp "$here/meson.build" "$here/main.cpp" "$proj/"
copy_sources "$proj/subprojects/aspawn"
(cd "$proj" && meson setup build --force-fallback-for=aspawn \
  --buildtype=release)
meson compile -C "$proj/build" -j $jobs
leftover=$(find "$proj/build/subprojects" -type f \
  \( -name 'aspawn-tests' -o -name 'aspawn-test-helper' -o \
     -name 'aspawn-flagship' -o -name 'aspawn-bench' \) -print)
if [ -n "$leftover" ]; then
  echo "consumer: aspawn's tests, examples or benchmarks were built as a subproject:"
  echo "$leftover"
  exit 1
fi
step "subproject run"
"$proj/build/aspawn-consumer"

# 2. aspawn installed, found with pkg-config.
step "install build"
prefix=$work/prefix
meson setup "$work/aspawn-build" "$src" --prefix="$prefix" --libdir=lib \
  --buildtype=release -Dtests=disabled -Dexamples=disabled \
  -Dbenchmarks=disabled -Dfuzzers=disabled
meson compile -C "$work/aspawn-build" -j $jobs
meson install -C "$work/aspawn-build" --no-rebuild --quiet
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
version=$(pkg-config --modversion aspawn)
step "pkg-config aspawn $version:" \
  "$(pkg-config --cflags --libs aspawn)"
# shellcheck disable=SC2046 # the flags are words
$cxx -o "$work/aspawn-consumer-pc" "$here/main.cpp" \
  $(pkg-config --cflags --libs aspawn)
expect_libaspawn_from "$work/aspawn-consumer-pc" "$prefix/lib" \
  LD_LIBRARY_PATH="$prefix/lib"
step "pkg-config run"
LD_LIBRARY_PATH="$prefix/lib" "$work/aspawn-consumer-pc"

# 3. The installed tree moved, found by CMake's find_package.
step "CMake build"
moved=$work/moved-prefix
mv "$prefix" "$moved"
cmake -S "$here" -B "$work/cmake-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$moved"
cmake --build "$work/cmake-build" -j $jobs
expect_libaspawn_from "$work/cmake-build/aspawn-consumer" "$moved/lib"
step "CMake run"
"$work/cmake-build/aspawn-consumer"

# Versions this release does not satisfy: a newer minor or major one, and,
# while aspawn is 0.x, an older minor one (0.x releases may change the API).
# Each must fail with CMake's own message naming the package file turned down
# and its version. (No language is enabled: the package file itself is never
# read.)
for want in 0.2 1.0 0.0; do
  step "CMake find_package(aspawn $want) must fail"
  mismatch=$work/cmake-mismatch-$want
  mkdir -p "$mismatch"
  printf '%s\n' 'cmake_minimum_required(VERSION 3.15)' 'project(mismatch NONE)' \
    "find_package(aspawn $want REQUIRED)" >"$mismatch/CMakeLists.txt"
  if cmake -S "$mismatch" -B "$mismatch/build" -DCMAKE_PREFIX_PATH="$moved" \
      >"$mismatch/out.txt" 2>&1; then
    cat "$mismatch/out.txt"
    echo "consumer: find_package(aspawn $want REQUIRED) succeeded"
    exit 1
  fi
  # CMake wraps its messages: compare with the white space folded.
  if ! tr -s ' \n' '  ' <"$mismatch/out.txt" | grep -q \
      "compatible with requested version \"$want\".*aspawnConfig.cmake, version: $version"; then
    cat "$mismatch/out.txt"
    echo "consumer: find_package(aspawn $want) was not turned down by CMake's version check"
    exit 1
  fi
done

ok=1
step "passed"
