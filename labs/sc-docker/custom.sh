#!/bin/bash
# sc-docker, step custom: the attendee's profile edit, made with a few lines of Python, then a shell under it.
set -euo pipefail
lab_dir=${LAB_LAB_DIR:-$LAB_DIR}
mkdir -p ~/seccomp/docker
python3 - /usr/share/containers/seccomp.json ~/seccomp/docker/custom.json <<'PY'
import json, sys
profile = json.load(open(sys.argv[1]))
blocked = ["chmod", "fchmodat"]
for rule in profile["syscalls"]:
    if rule["action"] == "SCMP_ACT_ALLOW":
        rule["names"] = [n for n in rule["names"] if n not in blocked]
profile["syscalls"].append({"names": blocked, "action": "SCMP_ACT_ERRNO", "errnoRet": 1})
json.dump(profile, open(sys.argv[2], "w"), indent=1)
PY
if python3 "$lab_dir/scrun" ~/seccomp/docker/custom.json -- chmod 700 ~/seccomp/docker; then
  echo "chmod was allowed?"; exit 1
fi
setsid python3 "$lab_dir/scrun" ~/seccomp/docker/custom.json -- sleep 600 </dev/null >/dev/null 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q 'Seccomp:.2' /proc/$pid/status 2>/dev/null && break; sleep 0.01; done
