"""Where a node is over SSH, as provisioning recorded it: address, port, user, key and host key.

A node made by a provisioning run (its ``provision_host``) is found in the
newest ``site`` run that listed that host. Its host key is the one the run
checked: the file named by the run's ``UserKnownHostsFile`` (the local fleet's
own known_hosts) or the controller's ``<data dir>/provision/known_hosts``
where provisioning recorded keys on first use. Never a path from a request.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import paramiko
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.models import Node, ProvisionRun

_KNOWN_HOSTS_OPT = re.compile(r"UserKnownHostsFile=(\S+)")


class NoSshRecord(LookupError):
    """The node was never provisioned over SSH (enrolled by hand): there is no key to reach it with."""


@dataclass(frozen=True)
class SshTarget:
    node_id: str
    node_name: str
    host: str  # the inventory name
    address: str
    port: int
    user: str
    private_key: str  # the controller's own copy (never a path a request named)
    known_hosts: str  # the file provisioning checked this host's key against

    def host_keys(self) -> paramiko.HostKeys:
        """The recorded keys of this host only (empty if none was recorded: then every key is refused)."""
        recorded = paramiko.HostKeys()
        try:
            recorded.load(self.known_hosts)
        except OSError:
            return paramiko.HostKeys()
        mine = paramiko.HostKeys()
        names = [self.address] if self.port == 22 else [f"[{self.address}]:{self.port}"]
        for name in names:
            for key_type, key in (recorded.lookup(name) or {}).items():
                mine.add(name, key_type, key)
        return mine


def resolve(session: Session, node: Node, data_dir: Path) -> SshTarget:
    host = node.provision_host
    if not host:
        raise NoSshRecord(f"{node.name} was not provisioned by labfleet: no SSH record to reach it with")
    runs = session.scalars(select(ProvisionRun).where(ProvisionRun.event_id == node.event_id,
                                                      ProvisionRun.playbook == "site")
                           .order_by(ProvisionRun.created_at.desc()))
    for run in runs:
        for entry in run.hosts or []:
            if entry.get("name") != host:
                continue
            found = _KNOWN_HOSTS_OPT.search(entry.get("ssh_args") or "")
            known = shlex.split(found.group(1))[0] if found else str(data_dir / "provision" / "known_hosts")
            return SshTarget(node_id=node.id, node_name=node.name, host=host, address=entry["address"],
                             port=int(entry.get("port") or 22), user=entry.get("user") or "root",
                             private_key=entry.get("private_key") or "", known_hosts=known)
    raise NoSshRecord(f"{node.name}: no provisioning run lists host {host!r}")
