"""Following a batch of node commands (``labfleet exec``, ``check``, ``solve``, ``reset``) until it answers."""

from __future__ import annotations

import time
import urllib.parse
from typing import TYPE_CHECKING

from controller.cli import render
from controller.cli.options import call

if TYPE_CHECKING:
    from controller.cli.client import ControllerClient


def follow_batch(client: ControllerClient, batch_id: str, total: int, wait_for: float, *, quiet: bool) -> dict:
    """A progress bar of the answers until all are in or ``wait_for`` seconds pass; then the whole batch."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    give_up = time.monotonic() + wait_for
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=render.console, disable=quiet, transient=False) as progress:
        task = progress.add_task("results", total=total)
        while True:
            summary = call(client.get, f"/api/v1/batches/{batch_id}?summary=1")
            progress.update(task, completed=summary["done"])
            if summary["done"] >= summary["total"] or time.monotonic() >= give_up:
                return fetch_batch(client, batch_id)
            time.sleep(0.1)


def fetch_batch(client: ControllerClient, batch_id: str) -> dict:
    """The batch's counts and all its commands, every page of them."""
    commands, data = call(client.get_pages, f"/api/v1/batches/{urllib.parse.quote(batch_id)}", "commands")
    return {**data, "commands": commands}
