"""The closed set of commands the agent runs, and the one way to run them.

Each command kind is one function registered with ``@command(kind, ArgsClass)``;
it takes the shared ``CommandContext`` and its decoded arguments and returns a
JSON-ready dict. ``run_command`` turns anything that goes wrong — an unknown
kind, bad arguments, a timeout, a crash — into a failed ``CommandResult``:
a command never takes the agent down.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import typing
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from node_agent.clock import utc_now
from node_agent.errors import CommandError
from node_agent.logs import get_logger
from node_agent.protocol import CommandMessage, CommandResult, ProtocolError, decode

log = get_logger(__name__)

MAX_ERROR_CHARS = 8192  # CommandResult.error's max_length on the controller


@dataclass
class CommandContext:
    """What commands may use from the running agent.

    ``shutdown`` is set when the agent stops: long commands wait on it instead of sleeping.
    ``restart_requested`` asks the daemon to re-exec itself once this command's result is delivered.
    """

    node_name: str
    output_limit_bytes: int = 64 * 1024
    shutdown: threading.Event = field(default_factory=threading.Event)
    restart_requested: threading.Event = field(default_factory=threading.Event)
    labs: Any = None  # node_agent.labs.service.LabService, when the agent has a lab catalog
    terminal: Any = None  # node_agent.terminal.TerminalService: the shared terminal's relays


Handler = Callable[[CommandContext, Any], dict[str, Any]]


@dataclass(frozen=True)
class CommandSpec:
    kind: str
    args_type: type
    handler: Handler


REGISTRY: dict[str, CommandSpec] = {}


def command(kind: str, args_type: type) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of ``kind`` with arguments ``args_type``."""

    def register(handler: Handler) -> Handler:
        if kind in REGISTRY:
            raise ValueError(f"command kind {kind!r} is registered twice")
        REGISTRY[kind] = CommandSpec(kind, args_type, handler)
        return handler

    return register


def run_command(ctx: CommandContext, message: CommandMessage) -> CommandResult:
    """Run one command within its timeout; the result says how it went, it never raises."""
    started_at, t0 = utc_now(), time.monotonic()
    try:
        output, error = _execute(ctx, message), None
    except CommandError as exc:
        output, error = {}, str(exc)
    except TimeoutError:
        output, error = {}, f"timed out after {message.timeout:g}s"
    except Exception as exc:  # a crashing handler must become a failed result, not a dead worker
        log.error("command.crashed", exc_info=True, command_id=message.id, kind=message.kind)
        output, error = {}, f"{message.kind} failed: {type(exc).__name__}: {exc}"
    return CommandResult(
        command_id=message.id, ok=error is None, output=output,
        error=error[:MAX_ERROR_CHARS] if error else None,
        started_at=started_at, finished_at=utc_now(), duration_ms=round((time.monotonic() - t0) * 1000, 3),
    )


def _execute(ctx: CommandContext, message: CommandMessage) -> dict[str, Any]:
    spec = REGISTRY.get(message.kind)
    if spec is None:
        raise CommandError(f"unknown command kind {message.kind!r}; this agent knows {', '.join(sorted(REGISTRY))}")
    args = decode_args(spec.args_type, message.args, message.kind)
    if isinstance(message.timeout, bool) or not isinstance(message.timeout, int | float) or message.timeout <= 0:
        raise CommandError(f"timeout: expected a positive number of seconds, got {message.timeout!r}")
    output = call_with_timeout(lambda: spec.handler(ctx, args), message.timeout)
    return cap_output(output, ctx.output_limit_bytes)


def decode_args(args_type: type, args: Any, kind: str) -> Any:
    """``args`` as ``args_type``, as strict as the controller's pydantic check.

    protocol.decode checks presence and types; this adds what it leaves out:
    unknown keys, booleans passed as integers, and the ``ge``/``le`` bounds.
    """
    try:
        decoded = decode(args_type, args)
    except ProtocolError as exc:
        raise CommandError(f"bad arguments for {kind}: {exc}") from exc
    fields = {f.name: f for f in dataclasses.fields(args_type)}
    unknown = sorted(set(args) - set(fields))
    if unknown:
        raise CommandError(f"bad arguments for {kind}: unknown argument {unknown[0]!r}")
    hints = typing.get_type_hints(args_type)
    for name, f in fields.items():
        _check_bounds(kind, name, hints[name], f.metadata, getattr(decoded, name))
    return decoded


def _check_bounds(kind: str, name: str, hint: Any, metadata: Any, value: Any) -> None:
    if value is None:
        return
    if hint in (int, float) and isinstance(value, bool):
        raise CommandError(f"bad arguments for {kind}: {name}: expected {hint.__name__}, got a boolean")
    if "ge" in metadata and value < metadata["ge"]:
        raise CommandError(f"bad arguments for {kind}: {name}: must be >= {metadata['ge']}, got {value!r}")
    if "le" in metadata and value > metadata["le"]:
        raise CommandError(f"bad arguments for {kind}: {name}: must be <= {metadata['le']}, got {value!r}")


def call_with_timeout(fn: Callable[[], dict[str, Any]], timeout: float) -> dict[str, Any]:
    """``fn()``, or TimeoutError after ``timeout`` seconds.

    The handler runs on its own daemon thread: Python cannot kill a thread, and a
    ThreadPoolExecutor worker stuck in a handler would block the interpreter's
    exit (concurrent.futures joins its threads at exit), so a hung command
    could stop the agent from shutting down or restarting.
    """
    future: Future[dict[str, Any]] = Future()

    def target() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to the waiting caller, which decides
            future.set_exception(exc)

    threading.Thread(target=target, name="command-handler", daemon=True).start()
    return future.result(timeout)


def cap_output(output: Any, limit: int) -> dict[str, Any]:
    """``output`` if its JSON fits in ``limit`` bytes, else ``{"truncated", "size_bytes", "preview"}``."""
    if not isinstance(output, dict):
        raise CommandError(f"handler returned {type(output).__name__}, expected a JSON object")
    try:
        encoded = json.dumps(output, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise CommandError(f"output is not JSON-serializable: {exc}") from exc
    if len(encoded) <= limit:
        return output
    # The preview is JSON text embedded in a JSON string: escaping can double it.
    preview = encoded[: max(0, limit // 2 - 64)].decode("utf-8", "ignore")
    return {"truncated": True, "size_bytes": len(encoded), "preview": preview}


# Register the built-in kinds; imported last because builtin.py imports this module.
from node_agent.commands import builtin, help_notice, labs, message_notice, terminal  # noqa: E402, F401
