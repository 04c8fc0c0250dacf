"""Heartbeats: many simulated agents beating at a target aggregate rate; achieved rate, latency, drops.

500 agents (``--agents``) each beat every ``agents / rate`` seconds (default 500/1200 s), with
+-``--jitter`` of randomness and a random phase, for ``--duration`` seconds (the first
``--warmup`` seconds, which open the keep-alive connections, are not counted). A beat that does
not get a 200 within ``--timeout`` is dropped. Each agent waits for its answer before its next
beat, as the real agent does; an agent that falls more than one interval behind skips ahead
rather than bursting, so a slow controller shows as a lower achieved rate, never as a pile-up.

The simulated agents can run in more than one client process (``--client-procs``, merged
statistics): on a 2-core box one asyncio process may itself be the bottleneck. The client's CPU
and its scheduling lag are printed so you can tell.

Baseline, same controller, same run: the keep-alive loopback floor, one client sending beats
one after the other for ``--floor-seconds`` (median / p99). These runs measure the controller
without pacing (``LABFLEET_HEARTBEAT_BUDGET=0``).

``--capacity``: the goals as ratios to that floor (docs/benchmarks.md). With pacing off, the target
rate grows by ``--step`` until the controller no longer keeps up (achieved < 95 % of the target, or
a beat dropped): capacity is the highest rate it kept up with. Then, with the controller's default
budget (``LABFLEET_HEARTBEAT_BUDGET``, per web process; ``--budget`` to change it), a run at 80 % of
capacity and one at twice capacity, where the controller answers with stretched intervals and the
simulated agents obey them. The simulated agents beat faster than the interval they enrolled with
(that is how a few hundred of them make this load): they apply the stretch the answer asks for,
the answered interval over their own, to their own period, and report the interval they were told.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import aiohttp

from benchmarks.common import (
    CpuMeter,
    add_database_option,
    bench_controller,
    create_enroll_token,
    median,
    percentile,
    print_header,
    restart_web,
)
from benchmarks.sim_agents import SimAgent, enroll_many, new_session

GOAL_RATE = 1000.0
GOAL_P99_S = 0.050
# --capacity: goals as ratios to the floor measured in the same run (issue 14).
GOAL_CAPACITY_X = 3.0       # capacity >= 3x one sequential keep-alive client's rate
GOAL_P99_AT_80_X = 10.0     # p99 at 80 % of capacity <= 10x the floor's p99
GOAL_P99_OVERLOAD_S = 1.0   # at 2x capacity: none dropped, p99 <= 1 s
PACED_WARMUP_S = 3.0       # seconds not counted at the start of each paced point
KEEPS_UP = 0.95             # achieved / target at or above this: the controller keeps up


# -- one client process -------------------------------------------------------

async def _beat(http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes) -> int:
    status, _ = await _beat_answer(http, url, headers, body)
    return status


async def _beat_answer(http: aiohttp.ClientSession, url: str, headers: dict[str, str],
                       body: bytes) -> tuple[int, float | None]:
    """The status and the next interval the controller answered with."""
    async with http.post(url, data=body, headers=headers) as r:
        payload = await r.read()
        if r.status != 200:
            return r.status, None
        answer = json.loads(payload)
        if "send_state" not in answer:
            return -1, None
        return r.status, answer.get("heartbeat_interval")


async def _agent_loop(agent: SimAgent, http: aiohttp.ClientSession, *, interval: float, jitter: float,
                      start: float, count_from: float, end: float, timeout: float, stats: dict[str, Any],
                      own_interval: float = 0.0) -> None:
    """``own_interval`` > 0: the interval the node enrolled with; obey the stretch each answer asks for."""
    loop = asyncio.get_running_loop()
    url = agent.base_url + f"/api/agent/v1/nodes/{agent.node_id}/heartbeat"
    headers = {**agent.headers, "Content-Type": "application/json"}
    rng = random.Random(agent.node_id)
    next_t = start + rng.uniform(0, interval)
    stretch = 1.0
    while next_t < end:
        now = loop.time()
        if next_t > now:
            await asyncio.sleep(next_t - now)
        counted = next_t >= count_from
        sent = loop.time()
        if counted:
            stats["lag"].append(sent - next_t)
        agent.seq += 1
        beat: dict[str, Any] = {"seq": agent.seq, "digest": agent.digest}
        if own_interval:
            beat["interval"] = own_interval * stretch
        body = json.dumps(beat).encode()
        t0 = time.perf_counter()
        answered = None
        try:
            async with asyncio.timeout(timeout):
                status, answered = await _beat_answer(http, url, headers, body)
        except TimeoutError:
            status = "timeout"
            stats["timeouts_at"].append(sent - start)
        except aiohttp.ClientError as exc:
            status = type(exc).__name__
        elapsed = time.perf_counter() - t0
        if counted:
            stats["sent"] += 1
            stats["demand"] += stretch  # beats this one stands for at the node's own interval
            if status == 200:
                stats["latencies"].append(elapsed)
                if elapsed > GOAL_P99_S:
                    stats["slow_at"].append(sent - start)
            else:
                stats["failures"][str(status)] += 1
        if own_interval and answered:
            stretch = max(1.0, answered / own_interval)
        next_t += interval * stretch * rng.uniform(1 - jitter, 1 + jitter)
        if next_t < loop.time() - interval * stretch:  # fell behind by more than one beat: skip, do not burst
            stats["skipped"] += 1 if next_t >= count_from else 0
            next_t = loop.time()


async def _loop_lag(stop: asyncio.Event, lags: list[float], period: float = 0.01) -> None:
    """How late this process's event loop wakes up: the client's own saturation, apart from the server."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(period)
        lags.append(loop.time() - t - period)


