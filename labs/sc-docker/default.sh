#!/bin/bash
# sc-docker, step default: what the attendee types, non-interactively; the confined shell is a background
# sleep, as a shell the attendee keeps open.
set -euo pipefail
lab_dir=${LAB_LAB_DIR:-$LAB_DIR}
profile=/usr/share/containers/seccomp.json
mkdir -p ~/seccomp/docker
python3 "$lab_dir/scrun" "$profile" -- sh -c '
  grep -E "Seccomp|NoNewPrivs" /proc/self/status
  mkdir -p ~/seccomp/docker/made-inside && echo "mkdir: works"
  unshare -r id
  if unshare -Urun hostname "$1" 2>&1; then echo "sethostname was allowed?"; exit 1; fi' sh "$LAB_HOSTNAME"
setsid python3 "$lab_dir/scrun" "$profile" -- sleep 600 </dev/null >/dev/null 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q 'Seccomp:.2' /proc/$pid/status 2>/dev/null && break; sleep 0.01; done
