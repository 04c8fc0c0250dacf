"""``message.notice``: a message or a lab hint from the instructor (``labfleet message``), kept until read;
``message.read``: the attendee marked one read on their page (the same message box as ``lab status``)."""

from __future__ import annotations

from typing import Any

from node_agent.commands import CommandContext, command
from node_agent.errors import CommandError
from node_agent.protocol import MessageNoticeArgs, MessageReadArgs


def _box(ctx: CommandContext):
    box = getattr(ctx.labs, "message_box", None)
    if box is None:
        raise CommandError("this agent has no message box (no lab catalog)")
    return box


@command("message.notice", MessageNoticeArgs)
def message_notice(ctx: CommandContext, args: MessageNoticeArgs) -> dict[str, Any]:
    return _box(ctx).receive(args.message_id, text=args.text, kind=args.kind, by=args.by, lab=args.lab, step=args.step)


@command("message.read", MessageReadArgs)
def message_read(ctx: CommandContext, args: MessageReadArgs) -> dict[str, Any]:
    return _box(ctx).mark_read(args.message_id)
