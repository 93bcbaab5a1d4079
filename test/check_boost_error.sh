#!/usr/bin/env bash
# Configuring aspawn with a Boost older than the minimum, or with none at all,
# must fail with a message naming what was found, the minimum and the Debian
# package that provides it. The old Boost is a fake one (a directory holding
# only boost/version.hpp, saying 1.74); "none" is an empty directory. Each is
# handed to Meson as boost_root in a native file, which keeps Meson from
# looking anywhere else.
#
#   check_boost_error.sh SOURCE_ROOT WORK_DIR MINIMUM
#
# CXX and CC name the compilers, as for any meson setup. WORK_DIR is emptied
# first and removed on success.
set -euo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 SOURCE_ROOT WORK_DIR MINIMUM" >&2
  exit 2
fi
src=$1
work=$2
minimum=$3

rm -rf "$work"
mkdir -p "$work/old/include/boost" "$work/none"
cat >"$work/old/include/boost/version.hpp" <<'EOF_HPP'
#define BOOST_VERSION 107400
#define BOOST_LIB_VERSION "1_74"
EOF_HPP

failures=0
# expect_failure NAME FOUND: configures with $work/NAME as boost_root and
# checks the error message, which must say "found FOUND".
expect_failure() {
  local name=$1 found=$2
  local log=$work/$name.log
  local want="aspawn needs Boost $minimum or newer; found $found. On Debian 12: apt-get install libboost$minimum-dev"
  printf "[properties]\nboost_root = '%s'\n" "$work/$name" >"$work/$name.ini"
  if meson setup "$work/build-$name" "$src" --native-file "$work/$name.ini" \
      -Dtests=disabled -Dexamples=disabled -Dbenchmarks=disabled \
      -Dfuzzers=disabled >"$log" 2>&1; then
    tail -20 "$log"
    echo "FAILED: configuring with Boost '$name' succeeded"
    failures=$((failures + 1))
  elif ! grep -qF "$want" "$log"; then
    tail -20 "$log"
    echo "FAILED: configuring with Boost '$name' did not say: $want"
    failures=$((failures + 1))
  else
    echo "ok: $want"
  fi
}

expect_failure old "Boost 1.74.0"
expect_failure none "none"

[ $failures -eq 0 ] || exit 1
rm -rf "$work"
