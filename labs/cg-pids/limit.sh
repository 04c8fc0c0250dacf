#!/bin/bash
# cg-pids, step limit: what the attendee does, non-interactively. A spawner stands in for the
# attendee's shell: it starts one sleeper per line it reads, like typing `sleep 600 &`.
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
echo "$LAB_PIDS_MAX" | sudo tee "$CG/pids.max" >/dev/null

requests=$(mktemp -u); mkfifo "$requests"
# The spawner's first act is the attendee's: "echo $$ | sudo tee cgroup.procs" moves that shell in.
setsid bash -c 'echo $$ | sudo tee "$1/cgroup.procs" >/dev/null; exec 3<"$2"; while read -r _ <&3; do sleep 600 & done' \
  spawner "$CG" "$requests" </dev/null >/dev/null 2>&1 &
exec 4>"$requests"  # opens once the spawner, inside the cgroup, opens its end
rm "$requests"
cat "$CG/cgroup.procs"
# One request more than the limit leaves room for: the last fork is refused (EAGAIN).
for _ in $(seq "$LAB_PIDS_MAX"); do echo >&4; done
for _ in $(seq 250); do
  grep -q '^max [1-9]' "$CG/pids.events" && break
  sleep 0.02
done
exec 4>&-
cat "$CG/pids.current" "$CG/pids.max" "$CG/pids.events"
