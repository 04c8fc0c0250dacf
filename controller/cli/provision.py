"""``labfleet provision``, ``provision cancel|show|list`` and ``teardown``: a room from the command line.

The CLI only talks to the controller's API: it sends the inventory file's
content, then polls the run and draws one progress bar per host (tasks done of
the playbook's total, and the task each host is on), and ends with a table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from controller.cli import render
from controller.cli.options import call, json_option

if TYPE_CHECKING:
    from controller.cli.client import ControllerClient

DONE_STATES = ("succeeded", "failed", "cancelled", "error")
HOST_STYLE = {"ok": "green", "failed": "red", "unreachable": "red", "cancelled": "yellow", "running": "cyan",
              "pending": "dim"}


def inventory_options(fn: Callable) -> Callable:
    """Where the hosts come from: a file (static driver), Vagrant, or the local fleet.

    The Vagrantfile's folder and the local fleet's are the controller's settings
    (LABFLEET_VAGRANT_DIR, LABFLEET_FLEET_DIR), not options of a request.
    """
    options = [
        click.option("--inventory", "inventory_file", type=click.Path(dir_okay=False),
                     help="A YAML, INI or CSV list of hosts (static driver); the key files it names are uploaded."),
        click.option("--driver", type=click.Choice(["static", "vagrant", "netns"]), default=None,
                     help="static (with --inventory), vagrant (the controller's LABFLEET_VAGRANT_DIR) or netns "
                          "(the local fleet in the controller's LABFLEET_FLEET_DIR)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def inventory_body(inventory_file: str | None, driver: str | None) -> dict[str, Any]:
    driver = driver or ("static" if inventory_file else None)
    if driver is None:
        raise click.UsageError("give --inventory FILE or --driver static|vagrant|netns")
    if driver == "static":
        if not inventory_file:
            raise click.UsageError("the static driver needs --inventory FILE")
        path = Path(inventory_file).expanduser().resolve()
        try:
            content = path.read_text()
        except OSError as exc:
            raise click.ClickException(f"{path}: {exc.strerror}") from None
        return {"driver": driver, "inventory": {"path": str(path), "content": content,
                                                "keys": _key_files(path, content)}}
    if inventory_file:
        raise click.UsageError(f"--inventory is for the static driver, not {driver}")
    return {"driver": driver, "inventory": {}}


def _key_files(inventory: Path, content: str) -> dict[str, str]:
    """The key files the inventory names (relative to it), read here and sent under the name written.

    A plain name with no such file here may be a key of the controller's LABFLEET_PROVISION_KEYS_DIR.
    """
    from controller.provision.inventory import InventoryError
    from controller.provision.inventory.static import key_references

    try:
        references = key_references(inventory, content)
    except InventoryError:
        return {}  # the controller names what is wrong with the file
    keys = {}
    for reference in references:
        path = Path(reference).expanduser()
        path = path if path.is_absolute() else inventory.parent / path
        if not path.is_file() and "/" not in reference:
            continue
        try:
            keys[reference] = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"{inventory}: key file {path}: "
                                       f"{getattr(exc, 'strerror', None) or exc}") from None
    return keys


@click.group(invoke_without_command=True)
@inventory_options
@click.option("--retry-failed", is_flag=True, help="Run again only the hosts that failed in the latest run.")
@click.option("--forks", type=int, default=None, help="Hosts Ansible works on at once (default: settings).")
@click.option("--no-tune", is_flag=True, help="Ansible's defaults: forks 5, no pipelining, no SSH multiplexing, "
                                              "facts gathered (for comparison).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the run until it ends.")
@json_option
@click.pass_context
def provision(ctx: click.Context, inventory_file: str | None, driver: str | None, retry_failed: bool,
              forks: int | None, no_tune: bool, wait: bool, as_json: bool) -> None:
    """Turn the inventory's hosts into lab VMs (playbooks/site.yml), one progress bar per host."""
    if ctx.invoked_subcommand is not None:
        return
    body: dict[str, Any] = {"playbook": "site", "tune": not no_tune}
    if forks is not None:
        body["forks"] = forks
    if retry_failed:
        if inventory_file or driver:
            raise click.UsageError("--retry-failed reuses the latest run's inventory: give no --inventory/--driver")
        body["retry_failed"] = True
    else:
        body.update(inventory_body(inventory_file, driver))
    run_and_report(ctx.obj.client(), body, wait=wait, as_json=as_json)


@provision.command("cancel")
@click.argument("run_id")
@click.pass_obj
def provision_cancel(obj: Any, run_id: str) -> None:
    """Stop a running provisioning run (hosts not finished are reported cancelled)."""
    run = call(obj.client().post, f"/api/v1/provision-runs/{run_id}/cancel")
    state = run["state"] if run["state"] in DONE_STATES else "cancelling"
    render.console.print(f"run {render.safe(run['id'])} is {render.safe(state)}")


@provision.command("show")
@click.argument("run_id")
@click.option("--events", "with_events", is_flag=True, help="Also list every stored event (host, task, outcome).")
@json_option
@click.pass_obj
def provision_show(obj: Any, run_id: str, with_events: bool, as_json: bool) -> None:
    """One run: its state and a per-host table (ok, changed, failed, unreachable, failing task)."""
    client = obj.client()
    run = call(client.get, f"/api/v1/provision-runs/{run_id}")
    if with_events:
        run["events"] = call(client.get_all, f"/api/v1/provision-runs/{run_id}/events", "events")
    if as_json:
        render.print_json(run)
        return
    if with_events:
        render.console.print(events_table(run["events"]))
    print_run(run)


