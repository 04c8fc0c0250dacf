"""SSH rescue of N silent local fleet hosts: labfleet's parallel rescue vs a sequential loop of the same steps.

N fresh local fleet hosts (namespaces, real sshd) each run a supervised agent
(tests/rescue_fleet.py: what site.yml leaves, recorded as a site run), talking
to a real controller (gunicorn on the fleet's bridge, a Celery worker on Redis).
Every agent is frozen, then killed with its supervisor; once all nodes are
offline:

- **labfleet**: ``labfleet rescue --silent`` (the Celery task, ``rescue_parallel``
  hosts at once), timed from the request to every host recovered;
- **baseline**: the agents are killed again, then the same Fabric steps
  (``controller.rescue.steps.rescue_host``: connect with the recorded host key,
  diagnose, kill runaway, restart, wait until online) run host after host in
  one loop, timed the same way.

Prints both wall times and the ratio. Goal (issue 12): >= 5x for 20 hosts.

    python -m benchmarks.rescue [--hosts 20] [--parallel 20]     (as root)
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import TempDirs, print_header
from benchmarks.cpu_account import Snapshot, host_cpu
from controller.rescue import steps
from controller.rescue.target import SshTarget
from tests.fleet.conftest import new_fleet
from tests.processes import REPO, wait_until
from tests.provision.conftest import provisioning_controller
from tests.rescue_fleet import freeze_then_kill_agent, install_agent, record_run

GOAL = 5.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rescue", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=20, help="LABFLEET_RESCUE_PARALLEL")
    args = parser.parse_args(argv)
    print_header("SSH rescue of silent fleet hosts", args)
    root = Path(tempfile.mkdtemp(prefix="lf-bench-rescue-"))
    temp = TempDirs(root)
    fleet = new_fleet(root / "fleet")
    database_url = f"sqlite:///{root / 'labfleet.sqlite'}"
    try:
        hosts = fleet.up(args.hosts)
        env = {"LABFLEET_RESCUE_SILENT_AFTER": "0", "LABFLEET_RESCUE_PARALLEL": str(args.parallel),
               "LABFLEET_RESCUE_HOST_TIMEOUT": "180"}
        with provisioning_controller(temp, database_url, queue_prefix="lfbenchrescue", fleet=fleet,
                                     extra_env=env) as ctl:
            tokens = record_run(database_url, hosts)
            for host in hosts:
                install_agent(host, controller_url=ctl.url, token=tokens[host.name], ca_pem=ctl.ca_file.read_text())
            names = [h.name for h in hosts]
            wait_until(lambda: all(ctl.nodes().get(n, {}).get("state") == "online" for n in names), timeout=300,
                       what="every agent online")

            def silence() -> None:
                for host in hosts:
                    freeze_then_kill_agent(host)
                wait_until(lambda: all(ctl.nodes()[n]["state"] == "offline" for n in names), timeout=120,
                           what="every node offline")

            sessions = {ctl.web.popen.pid, ctl.worker.popen.pid}
            groups = [h.cgroup_parent for h in hosts]
            silence()
            cpu_before = Snapshot.take(sessions, groups)
            started = time.monotonic()
            done = subprocess.run([sys.executable, "-m", "controller.cli.main", "rescue", "--silent", "--json"],
                                  env=ctl.env(), cwd=REPO, capture_output=True, text=True, timeout=1200)
            parallel = time.monotonic() - started
            parallel_cpu = Snapshot.take(sessions, groups) - cpu_before
            run = json.loads(done.stdout)
            recovered = sum(h["state"] == "recovered" for h in run["hosts"])
            print(f"labfleet rescue --silent: {recovered}/{len(hosts)} recovered in {parallel:.1f} s; "
                  f"mean seconds per step: {_per_step([h['steps'] for h in run['hosts']])}; "
                  f"{parallel_cpu.per_host(len(hosts))}")

            silence()
            cpu_before = Snapshot.take(sessions, groups)
            started = time.monotonic()
            ok = 0
            seq_steps = []
            host_step_cpu: dict[str, list[float]] = {}
            for host in hosts:
                target = SshTarget(node_id="", node_name=host.name, host=host.name, address=host.address,
                                   port=host.ssh_port, user=host.ssh_user, private_key=host.private_key_path,
                                   known_hosts=host.known_hosts_path)
                marker = {}

                def on_step(name, record, marker=marker, group=host.cgroup_parent):
                    if record is None:
                        marker["cpu"] = host_cpu(group)
                    else:
                        host_step_cpu.setdefault(name, []).append(host_cpu(group) - marker["cpu"])
                    if name == "wait_online" and record is None:
                        marker["at"] = time.time()

                def wait_online(seconds, name=host.name, marker=marker):
                    deadline = time.monotonic() + seconds
                    while time.monotonic() < deadline:
                        node = ctl.nodes()[name]
                        if node["state"] == "online" and node["last_seen_at"] and \
                                _epoch(node["last_seen_at"]) >= marker["at"] - 0.01:
                            return True
                        time.sleep(0.2)
                    return False

                outcome = steps.rescue_host(target, time_bound=180, runaway_limit=300, wait_online=wait_online,
                                            on_step=on_step)
                ok += outcome.state == steps.RECOVERED
                seq_steps.append(outcome.steps)
            sequential = time.monotonic() - started
            sequential_cpu = Snapshot.take(sessions, groups) - cpu_before
            print(f"sequential loop of the same steps: {ok}/{len(hosts)} recovered in {sequential:.1f} s; "
                  f"mean seconds per step: {_per_step(seq_steps)}; {sequential_cpu.per_host(len(hosts))}")
            print("  host CPU seconds per step (sequential, the host's cgroup): " +
                  ", ".join(f"{name} {sum(v) / len(v):.3f}" for name, v in host_step_cpu.items()))
            ratio = sequential / parallel
            print(f"| rescue of {len(hosts)} silent fleet hosts (parallel {args.parallel}) | {parallel:.1f} s | "
                  f"{sequential:.1f} s (sequential loop, same Fabric steps) | {ratio:.1f}x | >= {GOAL:.0f}x | "
                  f"{'yes' if ratio >= GOAL and recovered == ok == len(hosts) else 'no'} |")
    finally:
        fleet.down()
        subprocess.run(["rm", "-rf", "--one-file-system", shlex.quote(str(root))], check=False)
    return 0


def _per_step(runs: list[list[dict]]) -> str:
    totals: dict[str, list[float]] = {}
    for done in runs:
        for step in done:
            totals.setdefault(step["name"], []).append(step["seconds"])
    return ", ".join(f"{name} {sum(v) / len(v):.2f}" for name, v in totals.items())


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


if __name__ == "__main__":
    sys.exit(main())
