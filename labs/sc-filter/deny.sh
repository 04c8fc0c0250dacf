#!/bin/bash
# sc-filter, step deny: the attendee's edit, made with sed, then a run that shows EPERM.
set -euo pipefail
cd ~/seccomp/filter
sed -i -e '/SCMP_SYS(mkdir),/d' -e '/SCMP_SYS(mkdirat),/d' filter.c
gcc -o filter filter.c -lseccomp
rmdir made-under-filter 2>/dev/null || true
echo | ./filter | tee run.log
grep -q 'Operation not permitted' run.log