@provision.command("list")
@json_option
@click.pass_obj
def provision_list(obj: Any, as_json: bool) -> None:
    """Recent provisioning and teardown runs."""
    found = call(obj.client().get, "/api/v1/provision-runs")["runs"]
    table = Table(title="Provisioning runs")
    for column in ("id", "playbook", "driver", "state", "hosts", "created", "by"):
        table.add_column(column)
    for run in found:
        hosts = ", ".join(run["limit"]) if run["limit"] else "all"
        render.add_row(table, run["id"], run["playbook"], run["driver"], render.styled(run["state"]), hosts,
                       run["created_at"][:19], run["requested_by"])
    render.show(found, table, as_json=as_json)


@click.command()
@inventory_options
@click.option("--forks", type=int, default=None)
@json_option
@click.pass_obj
def teardown(obj: Any, inventory_file: str | None, driver: str | None, forks: int | None, as_json: bool) -> None:
    """Undo site.yml on every host (playbooks/teardown.yml) and retire their nodes."""
    body: dict[str, Any] = {"playbook": "teardown", **inventory_body(inventory_file, driver)}
    if forks is not None:
        body["forks"] = forks
    run_and_report(obj.client(), body, wait=True, as_json=as_json)


def run_and_report(client: ControllerClient, body: dict[str, Any], *, wait: bool, as_json: bool) -> None:
    run = call(client.post, "/api/v1/provision-runs", body)
    if not wait:
        if as_json:
            render.print_json(run)
        else:
            render.console.print(f"run {render.safe(run['id'])} started; follow it with: "
                                 f"labfleet provision show {render.safe(run['id'])}")
        return
    if not as_json:
        render.console.print(f"run {render.safe(run['id'])}: {render.safe(run['playbook'])}.yml on "
                             f"{len(run['hosts'])} host(s)")
    try:
        run = follow(client, run["id"], quiet=as_json)
    except KeyboardInterrupt:
        raise click.ClickException(f"stopped following; the run goes on. Cancel it with: "
                                   f"labfleet provision cancel {run['id']}") from None
    if as_json:
        render.print_json(run)
    else:
        print_run(run)
    if run["state"] != "succeeded":
        raise SystemExit(1)


def follow(client: ControllerClient, run_id: str, *, quiet: bool, interval: float = 0.5) -> dict[str, Any]:
    """Poll the run, one bar per host, until it ends."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]{task.description:<16}"), BarColumn(bar_width=30), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    bars: dict[str, TaskID] = {}
    started, warned = time.monotonic(), False
    with Progress(*columns, console=render.console, disable=quiet, transient=False) as progress:
        while True:
            run = call(client.get, f"/api/v1/provision-runs/{run_id}")
            if run["state"] == "pending" and not warned and time.monotonic() - started > 30:
                warned = True
                progress.console.print("[yellow]no worker has taken the run after 30 s: is `labfleet worker` "
                                       "running against the same broker?[/yellow]")
            total = run["tasks_total"] or None
            for host in run["hosts"]:
                if host["host"] not in bars:
                    # The description is formatted into the column's markup: escaped like any markup value.
                    bars[host["host"]] = progress.add_task(render.safe(host["host"]), total=total, status="")
                done = host["state"] not in ("pending", "running")
                progress.update(bars[host["host"]], total=max(total or 0, host["tasks_done"]) or None,
                                completed=host["tasks_done"], status=_status(host))
                if done and host["state"] == "ok":
                    progress.update(bars[host["host"]], total=host["tasks_done"] or 1,
                                    completed=host["tasks_done"] or 1)
            if run["state"] in DONE_STATES:
                return run
            time.sleep(interval)


def _status(host: dict[str, Any]) -> str:
    """The bar's status column (a markup template): every value in it escaped."""
    style = HOST_STYLE.get(host["state"]) or "default"
    if host["state"] == "running":
        return f"[{style}]{render.safe(host['current_task'][:60])}[/{style}]"
    detail = f": {host['failed_task'][:50]}" if host["failed_task"] else ""
    return f"[{style}]{render.safe(host['state'] + detail)}[/{style}]"


def print_run(run: dict[str, Any]) -> None:
    render.console.print(run_table(run))
    summary = ", ".join(f"{n} {state}" for state, n in (run.get("summary") or {}).items() if n)
    render.console.print(Text.assemble(f"run {render.clean(run['id'])} ({render.clean(run['playbook'])}): ",
                                       render.styled(run["state"]),
                                       f" — {render.clean(summary)}" if summary else ""))
    if run.get("error"):
        render.console.print(render.styled(run["error"], "red"), soft_wrap=True)
    if run["state"] == "failed" and run["playbook"] == "site":
        render.console.print("retry only the failed hosts with: labfleet provision --retry-failed")


def run_table(run: dict[str, Any]) -> Table:
    table = Table(title=f"{render.safe(run['playbook'])}.yml — run {render.safe(run['id'])}")
    for column in ("host", "address", "state", "ok", "changed", "failed", "unreachable", "failing task",
                   "message"):
        table.add_column(column, overflow="fold")
    for host in run["hosts"]:
        render.add_row(table, host["host"], host["address"], render.styled(host["state"], HOST_STYLE.get(host["state"])),
                       str(host["ok"]), str(host["changed"]), str(host["failed"]), str(host["unreachable"]),
                       host["failed_task"][:80], host["message"][:160])
    return table


def events_table(found: list[dict[str, Any]]) -> Table:
    table = Table(title="Events")
    for column in ("#", "host", "task", "outcome", "message"):
        table.add_column(column, overflow="fold")
    for event in found:
        render.add_row(table, str(event["seq"]), event["host"], event["task"], event["status"], event["message"][:200])
    return table
