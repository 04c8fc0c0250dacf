"""``labfleet message``: a message or a lab hint to attendees' terminals (and ``--list``: what was sent).

A client command: it imports only click, rich and the CLI's HTTP client.
"""

from __future__ import annotations

import urllib.parse

import click
from rich.table import Table

from controller.cli import render
from controller.cli.options import call, json_option, pass_ctx


def register(cli: click.Group) -> None:
    @cli.command("message")
    @click.option("--node", "node_names", multiple=True, help="A node name (repeatable).")
    @click.option("--all", "all_nodes", is_flag=True, help="Every enrolled node: the whole room.")
    @click.option("--hint", metavar="LAB/STEP", default=None, help="Send the lab catalog's hint for this step.")
    @click.option("--level", type=int, default=1, show_default=True, help="Which hint (1 gentle ... 3 explicit).")
    @click.option("--list", "list_sent", is_flag=True, help="Show what was sent and whether it was read.")
    @click.argument("text", nargs=-1)
    @json_option
    @pass_ctx
    def message(ctx, node_names: tuple[str, ...], all_nodes: bool, hint: str | None, level: int, list_sent: bool,
                text: tuple[str, ...], as_json: bool) -> None:
        """Send TEXT (or --hint LAB/STEP) to attendees: it shows in their terminal within seconds
        (`lab status`, `lab messages`, their next prompt) and stays on their VM until they have seen it."""
        client = ctx.client()
        if list_sent:
            query = f"?node={urllib.parse.quote(node_names[0], safe='')}" if node_names else ""
            data = call(client.get, f"/api/v1/messages{query}")
            if as_json:
                render.print_json(data)
                return
            table = Table(title="Messages sent")
            for column in ("sent", "node", "by", "kind", "text", "read"):
                table.add_column(column)
            for m in data["messages"]:
                kind = m["kind"] + (f" {m['lab']}/{m['step']}" if m["kind"] == "hint" else "")
                render.add_row(table, m["created_at"][:19], m["node"], m["sent_by"], kind, m["text"],
                               "yes" if m["read"] else "no")
            render.console.print(table)
            return
        if not node_names and not all_nodes:
            raise click.UsageError("name nodes with --node N (repeatable) or send to the room with --all")
        if hint is None and not text:
            raise click.UsageError("give the TEXT to send, or --hint LAB/STEP")
        if hint is not None and text:
            raise click.UsageError("give either TEXT or --hint LAB/STEP, not both")
        body: dict = {"nodes": list(node_names), "all": all_nodes}
        body.update({"hint": hint, "level": level} if hint is not None else {"text": " ".join(text)})
        sent = call(client.post, "/api/v1/messages", body)
        if as_json:
            render.print_json(sent)
            return
        nodes = ", ".join(m["node"] for m in sent["messages"])
        render.console.print(f"sent {sent['kind']} to {len(sent['messages'])} node(s): {render.safe(nodes)}")
        if sent["kind"] == "hint":
            render.console.print(f"  {render.safe(sent['text'])}")
