#!/bin/bash
# ns-cgroup, step rooted: what the attendee types, non-interactively.
set -euo pipefail
cat /proc/self/cgroup
sudo mkdir -p "$LAB_CGROUP_DIR"
echo $$ | sudo tee "$LAB_CGROUP_DIR/cgroup.procs" >/dev/null
grep pids /proc/self/cgroup || true
unshare -UrC cat /proc/self/cgroup
setsid unshare -UrC sleep 600 </dev/null >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do [ "$(cat /proc/$pid/comm 2>/dev/null)" = sleep ] && break; sleep 0.02; done
