"""How the CLI shows things: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

STATE_STYLE = {"online": "green", "offline": "red", "revoked": "magenta", "retired": "dim",
               "succeeded": "green", "failed": "red", "expired": "yellow", "pending": "cyan",
               "delivered": "cyan", "active": "green", "consumed": "dim", "passed": "green", "clean": "green",
               "leftovers": "red", "forged": "bold red", "unavailable": "yellow", "skipped": "yellow"}


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


def styled(state: str) -> str:
    style = STATE_STYLE.get(state)
    return f"[{style}]{state}[/{style}]" if style else state


def nodes_table(nodes: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="Nodes")
    for column in ("name", "address", "state", "last seen", "agent"):
        table.add_column(column)
    for n in nodes:
        table.add_row(n["name"], n["address"], styled(n["state"]), ago(n["last_seen_at"]), n["agent_version"])
    return table


def results_table(commands: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="Results")
    for column in ("node", "state", "time", "output / error"):
        table.add_column(column, overflow="fold")
    for c in sorted(commands, key=lambda c: c["node"]):
        result = c.get("result") or {}
        took = f"{result['duration_ms']:.0f} ms" if result else "-"
        detail = result.get("error") or json.dumps(result.get("output", {}))[:200] if result else ""
        table.add_row(c["node"], styled(c["state"]), took, detail)
    return table


def tokens_table(tokens: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="Enrollment tokens")
    for column in ("id", "prefix", "label", "status", "uses left", "expires"):
        table.add_column(column)
    for t in tokens:
        table.add_row(t["id"], t["prefix"] + "…", t["label"], styled(t["status"]), str(t["uses_left"]),
                      t["expires_at"][:19])
    return table


def audit_table(entries: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="Audit log")
    for column in ("at", "actor", "action", "target", "detail"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(e["at"][:19], e["actor"], e["action"], e["target"][:12], json.dumps(e["detail"])[:120])
    return table


console = Console()
