#!/bin/bash
# cg-cpu, step throttle: what the attendee does, non-interactively.
set -euo pipefail

enable_v2_controller() {  # cgroup v2 only: every ancestor must enable the controller for its children
  local ctrl=$1 d chain=()
  d=$(dirname "$2")
  while [ -e "$d/cgroup.subtree_control" ]; do chain=("$d" "${chain[@]}"); d=$(dirname "$d"); done
  for d in "${chain[@]}"; do
    grep -qw "$ctrl" "$d/cgroup.subtree_control" || echo "+$ctrl" | sudo tee "$d/cgroup.subtree_control" >/dev/null
  done
}

# Where the cpu controller lives: a v1 mount with "cpu" in its options, else the cgroup2 tree.
# On a pure v2 machine findmnt finds no cgroup (v1) mount and exits 1: that is the answer "none", and
# under pipefail it must not end the script.
root=$(findmnt -rn -t cgroup -o TARGET,FS-OPTIONS | awk '$2 ~ /(^|,)cpu(,|$)/ {print $1; exit}' || true)
v2=
if [ -z "$root" ]; then root=$(findmnt -rn -t cgroup2 -o TARGET | head -n1); v2=1; fi
CG="$root/$LAB_CGROUP_PARENT/cglab2"

sudo mkdir -p "$CG"
if [ -n "$v2" ]; then
  enable_v2_controller cpu "$CG"
  echo "50000 100000" | sudo tee "$CG/cpu.max" >/dev/null
else
  echo 50000 | sudo tee "$CG/cpu.cfs_quota_us" >/dev/null
fi

# "Move the shell in, then start the hog from it" (the --cpu 4 variant: four workers share the quota): a shell of its own session does exactly that.
setsid bash -c 'echo $$ | sudo tee "$1/cgroup.procs" >/dev/null; exec stress-ng --cpu 4 --timeout 20s --quiet' \
  shell "$CG" </dev/null >/dev/null 2>&1 &
for _ in $(seq 250); do
  grep -q '^nr_throttled [1-9]' "$CG/cpu.stat" && break
  sleep 0.02
done
cat "$CG/cpu.stat"
