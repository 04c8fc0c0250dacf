"""``labfleet help list|claim|reply|resolve|raise``: the help queue, and the stuck attendees.

A client command: it imports only click, rich and the CLI's HTTP client (no
Flask, no SQLAlchemy), so it starts fast.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import click
from rich.table import Table

from controller.cli import render
from controller.cli.options import call, json_option, pass_ctx


def _span(seconds: Any) -> str:
    seconds = int(seconds or 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def requests_table(requests: list[dict[str, Any]]) -> Table:
    table = Table(title="Raised hands")
    for column in ("id", "node", "attendee", "waited", "state", "lab/step", "message", "last check", "answer"):
        table.add_column(column)
    for r in requests:
        state = r["state"] + (f" by {r['claimed_by']}" if r["state"] == "claimed" and r.get("claimed_by") else "")
        where = f"{r['lab']}/{r['step']}" if r.get("lab") else ""
        message = r["message"] or ("(flagged stuck)" if r["source"] == "stuck" else "")
        render.add_row(table, r["id"][:8], r["node"], r["attendee"] or "", _span(r["waited_s"]),
                       render.styled(state, "green" if r["state"] == "claimed" else "yellow"),
                       where, message, r["reason"], r["reply"])
    return table


def stuck_table(stuck: list[dict[str, Any]]) -> Table:
    table = Table(title="Stuck (not asking yet)")
    for column in ("node", "attendee", "for", "lab/step", "why", "suggested hint"):
        table.add_column(column)
    for s in stuck:
        why = s["reason"] + (" [hand up]" if s.get("hand_raised") else "")
        render.add_row(table, s["node"], s["attendee"] or "", _span(s["stuck_s"]),
                       f"{s['lab']}/{s['step']}" if s["lab"] else "",
                       why, s["hint"])
    return table


def print_stuck(client) -> None:
    """``labfleet status``'s stuck attendees (nothing when there are none)."""
    stuck = call(client.get, "/api/v1/stuck")["stuck"]
    if stuck:
        render.console.print(stuck_table(stuck))


def _resolve_id(client, prefix: str) -> str:
    """A request id, or the first characters of one (as the table shows them)."""
    if len(prefix) == 32:
        return prefix
    found = [r["id"] for r in call(client.get, "/api/v1/help?state=all")["requests"] if r["id"].startswith(prefix)]
    if len(found) != 1:
        raise click.ClickException(f"{len(found) or 'no'} help request(s) start with {prefix!r}: give more of the id")
    return found[0]


def register(cli: click.Group) -> None:
    @cli.group("help")
    def help_group() -> None:
        """The help queue: raised hands (`lab help` on a VM) and stuck attendees."""

    @help_group.command("list")
    @click.option("--state", type=click.Choice(["up", "open", "claimed", "resolved", "all"]), default="up",
                  show_default=True, help="up: open and claimed.")
    @json_option
    @pass_ctx
    def help_list(ctx, state: str, as_json: bool) -> None:
        """Raised hands, longest waiting first, then the attendees flagged as stuck."""
        data = call(ctx.client().get, f"/api/v1/help?state={state}")
        if as_json:
            render.print_json(data)
            return
        render.console.print(requests_table(data["requests"]))
        if data["stuck"]:
            render.console.print(stuck_table(data["stuck"]))
        render.console.print(f"{len(data['requests'])} raised, {len(data['stuck'])} stuck")

    def _act(ctx, help_id: str, action: str, body: dict | None, as_json: bool) -> dict:
        client = ctx.client()
        full = _resolve_id(client, help_id)
        row = call(client.post, f"/api/v1/help/{urllib.parse.quote(full, safe='')}/{action}", body)
        if as_json:
            render.print_json(row)
        return row

    @help_group.command("claim")
    @click.argument("help_id")
    @json_option
    @pass_ctx
    def help_claim(ctx, help_id: str, as_json: bool) -> None:
        """Take a request: the attendee is told you are coming."""
        row = _act(ctx, help_id, "claim", None, as_json)
        if not as_json:
            render.console.print(f"claimed: {render.safe(row['node'])} ({render.safe(row['attendee'] or 'no attendee')})"
                                 f" is told {render.safe(row['claimed_by'])} is coming")

    @help_group.command("reply")
    @click.argument("help_id")
    @click.argument("text", nargs=-1, required=True)
    @json_option
    @pass_ctx
    def help_reply(ctx, help_id: str, text: tuple[str, ...], as_json: bool) -> None:
        """Answer in text: shown by `lab status` and on the attendee's next prompt."""
        row = _act(ctx, help_id, "reply", {"text": " ".join(text)}, as_json)
        if not as_json:
            render.console.print(f"sent to {render.safe(row['node'])}")

    @help_group.command("resolve")
    @click.argument("help_id")
    @json_option
    @pass_ctx
    def help_resolve(ctx, help_id: str, as_json: bool) -> None:
        """Close a request."""
        row = _act(ctx, help_id, "resolve", None, as_json)
        if not as_json:
            render.console.print(f"resolved: {render.safe(row['node'])}, after {_span(row['waited_s'])}")

    @help_group.command("raise")
    @click.argument("node")
    @json_option
    @pass_ctx
    def help_raise(ctx, node: str, as_json: bool) -> None:
        """Turn a stuck attendee into a raised hand (with the stuck reasons), to claim it."""
        row = call(ctx.client().post, f"/api/v1/stuck/{urllib.parse.quote(node, safe='')}/raise")
        if as_json:
            render.print_json(row)
        else:
            render.console.print(f"raised {render.safe(row['id'][:8])} for {render.safe(row['node'])}: "
                                 f"{render.safe(row['reason'])}")
