"""Footprint of ONE real agent: resident memory and CPU while it heartbeats and long-polls, idle.

The real ``python -m node_agent run`` enrolls against a real controller (heartbeat interval: the
controller's default 5 s), and once the controller shows it online we sample, every
``--sample-every`` seconds for ``--duration`` seconds: VmRSS of the agent and any children
(/proc/<pid>/status) and utime+stime (/proc/<pid>/stat, children included). Reported: max RSS
and CPU % of one core over the window.

Baseline, same run, same interpreter: a bare ``python -c "import time; time.sleep(...)"``,
sampled the same way: the floor any Python agent starts from.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    CLK_TCK,
    add_database_option,
    bench_controller,
    children_of,
    create_enroll_token,
    print_header,
    rss_kb,
    tree_cpu_seconds,
)
from tests.processes import Proc, wait_until

GOAL_RSS_MB = 30.0
GOAL_CPU_PCT = 0.5


def agent_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("node_agent.cli", "node_agent.daemon"))


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LABFLEET_")}


class Sampler:
    """RSS (sum over the process tree) and CPU of one process tree."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rss_mb: list[float] = []
        self.children_seen = 0
        self._cpu0 = self._t0 = 0.0
        self.cpu_pct = float("nan")

    def start(self) -> None:
        self._cpu0, self._t0 = tree_cpu_seconds(self.pid), time.monotonic()

    def sample(self) -> None:
        kids = children_of(self.pid)
        self.children_seen = max(self.children_seen, len(kids))
        self.rss_mb.append(sum(rss_kb(p) for p in [self.pid, *kids]) / 1024)

    def finish(self) -> None:
        wall = time.monotonic() - self._t0
        self.cpu_pct = 100 * (tree_cpu_seconds(self.pid) - self._cpu0) / wall


def run(*, duration: float = 60.0, sample_every: float = 1.0, database: str = "sqlite",
        online_timeout: float = 60.0) -> dict[str, Any]:
    if not agent_available():
        return {"error": "node_agent.cli / node_agent.daemon not available: `python -m node_agent run` is missing"}
    work = Path(tempfile.mkdtemp(prefix="labfleet-footprint-"))
    agent = floor = None
    try:
        # With TLS, as on a lab VM: the ssl module and the pinned CA are part of the agent's footprint.
        with bench_controller(database, heartbeat_interval=5.0, tls=True) as controller:
            token = create_enroll_token(controller, 1)
            env = {**_clean_env(), "LABFLEET_AGENT_ENROLL_TOKEN": token}
            # As on a lab VM: the whole lab catalog loaded and the attendee socket served.
            config = work / "agent.toml"
            config.write_text(f'labs_dir = "{REPO_LABS}"\nattendee_socket = "{work}/attendee.sock"\n')
            argv = [sys.executable, "-m", "node_agent", "run", "--controller", controller.url,
                    "--state-dir", str(work / "state"), "--name", "bench", "--log-format", "json",
                    "--config", str(config), "--ca-file", str(controller.ca_file)]
            agent = Proc("agent", argv, env, work / "agent.log").start()

            def online() -> bool:
                if not agent.alive():
                    raise RuntimeError(f"agent exited with {agent.popen.returncode}:\n{agent.log()[-2000:]}")
                node = controller.nodes().get("bench")
                return bool(node and node["state"] == "online" and node["last_seen_at"])

            started = time.monotonic()
            wait_until(online, timeout=online_timeout, interval=0.2, what="the agent online")
            online_after = time.monotonic() - started
            print(f"agent pid {agent.pid} online after {online_after:.1f} s; sampling for {duration:g} s", flush=True)
            floor = Proc("floor", [sys.executable, "-c", f"import time; time.sleep({duration + 30:g})"],
                         _clean_env(), work / "floor.log").start()
            time.sleep(0.5)  # let the bare interpreter finish starting
            samplers = {"agent": Sampler(agent.pid), "floor": Sampler(floor.pid)}
            for s in samplers.values():
                s.start()
            end = time.monotonic() + duration
            while time.monotonic() < end:
                for s in samplers.values():
                    s.sample()
                time.sleep(min(sample_every, max(0.0, end - time.monotonic())))
            for s in samplers.values():
                s.sample()
                s.finish()
            node = controller.nodes().get("bench", {})
            alive = agent.alive()
    finally:
        for proc in (agent, floor):
            if proc is not None:
                proc.stop()
        log = agent.log() if agent is not None else ""
        shutil.rmtree(work, ignore_errors=True)
    a, f = samplers["agent"], samplers["floor"]
    return {
        "duration_s": duration, "online_after_s": online_after, "agent_alive": alive, "node_state": node.get("state"),
        "agent_rss_max_mb": max(a.rss_mb), "agent_rss_mean_mb": sum(a.rss_mb) / len(a.rss_mb),
        "agent_rss_first_mb": a.rss_mb[0], "agent_cpu_pct": a.cpu_pct, "agent_children": a.children_seen,
        "floor_rss_max_mb": max(f.rss_mb), "floor_cpu_pct": f.cpu_pct, "samples": len(a.rss_mb),
        "agent_log_lines": len(log.splitlines()), "agent_log_bytes": len(log),
    }


def report(r: dict[str, Any]) -> None:
    if "error" in r:
        print(f"NOT RUN: {r['error']}")
        return
    print()
    print(f"== one real agent, idle, {r['duration_s']:g} s ({r['samples']} samples; "
          f"{'alive' if r['agent_alive'] else 'EXITED'}, node {r['node_state']}, children seen: {r['agent_children']}, "
          f"log {r['agent_log_lines']} lines / {r['agent_log_bytes']} bytes)")
    print(f"agent RSS: max {r['agent_rss_max_mb']:.1f} MB (first sample {r['agent_rss_first_mb']:.1f}, "
          f"mean {r['agent_rss_mean_mb']:.1f}); CPU {r['agent_cpu_pct']:.2f} % of one core (resolution "
          f"{100 / CLK_TCK / r['duration_s']:.2f} %: 1/CLK_TCK over the window)")
    print(f"floor, bare `python -c 'import time; time.sleep(...)'` ({sys.executable}): RSS "
          f"{r['floor_rss_max_mb']:.1f} MB, CPU {r['floor_cpu_pct']:.2f} %")
    print(f"agent RSS vs bare interpreter: {r['agent_rss_max_mb'] / r['floor_rss_max_mb']:.1f}x "
          f"(+{r['agent_rss_max_mb'] - r['floor_rss_max_mb']:.1f} MB)")
    rss_ok, cpu_ok = r["agent_rss_max_mb"] <= GOAL_RSS_MB, r["agent_cpu_pct"] <= GOAL_CPU_PCT
    print(f"goal: RSS <= {GOAL_RSS_MB:.0f} MB: {'MET' if rss_ok else 'NOT MET'}; "
          f"CPU <= {GOAL_CPU_PCT} %: {'MET' if cpu_ok else 'NOT MET'}")


REPO_LABS = Path(__file__).resolve().parents[1] / "labs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.agent_footprint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="sampling window in seconds (default 60)")
    parser.add_argument("--sample-every", type=float, default=1.0, help="seconds between samples (default 1)")
    add_database_option(parser)
    args = parser.parse_args(argv)
    print_header("labfleet benchmark: agent footprint", args)
    result = run(duration=args.duration, sample_every=args.sample_every, database=args.database)
    report(result)
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    raise SystemExit(main())
