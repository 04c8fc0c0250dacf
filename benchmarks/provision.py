"""Provisioning a room: N local fleet hosts from bare to agent online, today's playbook beside the new one.

For each N (default 5 and 20), on fresh local fleet hosts (namespaces, real
sshd, real SSH) and a real controller (gunicorn on the fleet's bridge, a
Celery worker on Redis), ``labfleet provision --driver netns`` runs
``playbooks/site.yml`` through ansible-runner, twice per variant and size:

- **baseline**: the playbooks of ``--baseline-ref`` (default: main before
  issue 14, about 45 small tasks per host), taken with ``git archive``;
- **new**: the working tree's playbooks (two tasks per host: the settings,
  one ``labfleet_host`` call that also sends the bundle and gives the verdict).

Each variant gets a fresh fleet and controller; a first run is timed from the
request to every agent online, then a **second, idempotent** run on the same
hosts. The worker (and with it ansible-runner, ansible-playbook, its forks and
SSH masters) runs in a cpuacct cgroup of its own, so **controller
CPU-seconds per host** is that cgroup's usage over the run divided by N.
**Ansible's defaults** (``--no-tune``) run the new playbook on fresh hosts at
the smallest size.

It prints, per variant and N: bare → online, CPU-s/host, the second run, and
the goals of issue 14: CPU-s/host ≤ 1.0 on a first run; t(20)/t(5) ≤ 2.5; at
the largest N, bare → online ≥ 2.5x faster than the baseline; the second run
≥ 5x faster than the first; and a projection to 500 hosts from the measured
per-host CPU and marginal time (a projection, not a measurement). On the
largest fleet it can also compare fan-out (``--fanout-rounds``): the agents'
``exec ping --all`` through the API and as typed (``labfleet`` CLI, its own
start-up reported apart) against a sequential ssh loop (goal ≥ 100x) and tuned
Ansible (goal ≥ 50x).

    python -m benchmarks.provision [--sizes 5 20] [--variants baseline new] [--defaults-sizes 5]
        [--baseline-ref REF] [--fanout-rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import children_of, print_header, tree_cpu_seconds
from tests.processes import REPO, Controller, wait_until

REDIS_URL = "redis://127.0.0.1:6379/15"  # its own database: the worker's queue is nobody else's
GOAL_SCALING = 2.5
GOAL_TUNED = 2.0
GOAL_IDEMPOTENT = 5.0
GOAL_CPU_PER_HOST = 1.0
GOAL_VS_BASELINE = 2.5
# main before issue 14 (the playbooks of about 45 tasks per host with a fast path)
BASELINE_REF = "6d5b010f11a4e3e9f00c323f389bfbb4a066c90b"
CPUACCT = Path("/sys/fs/cgroup/cpuacct")
# issue 14 (room scale): the agents' fan-out against a sequential ssh loop and tuned Ansible, the CLI's
# own start-up reported apart
GOAL_VS_SSH = 100.0
GOAL_VS_ANSIBLE = 50.0


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


class WorkerCpu:
    """CPU-seconds of the worker's process tree: a cpuacct cgroup of its own (forks, ansible-playbook and its
    SSH masters, which leave the tree, included), or, without cgroup v1 cpuacct, the live tree plus what it
    reaped."""

    def __init__(self, pid: int, name: str) -> None:
        self.pid, self.group = pid, None
        if (CPUACCT / "cgroup.procs").exists():
            group = CPUACCT / name
            group.mkdir()
            for p in [pid, *children_of(pid)]:
                try:
                    (group / "cgroup.procs").write_text(str(p))
                except OSError:
                    pass
            self.group = group

    def seconds(self) -> float:
        if self.group is not None:
            return int((self.group / "cpuacct.usage").read_text()) / 1e9
        return tree_cpu_seconds(self.pid)

    def remove(self) -> None:
        if self.group is None:
            return
        for pid in (self.group / "cgroup.procs").read_text().split():
            try:
                (CPUACCT / "cgroup.procs").write_text(pid)
            except OSError:
                pass
        try:
            self.group.rmdir()
        except OSError as exc:
            print(f"WARNING: cgroup {self.group} not removed: {exc}", flush=True)


@contextmanager
def room(size: int, base: Path, playbooks: Path):
    """A fresh fleet of ``size`` bare hosts and a controller with a worker running ``playbooks``; all removed
    afterwards."""
    from tests.fleet.conftest import leftovers, new_fleet

    fleet = new_fleet(base / f"fleet-{size}-{time.monotonic_ns()}")
    fleet.up(size)
    data_dir = Path(tempfile.mkdtemp(prefix="lfbench-prov-", dir=base))
    controller = BridgeController(data_dir, f"sqlite:///{data_dir / 'labfleet.sqlite'}", REDIS_URL,
                                  host=fleet.bridge_address, heartbeat_interval=5.0, sweep_interval=5.0,
                                  extra_env={**pinned_inputs(base), "LABFLEET_PLAYBOOKS_DIR": str(playbooks),
                                             "LABFLEET_FLEET_DIR": str(fleet.config.state_dir),
                                             "LABFLEET_CELERY_QUEUE": f"lfbench-{time.monotonic_ns()}"})
    cpu = None
    try:
        controller.init(enroll_uses=1)
        controller.start_web()
        controller.start_worker(beat=True)
        time.sleep(2)  # the prefork pool's child exists
        cpu = WorkerCpu(controller.worker.pid, f"lfbench-prov-{os.getpid()}-{time.monotonic_ns()}")
        controller.cpu = cpu
        yield fleet, controller
    finally:
        controller.stop()
        if cpu is not None:
            cpu.remove()
        fleet.down()
        left = leftovers(fleet)
        if left:
            print(f"WARNING: fleet leftovers: {left}", flush=True)


def baseline_playbooks(base: Path, ref: str) -> Path:
    """The playbooks of ``ref`` (``git archive``) in a copy of the pinned project (same catalog and agent)."""
    pinned_inputs(base)
    project = base / f"baseline-{ref[:12]}"
    if not project.exists():
        shutil.copytree(base / "project", project, ignore=shutil.ignore_patterns("playbooks"))
        archive = subprocess.run(["git", "archive", ref, "playbooks"], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(project)], input=archive.stdout, check=True)
    return project / "playbooks"


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
    cpu0 = controller.cpu.seconds()
    started = time.monotonic()
    done = labfleet(controller, *args)
    run_s = time.monotonic() - started
    cpu = controller.cpu.seconds() - cpu0
    run = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    if run.get("state") != "succeeded":
        raise RuntimeError(f"provisioning failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    wait_until(lambda: all(n.get("state") == "online" for n in _nodes(controller, names)), timeout=300,
               interval=0.2, what="every agent online")
    total = time.monotonic() - started
    changed = sum(h["changed"] for h in run["hosts"])
    return {"total_s": total, "run_s": run_s, "changed": changed, "tasks_total": run["tasks_total"],
            "cpu_s": cpu, "cpu_per_host": cpu / len(names)}


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


def cli_exec_ping(controller: Controller, count: int) -> float:
    """``labfleet exec ping --all --json`` as an instructor types it: a new CLI process, start-up included."""
    started = time.monotonic()
    done = labfleet(controller, "exec", "ping", "--all", "--json", timeout=120)
    took = time.monotonic() - started
    batch = json.loads(done.stdout) if done.returncode == 0 else {}
    if len(batch.get("commands", [])) != count or any(c["state"] != "succeeded" for c in batch["commands"]):
        raise RuntimeError(f"labfleet exec ping --all failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    return took


def cli_startup(controller: Controller) -> float:
    """The CLI's own start-up: the interpreter, its imports and click's parsing (``labfleet --version``), no
    request."""
    started = time.monotonic()
    done = labfleet(controller, "--version", timeout=60)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"labfleet --version failed: {done.stderr[-2000:]}")
    return took


def ansible_ping(fleet, inventory: Path, *, tuned: bool) -> float:
    env = {"ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_PYTHON_INTERPRETER": "auto_silent"}
    if tuned:
        # labfleet's tuning (controller/provision/runner.py): no interpreter discovery either
        env.update({"ANSIBLE_PIPELINING": "True", "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=120s",
                    "ANSIBLE_SSH_CONTROL_PATH_DIR": str(inventory.parent / "cp"),
                    "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3"})
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
    cli_exec_ping(controller, count)  # warm: the page cache holds the CLI's modules
    ansible_ping(fleet, inventory, tuned=True)  # warm: the ControlPersist masters exist for the tuned runs
    results: dict[str, list[float]] = {"agents": [], "cli": [], "cli_startup": [], "ansible_defaults": [],
                                       "ansible_tuned": [], "ssh_loop": []}
    for _ in range(rounds):
        results["agents"].append(exec_ping(controller, count))
        results["cli"].append(cli_exec_ping(controller, count))
        results["cli_startup"].append(cli_startup(controller))
        results["ansible_defaults"].append(ansible_ping(fleet, inventory, tuned=False))
        results["ansible_tuned"].append(ansible_ping(fleet, inventory, tuned=True))
        results["ssh_loop"].append(ssh_loop(fleet))
    return {k: sorted(v)[len(v) // 2] for k, v in results.items()}


# -- the run ----------------------------------------------------------------

def run(sizes: list[int], variants: list[str], defaults_sizes: list[int], fanout_rounds: int,
        baseline_ref: str) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="lfbench-provision-"))
    pinned_inputs(base)
    books = {"new": base / "project" / "playbooks"}
    if "baseline" in variants:
        books["baseline"] = baseline_playbooks(base, baseline_ref)
    out: dict[str, Any] = {"first": {v: {} for v in variants}, "second": {v: {} for v in variants},
                           "defaults": {}, "fanout": None, "baseline_ref": baseline_ref}
    for size in sizes:
        for variant in variants:
            with room(size, base, books[variant]) as (fleet, controller):
                first = provision(controller, fleet, tune=True)
                second = provision(controller, fleet, tune=True)
                out["first"][variant][size], out["second"][variant][size] = first, second
                print(f"N={size} {variant}: bare -> online {first['total_s']:.1f} s, {first['cpu_per_host']:.2f} "
                      f"controller CPU-s/host ({first['changed']} changed); second run {second['total_s']:.1f} s, "
                      f"{second['cpu_per_host']:.2f} CPU-s/host ({second['changed']} changed)", flush=True)
                if size == max(sizes) and variant == variants[-1] and fanout_rounds:
                    try:
                        out["fanout"] = {"hosts": size, **fanout(controller, fleet, base, fanout_rounds)}
                        print(f"N={size} fan-out: {out['fanout']}", flush=True)
                    except (RuntimeError, AssertionError, subprocess.SubprocessError) as exc:
                        print(f"N={size} fan-out NOT MEASURED: {exc}", flush=True)
    for size in defaults_sizes:
        with room(size, base, books["new"]) as (fleet, controller):
            out["defaults"][size] = provision(controller, fleet, tune=False)
            print(f"N={size} new, Ansible defaults: bare -> online {out['defaults'][size]['total_s']:.1f} s, "
                  f"{out['defaults'][size]['cpu_per_host']:.2f} CPU-s/host", flush=True)
    shutil.rmtree(base, ignore_errors=True)
    return out


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(out: dict[str, Any]) -> None:
    first, second, defaults = out["first"], out["second"], out["defaults"]
    print()
    print("| variant | N | bare → online | controller CPU-s/host | second run (changed) | first / second |")
    print("|---|---|---|---|---|---|")
    for variant in first:
        for size in sorted(first[variant]):
            f, s2 = first[variant][size], second[variant][size]
            print(f"| {variant} | {size} | {f['total_s']:.1f} s | {f['cpu_per_host']:.2f} | {s2['total_s']:.1f} s "
                  f"({s2['changed']}) | {f['total_s'] / s2['total_s']:.1f}x |")
    print()
    new = first.get("new", {})
    sizes = sorted(new)
    if sizes:
        lo, hi = sizes[0], sizes[-1]
        worst = max(new[n]["cpu_per_host"] for n in sizes)
        print(f"- new: controller CPU-s/host on a first run ≤ {GOAL_CPU_PER_HOST:g}: worst {worst:.2f} "
              f"({_verdict(worst <= GOAL_CPU_PER_HOST)})")
        if hi != lo:
            ratio = new[hi]["total_s"] / new[lo]["total_s"]
            print(f"- new: t({hi})/t({lo}) = {ratio:.2f} (goal ≤ {GOAL_SCALING:g}: {_verdict(ratio <= GOAL_SCALING)})")
            base = first.get("baseline", {})
            if lo in base and hi in base:
                print(f"  baseline: t({hi})/t({lo}) = {base[hi]['total_s'] / base[lo]['total_s']:.2f}")
        for n in sizes:
            if n in first.get("baseline", {}):
                ratio = first["baseline"][n]["total_s"] / new[n]["total_s"]
                print(f"- N={n}: bare → online, baseline / new = {ratio:.2f}x (goal ≥ {GOAL_VS_BASELINE:g}x at the "
                      f"largest N: {_verdict(ratio >= GOAL_VS_BASELINE)})")
        worst_idem = min(new[n]["total_s"] / second["new"][n]["total_s"] for n in sizes)
        print(f"- new: second run vs first, worst {worst_idem:.1f}x faster (goal ≥ {GOAL_IDEMPOTENT:g}x: "
              f"{_verdict(worst_idem >= GOAL_IDEMPOTENT)})")
        for n, d in sorted(defaults.items()):
            if n in new:
                print(f"- new, Ansible defaults (--no-tune) at N={n}: {d['total_s']:.1f} s, {d['cpu_per_host']:.2f} "
                      f"CPU-s/host = {d['total_s'] / new[n]['total_s']:.2f}x the tuned run (goal ≥ {GOAL_TUNED:g}x)")
        if hi != lo:
            slope = (new[hi]["total_s"] - new[lo]["total_s"]) / (hi - lo)
            cpu = new[hi]["cpu_per_host"]
            cores = os.cpu_count() or 1
            t500 = new[hi]["total_s"] + (500 - hi) * slope
            print(f"- projection to 500 hosts (not measured): marginal {slope:.2f} s/host (N={lo}..{hi}) gives "
                  f"{t500:.0f} s; controller CPU {cpu:.2f} s/host x 500 = {cpu * 500:.0f} CPU-s, at least "
                  f"{cpu * 500 / cores:.0f} s on {cores} cores before any host-side work")
    f = out.get("fanout")
    if f:
        print(f"\nfan-out of a trivial command to {f['hosts']} hosts (median):")
        agents, cli, startup = f["agents"], f["cli"], f["cli_startup"]
        print(f"  labfleet exec ping --all, the fan-out (API: issue, poll to the last result): {agents * 1000:.0f} ms")
        print(f"  labfleet exec ping --all --json, the CLI as typed:   {cli * 1000:.0f} ms, of which its own "
              f"start-up (labfleet --version) {startup * 1000:.0f} ms")
        for name, key, goal in (("sequential ssh host true loop", "ssh_loop", GOAL_VS_SSH),
                                ("ansible all -m ping, tuned", "ansible_tuned", GOAL_VS_ANSIBLE),
                                ("ansible all -m ping, defaults", "ansible_defaults", None)):
            other = f[key]
            verdict = f" (goal ≥ {goal:g}x: {_verdict(other / agents >= goal)})" if goal else ""
            print(f"  {name}: {other * 1000:.0f} ms = {other / agents:.1f}x the fan-out{verdict}, "
                  f"{other / cli:.1f}x the CLI as typed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.provision", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--variants", nargs="+", choices=["baseline", "new"], default=["baseline", "new"])
    parser.add_argument("--baseline-ref", default=BASELINE_REF, help="git ref of today's playbooks")
    parser.add_argument("--defaults-sizes", type=int, nargs="*", default=[5],
                        help="sizes for the new playbook with Ansible's defaults (--no-tune)")
    parser.add_argument("--fanout-rounds", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="sizes 2 and 4, defaults at 2")
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.defaults_sizes = [2, 4], [2]
    print_header("provisioning a room of local fleet hosts", args)
    out = run(args.sizes, args.variants, args.defaults_sizes, args.fanout_rounds, args.baseline_ref)
    report(out)
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
