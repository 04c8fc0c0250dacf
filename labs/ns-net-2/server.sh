#!/bin/bash
# ns-net-2, step server: what the attendee types, non-interactively (the server goes to the background).
set -euo pipefail
s="${LAB_PREFIX}vnet0" c="${LAB_PREFIX}vnet10"
if command -v nc >/dev/null; then
  sudo setsid -f ip netns exec "$s" nc -lk 1500 </dev/null >/dev/null 2>&1
else
  sudo setsid -f ip netns exec "$s" python3 -m http.server 1500 </dev/null >/dev/null 2>&1
fi
# Connect from the other namespace once the server is up: at most 50 tries of one second each.
for _ in $(seq 50); do
  if sudo ip netns exec "$c" python3 -c "import socket; socket.create_connection(('10.11.12.1', 1500), 1).close()" \
      2>/dev/null; then
    echo "connected from $c to 10.11.12.1:1500"; exit 0
  fi
  sleep 0.1
done
echo "the server did not come up" >&2; exit 1
