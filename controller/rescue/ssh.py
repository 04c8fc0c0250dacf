"""A Fabric connection that accepts only the host key provisioning recorded.

Fabric's own default is paramiko's AutoAddPolicy (trust any key); here the
client starts with no key but the recorded one and RejectPolicy, so an
unknown key raises SSHException and a changed key BadHostKeyException, and
neither is ever added anywhere. No ssh_config, no agent, no ~/.ssh keys.
"""

from __future__ import annotations

import fabric
import paramiko

from controller.rescue.target import SshTarget


class HostKeyRefused(Exception):
    """The host offered a key that is not the one recorded at provisioning (or none was recorded)."""


def connect(target: SshTarget, *, timeout: float) -> fabric.Connection:
    config = fabric.Config(lazy=True, overrides={"load_ssh_configs": False, "run": {"hide": True, "warn": True}})
    conn = fabric.Connection(host=target.address, user=target.user, port=target.port, config=config,
                             connect_timeout=max(1, int(timeout)),
                             connect_kwargs={"key_filename": [target.private_key] if target.private_key else [],
                                             "look_for_keys": False, "allow_agent": False,
                                             "banner_timeout": timeout, "auth_timeout": timeout})
    client = conn.client
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    keys = client.get_host_keys()
    for name, entry in target.host_keys().items():
        for key_type, key in entry.items():
            keys.add(name, key_type, key)
    try:
        conn.open()
    except paramiko.BadHostKeyException as exc:
        conn.close()
        raise HostKeyRefused(f"host key CHANGED: {target.address} offered {exc.key.get_name()} "
                             f"{exc.key.get_fingerprint().hex()}, not the key recorded at provisioning") from None
    except paramiko.SSHException as exc:
        conn.close()
        if "not found in known_hosts" in str(exc):
            raise HostKeyRefused(f"host key UNKNOWN: no key recorded at provisioning for {target.address} "
                                 f"in {target.known_hosts}") from None
        raise
    return conn
