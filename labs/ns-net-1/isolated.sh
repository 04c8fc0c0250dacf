#!/bin/bash
# ns-net-1, step isolated: what the attendee types, non-interactively.
set -euo pipefail
echo "host:";   ip -brief link
echo "inside:"; unshare --user --map-root-user --net --uts --mount ip -brief link
# The shell the attendee keeps open, as a background process.
setsid unshare --user --map-root-user --net --uts --mount sleep 600 </dev/null >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do
  ns=$(readlink /proc/$pid/ns/net 2>/dev/null || true)
  [ -n "$ns" ] && [ "$ns" != "$(readlink /proc/self/ns/net)" ] && break
  sleep 0.02
done
cat /proc/$pid/net/dev
