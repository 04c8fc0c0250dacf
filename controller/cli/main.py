"""``labfleet``: the instructor's command line."""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import Any

import click

from controller.cli import attendees as attendees_cli
from controller.cli import help as help_cli
from controller.cli import instructors as instructors_cli
from controller.cli import labs as labs_cli
from controller.cli import messages as messages_cli
from controller.cli import provision as provision_cli
from controller.cli import render
from controller.cli import rescue as rescue_cli
from controller.cli.batches import fetch_batch, follow_batch
from controller.cli.fleet import fleet as fleet_group
from controller.cli.options import Context, call, json_option, pass_ctx
from controller.settings import ConfigurationError


@click.group()
@click.option("--data-dir", envvar="LABFLEET_DATA_DIR", default=None, help="Controller data directory.")
@click.option("--url", envvar="LABFLEET_URL", default=None, help="Controller URL (default: from init).")
@click.option("--token", envvar="LABFLEET_TOKEN", default=None, help="Instructor API token (default: from init).")
@click.version_option(package_name="labfleet")
@click.pass_context
def cli(ctx: click.Context, data_dir: str | None, url: str | None, token: str | None) -> None:
    """Run the lab machines of a container-security workshop."""
    ctx.obj = Context(data_dir, url, token)


# -- setting up -----------------------------------------------------------

@cli.command()
@click.option("--instructor", default="instructor", show_default=True)
@click.option("--enroll-uses", default=10, show_default=True, help="How many machines the first enrollment token admits.")
@click.option("--tls-name", "tls_names", multiple=True, metavar="NAME",
              help="Another DNS name or IP address of the controller for its certificate (repeatable).")
@click.option("--tls/--no-tls", "make_tls", default=True, show_default=True,
              help="Make the room's CA and the controller's certificate (kept when they exist).")
@pass_ctx
def init(ctx: Context, instructor: str, enroll_uses: int, tls_names: tuple[str, ...], make_tls: bool) -> None:
    """Create the data directory, the database, the room's CA and certificate, an instructor token and an
    enrollment token."""
    from controller import bootstrap

    try:
        result = bootstrap.initialize(ctx.settings(), instructor=instructor, enroll_uses=enroll_uses,
                                      make_tls=make_tls, tls_names=tls_names)
    except ConfigurationError as exc:
        raise click.ClickException(render.clean(exc)) from None
    safe = render.safe
    render.console.print(f"Data directory: {safe(result.settings.data_dir)}")
    render.console.print(f"Database:       {safe(result.database)}")
    if result.tls is not None:
        issued = result.tls
        render.console.print(f"Room CA:        {safe(issued.ca_file)}" + (" (new)" if issued.new_ca else " (kept)"),
                             soft_wrap=True)
        render.console.print(f"Certificate:    {safe(issued.cert_file)}" + (" (new)" if issued.new_cert else " (kept)")
                             + f" for {safe(', '.join(issued.names))}", soft_wrap=True)
    elif not result.settings.serves_tls:
        render.console.print("[yellow]No TLS: tokens cross the network in clear; agents need --insecure-http[/yellow]")
    render.console.print(f"Controller URL: {safe(result.settings.base_url)}", soft_wrap=True)
    render.console.print(f"Instructor API token for [bold]{safe(instructor)}[/bold] "
                         f"(saved to {safe(result.credentials_path)}):")
    render.console.print(f"  {safe(result.api_token)}", soft_wrap=True)
    render.console.print(f"Enrollment token ({enroll_uses} uses): {safe(result.enrollment_token)}", soft_wrap=True)
    if result.web_password:
        render.console.print(f"Web login: {safe(result.settings.base_url)}/login as [bold]{safe(instructor)}[/bold], "
                             f"one-time password (change it with `labfleet instructor passwd`): "
                             f"{safe(result.web_password)}", soft_wrap=True)


