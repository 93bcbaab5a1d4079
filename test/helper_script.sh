#!/bin/sh
printf 'script args:'
for a in "$@"; do
    printf ' %s' "$a"
done
printf '\n'
exit 0
