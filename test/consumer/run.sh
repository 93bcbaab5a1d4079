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
#
#   run.sh SOURCE_ROOT WORK_DIR
#
# WORK_DIR is emptied first and removed on success; on failure it is kept for
# inspection. CXX and CC name the compilers (default c++ and cc). Offline:
# nothing is downloaded.
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
step "pkg-config aspawn $(pkg-config --modversion aspawn):" \
  "$(pkg-config --cflags --libs aspawn)"
# shellcheck disable=SC2046 # the flags are words
$cxx -o "$work/aspawn-consumer-pc" "$here/main.cpp" \
  $(pkg-config --cflags --libs aspawn)
libaspawn=$(LD_LIBRARY_PATH="$prefix/lib" ldd "$work/aspawn-consumer-pc" |
  awk '$1 ~ /^libaspawn/ { print $3 }')
if [ "$libaspawn" != "$prefix/lib/${libaspawn##*/}" ]; then
  echo "consumer: libaspawn resolved to '$libaspawn', not the installed one"
  exit 1
fi
step "pkg-config run"
LD_LIBRARY_PATH="$prefix/lib" "$work/aspawn-consumer-pc"

ok=1
step "passed"
