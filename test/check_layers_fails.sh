#!/usr/bin/env bash
# check_layers.sh fails when it should. It is run on fake trees: one that
# keeps the rules (it must pass), then, each in a tree of its own, a header
# that includes a higher layer, a lib/ source that does, an include of the
# umbrella header from a layer, a header outside the layers and an include
# of a header that does not exist. Each must fail with a message naming the
# offending file and include.
#
#   check_layers_fails.sh CHECK_LAYERS_SH
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 CHECK_LAYERS_SH" >&2
  exit 2
fi
script=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# tree NAME: a tree that keeps the rules, in $work/NAME.
tree() {
  local t=$work/$1
  mkdir -p "$t/include/aspawn/child" "$t/include/aspawn/core" \
           "$t/include/aspawn/v2" "$t/lib/child"
  printf '#pragma once\n' >"$t/include/aspawn/child/low.hpp"
  printf '#pragma once\n#include <aspawn/child/low.hpp>\n' \
    >"$t/include/aspawn/core/mid.hpp"
  printf '#pragma once\n#include <aspawn/core/mid.hpp>\n#include <aspawn/child/low.hpp>\n' \
    >"$t/include/aspawn/v2/high.hpp"
  printf '#include <aspawn/v2/high.hpp>\n' >"$t/include/aspawn/aspawn.hpp"
  printf '#include <aspawn/child/low.hpp>\n' >"$t/lib/child/child.cpp"
}

failures=0
# expect RESULT NAME WANT: the script's run on $work/NAME exits with 0
# (RESULT pass) or 1 (RESULT fail, and its output has the text WANT).
expect() {
  local result=$1 name=$2 want=${3:-} out rc
  out=$(bash "$script" "$work/$name" 2>&1)
  rc=$?
  if [ "$result" = pass ] && [ $rc -ne 0 ]; then
    echo "== $name: expected to pass, exit status $rc:"
    printf '%s\n' "$out"
    failures=$((failures + 1))
  elif [ "$result" = fail ] && { [ $rc -ne 1 ] || ! grep -qF -- "$want" <<<"$out"; }; then
    echo "== $name: expected to fail naming '$want', exit status $rc:"
    printf '%s\n' "$out"
    failures=$((failures + 1))
  else
    echo "== $name: ${result}ed as expected"
  fi
}

tree good
expect pass good

tree upward
printf '#pragma once\n#include <aspawn/v2/high.hpp>\n' \
  >"$work/upward/include/aspawn/child/low.hpp"
expect fail upward 'child/low.hpp:2: includes aspawn/v2/high.hpp: v2/ is above child/'

tree lib-upward
printf '#include <aspawn/core/mid.hpp>\n' >"$work/lib-upward/lib/child/child.cpp"
expect fail lib-upward 'lib/child/child.cpp:1: includes aspawn/core/mid.hpp: core/ is above child/'

tree umbrella
printf '#pragma once\n  #  include "aspawn/aspawn.hpp"\n' \
  >"$work/umbrella/include/aspawn/core/mid.hpp"
expect fail umbrella 'core/mid.hpp:2: includes aspawn/aspawn.hpp, which sits above every layer'

tree flat
printf '#pragma once\n' >"$work/flat/include/aspawn/loose.hpp"
expect fail flat 'aspawn/loose.hpp: a header outside the layers'

tree unknown
mkdir -p "$work/unknown/include/aspawn/misc"
printf '#pragma once\n' >"$work/unknown/include/aspawn/misc/x.hpp"
expect fail unknown 'misc/ is not a layer'

tree missing
printf '#pragma once\n#include <aspawn/core/gone.hpp>\n' \
  >"$work/missing/include/aspawn/v2/high.hpp"
expect fail missing 'v2/high.hpp:2: aspawn/core/gone.hpp does not exist'

if [ $failures -ne 0 ]; then
  echo "FAILED: $failures case(s)"
  exit 1
fi
