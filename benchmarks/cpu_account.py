"""CPU seconds spent by a phase of a fleet benchmark: the controller's side and each fleet host's cgroup.

- **controller**: every live process in the given sessions (the controller's web and worker are
  started with ``start_new_session``, so their session id is their pid), user + system time
  including the children they waited for; plus this process (RUSAGE_SELF) and the children it waited
  for (RUSAGE_CHILDREN: the ``labfleet`` CLI runs).
- **hosts**: each fleet host's own cgroup parent (``cpuacct.usage`` on cgroup v1, ``usage_usec``
  of ``cpu.stat`` on v2): its sshd, shells, supervisor and agent, everything on the host.

``Snapshot.take(...)`` before and after a phase; ``after - before`` gives the seconds per side.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

from controller.fleet.cgroups import hierarchies

_TICK = os.sysconf("SC_CLK_TCK")


def session_cpu(sessions: set[int]) -> float:
    """utime + stime + cutime + cstime of every live process whose session is in ``sessions``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # fields from the 3rd (state) on
        if int(fields[3]) in sessions:  # field 6: session
            total += sum(int(v) for v in fields[11:15])  # fields 14..17: utime stime cutime cstime
    return total / _TICK


def host_cpu(cgroup_parent: str) -> float:
    """CPU seconds used so far by a fleet host's cgroup (and every group below it)."""
    for root in hierarchies():
        group = root / cgroup_parent
        usage = group / "cpuacct.usage"
        if usage.exists():
            return int(usage.read_text()) / 1e9
    for root in hierarchies():
        stat = root / cgroup_parent / "cpu.stat"
        if stat.exists():
            for line in stat.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
    raise FileNotFoundError(f"no cpuacct or cpu.stat for cgroup {cgroup_parent}")


@dataclass
class Snapshot:
    controller: float
    hosts: float

    @classmethod
    def take(cls, sessions: set[int], cgroup_parents: list[str]) -> Snapshot:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        controller = session_cpu(sessions) + own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
        return cls(controller=controller, hosts=sum(host_cpu(p) for p in cgroup_parents))

    def __sub__(self, before: Snapshot) -> Snapshot:
        return Snapshot(controller=self.controller - before.controller, hosts=self.hosts - before.hosts)

    @property
    def total(self) -> float:
        return self.controller + self.hosts

    def per_host(self, n: int) -> str:
        return (f"CPU {self.total / n:.3f} s a host (controller side {self.controller / n:.3f} s, "
                f"on the host {self.hosts / n:.3f} s)")
