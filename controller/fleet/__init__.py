"""The local namespace fleet: lab hosts made of namespaces on this machine.

Without VMs at hand (a laptop, CI, a rehearsal) the same playbooks provision
hosts that live on one Linux machine and are reached over real SSH. Each host
has its own network, UTS, mount, IPC and PID namespaces, a veth on a bridge,
its own cgroup parent, an overlay of the machine's root with a per-host upper
layer (whatever Ansible writes stays on that host), and its own ``sshd``.

Public API (other modules use only this)::

    from controller.fleet import Fleet, FleetHost, FleetError

    fleet = Fleet(state_dir="/var/lib/labfleet/fleet",   # default
                  subnet="10.213.0.0/24",                # a private /24, default
                  prefix="lfh")                          # [a-z][a-z0-9]{0,9}, default
    fleet = Fleet.from_state(state_dir)  # the fleet recorded there (its prefix, subnet), else defaults
    hosts = fleet.up(3)          # -> list[FleetHost]; raises FleetError if a fleet
                                 #    with this prefix already exists (call down() first)
    fleet.hosts()                # -> list[FleetHost] from the state file (empty if none)
    fleet.status()               # -> list[HostStatus]: host + pid, running, sshd_answers
    fleet.stop_sshd("lfh-2")     # returns once port 22 of that host refuses connections
    fleet.start_sshd("lfh-2")    # returns once that host's sshd answers again
    fleet.down()                 # removes everything, also after a crash; idempotent

    FleetHost(name="lfh-1",              # also the hostname inside, the netns name
              address="10.213.0.10",     # .10, .11, ... ; the bridge (machine) is .1
              ssh_port=22,
              ssh_user="root",
              private_key_path="/var/lib/labfleet/fleet/id_ed25519",   # mode 0600
              known_hosts_path="/var/lib/labfleet/fleet/known_hosts",  # every host's key
              cgroup_parent="labfleet-fleet/lfh-1",  # relative to /sys/fs/cgroup/<hierarchy>; its processes in .../system
              lab_cgroup_parent="labfleet-fleet/lfh-1/labs",  # its labs, apart: the agent's lab_cgroup_parent
              netns="lfh-1")                         # `ip netns exec lfh-1 ...` works

    fleet.bridge_address         # "10.213.0.1": what an agent inside a host uses to
                                 # reach the controller (http://10.213.0.1:<port>)

Names, so that a crash leaves nothing ``down()`` cannot find: hosts, their
network namespaces and the machine ends of their veths are all
``<prefix>-<n>``; the bridge is ``<prefix>-br``; cgroups are
``/sys/fs/cgroup/<hierarchy>/labfleet-fleet/<prefix>-<n>``. Nothing is routed
or NATed beyond the bridge: hosts have no default route.

Hosts never run apt against a network: the packages the labs need are
installed once on the machine (``scripts/system-packages.sh``) and every host
sees them through its overlay.
See docs/fleet.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.fleet.errors import FleetError

if TYPE_CHECKING:
    from controller.fleet.fleet import Fleet, HostStatus
    from controller.fleet.host import FleetHost

__all__ = ["Fleet", "FleetError", "FleetHost", "HostStatus"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: `labfleet --help` reads controller.fleet.config's defaults, not the fleet's code.
    if name in ("Fleet", "HostStatus"):
        from controller.fleet import fleet

        return getattr(fleet, name)
    if name == "FleetHost":
        from controller.fleet.host import FleetHost

        return FleetHost
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
