"""``message.notice``: a message or a lab hint from the instructor (``labfleet message``), kept until read."""

from __future__ import annotations

from typing import Any

from node_agent.commands import CommandContext, command
from node_agent.errors import CommandError
from node_agent.protocol import MessageNoticeArgs


@command("message.notice", MessageNoticeArgs)
def message_notice(ctx: CommandContext, args: MessageNoticeArgs) -> dict[str, Any]:
    box = getattr(ctx.labs, "message_box", None)
    if box is None:
        raise CommandError("this agent has no message box (no lab catalog)")
    return box.receive(args.message_id, text=args.text, kind=args.kind, by=args.by, lab=args.lab, step=args.step)
