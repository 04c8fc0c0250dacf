"""``labfleet attendees import|list``, ``assign`` and ``credentials``: who sits at which lab VM.

``credentials`` writes the sheet an instructor prints and cuts into slips: one
per attendee with their host, login and access code, as HTML and CSV, both
mode 0600 (the codes are shown once; the controller keeps only their hashes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from controller.cli import render
from controller.cli.options import call, json_option
from controller.credential_sheet import sheet_csv, sheet_html


@click.group()
def attendees() -> None:
    """Import the room's attendees and list them."""


@attendees.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
@click.pass_obj
def attendees_import(obj: Any, file: str, as_json: bool) -> None:
    """Add attendees from a CSV with a header line ``name,email``; duplicates are skipped and listed."""
    path = Path(file).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    report = call(obj.client().post, "/api/v1/attendees/import", {"csv": text, "source": str(path)})
    if as_json:
        render.print_json(report)
        return
    render.console.print(f"imported {render.safe(report['created'])} attendee(s) from {render.safe(path)}")
    for dup in report["duplicates"]:
        render.console.print(f"[yellow]skipped line {render.safe(dup['line'])}: {render.safe(dup['email'])} "
                             f"({render.safe(dup['reason'])})[/yellow]")


@attendees.command("list")
@json_option
@click.pass_obj
def attendees_list(obj: Any, as_json: bool) -> None:
    found = call(obj.client().get_all, "/api/v1/attendees", "attendees")
    table = Table(title="Attendees")
    for column in ("name", "email", "node", "access code"):
        table.add_column(column)
    for a in found:
        render.add_row(table, a["name"], a["email"], a["node"] or "-", "issued" if a["has_access_code"] else "-")
    render.show(found, table, as_json=as_json)


@click.command()
@click.option("--attendee", "email", default=None, help="The attendee's email (with --node).")
@click.option("--node", default=None, help="The node to put them on (with --attendee).")
@json_option
@click.pass_obj
def assign(obj: Any, email: str | None, node: str | None, as_json: bool) -> None:
    """Map attendees to nodes: round-robin over free nodes, or one --attendee EMAIL --node NAME."""
    if bool(email) != bool(node):
        raise click.UsageError("give both --attendee EMAIL and --node NAME, or neither for round-robin")
    body = {"attendee": email, "node": node} if email else {}
    result = call(obj.client().post, "/api/v1/attendees/assign", body)
    if as_json:
        render.print_json(result)
        return
    for pair in result["assigned"]:
        render.console.print(f"{render.safe(pair['attendee'])} -> {render.safe(pair['node'])}")
    if not result["assigned"]:
        render.console.print("nobody assigned (everyone has a node, or no node is free)")
    if result["unassigned"]:
        render.console.print(f"[yellow]{len(result['unassigned'])} attendee(s) without a node (no free node): "
                             f"{render.safe(', '.join(result['unassigned']))}[/yellow]")


@click.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for credentials.html and credentials.csv.")
@click.option("--reissue", is_flag=True, help="New access codes for everyone (the old ones stop working).")
@click.pass_obj
def credentials(obj: Any, out_dir: str, reissue: bool) -> None:
    """Write the printable sheet: attendee, host, login, access code (new codes are shown once)."""
    rows = call(obj.client().post, "/api/v1/attendees/credentials", {"reissue": reissue})["credentials"]
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    html_path, csv_path = out / "credentials.html", out / "credentials.csv"
    _write_private(html_path, sheet_html(rows))
    _write_private(csv_path, sheet_csv(rows))
    fresh = sum(1 for r in rows if r["access_code"])
    render.console.print(f"wrote {render.safe(html_path)} and {render.safe(csv_path)}: {len(rows)} attendee(s), "
                         f"{fresh} new access code(s)")
    earlier = len(rows) - fresh
    if earlier:
        render.console.print(f"[yellow]{earlier} attendee(s) got their code on an earlier sheet; "
                             f"--reissue gives everyone a new one[/yellow]")
    unplaced = [r["email"] for r in rows if not r["host"]]
    if unplaced:
        render.console.print(f"[yellow]no host yet for {render.safe(', '.join(unplaced))}: "
                             f"run labfleet assign[/yellow]")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
