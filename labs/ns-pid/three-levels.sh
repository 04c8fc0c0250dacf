#!/bin/bash
# ns-pid, step three-levels: what the attendee types, non-interactively.
set -euo pipefail
level3='sleep 1h & wait'
level2="sleep 1h & exec unshare -mrfp --mount-proc sh -c '$level3'"
level1="sleep 1h & exec unshare -mrfp --mount-proc sh -c \"$level2\""
setsid unshare -mrfp --mount-proc sh -c "$level1" </dev/null >/dev/null 2>&1 &
# Wait until a sleep of ours shows four NSpid fields (host + three levels).
for _ in $(seq 150); do
  for s in $(pgrep -u "$USER" -x sleep || true); do
    case "$(awk '/^NSpid:/ {print NF - 1}' /proc/$s/status 2>/dev/null)" in
      2) first=$s ;;
      4) deepest=$s ;;
    esac
  done
  [ -n "${deepest:-}" ] && [ -n "${first:-}" ] && break
  sleep 0.02
done
echo "deepest sleep: $deepest"; grep NSpid /proc/$deepest/status
lsns -t pid -o NS,PID,NPROCS,COMMAND | tail -n +2 | head -n 5 || true
# Level 1 as its own processes see it.
sudo nsenter -t "$first" -p -m ps -ef