async def _client_async(base_url: str, creds: list[tuple[str, str, str, str]], *, interval: float, jitter: float,
                        start_wall: float, warmup: float, duration: float, timeout: float,
                        own_interval: float = 0.0) -> dict[str, Any]:
    agents = [SimAgent.from_credentials(base_url, c) for c in creds]
    stats: dict[str, Any] = {"sent": 0, "latencies": [], "failures": Counter(), "lag": [], "skipped": 0,
                             "timeouts_at": [], "slow_at": [], "demand": 0.0}
    loop = asyncio.get_running_loop()
    # Same wall-clock start in every process, expressed on this loop's clock.
    start = loop.time() + (start_wall - time.time())
    async with new_session(timeout=timeout + 5) as http:
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        stop, lags = asyncio.Event(), []
        monitor = asyncio.create_task(_loop_lag(stop, lags))
        await asyncio.gather(*(
            _agent_loop(a, http, interval=interval, jitter=jitter, start=start, count_from=start + warmup,
                        end=start + warmup + duration, timeout=timeout, stats=stats, own_interval=own_interval)
            for a in agents))
        stop.set()
        await monitor
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
    stats["loop_lag"] = lags
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    stats["cpu_s"] = cpu
    stats["failures"] = dict(stats["failures"])
    return stats


def client_process(base_url: str, creds: list[tuple[str, str, str, str]], options: dict[str, Any]) -> dict[str, Any]:
    """Entry point of one client process."""
    return asyncio.run(_client_async(base_url, creds, **options))


# -- the floor ----------------------------------------------------------------

async def _floor(base_url: str, creds: tuple[str, str, str, str], seconds: float) -> list[float]:
    agent = SimAgent.from_credentials(base_url, creds)
    url = agent.base_url + f"/api/agent/v1/nodes/{agent.node_id}/heartbeat"
    headers = {**agent.headers, "Content-Type": "application/json"}
    latencies: list[float] = []
    async with new_session(limit=1, timeout=10) as http:
        await _beat(http, url, headers, b'{"seq": 1, "digest": ""}')  # connect outside the timing
        end = time.monotonic() + seconds
        seq = 1
        while time.monotonic() < end and len(latencies) < 1_000_000:
            seq += 1
            body = json.dumps({"seq": seq, "digest": agent.digest}).encode()
            t0 = time.perf_counter()
            status = await _beat(http, url, headers, body)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"floor heartbeat answered {status}")
    return latencies


