"""What every ``labfleet`` command shares: the context, ``--json`` and turning client errors into exits.

The one place for them, so that no command module imports from ``controller.cli.main`` (which
imports them all). Light on purpose: click and ``render``; the HTTP client (``ssl``, ``urllib.request``) and the
controller's settings load only when a command asks for them, so ``labfleet --help`` needs neither.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from controller.cli import render

if TYPE_CHECKING:
    from controller.cli.client import ControllerClient
    from controller.settings import Settings

#: ``--json``: print the API's data as JSON instead of a table (every command that shows something).
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


class Context:
    """The global options (``--data-dir``, ``--url``, ``--token``), and what they lead to."""

    def __init__(self, data_dir: str | None, url: str | None, token: str | None) -> None:
        self._data_dir = data_dir
        self._url = url
        self._token = token

    def settings(self, **overrides: Any) -> Settings:
        from controller.settings import ConfigurationError, Settings

        try:
            return Settings.from_env(data_dir=self._data_dir, **overrides)
        except ConfigurationError as exc:
            raise click.ClickException(render.clean(exc)) from None

    def client(self) -> ControllerClient:
        from controller.cli.client import ControllerClient
        from controller.credentials import Credentials, MissingCredentials

        settings = self.settings()
        try:
            credentials = Credentials.resolve(url=self._url, token=self._token, data_dir=settings.data_dir,
                                              ca_file=settings.tls_ca_file)
        except MissingCredentials as exc:
            raise click.ClickException(render.clean(exc)) from None
        with client_errors():
            return ControllerClient(credentials)


pass_ctx = click.make_pass_decorator(Context)


@contextmanager
def client_errors() -> Iterator[None]:
    """A :class:`ClientError` (refused, unreachable, bad certificate) ends the command: its message, exit 1."""
    try:
        yield
    except Exception as exc:
        # A ClientError can only come from a loaded client module: no need to import it to recognise one.
        client = sys.modules.get("controller.cli.client")
        if client is None or not isinstance(exc, client.ClientError):
            raise
        raise click.ClickException(render.clean(exc)) from None


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` under :func:`client_errors`: ``call(client.get, "/api/v1/nodes")``."""
    with client_errors():
        return fn(*args, **kwargs)
