"""The lab command kinds: ``lab.list``, ``lab.check``, ``lab.solve``, ``lab.reset``, ``lab.instructions``, ``lab.hint`` and ``inspect``."""

from __future__ import annotations

from typing import Any

from node_agent.commands import CommandContext, command
from node_agent.errors import CommandError
from node_agent.labs.service import ROOT, Caller
from node_agent.protocol import LabArgs, LabHintArgs, LabResetArgs, NoArgs

# The attendee, acting from their web page: whatever uid, never root, so never a solve.
ATTENDEE_VIA_WEB = Caller(uid=-1)


def _labs(ctx: CommandContext):
    if ctx.labs is None:
        raise CommandError("this agent has no lab catalog (labs_dir is not set up)")
    return ctx.labs


def _lab_call(fn, *args, **kwargs) -> dict[str, Any]:
    try:
        return fn(*args, **kwargs)
    except (LookupError, KeyError) as exc:  # unknown lab or step, no attendee account: the caller's mistake
        raise CommandError(str(exc).strip("'\"")) from exc


@command("lab.list", NoArgs)
def lab_list(ctx: CommandContext, args: NoArgs) -> dict[str, Any]:
    return _labs(ctx).list()


@command("lab.check", LabArgs)
def lab_check(ctx: CommandContext, args: LabArgs) -> dict[str, Any]:
    return _lab_call(_labs(ctx).check, args.lab, args.step)


@command("lab.solve", LabArgs)
def lab_solve(ctx: CommandContext, args: LabArgs) -> dict[str, Any]:
    return _lab_call(_labs(ctx).solve, args.lab, args.step, caller=ROOT)  # the instructor may solve


@command("lab.reset", LabResetArgs)
def lab_reset(ctx: CommandContext, args: LabResetArgs) -> dict[str, Any]:
    return _lab_call(_labs(ctx).reset, args.lab, args.to_step, caller=ATTENDEE_VIA_WEB if args.as_attendee else ROOT)


@command("lab.instructions", LabArgs)
def lab_instructions(ctx: CommandContext, args: LabArgs) -> dict[str, Any]:
    return _lab_call(_labs(ctx).instructions, args.lab, args.step)


@command("lab.hint", LabHintArgs)
def lab_hint(ctx: CommandContext, args: LabHintArgs) -> dict[str, Any]:
    return _lab_call(_labs(ctx).hint, args.lab, args.step, args.level)


@command("inspect", NoArgs)
def inspect_command(ctx: CommandContext, args: NoArgs) -> dict[str, Any]:
    return _labs(ctx).inspect()
