"""Provisioning a room: N local fleet hosts from bare to agent online, and fan-out over them.

For each N (default 5, 10, 20), on fresh local fleet hosts (namespaces, real
sshd, real SSH) and a real controller (gunicorn on the fleet's bridge, a
Celery worker on Redis), ``labfleet provision --driver netns`` runs the real
``playbooks/site.yml`` through ansible-runner:

- **tuned** (labfleet's settings: forks, pipelining, SSH ControlPersist, no
  facts), timed from the request to every agent online; then a **second,
  idempotent** run on the same hosts;
- **Ansible's defaults** (``--no-tune``: forks 5, no pipelining, no SSH
  multiplexing, facts gathered) on fresh bare hosts, side by side.

It prints total, per-host marginal cost (slope between sizes) and
t(20)/t(5), the tuned/defaults ratio and first/second-run ratio. On the
largest fleet it also compares fan-out of a trivial command: ``labfleet exec
ping --all`` through the agents vs ``ansible all -m ping`` (defaults and
tuned) vs a sequential ``ssh host true`` loop.

Goals (issue 4): t(20)/t(5) <= 2.5; tuned >= 2x faster than defaults; second
run >= 3x faster than the first; agents >= 20x faster than the SSH loop and
>= 5x faster than Ansible.

    python -m benchmarks.provision [--sizes 5 10 20] [--defaults-sizes 5 10 20] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import print_header
from tests.processes import REPO, Controller, wait_until

REDIS_URL = "redis://127.0.0.1:6379/15"  # its own database: the worker's queue is nobody else's
GOAL_SCALING = 2.5
GOAL_TUNED = 2.0
GOAL_IDEMPOTENT = 3.0
GOAL_VS_SSH = 20.0
GOAL_VS_ANSIBLE = 5.0


class BridgeController(Controller):
    """A controller listening on the fleet's bridge address, the only one a fleet host can reach."""

    def __init__(self, *args: Any, host: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.host = host

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update({"LABFLEET_HOST": self.host, "LABFLEET_PUBLIC_URL": self.url, "LABFLEET_LOG_LEVEL": "WARNING",
                    "LABFLEET_REDELIVER_AFTER": "30"})
        return env


@contextmanager
def room(size: int, base: Path):
    """A fresh fleet of ``size`` bare hosts and a controller with a worker; all removed afterwards."""
    from tests.fleet.conftest import leftovers, new_fleet

    fleet = new_fleet(base / f"fleet-{size}-{time.monotonic_ns()}")
    fleet.up(size)
    data_dir = Path(tempfile.mkdtemp(prefix="lfbench-prov-", dir=base))
    controller = BridgeController(data_dir, f"sqlite:///{data_dir / 'labfleet.sqlite'}", REDIS_URL,
                                  host=fleet.bridge_address, heartbeat_interval=5.0, sweep_interval=5.0,
                                  extra_env={**pinned_inputs(base),
                                             "LABFLEET_FLEET_DIR": str(fleet.config.state_dir),
                                             "LABFLEET_CELERY_QUEUE": f"lfbench-{time.monotonic_ns()}"})
    try:
        controller.init(enroll_uses=1)
        controller.start_web()
        controller.start_worker(beat=True)
        yield fleet, controller
    finally:
        controller.stop()
        fleet.down()
        left = leftovers(fleet)
        if left:
            print(f"WARNING: fleet leftovers: {left}", flush=True)


def pinned_inputs(base: Path) -> dict[str, str]:
    """The agent wheel, playbooks and lab catalog as they are now: a working tree edited during the
    run would otherwise make the second run a real change, not an idempotent one."""
    from controller.provision.wheel import agent_wheel
    from tests.provision.conftest import snapshot_project

    project = base / "project"
    if not project.exists():
        snapshot_project(project)
    return {"LABFLEET_PROVISION_AGENT_WHEEL": str(agent_wheel(base / "wheels")),
            "LABFLEET_PLAYBOOKS_DIR": str(project / "playbooks")}


def labfleet(controller: Controller, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller.cli.main", *args], env=controller.env(), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def provision(controller: Controller, fleet, *, tune: bool) -> dict[str, Any]:
    """One run, timed from the request to every agent online (the run's own duration beside it)."""
    names = [h.name for h in fleet.hosts()]
    args = ["provision", "--driver", "netns", "--json"]  # the fleet: the controller's LABFLEET_FLEET_DIR
    if not tune:
        args.append("--no-tune")
    started = time.monotonic()
    done = labfleet(controller, *args)
    run = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    if run.get("state") != "succeeded":
        raise RuntimeError(f"provisioning failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    wait_until(lambda: all(n.get("state") == "online" for n in _nodes(controller, names)), timeout=300,
               interval=0.2, what="every agent online")
    total = time.monotonic() - started
    changed = sum(h["changed"] for h in run["hosts"])
    return {"total_s": total, "changed": changed, "tasks_total": run["tasks_total"]}


def _nodes(controller: Controller, names: list[str]) -> list[dict[str, Any]]:
    nodes = controller.nodes()
    return [nodes.get(n, {}) for n in names]


# -- fan-out ----------------------------------------------------------------

def exec_ping(controller: Controller, count: int) -> float:
    """``labfleet exec ping --all`` as the API sees it: issue, then poll every 0.1 s until every result."""
    started = time.monotonic()
    issued = controller.api("POST", "/api/v1/commands", {"kind": "ping", "all": True})
    batch_id = issued["batch_id"]
    assert len(issued["commands"]) == count, issued
    while True:
        summary = controller.api("GET", f"/api/v1/batches/{batch_id}?summary=1")
        if summary["done"] >= summary["total"]:
            took = time.monotonic() - started
            batch = controller.api("GET", f"/api/v1/batches/{batch_id}?limit=1000")  # a room fits one page
            assert all(c["state"] == "succeeded" for c in batch["commands"]), batch
            return took
        time.sleep(0.1)


def ansible_ping(fleet, inventory: Path, *, tuned: bool) -> float:
    env = {"ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_PYTHON_INTERPRETER": "auto_silent"}
    if tuned:
        env.update({"ANSIBLE_PIPELINING": "True", "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=120s",
                    "ANSIBLE_SSH_CONTROL_PATH_DIR": str(inventory.parent / "cp")})
    else:
        env.update({"ANSIBLE_SSH_ARGS": "-o ControlMaster=no"})
    forks = str(len(fleet.hosts())) if tuned else "5"
    started = time.monotonic()
    done = subprocess.run(["ansible", "all", "-i", str(inventory), "-m", "ansible.builtin.ping", "-f", forks],
                          capture_output=True, text=True, timeout=600, env={**_base_env(), **env})
    took = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"ansible all -m ping failed: {done.stdout[-2000:]}")
    return took


def ssh_loop(fleet) -> float:
    started = time.monotonic()
    for host in fleet.hosts():
        subprocess.run(["ssh", "-i", host.private_key_path, "-o", f"UserKnownHostsFile={host.known_hosts_path}",
                        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ControlMaster=no",
                        "-p", str(host.ssh_port), f"{host.ssh_user}@{host.address}", "true"],
                       check=True, capture_output=True, timeout=30)
    return time.monotonic() - started


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}


