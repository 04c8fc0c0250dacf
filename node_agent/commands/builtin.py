"""The built-in command kinds: ``ping``, ``collect-state``, ``agent-restart``."""

from __future__ import annotations

import os
from typing import Any

from node_agent.commands import CommandContext, command
from node_agent.errors import CommandError
from node_agent.protocol import NoArgs, PingArgs
from node_agent.state import collect_state


@command("ping", PingArgs)
def ping(ctx: CommandContext, args: PingArgs) -> dict[str, Any]:
    """Answer after ``delay_ms``; a shutdown of the agent cuts the delay short (and fails the ping)."""
    if args.delay_ms and ctx.shutdown.wait(args.delay_ms / 1000):
        raise CommandError("interrupted: the agent is shutting down")
    return {"pong": True, "agent_pid": os.getpid(), "node_name": ctx.node_name}


@command("collect-state", NoArgs)
def collect_state_command(ctx: CommandContext, args: NoArgs) -> dict[str, Any]:
    """The full state snapshot, the same the heartbeat's ``send_state`` uploads."""
    return collect_state(ctx.labs)


@command("agent-restart", NoArgs)
def agent_restart(ctx: CommandContext, args: NoArgs) -> dict[str, Any]:
    """Ask the daemon to re-exec itself once this result has reached the controller."""
    ctx.restart_requested.set()
    return {"restarting": True}
