#!/bin/bash
# ns-uts, step rename: what the attendee types, non-interactively.
set -euo pipefail
setsid unshare -Urnu sh -c "hostname '$LAB_HOSTNAME' && exec sleep 600" </dev/null >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do [ "$(cat /proc/$pid/comm 2>/dev/null)" = sleep ] && break; sleep 0.02; done
echo "outside: $(hostname)"
