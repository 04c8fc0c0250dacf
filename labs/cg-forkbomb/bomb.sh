#!/bin/bash
# cg-forkbomb, step bomb: what the attendee does, non-interactively. The bomb is bounded: 7 levels of
# doubling (≤ 254 forks), leaves exit after 15 s, and timeout kills the whole process group at 15 s.
set -euo pipefail
CG="$LAB_CGROUP_DIR"

enable_v2_controller() {  # cgroup v2 only: every ancestor must enable the controller for its children
  local ctrl=$1 d chain=()
  d=$(dirname "$2")
  while [ -e "$d/cgroup.subtree_control" ]; do chain=("$d" "${chain[@]}"); d=$(dirname "$d"); done
  for d in "${chain[@]}"; do
    grep -qw "$ctrl" "$d/cgroup.subtree_control" || echo "+$ctrl" | sudo tee "$d/cgroup.subtree_control" >/dev/null
  done
}

sudo mkdir -p "$CG"
[ -e "$(dirname "$CG")/cgroup.subtree_control" ] && enable_v2_controller pids "$CG"
echo 50 | sudo tee "$CG/pids.max" >/dev/null

BOMB='bomb() { if [ $1 -gt 0 ]; then bomb $(($1-1)) & bomb $(($1-1)) & wait; else exec sleep 15; fi; }; bomb 7'
# "Move the shell in, then run the bomb from it": a shell of its own session does exactly that.
setsid bash -c 'echo $$ | sudo tee "$1/cgroup.procs" >/dev/null; exec timeout -s KILL 15 bash -c "$2"' \
  shell "$CG" "$BOMB" </dev/null >/dev/null 2>&1 &
for _ in $(seq 250); do
  grep -q '^max [1-9]' "$CG/pids.events" && break
  sleep 0.02
done
cat "$CG/pids.current" "$CG/pids.events"
