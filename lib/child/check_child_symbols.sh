#!/bin/sh
# Fails if the child-side objects reference any symbol they do not define:
# such a call could land in libc (errno, locks, allocation) or go through a
# lazily bound PLT slot, neither of which is safe in a CLONE_VM child.
nm="$1"
lib="$2"
undefined=$("$nm" -u "$lib" | grep -v ':$' | awk 'NF {print $NF}' | grep -v '^_GLOBAL_OFFSET_TABLE_$' | sort -u)
if [ -n "$undefined" ]; then
  echo "child path references outside symbols:" >&2
  echo "$undefined" >&2
  exit 1
fi
echo "child path is self-contained"
