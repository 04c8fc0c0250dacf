#!/bin/bash
# sc-filter, step allow: what the attendee types, non-interactively.
set -euo pipefail
mkdir -p ~/seccomp/filter && cd ~/seccomp/filter
cp "${LAB_LAB_DIR:-$LAB_DIR}/filter.c" .
gcc -o filter filter.c -lseccomp
echo | ./filter | tee run.log
grep -q 'mkdir made-under-filter: done' run.log
