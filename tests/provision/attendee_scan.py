"""Independent residue scan, run as root INSIDE a lab host (``python3 - USER CGPARENT`` over SSH).

It shares no code with the agent's own scan (node_agent/labs/residue.py): it is the test's second
opinion on "reset clean". It prints one JSON object of what it sees, the test compares it with what
the host had before any lab ran:

- ``processes``: the attendee's processes in any namespace other than the host's own (those of PID 1);
- ``cgroups``: directories below the agent's lab cgroup parent, in every hierarchy;
- ``netns``, ``links``: named network namespaces, network devices of the host;
- ``mounts``: the host's mount table (mount point and type);
- ``ipc``: SysV shared memory, semaphores and message queues the attendee owns;
- ``hostname``: the host's hostname.
Standard library only: it runs with the host's python3.
"""

import json
import os
import pwd
import sys


def readlink(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def processes(uid):
    initial = {t: readlink(f"/proc/1/ns/{t}") for t in os.listdir("/proc/1/ns")}
    out = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            with open(f"/proc/{pid}/comm") as fh:
                comm = fh.read().strip()
        except OSError:
            continue
        new = sorted(t for t, ino in initial.items() if (mine := readlink(f"/proc/{pid}/ns/{t}")) and mine != ino)
        if new:
            out.append(f"{pid} {comm} in new {','.join(new)}")
    return out


def cgroups(parent):
    out = []
    roots = ["/sys/fs/cgroup/" + d for d in os.listdir("/sys/fs/cgroup")] + ["/sys/fs/cgroup"]
    for root in roots:
        base = os.path.join(root, parent)
        if not os.path.isdir(base) or os.path.islink(root):
            continue
        for here, dirs, _ in os.walk(base):
            out += [os.path.join(here, d) for d in dirs]
    return sorted(set(out))


def ipc(uid):
    out = []
    for kind in ("shm", "sem", "msg"):
        try:
            with open(f"/proc/sysvipc/{kind}") as fh:
                header, *rows = fh.read().splitlines()
        except OSError:
            continue
        col = header.split().index("uid")
        out += [f"{kind} {row.split()[1]}" for row in rows if int(row.split()[col]) == uid]
    return out


def main():
    user, parent = sys.argv[1], sys.argv[2]
    uid = pwd.getpwnam(user).pw_uid
    with open("/proc/self/mountinfo") as fh:
        mounts = sorted({f"{line.split()[4]} {line.split(' - ')[1].split()[0]}" for line in fh})
    try:
        netns = sorted(os.listdir("/run/netns"))
    except OSError:
        netns = []
    print(json.dumps({"processes": processes(uid), "cgroups": cgroups(parent), "netns": netns,
                      "links": sorted(os.listdir("/sys/class/net")), "mounts": mounts, "ipc": ipc(uid),
                      "hostname": os.uname().nodename}))


if __name__ == "__main__":
    main()
