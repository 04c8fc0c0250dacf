"""``terminal.open``: relay the attendee's shared terminal to the controller (node_agent/terminal.py)."""

from __future__ import annotations

from typing import Any

from node_agent.commands import CommandContext, command
from node_agent.errors import CommandError
from node_agent.protocol import TerminalOpenArgs


@command("terminal.open", TerminalOpenArgs)
def terminal_open(ctx: CommandContext, args: TerminalOpenArgs) -> dict[str, Any]:
    if ctx.terminal is None:
        raise CommandError("this agent has no terminal service")
    return ctx.terminal.open(args.session)