@cli.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8300).")
@click.option("--workers", type=int, default=None, help="Web processes.")
@pass_ctx
def serve(ctx: Context, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the web app and API (gunicorn, threaded workers)."""
    from controller.app import create_app
    from controller.cli.server import GunicornServer
    from controller.runtime import metrics

    settings = ctx.settings(host=host, port=port, web_workers=workers)
    _require_current_schema(settings)
    # Every gunicorn worker writes its counters to one folder; /metrics sums them (docs/architecture.md#metrics).
    metrics.enable_multiprocess()
    try:
        app = create_app(settings)
        try:
            server = GunicornServer(app, settings)
        except ConfigurationError as exc:
            raise click.ClickException(str(exc)) from None
        server.run()
    finally:
        metrics.disable_multiprocess(remove=True)


def _require_current_schema(settings) -> None:
    from controller import db as db_module

    database = db_module.database_for(settings)
    try:
        database.require_current_schema()
    except db_module.SchemaOutOfDate as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        database.dispose()


@cli.command()
@click.option("--beat/--no-beat", default=True, show_default=True, help="Also schedule the periodic sweep.")
@click.option("--concurrency", default=2, show_default=True)
@pass_ctx
def worker(ctx: Context, beat: bool, concurrency: int) -> None:
    """Run a Celery worker (and the beat scheduler for the sweep)."""
    from controller.app import create_app
    from controller.cli.server import run_worker

    settings = ctx.settings()
    _require_current_schema(settings)
    app = create_app(settings)
    run_worker(app, beat=beat, concurrency=concurrency, loglevel=settings.log_level)


@cli.group("db")
def db_group() -> None:
    """The controller's database schema."""


@db_group.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    """Migrate the database to this labfleet's schema, once per upgrade (serve and worker refuse an old one)."""
    from controller import db as db_module

    database = db_module.database_for(ctx.settings())
    try:
        before, head = database.schema_revisions()
        database.upgrade()
        shown = database.engine.url.render_as_string(hide_password=True)
    finally:
        database.dispose()
    was = ", ".join(sorted(before)) or "empty"
    now = ", ".join(sorted(head))
    render.console.print(f"database {render.safe(shown)}: schema {render.safe(was)} -> {render.safe(now)}"
                         + (" (already current)" if before == head else ""), soft_wrap=True)


# -- enrollment tokens ----------------------------------------------------

@cli.group("enroll-token")
def enroll_token() -> None:
    """Create, list and revoke enrollment tokens."""


@enroll_token.command("create")
@click.option("--label", default="")
@click.option("--ttl", type=float, default=None, help="Seconds until it expires (default 24 h).")
@click.option("--uses", type=int, default=1, show_default=True)
@json_option
@pass_ctx
def enroll_token_create(ctx: Context, label: str, ttl: float | None, uses: int, as_json: bool) -> None:
    body = {"label": label, "uses": uses, **({"ttl": ttl} if ttl else {})}
    token = call(ctx.client().post, "/api/v1/enroll-tokens", body)
    if as_json:
        render.print_json(token)
    else:
        render.console.print(f"{render.safe(token['token'])}  (id {render.safe(token['id'])}, {uses} use(s), "
                             f"expires {render.safe(token['expires_at'][:19])})", soft_wrap=True)


@enroll_token.command("list")
@json_option
@pass_ctx
def enroll_token_list(ctx: Context, as_json: bool) -> None:
    tokens = call(ctx.client().get_all, "/api/v1/enroll-tokens", "tokens")
    render.show(tokens, render.tokens_table(tokens), as_json=as_json)


@enroll_token.command("revoke")
@click.argument("token_id")
@pass_ctx
def enroll_token_revoke(ctx: Context, token_id: str) -> None:
    token = call(ctx.client().post, f"/api/v1/enroll-tokens/{token_id}/revoke")
    render.console.print(f"enrollment token {render.safe(token['id'])} is {render.safe(token['status'])}")


# -- nodes ---------------------------------------------------------------

@cli.command()
@json_option
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """Every node: name, address, state, last seen, agent version."""
    nodes = call(ctx.client().get_all, "/api/v1/nodes", "nodes")
    if as_json:
        render.print_json(nodes)
        return
    render.console.print(render.nodes_table(nodes))
    online = sum(1 for n in nodes if n["state"] == "online")
    render.console.print(f"{online}/{len(nodes)} online")
    help_cli.print_stuck(ctx.client())


@cli.group()
def nodes() -> None:
    """Act on individual nodes."""


@nodes.command("revoke")
@click.argument("node")
@pass_ctx
def nodes_revoke(ctx: Context, node: str) -> None:
    """Revoke a node's token: its agent is refused until it enrolls again."""
    result = call(ctx.client().post, f"/api/v1/nodes/{node}/revoke")
    render.console.print(f"node {render.safe(result['name'])} is {render.safe(result['state'])}")


@cli.command("exec")
@click.argument("kind")
@click.option("--node", "node_names", multiple=True, help="A node name (repeatable).")
@click.option("--all", "all_nodes", is_flag=True, help="Every enrolled node.")
@click.option("--arg", "raw_args", multiple=True, help="KEY=VALUE argument (VALUE parsed as JSON when it can be).")
@click.option("--timeout", type=float, default=None, help="Seconds the agent may spend on it.")
@click.option("--wait", "wait_for", type=float, default=60.0, show_default=True, help="Seconds to wait for results.")
@json_option
@pass_ctx
def exec_(ctx: Context, kind: str, node_names: tuple[str, ...], all_nodes: bool, raw_args: tuple[str, ...],
          timeout: float | None, wait_for: float, as_json: bool) -> None:
    """Run a command KIND (ping, collect-state, agent-restart) on nodes and show each result."""
    if bool(node_names) == all_nodes:
        raise click.UsageError("give either --node NAME (one or more) or --all")
    client = ctx.client()
    body: dict[str, Any] = {"kind": kind, "args": _parse_args(raw_args), "nodes": list(node_names),
                            "all": all_nodes}
    if timeout:
        body["timeout"] = timeout
    issued = call(client.post, "/api/v1/commands", body)
    batch = follow_batch(client, issued["batch_id"], len(issued["commands"]), wait_for, quiet=as_json)
    if as_json:
        render.print_json(batch)
        return
    render.console.print(render.results_table(batch["commands"]))
    if batch["done"] < batch["total"]:
        render.console.print(f"[yellow]{batch['total'] - batch['done']} node(s) have not answered yet; "
                             f"follow with: labfleet batch {render.safe(issued['batch_id'])}[/yellow]")
    if any(c["state"] != "succeeded" for c in batch["commands"]):
        raise SystemExit(1)


def _parse_args(raw_args: tuple[str, ...]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for raw in raw_args:
        key, sep, value = raw.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{raw!r} is not KEY=VALUE", param_hint="--arg")
        try:
            args[key] = json.loads(value)
        except ValueError:
            args[key] = value
    return args


@cli.command()
@click.argument("batch_id")
@json_option
@pass_ctx
def batch(ctx: Context, batch_id: str, as_json: bool) -> None:
    """Show the results of an earlier exec."""
    data = fetch_batch(ctx.client(), batch_id)
    render.show(data, render.results_table(data["commands"]), as_json=as_json)


@cli.command()
@click.option("--limit", default=30, show_default=True)
@click.option("--action", default=None, help="Only this action, e.g. command.issue.")
@json_option
@pass_ctx
def audit(ctx: Context, limit: int, action: str | None, as_json: bool) -> None:
    """Recent audit entries: who did what to which node."""
    query = "/api/v1/audit" + (f"?{urllib.parse.urlencode({'action': action})}" if action else "")
    entries = call(ctx.client().get_all, query, "entries", at_most=limit)
    render.show(entries, render.audit_table(entries), as_json=as_json)


@cli.command()
@click.option("--hosts", "--agents", "hosts", default=3, show_default=True, help="How many lab hosts to start.")
@click.option("--fleet/--no-fleet", "use_fleet", default=True, show_default=True,
              help="Lab hosts of namespaces provisioned by the playbook (root), or plain local agent processes.")
@click.option("--port", type=int, default=None, help="Controller port (default 8300).")
@click.option("--duration", type=float, default=None, help="Stop by itself after this many seconds.")
@pass_ctx
def demo(ctx: Context, hosts: int, use_fleet: bool, port: int | None, duration: float | None) -> None:
    """A controller, a worker and N provisioned lab hosts; Ctrl-C stops and removes them all."""
    from controller.cli.demo import run_demo

    if use_fleet and os.geteuid() != 0:
        raise click.UsageError("the local fleet needs root (namespaces, a bridge, sshd); run as root or "
                               "use --no-fleet for plain local agents")
    run_demo(ctx.settings(port=port), hosts=hosts, duration=duration, use_fleet=use_fleet)


cli.add_command(fleet_group)  # labfleet fleet up|down|list
cli.add_command(provision_cli.provision)  # labfleet provision [cancel|show|list]
cli.add_command(provision_cli.teardown)
cli.add_command(attendees_cli.attendees)  # labfleet attendees import|list
cli.add_command(attendees_cli.assign)
cli.add_command(attendees_cli.credentials)
cli.add_command(instructors_cli.instructor)  # labfleet instructor add|passwd|remove|list
labs_cli.register(cli)  # labfleet check|solve|reset|progress
help_cli.register(cli)  # labfleet help list|claim|reply|resolve|raise
messages_cli.register(cli)  # labfleet message
rescue_cli.register(cli)  # labfleet rescue, labfleet diagnostics


def main() -> None:  # pragma: no cover - console entry point
    cli()


if __name__ == "__main__":  # `python -m controller.cli.main`, used by the demo
    cli()
