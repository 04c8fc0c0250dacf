"""``labfleet check|solve|reset LAB [STEP]`` on nodes, and ``labfleet progress``."""

from __future__ import annotations

import urllib.parse
from typing import Any

import click
from rich.table import Table

from controller.cli import render
from controller.cli.options import call, json_option, pass_ctx

node_options = [
    click.option("--node", "node_names", multiple=True, help="A node name (repeatable)."),
    click.option("--all", "all_nodes", is_flag=True, help="Every enrolled node."),
    click.option("--wait", "wait_for", type=float, default=120.0, show_default=True,
                 help="Seconds to wait for results."),
    json_option,
]


def _with_node_options(fn):
    for option in reversed(node_options):
        fn = option(fn)
    return fn


def _run(ctx, kind: str, args: dict[str, Any], node_names, all_nodes, wait_for, as_json) -> None:
    from controller.cli.batches import follow_batch

    if bool(node_names) == all_nodes:
        raise click.UsageError("give either --node NAME (one or more) or --all")
    client = ctx.client()
    body = {"kind": kind, "args": {k: v for k, v in args.items() if v is not None}, "nodes": list(node_names),
            "all": all_nodes, "timeout": 110}
    issued = call(client.post, "/api/v1/commands", body)
    batch = follow_batch(client, issued["batch_id"], len(issued["commands"]), wait_for, quiet=as_json)
    if as_json:
        render.print_json(batch)
    else:
        render.console.print(lab_results_table(kind, batch["commands"]))
        if batch["done"] < batch["total"]:
            render.console.print(f"[yellow]{batch['total'] - batch['done']} node(s) have not answered yet; "
                                 f"follow with: labfleet batch {render.safe(issued['batch_id'])}[/yellow]")
    if any(not _succeeded(kind, c) for c in batch["commands"]):
        raise SystemExit(1)


def _succeeded(kind: str, command: dict[str, Any]) -> bool:
    result = command.get("result") or {}
    if command["state"] != "succeeded":
        return False
    output = result.get("output") or {}
    return bool(output.get("clean")) if kind == "lab.reset" else bool(output.get("passed"))


def lab_results_table(kind: str, commands: list[dict[str, Any]]) -> Table:
    table = Table(title=kind)
    for column in ("node", "lab", "step", "status", "reason / leftovers"):
        table.add_column(column, overflow="fold")
    for c in sorted(commands, key=lambda c: c["node"]):
        result = c.get("result") or {}
        output = result.get("output") or {}
        if c["state"] != "succeeded":
            render.add_row(table, c["node"], output.get("lab", ""), "", render.styled(c["state"]),
                           result.get("error") or "no answer yet")
        elif kind == "lab.reset":
            status = "clean" if output.get("clean") else "leftovers"
            render.add_row(table, c["node"], output["lab"], output.get("to_step") or "(start)",
                           render.styled(status), "; ".join(str(x) for x in output.get("leftovers", [])))
        else:
            for step in output.get("steps", []):
                render.add_row(table, c["node"], output["lab"], step["step"], render.styled(step["status"]),
                               step.get("reason", ""))
    return table


def register(cli: click.Group) -> None:
    @cli.command("check")
    @click.argument("lab")
    @click.argument("step", required=False)
    @_with_node_options
    @pass_ctx
    def check(ctx, lab, step, node_names, all_nodes, wait_for, as_json):
        """Check LAB (or one STEP) on nodes: passed/failed with the reason, per step."""
        _run(ctx, "lab.check", {"lab": lab, "step": step}, node_names, all_nodes, wait_for, as_json)

    @cli.command("solve")
    @click.argument("lab")
    @click.argument("step", required=False)
    @_with_node_options
    @pass_ctx
    def solve(ctx, lab, step, node_names, all_nodes, wait_for, as_json):
        """Carry out LAB up to STEP on nodes (a demo, or an attendee who is stuck)."""
        _run(ctx, "lab.solve", {"lab": lab, "step": step}, node_names, all_nodes, wait_for, as_json)

    @cli.command("reset")
    @click.argument("lab")
    @click.option("--to-step", default=None, help="Start at this step (earlier steps are solved).")
    @_with_node_options
    @pass_ctx
    def reset(ctx, lab, to_step, node_names, all_nodes, wait_for, as_json):
        """Reset LAB on nodes to its start, verified clean; leftovers are listed."""
        _run(ctx, "lab.reset", {"lab": lab, "to_step": to_step}, node_names, all_nodes, wait_for, as_json)

    @cli.command("progress")
    @click.option("--lab", default=None, help="Only this lab.")
    @click.option("--node", default=None, help="Only this node.")
    @json_option
    @pass_ctx
    def progress(ctx, lab, node, as_json):
        """Lab progress per node and step, as the last checks left it."""
        query = urllib.parse.urlencode({k: v for k, v in (("lab", lab), ("node", node)) if v})
        rows = call(ctx.client().get_all, "/api/v1/progress" + (f"?{query}" if query else ""), "progress")
        table = Table(title="Lab progress")
        for column in ("node", "attendee", "lab", "step", "status", "reason", "updated"):
            table.add_column(column, overflow="fold")
        for r in rows:
            render.add_row(table, r["node"], r["attendee"] or "", r["lab"], r["step"], render.styled(r["status"]),
                           r["reason"], r["updated_at"][:19])
        render.show(rows, table, as_json=as_json)
