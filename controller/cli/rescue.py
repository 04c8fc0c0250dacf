"""``labfleet rescue (--node N... | --silent)`` and ``labfleet diagnostics NODE -o FILE``.

A client command (click, rich and the CLI's HTTP client only): the controller's
worker does the SSH work; this shows its progress per host live and a result
table at the end.
"""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path
from typing import Any

import click
from rich.live import Live
from rich.table import Table

from controller.cli import render
from controller.cli.options import call, json_option, pass_ctx

STATE_STYLE = {"recovered": "green", "failed": "red", "refused": "bold red", "unreachable": "red",
               "no_record": "yellow", "running": "cyan", "pending": "dim"}
POLL = 0.25


def progress_table(run: dict[str, Any], *, final: bool = False) -> Table:
    table = Table(title=f"Rescue {run['id'][:8]} ({run['state']})")
    for column in ("node", "address", "state", "step" if not final else "steps", "seconds", "message"):
        table.add_column(column)
    for h in run["hosts"]:
        if final:
            step = " ".join(f"{s['name']}{'' if s['ok'] else '✗'}" for s in h["steps"])
        else:
            step = h["current_step"] or (h["steps"][-1]["name"] if h["steps"] else "")
        render.add_row(table, h["node"], h["address"], render.styled(h["state"], STATE_STYLE.get(h["state"])),
                       step, f"{h['seconds']:.1f}", h["message"])
    return table


def register(cli: click.Group) -> None:
    @cli.command("rescue")
    @click.option("--node", "node_names", multiple=True, help="A node to rescue (repeatable).")
    @click.option("--silent", is_flag=True, help="Every node whose agent is silent (offline).")
    @click.option("--wait", "wait_for", type=float, default=600.0, show_default=True,
                  help="Seconds to follow the rescue before returning.")
    @json_option
    @pass_ctx
    def rescue(ctx, node_names: tuple[str, ...], silent: bool, wait_for: float, as_json: bool) -> None:
        """Reach nodes over SSH (provisioning's key, host key checked strictly), collect diagnostics, kill
        runaway lab processes, restart the agent and wait until it is online. Exit 1 unless all recovered."""
        if bool(node_names) == silent:
            raise click.UsageError("give --node N (repeatable) or --silent")
        client = ctx.client()
        run = call(client.post, "/api/v1/rescue", {"nodes": list(node_names)} if node_names else {"silent": True})
        path = f"/api/v1/rescue/{urllib.parse.quote(run['id'], safe='')}"
        deadline = time.monotonic() + wait_for
        if as_json:
            while run["state"] != "done" and time.monotonic() < deadline:
                time.sleep(POLL)
                run = call(client.get, path)
            render.print_json(run)
        else:
            with Live(progress_table(run), console=render.console, refresh_per_second=4, transient=True) as live:
                while run["state"] != "done" and time.monotonic() < deadline:
                    time.sleep(POLL)
                    run = call(client.get, path)
                    live.update(progress_table(run))
            render.console.print(progress_table(run, final=True))
            states = [h["state"] for h in run["hosts"]]
            render.console.print(f"{states.count('recovered')}/{len(states)} recovered"
                                 + ("" if run["state"] == "done" else " (still running: see labfleet rescue "
                                                                      "--json later)"))
        if run["state"] != "done" or any(h["state"] != "recovered" for h in run["hosts"]):
            raise SystemExit(1)

    @cli.command("diagnostics")
    @click.argument("node")
    @click.option("-o", "--output", "output", type=click.Path(dir_okay=False, writable=True), required=True,
                  help="Where to write the tar.gz.")
    @pass_ctx
    def diagnostics(ctx, node: str, output: str) -> None:
        """A node's diagnostics bundle (tar.gz): state, agent log, lab progress, commands, readiness, facts;
        through the agent when it is alive, over SSH when not; secrets redacted."""
        data = call(ctx.client().download, f"/api/v1/nodes/{urllib.parse.quote(node, safe='')}/diagnostics")
        Path(output).write_bytes(data)
        render.console.print(f"wrote {render.safe(output)} ({len(data)} bytes)")
