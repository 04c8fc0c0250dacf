"""Local fleet hosts with a supervised agent, recorded as a provisioning run: what rescue tests and the
rescue benchmark start from.

STAND-IN for ``playbooks/site.yml`` (tested for real in tests/playbooks/test_site_on_fleet.py, 30+ s a
host): it leaves a host as site.yml does for what rescue touches — the agent's config in
/etc/labfleet-agent, the supervisor rendered from the role's own template at
/usr/local/sbin/labfleet-agent-supervisor, the agent's log in /var/log/labfleet-agent — and the
controller's database as a site run leaves it: a ``site`` ProvisionRun listing each host with the
fleet's key and known_hosts, and a run-bound enrollment token per host (so the node's
``provision_host`` is that host). The agent is this checkout's (the host sees the machine's files
through its overlay).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import jinja2
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from controller import enrollment, events
from controller.fleet import FleetHost
from controller.models import ProvisionHostStatus, ProvisionRun
from controller.provision import states as provision_states
from tests.fleet.conftest import ssh
from tests.processes import REPO

TEMPLATE = REPO / "playbooks" / "roles" / "node_agent" / "templates" / "labfleet-agent-supervisor.j2"
SUPERVISOR = "/usr/local/sbin/labfleet-agent-supervisor"
VENV = str(Path(sys.executable).parent.parent)


def supervisor_script() -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["to_json"] = json.dumps
    return env.from_string(TEMPLATE.read_text()).render(
        labfleet_agent_python=sys.executable, ansible_managed="written by tests/rescue_fleet.py",
        labfleet_agent_pidfile="/var/lib/labfleet-agent/supervisor.pid",
        labfleet_agent_log_dir="/var/log/labfleet-agent", labfleet_agent_config_dir="/etc/labfleet-agent",
        labfleet_agent_venv=VENV,
        # This checkout's venv has node_agent as an editable install (a .pth finder, which needs site):
        # the agent runs as `python -I` with the checkout first on its path.
        labfleet_agent_pythonpath=str(REPO))


def record_run(database_url: str, hosts: list[FleetHost]) -> dict[str, str]:
    """A finished ``site`` run over ``hosts`` and one bound enrollment token per host: {host: token}."""
    engine = create_engine(database_url)
    try:
        with sessionmaker(engine)() as session, session.begin():
            event = events.get_or_create(session)
            ssh_args = {h.name: f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={shlex.quote(h.known_hosts_path)}"
                        for h in hosts}
            run = ProvisionRun(event_id=event.id, playbook="site", driver="netns", state=provision_states.RUN_SUCCEEDED,
                               requested_by="instructor:test",
                               hosts=[{"name": h.name, "address": h.address, "port": h.ssh_port, "user": h.ssh_user,
                                       "private_key": h.private_key_path, "vars": {}, "ssh_args": ssh_args[h.name]}
                                      for h in hosts])
            session.add(run)
            session.flush()
            for h in hosts:
                session.add(ProvisionHostStatus(run_id=run.id, host=h.name, address=h.address,
                                                state=provision_states.HOST_OK))
            return enrollment.mint_for_run(session, event=event, run_id=run.id, hosts=[h.name for h in hosts],
                                           created_by="instructor:test", ttl=600)
    finally:
        engine.dispose()


def install_agent(host: FleetHost, *, controller_url: str, token: str, ca_pem: str) -> None:
    """The agent's config, token, CA and supervisor on ``host``, and the supervisor started."""
    toml = "\n".join([f"controller_url = {json.dumps(controller_url)}",
                      'enroll_token_file = "/etc/labfleet-agent/env"', f"name = {json.dumps(host.name)}",
                      'state_dir = "/var/lib/labfleet-agent"', 'ca_file = "/etc/labfleet-agent/ca.pem"',
                      f"lab_cgroup_parent = {json.dumps(host.lab_cgroup_parent)}", ""])
    files = {"/etc/labfleet-agent/agent.toml": toml, "/etc/labfleet-agent/env": f"LABFLEET_AGENT_ENROLL_TOKEN={token}\n",
             "/etc/labfleet-agent/ca.pem": ca_pem, SUPERVISOR: supervisor_script(),
             # What the role's readiness check writes (playbooks/README.md), in its shape.
             "/var/lib/labfleet-agent/readiness.json": json.dumps({"ready": True, "not_ready": [],
                                                                   "broken_labs": []}) + "\n"}
    script = ["set -e", "mkdir -p /etc/labfleet-agent /var/lib/labfleet-agent /var/log/labfleet-agent"]
    for path, text in files.items():
        script.append(f"printf %s {shlex.quote(text)} > {path}")
    script += [f"chmod 600 /etc/labfleet-agent/env; chmod 755 {SUPERVISOR}", f"{SUPERVISOR} start"]
    done = ssh(host, "\n".join(script), timeout=60)
    assert done.returncode == 0, f"{host.name}: {done.stderr}"


def freeze_then_kill_agent(host: FleetHost) -> None:
    """The agent hangs (SIGSTOP), then dies with its supervisor (SIGKILL both): nothing restarts it."""
    done = ssh(host, "s=$(sed -n 1p /var/lib/labfleet-agent/supervisor.pid); "
                     "a=$(pgrep -f -- '[l]abfleet-agent run --config'); kill -STOP $a; kill -KILL $s; kill -KILL $a; "
                     "echo $s $a")
    assert done.returncode == 0, done.stderr


def stop_agent(host: FleetHost) -> None:
    """SIGSTOP only (the agent hangs, its supervisor waits on it)."""
    done = ssh(host, "kill -STOP $(pgrep -f -- '[l]abfleet-agent run --config')")
    assert done.returncode == 0, done.stderr
