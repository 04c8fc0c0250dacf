#!/bin/bash
# sc-profile, step trace: what the attendee types, non-interactively.
set -euo pipefail
mkdir -p ~/seccomp/profile && cd ~/seccomp/profile
cp "${LAB_LAB_DIR:-$LAB_DIR}/hello.c" .
gcc -o hello hello.c
./hello
strace -f -c -o profile.txt ./hello
cat profile.txt