# -- one load run ---------------------------------------------------------------

def load(base_url: str, creds: list[tuple[str, str, str, str]], *, rate: float, duration: float, warmup: float,
         jitter: float, timeout: float, client_procs: int, server_pid: int, own_interval: float = 0.0
         ) -> dict[str, Any]:
    interval = len(creds) / rate
    start_wall = time.time() + 3.0  # time enough for the client processes to start
    options = {"interval": interval, "jitter": jitter, "start_wall": start_wall, "warmup": warmup,
               "duration": duration, "timeout": timeout, "own_interval": own_interval}
    shares = [creds[i::client_procs] for i in range(client_procs)]
    meter = CpuMeter(server_pid)
    # Even one client runs in its own process: this one only watches the controller's CPU.
    with ProcessPoolExecutor(client_procs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(client_process, base_url, share, options) for share in shares]
        time.sleep(max(0.0, start_wall - time.time() + warmup))
        meter.start()
        parts = [f.result(timeout=warmup + duration + timeout + 120) for f in futures]
    server_cpu = meter.stop()
    latencies = [x for p in parts for x in p["latencies"]]
    failures: Counter[str] = Counter()
    for p in parts:
        failures.update(p["failures"])
    sent = sum(p["sent"] for p in parts)
    lag = [x for p in parts for x in p["lag"]]
    loop_lag = [x for p in parts for x in p["loop_lag"]]
    timeouts_at = sorted(x for p in parts for x in p["timeouts_at"])
    slow_at = sorted(x for p in parts for x in p["slow_at"])
    return {
        "agents": len(creds), "target_rate": rate, "duration_s": duration, "client_procs": client_procs, "timeout_s": timeout,
        "sent": sent, "ok": len(latencies), "dropped": sent - len(latencies), "failures": dict(failures),
        "skipped": sum(p["skipped"] for p in parts), "rate": len(latencies) / duration,
        "demand_rate": sum(p["demand"] for p in parts) / duration,
        "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95), "p99_s": percentile(latencies, 99),
        "max_s": max(latencies) if latencies else float("nan"),
        "lag_p99_s": percentile(lag, 99), "loop_lag_p99_s": percentile(loop_lag, 99),
        "client_cpu_pct": [100 * p["cpu_s"] / (duration + warmup) for p in parts],
        "server_cpu_pct": server_cpu, "timeouts_at": timeouts_at, "slow_at": slow_at,
    }


def enrolled_credentials(controller: Any, agents: int) -> list[tuple[str, str, str, str]]:
    """Enroll ``agents`` simulated agents; their credentials for the load clients."""
    enroll_token = create_enroll_token(controller, agents)

    async def enroll() -> list[tuple[str, str, str, str]]:
        async with new_session() as http:
            sims = await enroll_many(http, controller.url, enroll_token, agents, prefix="hb")
        return [a.credentials() for a in sims]

    return asyncio.run(enroll())


