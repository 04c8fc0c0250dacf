"""``labfleet demo``: a controller, a worker and a local fleet of lab hosts, provisioned for real.

``fleet up`` makes N lab hosts of namespaces on this machine, each with its own
sshd; the controller listens on the fleet's bridge address so the hosts can
reach it; ``playbooks/site.yml`` provisions them over SSH through the same
provisioning run an instructor uses for a room (one progress bar per host);
their agents enroll and come online. The controller serves TLS with the room
CA's certificate (``labfleet init`` makes both) and every agent pins that CA. Everything started here is stopped by its
PID, and the fleet taken down, on Ctrl-C, SIGTERM or when ``duration`` runs out.
Without root (no namespaces), ``--no-fleet`` runs the agents as plain local
processes instead.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from controller import bootstrap
from controller.cli import render
from controller.cli.client import ClientError, ControllerClient, verifying_context
from controller.credentials import Credentials
from controller.settings import Settings


class DemoError(Exception):
    """A demo process did not come up; the message says which and where its log is."""


def run_demo(settings: Settings, *, hosts: int, duration: float | None, use_fleet: bool = True) -> None:
    logs = settings.data_dir / "demo-logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    stop = _install_stop_handlers()
    fleet = None
    try:
        if use_fleet:
            from controller.fleet import Fleet

            fleet = Fleet(state_dir=settings.data_dir / "fleet", prefix="lfdemo")
            fleet.down()  # what a crashed earlier demo left
            render.console.print(f"local fleet: {hosts} lab host(s) on {fleet.config.subnet}")
            fleet.up(hosts)
            # The hosts reach the controller only over their bridge, so it listens there.
            settings = dataclasses.replace(settings, host=fleet.bridge_address)
        init = bootstrap.initialize(settings, instructor="instructor", enroll_uses=hosts)
        env = {**os.environ, "LABFLEET_DATA_DIR": str(settings.data_dir), "LABFLEET_PORT": str(settings.port),
               "LABFLEET_HOST": settings.host, "LABFLEET_FLEET_DIR": str(settings.data_dir / "fleet")}
        procs.append(_start([sys.executable, "-m", "controller.cli.main", "serve"], env, logs / "web.log"))
        _wait_healthy(settings.base_url, settings.tls_ca_file, procs[0], logs / "web.log")
        procs.append(_start([sys.executable, "-m", "controller.cli.main", "worker"], env, logs / "worker.log"))
        client = ControllerClient(Credentials(settings.base_url, init.api_token, ca_file=settings.tls_ca_file))
        if fleet is not None:
            names = {h.name for h in fleet.hosts()}
            _provision(client)
        else:
            names = _start_local_agents(settings, init, hosts, procs, logs)
        _wait_online(client, names, timeout=90)
        attendee = _seat_demo_attendees(client, sorted(names))
        _print_banner(settings, init, fleet is not None, attendee)
        give_up = time.monotonic() + duration if duration else None
        while not stop.is_set() and (give_up is None or time.monotonic() < give_up):
            stop.wait(0.5)
            for proc in procs[:2]:
                if proc.poll() is not None:
                    raise DemoError(f"{proc.args[-1]} exited with {proc.returncode}; see {logs}")
    except DemoError as exc:
        render.console.print(f"[red]demo failed: {render.safe(exc)}[/red]")
        raise SystemExit(1) from None
    finally:
        _stop_all(procs)
        if fleet is not None:
            fleet.down()
        render.console.print("demo stopped; every process it started has exited"
                             + (" and the fleet is down" if fleet is not None else ""))


def _provision(client: ControllerClient) -> None:
    """The fleet's folder reaches the controller as its LABFLEET_FLEET_DIR (set in ``env`` above)."""
    from controller.cli.provision import follow, print_run

    try:
        run = client.post("/api/v1/provision-runs", {"playbook": "site", "tune": True, "driver": "netns",
                                                      "inventory": {}})
        run = follow(client, run["id"], quiet=False)
    except ClientError as exc:
        raise DemoError(f"provisioning could not start: {exc}") from None
    print_run(run)
    if run["state"] != "succeeded":
        raise DemoError(f"provisioning run {run['id']} ended {run['state']}; see labfleet provision show {run['id']}")


def _start_local_agents(settings: Settings, init: bootstrap.Initialized, count: int,
                        procs: list[subprocess.Popen], logs: Path) -> set[str]:
    names = [f"demo-{i + 1}" for i in range(count)]
    for name in names:
        state_dir = settings.data_dir / "demo-agents" / name
        shutil.rmtree(state_dir, ignore_errors=True)  # a fresh machine each demo
        agent_env = {**os.environ, "LABFLEET_AGENT_ENROLL_TOKEN": init.enrollment_token}
        procs.append(_start([sys.executable, "-m", "node_agent", "run", "--controller", settings.base_url,
                             "--state-dir", str(state_dir), "--name", name, "--config",
                             str(_local_agent_config(state_dir)), *_agent_tls_args(settings)],
                            agent_env, logs / f"{name}.log"))
    return set(names)


