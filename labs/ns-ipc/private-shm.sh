#!/bin/bash
# ns-ipc, step private-shm: what the attendee types, non-interactively.
set -euo pipefail
setsid unshare -Uri sh -c 'ipcmk -M 4096 && ipcs -m && exec sleep 600' </dev/null >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do [ "$(cat /proc/$pid/comm 2>/dev/null)" = sleep ] && break; sleep 0.02; done
echo "outside:"; ipcs -m
