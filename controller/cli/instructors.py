"""``labfleet instructor add|passwd|remove|list``: who may log in to the web pages.

These talk to the controller's database directly, like ``labfleet init``: they
are run on the controller's machine by whoever runs it, and a password must
never cross the API. A generated password is printed once; only its argon2
hash is kept.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from controller.cli import render


def _database(obj: Any):
    from controller import db as db_module

    database = db_module.database_for(obj.settings())
    database.upgrade()
    return database


def _run(obj: Any, action):
    from controller.errors import ApiError

    database = _database(obj)
    try:
        with database.session() as session:
            return action(session)
    except ApiError as exc:
        raise click.ClickException(render.clean(exc.detail)) from None
    finally:
        database.dispose()


def _read_password(from_stdin: bool) -> str | None:
    if not from_stdin:
        return None
    return sys.stdin.readline().rstrip("\n")


password_stdin = click.option("--password-stdin", is_flag=True,
                              help="Read the password from the first line of stdin instead of generating one.")


@click.group("instructor")
def instructor() -> None:
    """Instructor logins for the web pages (the API's tokens are `labfleet init`'s)."""


@instructor.command("add")
@click.argument("name")
@password_stdin
@click.pass_obj
def instructor_add(obj: Any, name: str, password_stdin: bool) -> None:
    """Add an instructor who logs in as NAME; prints a one-time password unless one is given."""
    from controller import web_accounts

    given = _read_password(password_stdin)
    password = _run(obj, lambda s: web_accounts.add(s, name, password=given, actor="cli:instructor"))
    _show(name, None if given else password)


@instructor.command("passwd")
@click.argument("name")
@password_stdin
@click.pass_obj
def instructor_passwd(obj: Any, name: str, password_stdin: bool) -> None:
    """Give NAME a new password (generated unless given); their open sessions end."""
    from controller import web_accounts

    given = _read_password(password_stdin)
    password = _run(obj, lambda s: web_accounts.set_password(s, name, password=given, actor="cli:instructor"))
    _show(name, None if given else password)


@instructor.command("remove")
@click.argument("name")
@click.pass_obj
def instructor_remove(obj: Any, name: str) -> None:
    """NAME can no longer log in, and their API tokens are revoked."""
    from controller import web_accounts

    revoked = _run(obj, lambda s: web_accounts.remove(s, name, actor="cli:instructor"))
    render.console.print(f"instructor {render.safe(name)} removed; {revoked} API token(s) revoked")


@instructor.command("list")
@click.pass_obj
def instructor_list(obj: Any) -> None:
    """Every instructor and whether they can log in."""
    from controller import web_accounts

    rows = _run(obj, lambda s: [(i.name, "removed" if i.disabled_at else "login" if i.password_hash else "API only")
                                for i in web_accounts.listing(s)])
    for name, status in rows:
        render.console.print(f"{render.safe(name)}  {status}")


def _show(name: str, password: str | None) -> None:
    if password is None:
        render.console.print(f"password of {render.safe(name)} set")
        return
    render.console.print(f"One-time password for [bold]{render.safe(name)}[/bold] (shown once; "
                         f"change it with `labfleet instructor passwd`):")
    render.console.print(f"  {render.safe(password)}", soft_wrap=True)
