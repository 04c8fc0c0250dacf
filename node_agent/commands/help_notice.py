"""``help.notice``: the instructor claimed, answered or resolved this node's raised hand (``lab help``)."""

from __future__ import annotations

from typing import Any

from node_agent.commands import CommandContext, command
from node_agent.errors import CommandError
from node_agent.protocol import HelpNoticeArgs


@command("help.notice", HelpNoticeArgs)
def help_notice(ctx: CommandContext, args: HelpNoticeArgs) -> dict[str, Any]:
    desk = getattr(ctx.labs, "help_desk", None)
    if desk is None:
        raise CommandError("this agent has no help desk (no lab catalog)")
    return desk.notice(args.help_id, args.event, args.by, args.text)
