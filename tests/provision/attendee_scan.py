"""Independent residue scan, run as root INSIDE a lab host (``python3 - USER CGPARENT`` over SSH).

It shares no code with the agent's own scan (node_agent/labs/residue.py): it is the test's second
opinion on "reset clean". It prints one JSON object of what it sees, the test compares it with what
the host had before any lab ran:

- ``processes``: the attendee's processes in any namespace other than the host's own (those of PID 1),
  or under a seccomp filter (the seccomp labs' shells);
- ``cgroups``: directories below the agent's lab cgroup parent, in every hierarchy;
- ``netns``, ``links``: named network namespaces, network devices of the host;
- ``mounts``: the host's mount table (mount point and type), but for iproute2's /run/netns;
- ``ipc``: SysV shared memory, semaphores and message queues the attendee owns;
- ``files``: what is below the attendee's home (the seccomp labs' programs and profiles);
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
        elif seccomp(pid) not in ("0", None):
            out.append(f"{pid} {comm} under seccomp mode {seccomp(pid)}")
    return out


def seccomp(pid):
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((line.split()[1] for line in fh if line.startswith("Seccomp:")), None)
    except OSError:
        return None


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


def files(home):
    """Everything below the attendee's home, but the shell's history (the attendee's own record)."""
    out = []
    for here, dirs, names in os.walk(home):
        out += [os.path.join(here, n) for n in dirs + names]
    return sorted(p for p in out if not os.path.basename(p).endswith("_history"))


def main():
    user, parent = sys.argv[1], sys.argv[2]
    account = pwd.getpwnam(user)
    uid = account.pw_uid
    with open("/proc/self/mountinfo") as fh:
        mounts = sorted({f"{line.split()[4]} {line.split(' - ')[1].split()[0]}" for line in fh})
    # iproute2's own bookkeeping: the first `ip netns add` after boot makes /run/netns a shared bind
    # mount of itself and no command ever undoes it (a VM keeps it too). The namespaces pinned below
    # it are still seen: each is an nsfs mount of its own, and a name in ``netns``.
    mounts = [m for m in mounts if m != "/run/netns tmpfs"]
    try:
        netns = sorted(os.listdir("/run/netns"))
    except OSError:
        netns = []
    print(json.dumps({"processes": processes(uid), "cgroups": cgroups(parent), "netns": netns,
                      "links": sorted(os.listdir("/sys/class/net")), "mounts": mounts, "ipc": ipc(uid),
                      "files": files(account.pw_dir), "hostname": os.uname().nodename}))


if __name__ == "__main__":
    main()
