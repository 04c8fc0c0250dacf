#!/bin/bash
# sc-strict, step strict: what the attendee types, non-interactively.
set -euo pipefail
mkdir -p ~/seccomp/strict && cd ~/seccomp/strict
cp "${LAB_LAB_DIR:-$LAB_DIR}/strict.c" .
gcc -o strict strict.c
status=0
echo | ./strict || status=$?
echo "exit status $status (137 = killed by SIGKILL)"
[ "$status" -eq 137 ]