def run(*, agents: int = 500, rate: float = 1200.0, duration: float = 20.0, warmup: float = 1.0, jitter: float = 0.1,
        timeout: float = 5.0, web_workers: tuple[int, ...] = (1, 2), client_procs: int | str = "auto",
        floor_seconds: float = 2.0, database: str = "sqlite") -> dict[str, Any]:
    runs = []
    with bench_controller(database, web_workers=web_workers[0], start=False) as controller:
        controller.extra_env["LABFLEET_HEARTBEAT_BUDGET"] = "0"  # the controller's own throughput, unpaced
        controller.start_web()
        creds = enrolled_credentials(controller, agents)
        for i, workers in enumerate(web_workers):
            if i > 0:
                restart_web(controller, web_workers=workers)
            floor = asyncio.run(_floor(controller.url, creds[0], floor_seconds))
            print(f"[{workers} web worker(s)] floor: one keep-alive client, {len(floor)} sequential beats in "
                  f"{floor_seconds:g} s: median {median(floor) * 1000:.2f} ms, p99 {percentile(floor, 99) * 1000:.2f} ms",
                  flush=True)
            tries = [1, 2] if client_procs == "auto" else [int(client_procs)]
            best = None
            for procs in tries:
                result = load(controller.url, creds, rate=rate, duration=duration, warmup=warmup, jitter=jitter,
                              timeout=timeout, client_procs=procs, server_pid=controller.web.pid)
                result.update({"web_workers": workers, "floor_median_s": median(floor),
                               "floor_p99_s": percentile(floor, 99), "floor_rate": len(floor) / floor_seconds})
                print_run(result)
                if best is None or result["rate"] > best["rate"]:
                    best = result
                if not client_busy(result):
                    break
            if len(tries) > 1 and best is not None:
                print(f"  -> reported: the run with {best['client_procs']} client process(es)")
            runs.append(best)
    return {"database": database, "runs": runs}


