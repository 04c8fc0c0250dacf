"""Commands through the registry: every failure becomes a failed result, never an exception."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from node_agent import __version__
from node_agent.commands import CommandContext, run_command
from node_agent.protocol import CommandMessage


def message(kind: str, args: dict | None = None, timeout: float = 5.0) -> CommandMessage:
    return CommandMessage(id="c1", kind=kind, args=args or {}, deadline="2099-01-01T00:00:00Z", timeout=timeout)


@pytest.fixture
def ctx() -> CommandContext:
    return CommandContext(node_name="lab-07")


def layout_from_mountinfo() -> tuple[str, set[str]]:
    """The cgroup layout as mount(8) sees it, computed without the agent's code."""
    fstypes: dict[str, str] = {}
    v1: set[str] = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, rest = line.partition(" - ")
        fstype, _source, options = rest.split(" ")[:3]
        fstypes[fields.split(" ")[4]] = fstype
        if fstype == "cgroup":
            v1 |= {o for o in options.split(",") if o not in ("rw", "ro") and not o.startswith("name=")}
    if fstypes.get("/sys/fs/cgroup") == "cgroup2":
        return "v2", v1
    return ("hybrid" if fstypes.get("/sys/fs/cgroup/unified") == "cgroup2" else "v1"), v1


def test_ping_answers_with_the_agent_pid(ctx: CommandContext) -> None:
    result = run_command(ctx, message("ping", {"delay_ms": 20}))

    assert result.ok, result.error
    assert result.output == {"pong": True, "agent_pid": os.getpid(), "node_name": "lab-07"}
    assert result.duration_ms >= 20
    assert result.started_at.endswith("Z") and result.finished_at >= result.started_at


def test_unknown_kind_is_a_failed_result(ctx: CommandContext) -> None:
    result = run_command(ctx, message("rm-rf", {}))

    assert not result.ok
    assert "unknown command kind 'rm-rf'" in result.error


@pytest.mark.parametrize(("args", "named"), [
    ({"delay_ms": "5"}, "delay_ms"),
    ({"delay_ms": True}, "delay_ms"),
    ({"delay_ms": -1}, "delay_ms"),
    ({"delay_ms": 60_001}, "delay_ms"),
    ({"delay": 5}, "delay"),
])
def test_bad_arguments_are_a_failed_result_naming_the_argument(ctx: CommandContext, args: dict, named: str) -> None:
    result = run_command(ctx, message("ping", args))

    assert not result.ok
    assert result.error.startswith("bad arguments for ping") and named in result.error


def test_a_command_past_its_timeout_fails(ctx: CommandContext) -> None:
    started = time.monotonic()
    result = run_command(ctx, message("ping", {"delay_ms": 5_000}, timeout=0.2))

    assert not result.ok and result.error == "timed out after 0.2s"
    assert time.monotonic() - started < 2
    ctx.shutdown.set()  # release the handler thread still sleeping


def test_shutdown_interrupts_a_sleeping_ping(ctx: CommandContext) -> None:
    threading.Timer(0.1, ctx.shutdown.set).start()
    result = run_command(ctx, message("ping", {"delay_ms": 10_000}, timeout=30))
    assert not result.ok and "shutting down" in result.error


def test_output_larger_than_the_limit_is_replaced_by_a_preview() -> None:
    ctx = CommandContext(node_name="x" * 3000, output_limit_bytes=1024)

    result = run_command(ctx, message("ping"))

    assert result.ok
    assert result.output["truncated"] is True and result.output["size_bytes"] > 3000
    assert result.output["preview"].startswith('{"pong":true')
    assert len(json.dumps(result.output)) <= 1024


def test_collect_state_reads_this_machine(ctx: CommandContext) -> None:
    result = run_command(ctx, message("collect-state"))

    assert result.ok, result.error
    state = result.output
    layout, v1_mounted = layout_from_mountinfo()
    assert state["cgroup"]["layout"] == layout == "hybrid"
    assert set(state["cgroup"]["v1_controllers"]) == v1_mounted
    assert state["cgroup"]["v2_controllers"] == Path("/sys/fs/cgroup/unified/cgroup.controllers").read_text().split()
    assert state["namespaces"] == ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"]
    assert state["seccomp"]["supported"] is True and "errno" in state["seccomp"]["actions_avail"]
    assert state["hostname"] == os.uname().nodename and state["kernel_release"] == os.uname().release
    assert state["agent_version"] == __version__
    assert state["mem_total_kb"] > 0 and state["uptime_seconds"] > 0 and len(state["loadavg"]) == 3


def test_agent_restart_asks_the_daemon_via_the_context(ctx: CommandContext) -> None:
    result = run_command(ctx, message("agent-restart"))

    assert result.ok and result.output == {"restarting": True}
    assert ctx.restart_requested.is_set()
