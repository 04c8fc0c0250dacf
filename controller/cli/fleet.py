"""``labfleet fleet up|down|list``: the local namespace fleet from the command line."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click
from rich.table import Table

from controller.cli import render
from controller.cli.options import json_option
from controller.fleet.config import DEFAULT_PREFIX, DEFAULT_STATE_DIR, DEFAULT_SUBNET
from controller.fleet.errors import FleetError

if TYPE_CHECKING:
    from controller.fleet import Fleet, HostStatus

state_dir_option = click.option("--state-dir", envvar="LABFLEET_FLEET_DIR", default=DEFAULT_STATE_DIR,
                                show_default=True, help="Where the fleet keeps its keys, hosts and state file.")
prefix_option = click.option("--name-prefix", "prefix", default=None,
                             help=f"Prefix of host, netns and link names (default: the recorded fleet's, "
                                  f"else {DEFAULT_PREFIX}).")


def _run(fn: Callable, *args):
    try:
        return fn(*args)
    except FleetError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def fleet() -> None:
    """Lab hosts made of namespaces on this machine, reached over real SSH (needs root)."""


@fleet.command("up")
@click.option("--count", type=int, required=True, help="How many hosts to create.")
@click.option("--subnet", default=DEFAULT_SUBNET, show_default=True, help="A private IPv4 /24; the machine gets .1.")
@prefix_option
@state_dir_option
@json_option
def up(count: int, subnet: str, prefix: str | None, state_dir: str, as_json: bool) -> None:
    """Create COUNT hosts, each with its own namespaces, root filesystem view, cgroups and sshd."""
    from controller.fleet import Fleet

    the_fleet = _run(Fleet, state_dir, subnet, prefix or DEFAULT_PREFIX)
    _run(the_fleet.up, count)
    statuses = _run(the_fleet.status)
    if as_json:
        render.print_json([s.to_dict() for s in statuses])
        return
    render.console.print(hosts_table(statuses))
    render.console.print(f"{len(statuses)} host(s) up; the machine is {the_fleet.bridge_address} on bridge "
                         f"{the_fleet.config.bridge}; SSH as root with {the_fleet.config.private_key}", soft_wrap=True)


@fleet.command("down")
@prefix_option
@state_dir_option
def down(prefix: str | None, state_dir: str) -> None:
    """Remove every host, link, mount, cgroup and process of the fleet (also after a crash)."""
    the_fleet = _fleet(state_dir, prefix)
    _run(the_fleet.down)
    render.console.print(f"fleet {the_fleet.config.prefix!r} is down")


@fleet.command("list")
@prefix_option
@state_dir_option
@json_option
def list_(prefix: str | None, state_dir: str, as_json: bool) -> None:
    """Every host: name, address, SSH port, init PID, running or stopped, whether sshd answers."""
    statuses = _run(_fleet(state_dir, prefix).status)
    render.show([s.to_dict() for s in statuses], hosts_table(statuses), as_json=as_json)


def _fleet(state_dir: str, prefix: str | None) -> Fleet:
    from controller.fleet import Fleet

    if prefix:
        return _run(Fleet, state_dir, DEFAULT_SUBNET, prefix)
    return _run(Fleet.from_state, state_dir)


def hosts_table(statuses: list[HostStatus]) -> Table:
    table = Table(title="Fleet hosts")
    for column in ("name", "address", "ssh port", "pid", "state", "sshd"):
        table.add_column(column)
    for s in statuses:
        state = render.styled("running", "green") if s.running else render.styled("stopped", "red")
        sshd = render.styled("answers", "green") if s.sshd_answers else render.styled("silent", "red")
        render.add_row(table, s.host.name, s.host.address, str(s.host.ssh_port), str(s.pid or "-"), state, sshd)
    return table