def run_capacity(*, agents: int = 500, duration: float = 15.0, search_duration: float = 8.0, warmup: float = 1.0,
                 jitter: float = 0.1, timeout: float = 5.0, web_workers: int = 2, client_procs: int = 2,
                 floor_seconds: float = 3.0, step: float = 1.25, budget: float | None = None,
                 database: str = "sqlite") -> dict[str, Any]:
    """Floor, capacity (pacing off), then 80 % and 2x capacity with pacing on (see the module's doc)."""
    own_interval = 5.0
    with bench_controller(database, web_workers=web_workers, heartbeat_interval=own_interval,
                          start=False) as controller:
        controller.extra_env["LABFLEET_HEARTBEAT_BUDGET"] = "0"
        controller.start_web()
        creds = enrolled_credentials(controller, agents)
        asyncio.run(_floor(controller.url, creds[0], 1.0))  # warm the process up (imports, caches)
        floor = asyncio.run(_floor(controller.url, creds[0], floor_seconds))
        floor_rate, floor_p99 = len(floor) / floor_seconds, percentile(floor, 99)
        print(f"floor: one sequential keep-alive client: {floor_rate:.0f} beats/s, median "
              f"{median(floor) * 1000:.2f} ms, p99 {floor_p99 * 1000:.2f} ms", flush=True)

        def point(rate: float, seconds: float, *, obey: bool, settle: float = warmup) -> dict[str, Any]:
            r = load(controller.url, creds, rate=rate, duration=seconds, warmup=settle, jitter=jitter,
                     timeout=timeout, client_procs=client_procs, server_pid=controller.web.pid,
                     own_interval=own_interval if obey else 0.0)
            r.update({"web_workers": web_workers, "floor_median_s": median(floor), "floor_p99_s": floor_p99,
                      "floor_rate": floor_rate})
            keeps = r["rate"] >= KEEPS_UP * rate and r["dropped"] == 0
            print(f"  target {rate:.0f}/s: achieved {r['rate']:.0f}/s ({'keeps up' if keeps else 'falls behind'}), "
                  f"p50 {r['p50_s'] * 1000:.1f} ms, p99 {r['p99_s'] * 1000:.1f} ms, dropped {r['dropped']}, "
                  f"controller CPU {r['server_cpu_pct']:.0f} %, client CPU "
                  f"{' + '.join(f'{c:.0f} %' for c in r['client_cpu_pct'])}, loop lag p99 "
                  f"{r['loop_lag_p99_s'] * 1000:.0f} ms", flush=True)
            r["keeps_up"] = keeps
            return r

        print(f"capacity search, pacing off, {agents} agents, {web_workers} web processes, "
              f"{search_duration:g} s per point, x{step:g} per step:", flush=True)
        rate, capacity, search = floor_rate, None, []
        while True:
            r = point(rate, search_duration, obey=False)
            search.append(r)
            if not r["keeps_up"]:
                break
            capacity = r
            rate *= step
        if capacity is None:
            capacity = search[0]
        cap = capacity["rate"]
        print(f"capacity: {cap:.0f} beats/s = {cap / floor_rate:.2f}x the floor "
              f"(goal >= {GOAL_CAPACITY_X:g}x: {'MET' if cap / floor_rate >= GOAL_CAPACITY_X else 'NOT MET'})",
              flush=True)
        print("80 % of capacity, pacing off (what the controller itself does at that load):", flush=True)
        unpaced80 = point(0.8 * cap, duration, obey=False)

        controller.stop()
        controller.web = None
        if budget is None:
            controller.extra_env.pop("LABFLEET_HEARTBEAT_BUDGET", None)
        else:
            controller.extra_env["LABFLEET_HEARTBEAT_BUDGET"] = f"{budget:g}"
        controller.start_web()
        shown = "the default" if budget is None else f"{budget:g}/s"
        print(f"pacing on (LABFLEET_HEARTBEAT_BUDGET: {shown} per web process); agents obey the answer:", flush=True)
        asyncio.run(_floor(controller.url, creds[0], 1.0))
        # Not counted: the restarted web processes' first seconds (every node's token cache miss, new
        # threads) and the pacer's first windows (a node obeys at its next beat).
        at80 = point(0.8 * cap, duration, obey=True, settle=max(warmup, PACED_WARMUP_S))
        over = point(2.0 * cap, duration, obey=True, settle=max(warmup, PACED_WARMUP_S))
        over_stretch = over["demand_rate"] / over["rate"] if over["rate"] else float("nan")
        at80_stretch = at80["demand_rate"] / at80["rate"] if at80["rate"] else float("nan")
        p99_80_x = at80["p99_s"] / floor_p99
        unpaced_x = unpaced80["p99_s"] / floor_p99
        print(f"80 % of capacity ({0.8 * cap:.0f}/s), paced: served {at80['rate']:.0f} beats/s (mean stretch "
              f"{at80_stretch:.2f}x), p99 {at80['p99_s'] * 1000:.1f} ms = {p99_80_x:.1f}x the floor's p99 (goal <= "
              f"{GOAL_P99_AT_80_X:g}x: {'MET' if p99_80_x <= GOAL_P99_AT_80_X else 'NOT MET'}); dropped "
              f"{at80['dropped']}; unpaced: p99 {unpaced80['p99_s'] * 1000:.1f} ms = {unpaced_x:.1f}x "
              f"({'MET' if unpaced_x <= GOAL_P99_AT_80_X else 'NOT MET'})", flush=True)
        over_met = over["dropped"] == 0 and over["p99_s"] <= GOAL_P99_OVERLOAD_S
        print(f"2x capacity ({2 * cap:.0f}/s asked): served {over['rate']:.0f} beats/s standing for "
              f"{over['demand_rate']:.0f}/s (mean stretch {over_stretch:.1f}x); dropped {over['dropped']} of "
              f"{over['sent']}, p99 {over['p99_s'] * 1000:.0f} ms (goal 0 dropped, p99 <= "
              f"{GOAL_P99_OVERLOAD_S * 1000:.0f} ms: {'MET' if over_met else 'NOT MET'})", flush=True)
    return {"database": database, "floor_rate": floor_rate, "floor_p99_s": floor_p99,
            "floor_median_s": median(floor), "capacity": cap, "capacity_x": cap / floor_rate, "search": search,
            "at80": at80, "p99_at80_x": p99_80_x, "unpaced80": unpaced80, "at80_stretch": at80_stretch, "overload": over, "overload_stretch": over_stretch}


def client_busy(r: dict[str, Any]) -> bool:
    """Whether the simulated agents' own process(es) may have held the numbers down."""
    return max(r["client_cpu_pct"]) > 80 or r["loop_lag_p99_s"] > 0.02


def met(r: dict[str, Any]) -> bool:
    return r["rate"] >= GOAL_RATE and r["p99_s"] <= GOAL_P99_S and r["dropped"] == 0


