#!/usr/bin/env bash
# Every public header compiles on its own, and twice in a row (its include
# guard works), with the compiler command given. The headers are found, not
# listed: every .hpp below INCLUDE_DIR/aspawn, subfolders included. Each is
# compiled alone with -fsyntax-only; a failure names the header and shows
# the compiler's messages, and the others are still checked.
#
#   check_headers.sh INCLUDE_DIR COMPILER [FLAG...]
#
#   e.g. check_headers.sh include clang++-16 -std=c++2b -stdlib=libc++ -Werror
#
# Exits 77 (skipped) when the command cannot compile even a standard header
# (a standard library that is not installed, such as libc++).
set -uo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 INCLUDE_DIR COMPILER [FLAG...]" >&2
  exit 2
fi
inc=$1
shift

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

printf '#include <version>\n' >"$work/probe.cpp"
if ! "$@" -fsyntax-only "$work/probe.cpp" 2>"$work/probe.err"; then
  cat "$work/probe.err"
  echo "skipped: '$*' cannot compile <version> (is that standard library installed?)"
  exit 77
fi

mapfile -t headers < <(cd "$inc" && find aspawn -name '*.hpp' | LC_ALL=C sort)
if [ ${#headers[@]} -eq 0 ]; then
  echo "no headers below $inc/aspawn"
  exit 1
fi

failed=()
for h in "${headers[@]}"; do
  printf '#include <%s>\n#include <%s> // twice: the include guard works\n' \
    "$h" "$h" >"$work/check.cpp"
  if ! "$@" -I"$inc" -fsyntax-only "$work/check.cpp" 2>"$work/check.err"; then
    echo "== $h does not compile on its own:"
    cat "$work/check.err"
    failed+=("$h")
  fi
done

echo "${#headers[@]} headers checked with: $* -I$inc"
if [ ${#failed[@]} -ne 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
