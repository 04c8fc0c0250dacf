"""Run every benchmark and print one Markdown table (metric, labfleet, baseline, ratio, goal, met?).

``python -m benchmarks.run_all [--quick] [--database postgresql]``. ``--quick``: fan-out 1 round,
heartbeats 5 s, agent footprint 15 s, CLI start-up 5 processes per command, stuck detection 5 passes,
web pages 5 runs, live updates 5 s per phase.
The table is meant to be pasted into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from benchmarks import agent_footprint, cli, fanout, heartbeats, stuck, web
from benchmarks.common import add_database_option, machine_info, percentile, print_header

Row = tuple[str, str, str, str, str, str]


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return "—"
    return f"{a / b:.2f}x" if a / b < 10 else f"{a / b:.0f}x"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def fanout_rows(out: dict[str, Any]) -> list[Row]:
    base, pick, n = out["baseline"], out["median_round"], out["nodes"]
    p95, total = out["p95_s"], out["total_s"]
    return [
        (f"fan-out, {n} long-polling agents: issue → result stored, p95 per node",
         f"{p95 * 1000:.0f} ms", f"{base['p95_s'] * 1000:.0f} ms (sequential loop, node reached p95)",
         _ratio(p95, base["p95_s"]), f"≤ {fanout.GOAL_P95_S * 1000:.0f} ms",
         _met(p95 <= fanout.GOAL_P95_S and out["all_ok"])),
        (f"fan-out, {n} agents: issue → all results stored (p50 per node {percentile(pick['stored'], 50) * 1000:.0f} ms)",
         f"{total * 1000:.0f} ms", f"{base['total_s'] * 1000:.0f} ms (sequential keep-alive loop, 1 request/node)",
         _ratio(total, base["total_s"]), "—", "—"),
    ]


def heartbeat_rows(out: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for r in out["runs"]:
        label = (f"heartbeats, {r['agents']} agents at {r['target_rate']:.0f}/s target, {r['web_workers']} web "
                 f"worker(s), {r['duration_s']:g} s")
        rows += [
            (f"{label}: achieved", f"{r['rate']:.0f}/s", f"{r['floor_rate']:.0f}/s (1 sequential keep-alive client)",
             _ratio(r["rate"], r["floor_rate"]), f"≥ {heartbeats.GOAL_RATE:.0f}/s",
             _met(r["rate"] >= heartbeats.GOAL_RATE)),
            (f"{label}: latency p99 (p50 {r['p50_s'] * 1000:.1f} ms)", f"{r['p99_s'] * 1000:.1f} ms",
             f"{r['floor_p99_s'] * 1000:.2f} ms (same client, p99; median {r['floor_median_s'] * 1000:.2f} ms)",
             _ratio(r["p99_s"], r["floor_p99_s"]), f"≤ {heartbeats.GOAL_P99_S * 1000:.0f} ms",
             _met(r["p99_s"] <= heartbeats.GOAL_P99_S)),
            (f"{label}: dropped (no 200 within {r['timeout_s']:g} s)", f"{r['dropped']} of {r['sent']}", "0", "—", "0",
             _met(r["dropped"] == 0)),
        ]
    return rows


def footprint_rows(out: dict[str, Any]) -> list[Row]:
    if "error" in out:
        return [("agent footprint", "not run", out["error"], "—", "—", "—")]
    d = out["duration_s"]
    return [
        (f"one real agent, idle {d:g} s: max RSS", f"{out['agent_rss_max_mb']:.1f} MB",
         f"{out['floor_rss_max_mb']:.1f} MB (bare python interpreter)",
         _ratio(out["agent_rss_max_mb"], out["floor_rss_max_mb"]), f"≤ {agent_footprint.GOAL_RSS_MB:.0f} MB",
         _met(out["agent_rss_max_mb"] <= agent_footprint.GOAL_RSS_MB)),
        (f"one real agent, idle {d:g} s: CPU (5 s heartbeats + long-poll)", f"{out['agent_cpu_pct']:.2f} %",
         f"{out['floor_cpu_pct']:.2f} % (bare python interpreter)", _ratio(out["agent_cpu_pct"], out["floor_cpu_pct"]),
         f"≤ {agent_footprint.GOAL_CPU_PCT} %", _met(out["agent_cpu_pct"] <= agent_footprint.GOAL_CPU_PCT)),
    ]


def cli_rows(out: dict[str, Any]) -> list[Row]:
    m, runs = out["median_s"], out["runs"]
    old = f"{m['old']:.3f} s (old import: controller.app + models + cli.main; floor `python -c pass` {m['floor']:.3f} s)"
    return [
        (f"`labfleet --help`, fresh process, median of {runs}", f"{m['help']:.3f} s", old,
         _ratio(m["help"], m["old"]), f"≤ {cli.GOAL_S} s", _met(m["help"] <= cli.GOAL_S)),
        (f"`labfleet status`, {out['nodes']} nodes over TLS, fresh process, median of {runs}", f"{m['status']:.3f} s",
         old, _ratio(m["status"], m["old"]), f"≤ {cli.GOAL_S} s", _met(m["status"] <= cli.GOAL_S)),
    ]


def stuck_rows(out: dict[str, Any]) -> list[Row]:
    return [
        (f"stuck detection, one pass over {out['nodes']} nodes ({out['progress']} progress rows, "
         f"{out['steady']['flagged']} flagged): median",
         f"{out['pass_ms']:.0f} ms", f"{out['floor_ms']:.0f} ms (plain SELECT of the same rows)",
         _ratio(out["pass_ms"], out["floor_ms"]), f"≤ {stuck.GOAL_PASS_MS:.0f} ms",
         _met(out["pass_ms"] <= stuck.GOAL_PASS_MS)),
    ]


def web_rows(out: dict[str, Any]) -> list[Row]:
    api, size = out["median_ms"]["api"], f"{out['nodes']} nodes × {out['steps']} steps"
    return [
        (f"web page {label}, {size}: server time median", f"{out['median_ms'][name]:.0f} ms",
         f"{api:.0f} ms (JSON API: nodes + progress, every page)", _ratio(out["median_ms"][name], api),
         f"≤ {web.GOAL_RATIO:g}x", _met(out["ratio"][name] <= web.GOAL_RATIO))
        for name, label in (("room", "/room"), ("matrix", "/matrix"), ("matrix_data", "/matrix/data"))
    ]


def live_rows(out: dict[str, Any]) -> list[Row]:
    p, q = out["p95_ms"], out["ratio"]
    kind = {"target": "target", "held": "held (the target saturated the controller)"}.get(out.get("kind", ""), "target")
    load = (f"{out['dashboards']} dashboards, {out['rate']:.0f} state changes/s {kind} "
            f"({min(out['rate_a'], out['rate_b']):.0f}/s taken)")
    return [
        (f"live: change -> dashboard event p95, {load}", f"{p['events']:.0f} ms",
         f"{p['polls_b']:.0f} ms (agent long-poll delivery p95, same load)", _ratio(p["events"], p["polls_b"]),
         f"≤ {web.LIVE_GOAL_RATIO:g}x", _met(q["event_vs_poll"] <= web.LIVE_GOAL_RATIO)),
        (f"live: agent long-poll delivery p95 with {load}", f"{p['polls_b']:.0f} ms",
         f"{p['polls_a']:.0f} ms (same load, no dashboards)", _ratio(p["polls_b"], p["polls_a"]),
         f"≤ {web.LIVE_LOAD_GOAL:g}x", _met(q["poll_load"] <= web.LIVE_LOAD_GOAL)),
        (f"live: GET /room p95 with {load}", f"{p['pages_b']:.0f} ms",
         f"{p['pages_a']:.0f} ms (same load, no dashboards)", _ratio(p["pages_b"], p["pages_a"]),
         f"≤ {web.LIVE_LOAD_GOAL:g}x", _met(q["page_load"] <= web.LIVE_LOAD_GOAL)),
    ]


def table(rows: list[Row]) -> str:
    lines = ["| metric | labfleet | baseline (same run) | ratio | goal | met? |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fan-out 1 round, heartbeats 5 s, footprint 15 s, CLI 5 runs, stuck 5 passes")
    add_database_option(parser)
    args = parser.parse_args(argv)
    print_header("labfleet benchmarks", args)
    started = time.monotonic()
    rows: list[Row] = []

    print("\n## fan-out", flush=True)
    # Two web processes: a room runs with Redis, where the controller starts two by default.
    out = fanout.run(rounds=1 if args.quick else 3, database=args.database, web_workers=2)
    fanout.report(out)
    rows += fanout_rows(out)

    print("\n## heartbeats", flush=True)
    # The goal's rate with a margin, then beyond what two cores shared with the client can hold.
    for rate in (1050.0, 1200.0):
        out = heartbeats.run(rate=rate, duration=5.0 if args.quick else 20.0, database=args.database,
                             web_workers=(2,), client_procs=1)
        rows += heartbeat_rows(out)

    print("\n## agent footprint", flush=True)
    out = agent_footprint.run(duration=15.0 if args.quick else 60.0, database=args.database)
    agent_footprint.report(out)
    rows += footprint_rows(out)

    print("\n## CLI start-up", flush=True)
    out = cli.run(runs=5 if args.quick else 15, database=args.database)
    cli.report(out)
    rows += cli_rows(out)

    print("\n## stuck detection", flush=True)
    out = stuck.run(nodes=500, passes=5 if args.quick else 20, database=args.database)
    stuck.report(out)
    rows += stuck_rows(out)

    print("\n## web pages", flush=True)
    out = web.run(nodes=500, runs=5 if args.quick else 15, database=args.database)
    web.report(out)
    rows += web_rows(out)

    print("\n## live updates", flush=True)
    for out in web.live_runs(seconds=5.0 if args.quick else 15.0, database=args.database):
        web.live_report(out)
        rows += live_rows(out)

    print(f"\n## results ({args.database}{', quick' if args.quick else ''}; {time.monotonic() - started:.0f} s)\n")
    print(machine_info() + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
