#!/bin/bash
# sc-strict, step exit: the attendee's two edits, made with sed, then a clean run.
set -euo pipefail
cd ~/seccomp/strict
sed -i -e '/^ *getpid();/d' \
       -e 's|^\( *\)return 0; .*exit_group.*|\1syscall(SYS_exit, 0);|' \
       -e 's|#include <unistd.h>|#include <sys/syscall.h>\n#include <unistd.h>|' strict.c
gcc -o strict strict.c
echo | ./strict
echo "exit status $?"