def write_inventory(fleet, path: Path) -> Path:
    from controller.provision.inventory import ansible_inventory, open_inventory

    hosts = open_inventory("netns", {"state_dir": str(fleet.config.state_dir)}).hosts()
    path.write_text(json.dumps(ansible_inventory(hosts)))
    return path


def fanout(controller: Controller, fleet, base: Path, rounds: int) -> dict[str, float]:
    count = len(fleet.hosts())
    inventory = write_inventory(fleet, base / f"fanout-{count}.json")
    exec_ping(controller, count)  # warm: connections, caches
    ansible_ping(fleet, inventory, tuned=True)  # warm: the ControlPersist masters exist for the tuned runs
    results: dict[str, list[float]] = {"agents": [], "ansible_defaults": [], "ansible_tuned": [], "ssh_loop": []}
    for _ in range(rounds):
        results["agents"].append(exec_ping(controller, count))
        results["ansible_defaults"].append(ansible_ping(fleet, inventory, tuned=False))
        results["ansible_tuned"].append(ansible_ping(fleet, inventory, tuned=True))
        results["ssh_loop"].append(ssh_loop(fleet))
    return {k: sorted(v)[len(v) // 2] for k, v in results.items()}


# -- the run ----------------------------------------------------------------

def run(sizes: list[int], defaults_sizes: list[int], fanout_rounds: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="lfbench-provision-"))
    out: dict[str, Any] = {"tuned": {}, "second": {}, "defaults": {}, "fanout": None}
    for size in sizes:
        with room(size, base) as (fleet, controller):
            first = provision(controller, fleet, tune=True)
            second = provision(controller, fleet, tune=True)
            out["tuned"][size], out["second"][size] = first, second
            print(f"N={size} tuned: bare -> online {first['total_s']:.1f} s ({first['changed']} changed); "
                  f"second run {second['total_s']:.1f} s ({second['changed']} changed)", flush=True)
            if size == max(sizes) and fanout_rounds:
                try:
                    out["fanout"] = {"hosts": size, **fanout(controller, fleet, base, fanout_rounds)}
                    print(f"N={size} fan-out: {out['fanout']}", flush=True)
                except (RuntimeError, AssertionError, subprocess.SubprocessError) as exc:
                    print(f"N={size} fan-out NOT MEASURED: {exc}", flush=True)
    for size in defaults_sizes:
        with room(size, base) as (fleet, controller):
            out["defaults"][size] = provision(controller, fleet, tune=False)
            print(f"N={size} Ansible defaults: bare -> online {out['defaults'][size]['total_s']:.1f} s", flush=True)
    return out


def report(out: dict[str, Any]) -> None:
    tuned, second, defaults = out["tuned"], out["second"], out["defaults"]
    print()
    print("| N | tuned: bare → online | second run (changed) | first/second | Ansible defaults | defaults/tuned |")
    print("|---|---|---|---|---|---|")
    for size in sorted(tuned):
        t, s = tuned[size]["total_s"], second[size]["total_s"]
        d = defaults.get(size, {}).get("total_s")
        print(f"| {size} | {t:.1f} s | {s:.1f} s ({second[size]['changed']}) | {t / s:.2f}x "
              f"(goal ≥ {GOAL_IDEMPOTENT:g}x) | {f'{d:.1f} s' if d else '—'} | "
              f"{f'{d / t:.2f}x' if d else '—'} (goal ≥ {GOAL_TUNED:g}x) |")
    sizes = sorted(tuned)
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        slope = (tuned[hi]["total_s"] - tuned[lo]["total_s"]) / (hi - lo)
        print(f"\ntuned: per-host marginal cost {slope:.2f} s/host (N={lo}..{hi}); "
              f"t({hi})/t({lo}) = {tuned[hi]['total_s'] / tuned[lo]['total_s']:.2f} (goal ≤ {GOAL_SCALING:g})")
        dsizes = sorted(defaults)
        if len(dsizes) >= 2:
            dlo, dhi = dsizes[0], dsizes[-1]
            dslope = (defaults[dhi]["total_s"] - defaults[dlo]["total_s"]) / (dhi - dlo)
            print(f"Ansible defaults: per-host marginal cost {dslope:.2f} s/host (N={dlo}..{dhi}); "
                  f"t({dhi})/t({dlo}) = {defaults[dhi]['total_s'] / defaults[dlo]['total_s']:.2f}")
    f = out.get("fanout")
    if f:
        print(f"\nfan-out of a trivial command to {f['hosts']} hosts (median):")
        print(f"  labfleet exec ping --all (agents): {f['agents'] * 1000:.0f} ms")
        print(f"  ansible all -m ping, defaults:     {f['ansible_defaults'] * 1000:.0f} ms "
              f"({f['ansible_defaults'] / f['agents']:.1f}x the agents)")
        print(f"  ansible all -m ping, tuned:        {f['ansible_tuned'] * 1000:.0f} ms "
              f"({f['ansible_tuned'] / f['agents']:.1f}x the agents; goal ≥ {GOAL_VS_ANSIBLE:g}x)")
        print(f"  sequential ssh host true loop:     {f['ssh_loop'] * 1000:.0f} ms "
              f"({f['ssh_loop'] / f['agents']:.1f}x the agents; goal ≥ {GOAL_VS_SSH:g}x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.provision", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--defaults-sizes", type=int, nargs="*", default=[5, 10, 20],
                        help="sizes for the Ansible-defaults run (slow; may be fewer than --sizes)")
    parser.add_argument("--fanout-rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="sizes 2 and 4, defaults at 2, one fan-out round")
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.defaults_sizes, args.fanout_rounds = [2, 4], [2], 1
    print_header("provisioning a room of local fleet hosts", args)
    out = run(args.sizes, args.defaults_sizes, args.fanout_rounds)
    report(out)
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
