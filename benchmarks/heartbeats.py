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
one after the other for ``--floor-seconds`` (median / p99).
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


# -- one client process -------------------------------------------------------

async def _beat(http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes) -> int:
    async with http.post(url, data=body, headers=headers) as r:
        payload = await r.read()
        if r.status == 200 and "send_state" not in json.loads(payload):
            return -1
        return r.status


async def _agent_loop(agent: SimAgent, http: aiohttp.ClientSession, *, interval: float, jitter: float,
                      start: float, count_from: float, end: float, timeout: float, stats: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    url = agent.base_url + f"/api/agent/v1/nodes/{agent.node_id}/heartbeat"
    headers = {**agent.headers, "Content-Type": "application/json"}
    rng = random.Random(agent.node_id)
    next_t = start + rng.uniform(0, interval)
    while next_t < end:
        now = loop.time()
        if next_t > now:
            await asyncio.sleep(next_t - now)
        counted = next_t >= count_from
        sent = loop.time()
        if counted:
            stats["lag"].append(sent - next_t)
        agent.seq += 1
        body = json.dumps({"seq": agent.seq, "digest": agent.digest}).encode()
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                status = await _beat(http, url, headers, body)
        except TimeoutError:
            status = "timeout"
            stats["timeouts_at"].append(sent - start)
        except aiohttp.ClientError as exc:
            status = type(exc).__name__
        elapsed = time.perf_counter() - t0
        if counted:
            stats["sent"] += 1
            if status == 200:
                stats["latencies"].append(elapsed)
                if elapsed > GOAL_P99_S:
                    stats["slow_at"].append(sent - start)
            else:
                stats["failures"][str(status)] += 1
        next_t += interval * rng.uniform(1 - jitter, 1 + jitter)
        if next_t < loop.time() - interval:  # fell behind by more than one beat: skip, do not burst
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
                        start_wall: float, warmup: float, duration: float, timeout: float) -> dict[str, Any]:
    agents = [SimAgent.from_credentials(base_url, c) for c in creds]
    stats: dict[str, Any] = {"sent": 0, "latencies": [], "failures": Counter(), "lag": [], "skipped": 0,
                             "timeouts_at": [], "slow_at": []}
    loop = asyncio.get_running_loop()
    # Same wall-clock start in every process, expressed on this loop's clock.
    start = loop.time() + (start_wall - time.time())
    async with new_session(timeout=timeout + 5) as http:
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        stop, lags = asyncio.Event(), []
        monitor = asyncio.create_task(_loop_lag(stop, lags))
        await asyncio.gather(*(
            _agent_loop(a, http, interval=interval, jitter=jitter, start=start, count_from=start + warmup,
                        end=start + warmup + duration, timeout=timeout, stats=stats)
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
         jitter: float, timeout: float, client_procs: int, server_pid: int) -> dict[str, Any]:
    interval = len(creds) / rate
    start_wall = time.time() + 3.0  # time enough for the client processes to start
    options = {"interval": interval, "jitter": jitter, "start_wall": start_wall, "warmup": warmup,
               "duration": duration, "timeout": timeout}
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
        "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95), "p99_s": percentile(latencies, 99),
        "max_s": max(latencies) if latencies else float("nan"),
        "lag_p99_s": percentile(lag, 99), "loop_lag_p99_s": percentile(loop_lag, 99),
        "client_cpu_pct": [100 * p["cpu_s"] / (duration + warmup) for p in parts],
        "server_cpu_pct": server_cpu, "timeouts_at": timeouts_at, "slow_at": slow_at,
    }


def run(*, agents: int = 500, rate: float = 1200.0, duration: float = 20.0, warmup: float = 1.0, jitter: float = 0.1,
        timeout: float = 5.0, web_workers: tuple[int, ...] = (1, 2), client_procs: int | str = "auto",
        floor_seconds: float = 2.0, database: str = "sqlite") -> dict[str, Any]:
    runs = []
    with bench_controller(database, web_workers=web_workers[0]) as controller:
        enroll_token = create_enroll_token(controller, agents)

        async def enroll() -> list[tuple[str, str, str, str]]:
            async with new_session() as http:
                sims = await enroll_many(http, controller.url, enroll_token, agents, prefix="hb")
            return [a.credentials() for a in sims]

        creds = asyncio.run(enroll())
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
    add_database_option(parser)
    args = parser.parse_args(argv)
    print_header("labfleet benchmark: heartbeats", args)
    workers = tuple(int(w) for w in args.web_workers.split(","))
    run(agents=args.agents, rate=args.rate, duration=args.duration, warmup=args.warmup, jitter=args.jitter,
        timeout=args.timeout, web_workers=workers, client_procs=args.client_procs, floor_seconds=args.floor_seconds,
        database=args.database)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
