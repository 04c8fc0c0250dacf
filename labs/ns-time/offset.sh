#!/bin/bash
# ns-time, step offset: what the attendee types, non-interactively.
set -euo pipefail
cat /proc/uptime
offset=$(( LAB_NONCE * 86400 ))
unshare -UrT --monotonic="$offset" --boottime="$offset" sh -c "cat /proc/self/timens_offsets /proc/uptime"
setsid unshare -UrT --monotonic="$offset" --boottime="$offset" sleep 600 </dev/null >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do [ "$(cat /proc/$pid/comm 2>/dev/null)" = sleep ] && break; sleep 0.02; done
