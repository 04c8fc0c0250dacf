"""How the CLI shows things: rich tables for people, JSON for scripts.

Names, reasons, errors and outputs come from attendee-controlled machines
(root on their VM) and reach the instructor's terminal here. Rich would read
``[/bold]`` in them as markup (and stop the whole table with a MarkupError)
and the terminal would obey their escape sequences, so every value from the
controller goes through :func:`clean` (control characters out: C0 with ESC,
DEL, C1 with CSI, and the bidi overrides) and is shown as plain text:
:func:`add_row` for table cells, :func:`safe` inside a markup string,
:func:`styled` for a state. JSON output needs none of it: ``json.dumps``
escapes every control character.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

# C0 (with ESC and the line breaks a value could fake rows with), DEL, C1 (with the 8-bit CSI), and the
# bidirectional controls that make a terminal show text in another order than it was written.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

STATE_STYLE = {"online": "green", "offline": "red", "revoked": "magenta", "retired": "dim",
               "succeeded": "green", "failed": "red", "expired": "yellow", "pending": "cyan",
               "delivered": "cyan", "active": "green", "consumed": "dim", "passed": "green", "clean": "green",
               "leftovers": "red", "forged": "bold red", "unavailable": "yellow", "skipped": "yellow"}


def clean(value: Any) -> str:
    """``value`` as text with every control character removed (line breaks become spaces)."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(lambda m: " " if m.group() in "\n\r\t" else "", text)


def safe(value: Any) -> str:
    """``value`` to put inside a Rich markup string: cleaned, and its brackets shown as written."""
    return escape(clean(value))


def add_row(table: Table, *cells: Any) -> None:
    """A table row of plain text: no cell is read as markup (a :class:`Text` cell keeps its style)."""
    table.add_row(*(cell if isinstance(cell, Text) else Text(clean(cell)) for cell in cells))


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def show(data: Any, table: Table, *, as_json: bool) -> None:
    """What every read command prints: ``data`` as JSON for scripts, else ``table``."""
    if as_json:
        print_json(data)
    else:
        console.print(table)


def ago(iso: str | None) -> str:
    if not iso:
        return "never"
    seconds = (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()
    if seconds < 120:
        return f"{max(seconds, 0):.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def styled(state: Any, style: str | None = None) -> Text:
    """A state in its colour (``STATE_STYLE``, or ``style``), as plain text."""
    return Text(clean(state), style=style or STATE_STYLE.get(str(state)) or "")


def nodes_table(nodes: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="Nodes")
    for column in ("name", "address", "state", "last seen", "agent"):
        table.add_column(column)
    for n in nodes:
        add_row(table, n["name"], n["address"], styled(n["state"]), ago(n["last_seen_at"]), n["agent_version"])
    return table


def results_table(commands: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="Results")
    for column in ("node", "state", "time", "output / error"):
        table.add_column(column, overflow="fold")
    for c in sorted(commands, key=lambda c: c["node"]):
        result = c.get("result") or {}
        took = f"{result['duration_ms']:.0f} ms" if result else "-"
        detail = result.get("error") or json.dumps(result.get("output", {}))[:200] if result else ""
        add_row(table, c["node"], styled(c["state"]), took, detail)
    return table


def tokens_table(tokens: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="Enrollment tokens")
    for column in ("id", "prefix", "label", "status", "uses left", "expires"):
        table.add_column(column)
    for t in tokens:
        add_row(table, t["id"], t["prefix"] + "…", t["label"], styled(t["status"]), str(t["uses_left"]),
                t["expires_at"][:19])
    return table


def audit_table(entries: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="Audit log")
    for column in ("at", "actor", "action", "target", "detail"):
        table.add_column(column, overflow="fold")
    for e in entries:
        add_row(table, e["at"][:19], e["actor"], e["action"], e["target"][:12], json.dumps(e["detail"])[:120])
    return table


console = Console()