def print_run(r: dict[str, Any]) -> None:
    cpu = " + ".join(f"{c:.0f} %" for c in r["client_cpu_pct"])
    busy = client_busy(r)
    print(f"[{r['web_workers']} web worker(s)] {r['agents']} agents, target {r['target_rate']:.0f}/s for "
          f"{r['duration_s']:g} s, simulated in {r['client_procs']} client process(es): client CPU {cpu} of a core, "
          f"event-loop lag p99 {r['loop_lag_p99_s'] * 1000:.1f} ms -> "
          + ("the client may be a bottleneck (busy or starved of CPU)" if busy else "the client is not the bottleneck"))
    print(f"  achieved {r['rate']:.0f} heartbeats/s; latency p50 {r['p50_s'] * 1000:.1f} ms, p95 "
          f"{r['p95_s'] * 1000:.1f} ms, p99 {r['p99_s'] * 1000:.1f} ms, max {r['max_s'] * 1000:.0f} ms; "
          f"controller CPU {r['server_cpu_pct']:.0f} % of a core")
    print(f"  sent {r['sent']}, 200 OK {r['ok']}, dropped {r['dropped']} {r['failures'] or ''}; "
          f"beats sent late p99 {r['lag_p99_s'] * 1000:.0f} ms, skipped by agents behind schedule: {r['skipped']}")
    if r["timeouts_at"]:
        t = r["timeouts_at"]
        print(f"  timeouts sent between t={t[0]:.1f} s and t={t[-1]:.1f} s (median t={median(t):.1f} s)")
    print(f"  goal >= {GOAL_RATE:.0f}/s, p99 <= {GOAL_P99_S * 1000:.0f} ms, none dropped: "
          f"{'MET' if met(r) else 'NOT MET'}; floor p99 {r['floor_p99_s'] * 1000:.2f} ms -> p99 ratio "
          f"{r['p99_s'] / r['floor_p99_s']:.1f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.heartbeats", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=500, help="simulated agents (default 500)")
    parser.add_argument("--rate", type=float, default=1200.0, help="target aggregate beats/s (default 1200)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds (default 20)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not counted at the start (default 1)")
    parser.add_argument("--jitter", type=float, default=0.1, help="relative jitter of each interval (default 0.1)")
    parser.add_argument("--timeout", type=float, default=5.0, help="a beat without answer after this is dropped")
    parser.add_argument("--web-workers", default="1,2", help="comma-separated web process counts (default 1,2)")
    parser.add_argument("--client-procs", default="auto",
                        help="client processes sharing the agents; auto (default): 1, and again with 2 if the "
                             "one client looks busy or starved of CPU (the better run is kept)")
    parser.add_argument("--floor-seconds", type=float, default=2.0, help="length of the floor measurement")
    parser.add_argument("--capacity", action="store_true",
                        help="floor, capacity search (pacing off), then 80 %% and 2x capacity with pacing on")
    parser.add_argument("--step", type=float, default=1.25, help="--capacity: rate factor per search step")
    parser.add_argument("--budget", type=float, default=None,
                        help="--capacity: LABFLEET_HEARTBEAT_BUDGET for the paced runs (default: the controller's)")
    add_database_option(parser)
    args = parser.parse_args(argv)
    print_header("labfleet benchmark: heartbeats", args)
    if args.capacity:
        procs = 2 if args.client_procs == "auto" else int(args.client_procs)
        run_capacity(agents=args.agents, duration=args.duration, warmup=args.warmup, jitter=args.jitter,
                     timeout=args.timeout, web_workers=int(args.web_workers.split(",")[-1]), client_procs=procs,
                     floor_seconds=max(args.floor_seconds, 3.0), step=args.step, budget=args.budget,
                     database=args.database)
        return 0
    workers = tuple(int(w) for w in args.web_workers.split(","))
    run(agents=args.agents, rate=args.rate, duration=args.duration, warmup=args.warmup, jitter=args.jitter,
        timeout=args.timeout, web_workers=workers, client_procs=args.client_procs, floor_seconds=args.floor_seconds,
        database=args.database)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
