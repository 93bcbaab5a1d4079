#!/usr/bin/env bash
# The headers are layered, and includes only go downwards. Below ROOT, every
# header of include/aspawn/ sits in the folder of one layer (aspawn.hpp, the
# header users include, alone sits above them all), and every source of lib/
# that belongs to a layer sits in lib/<layer>/. Each `#include <aspawn/...>`
# in such a file must name an existing header of the same layer or a lower
# one. A failure names the file, the line and the include.
#
#   check_layers.sh ROOT
#
#   e.g. check_layers.sh .
#
# The layers, from the bottom (see docs/design.md, "Layers"): this list is
# the one place that defines their order.
layers=(
  child    # the only code that may run in the child: system calls, launch image
  command  # the launch description: errors, command and its packing, initializers
  core     # the launch without Asio: clone, status pipe, pidfd, exit status
  asio     # the Asio objects: stack pool, watcher, process, reaper, async_spawn
  v2       # the Boost.Process v2 surface
)
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 ROOT" >&2
  exit 2
fi
root=$1
inc=$root/include
if [ ! -d "$inc/aspawn" ]; then
  echo "no folder $inc/aspawn"
  exit 2
fi

# rank LAYER: prints the layer's position from the bottom, or nothing.
rank() {
  local i
  for i in "${!layers[@]}"; do
    if [ "${layers[$i]}" = "$1" ]; then
      echo "$i"
      return
    fi
  done
}

errors=0
fail() {
  echo "$*"
  errors=$((errors + 1))
}

# check FILE LAYER: every aspawn include of FILE is of LAYER or below.
check() {
  local file=$1 layer=$2 own line num text target to to_rank
  own=$(rank "$layer")
  while IFS= read -r line; do
    num=${line%%:*}
    text=${line#*:}
    target=$(printf '%s\n' "$text" | sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]([^>"]*)[>"].*/\1/')
    to=${target#aspawn/}
    to=${to%%/*}
    if [ ! -f "$inc/$target" ]; then
      fail "$file:$num: $target does not exist"
    elif [ "$target" = aspawn/aspawn.hpp ]; then
      fail "$file:$num: includes $target, which sits above every layer ($layer/ may include only its own layer and lower ones)"
    else
      to_rank=$(rank "$to")
      if [ -z "$to_rank" ]; then
        fail "$file:$num: includes $target, which is in no layer"
      elif [ "$to_rank" -gt "$own" ]; then
        fail "$file:$num: includes $target: $to/ is above $layer/ (layers from the bottom: ${layers[*]})"
      fi
    fi
  done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]aspawn/' "$file")
}

checked=0
while IFS= read -r -d '' file; do
  rel=${file#"$inc/aspawn/"}
  case $rel in
    aspawn.hpp) continue ;;
    */*) ;;
    *) fail "$file: a header outside the layers (only aspawn.hpp sits in include/aspawn/ itself)"; continue ;;
  esac
  layer=${rel%%/*}
  if [ -z "$(rank "$layer")" ]; then
    fail "$file: $layer/ is not a layer (layers from the bottom: ${layers[*]})"
    continue
  fi
  check "$file" "$layer"
  checked=$((checked + 1))
done < <(find "$inc/aspawn" -type f -print0 | LC_ALL=C sort -z)

if [ -d "$root/lib" ]; then
  for layer in "${layers[@]}"; do
    [ -d "$root/lib/$layer" ] || continue
    while IFS= read -r -d '' file; do
      check "$file" "$layer"
      checked=$((checked + 1))
    done < <(find "$root/lib/$layer" -type f \( -name '*.cpp' -o -name '*.hpp' -o -name '*.S' \) -print0 | LC_ALL=C sort -z)
  done
fi

echo "$checked files checked against the layers: ${layers[*]}"
if [ $errors -ne 0 ]; then
  echo "FAILED: $errors include(s) out of place"
  exit 1
fi