def _agent_tls_args(settings: Settings) -> list[str]:
    # The demo's controller serves the room CA's certificate (init made both): the agents pin that CA.
    if settings.tls_ca_file is not None:
        return ["--ca-file", str(settings.tls_ca_file)]
    return ["--insecure-http"]  # a data dir whose operator chose plain HTTP (LABFLEET_TLS_CERT unset, no CA)


def _local_agent_config(state_dir: Path) -> Path:
    # Plain local agents share this machine: each gets its own attendee socket.
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir.parent / f"{state_dir.name}.toml"
    config.write_text(f'attendee_socket = "{state_dir}/attendee.sock"\n')
    return config


def _install_stop_handlers():
    import threading

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _start(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")
    # Own process group: a Ctrl-C in the terminal reaches only the demo, which stops them in order.
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_healthy(url: str, ca_file: Path | None, proc: subprocess.Popen, log_path: Path,
                  timeout: float = 30) -> None:
    context = verifying_context(ca_file)
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if proc.poll() is not None:
            raise DemoError(f"the controller exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=1, context=context):
                return
        except OSError:
            time.sleep(0.2)
    raise DemoError(f"the controller did not answer on {url} within {timeout:.0f}s; see {log_path}")


def _wait_online(client: ControllerClient, names: set[str], timeout: float) -> None:
    give_up = time.monotonic() + timeout
    columns = (TextColumn("[bold]agents online"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=render.console) as progress:
        task = progress.add_task("online", total=len(names))
        while time.monotonic() < give_up:
            try:
                nodes = client.get_all("/api/v1/nodes", "nodes")
            except ClientError:
                nodes = []
            online = {n["name"] for n in nodes if n["state"] == "online"} & names
            progress.update(task, completed=len(online))
            if online == names:
                return
            time.sleep(0.2)
    raise DemoError(f"agents not online after {timeout:.0f}s: {sorted(names - online)}")


DEMO_ATTENDEES = ("Grace Hopper", "Alan Turing", "Barbara Liskov", "Edsger Dijkstra", "Frances Allen")


def _seat_demo_attendees(client: ControllerClient, names: list[str]) -> dict[str, str] | None:
    """One attendee per host (as an instructor's CSV would), assigned, with access codes: the first one's
    email and code, for the banner's attendee page. None when this data directory had attendees already."""
    people = [(DEMO_ATTENDEES[i % len(DEMO_ATTENDEES)] + ("" if i < len(DEMO_ATTENDEES) else f" {i}"),
               f"attendee{i + 1}@demo.example") for i in range(len(names))]
    csv = "name,email\n" + "".join(f"{name},{email}\n" for name, email in people)
    try:
        if client.post("/api/v1/attendees/import", {"csv": csv, "source": "demo"})["created"] == 0:
            return None
        client.post("/api/v1/attendees/assign", {})
        sheet = client.post("/api/v1/attendees/credentials", {})["credentials"]
    except ClientError as exc:
        render.console.print(f"[yellow]no demo attendees: {render.safe(exc)}[/yellow]")
        return None
    seated = [row for row in sheet if row["access_code"] and row["node"]]
    return {"email": seated[0]["email"], "code": seated[0]["access_code"], "node": seated[0]["node"]} if seated else None


def _print_banner(settings: Settings, init: bootstrap.Initialized, fleet: bool,
                  attendee: dict[str, str] | None = None) -> None:
    render.console.print(f"\n[bold green]labfleet demo is running[/bold green] at {render.safe(settings.base_url)}")
    render.console.print(f"instructor API token: {render.safe(init.api_token)}", soft_wrap=True)
    login = (f"password {render.safe(init.web_password)}" if init.web_password
             else "the password set earlier (new one: labfleet instructor passwd instructor)")
    render.console.print(f"the room: {render.safe(settings.base_url)}/room, log in as instructor with {login}",
                         soft_wrap=True)
    if attendee:
        render.console.print(f"an attendee's page: {render.safe(settings.base_url)}/attendee/login, email "
                             f"{render.safe(attendee['email'])}, access code {render.safe(attendee['code'])} "
                             f"(on {render.safe(attendee['node'])}; every code: labfleet credentials --out DIR)",
                             soft_wrap=True)
    else:
        render.console.print("attendee pages: /attendee/login with the codes of `labfleet credentials --out DIR`")
    render.console.print(f"credentials saved in {render.safe(init.credentials_path)}; in another terminal try:")
    render.console.print("  labfleet status\n  labfleet exec ping --all\n  labfleet check ns-uts --all"
                         "\n  labfleet audit")
    if fleet:
        render.console.print("  labfleet fleet list --state-dir " + render.safe(settings.data_dir / "fleet"))
    render.console.print("Ctrl-C stops the demo.")


def _stop_all(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in reversed(procs):
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
