"""The kernel wrappers against this real machine, and the state digest built on them."""

from __future__ import annotations

import os
from pathlib import Path

from node_agent.kernel import cgroup_layout, namespaces, procfs, seccomp
from node_agent.state import collect_state, state_digest


def test_statfs_magic_tells_cgroup2_from_tmpfs() -> None:
    assert cgroup_layout.statfs_f_type(Path("/sys/fs/cgroup/unified")) == cgroup_layout.CGROUP2_SUPER_MAGIC
    assert cgroup_layout.statfs_f_type(Path("/sys/fs/cgroup")) == cgroup_layout.TMPFS_MAGIC
    assert cgroup_layout.statfs_f_type(Path("/sys/fs/cgroup/memory")) == cgroup_layout.CGROUP_SUPER_MAGIC


def test_mountinfo_finds_the_cgroup_mounts() -> None:
    mounts = {m.mount_point: m for m in procfs.mountinfo()}
    assert mounts["/sys/fs/cgroup/unified"].fstype == "cgroup2"
    assert "memory" in mounts["/sys/fs/cgroup/memory"].super_options


def test_namespace_types_match_proc_self_ns() -> None:
    assert namespaces.ns_types() == sorted(set(os.listdir("/proc/self/ns")) & set(namespaces.NAMESPACE_TYPES))


def test_seccomp_mode_of_this_process_is_read_from_status() -> None:
    expected = next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("Seccomp:"))
    assert seccomp.status_seccomp() == int(expected)
    assert seccomp.actions_avail(Path("/nonexistent")) == []


def test_meminfo_and_loadavg() -> None:
    info = procfs.meminfo()
    assert info["MemTotal"] >= info["MemAvailable"] > 0
    assert all(v >= 0 for v in procfs.loadavg())


def test_digest_ignores_fast_changing_values_only() -> None:
    state = collect_state()
    busier = {**state, "uptime_seconds": state["uptime_seconds"] + 60, "loadavg": [9.0, 9.0, 9.0],
              "mem_available_kb": 1}
    changed = {**state, "namespaces": state["namespaces"][:-1]}

    assert state_digest(busier) == state_digest(state)
    assert state_digest(changed) != state_digest(state)
    assert state_digest(collect_state()) == state_digest(state)
