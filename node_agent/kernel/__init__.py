"""Thin wrappers over the kernel's files and syscalls, one small function per file, named after it.

Lab and command code above this package never opens a path under /proc or /sys itself.

``procfs`` system facts and processes from /proc; ``namespaces`` which namespace types exist and
per-process namespace state (and the resident reader for reads inside them); ``nsenter`` the one
fork → setns → JSON runner for anything else done inside other namespaces; ``netns`` and ``links``
named network namespaces, their holders, links and TCP probes; ``cgroup_layout`` how this machine
mounts cgroups (v1, v2, hybrid); ``cgroup_control`` lab cgroups (create, limit, empty, remove);
``seccomp``, ``seccomp_filter``, ``bpf``, ``seccomp_profile``, ``syscalls`` seccomp state, filter
dumps and their evaluation, Docker-style profiles; ``rootfs``, ``forkbomb``, ``reaper`` the ns-mount
root fs, the bounded fork bomb, the agent's child subreaper.
"""
