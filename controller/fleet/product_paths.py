"""Every path labfleet writes on a lab VM: what a fleet host must never inherit from this machine.

A host's root is an overlay over the machine's ``/``. Where the machine once ran
an agent or the playbooks (a dev box, a demo), its state would show through to
every host: one ``identity.json`` made three hosts one node. Each host's upper
layer therefore starts with a whiteout at each of these paths: the host sees
them absent, like a fresh VM, and what it writes there is its own.

The one list: the playbooks' defaults (roles/*/defaults/main.yml) and the
agent's defaults (node_agent/config.py) name no product path outside it
(tests/fleet/test_product_paths.py checks both).
"""

from __future__ import annotations

PRODUCT_PATHS: tuple[str, ...] = (
    "/etc/labfleet-agent",                          # agent.toml, env, ca.pem
    "/var/lib/labfleet-agent",                      # identity, credentials, journal, labs' state, readiness
    "/var/log/labfleet-agent",
    "/run/labfleet-agent",                          # the attendee socket (a host's /run is its own tmpfs too)
    "/opt/labfleet-agent",                          # the agent's venv
    "/usr/share/labfleet",                          # catalog and the labs' root fs
    "/etc/systemd/system/labfleet-agent.service",
    "/etc/sudoers.d/labfleet-attendee",
    "/usr/local/sbin/labfleet-agent-supervisor",
    "/usr/local/sbin/labfleet-readiness",
    "/usr/local/sbin/labfleet-provisioned",
    "/usr/local/bin/lab",                           # the attendee's command, linked into the venv
    "/etc/profile.d/labfleet-help.sh",              # the attendee's prompt hook (lab help answers)
    "/usr/local/sbin/labfleet-session-join",        # pam_exec: the attendee's login joins its ceiling cgroup
    "/etc/profile.d/labfleet-terminal.sh",          # the attendee's login in the shared tmux session
)
