#!/bin/bash
# ns-mount-1, step private-tmpfs: what the attendee types, non-interactively.
set -euo pipefail
setsid unshare -mr sh -c 'mount -t tmpfs tmpfs /mnt && echo hello > /mnt/file && exec sleep 600' \
  </dev/null >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do [ "$(cat /proc/$pid/comm 2>/dev/null)" = sleep ] && break; sleep 0.02; done
echo "inside:";  grep ' /mnt ' /proc/$pid/mountinfo || true
echo "outside:"; grep ' /mnt ' /proc/self/mountinfo || echo "(no mount on /mnt)"
