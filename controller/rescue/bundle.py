"""A node's diagnostics bundle: one tar.gz an instructor downloads when something is wrong with a node.

Parts (each a file in the archive, listed with its source in ``manifest.json``):

- ``state-snapshot.json``: the agent's state — asked of the agent now (``collect-state``) when it is
  online, else the last snapshot it sent;
- ``lab-progress.json`` and ``command-history.json``: what the controller recorded for the node;
- ``agent.log``, ``readiness.json``, ``system-facts.txt``, ``processes.txt``, ``agent.toml``: read
  from the node over SSH (provisioning's key and recorded host key, strictly checked) when it has an
  SSH record; a part that could not be read says why in the manifest.

Every text goes through the redactor (labfleet tokens, private keys, ``password=``/``token:``-shaped
values) before it enters the archive; the enrollment-token env file is never read.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable
from typing import Any

import paramiko
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller import commands, lab_progress, states
from controller.models import Command, CommandResult, Node, utcnow
from controller.provision.redact import Redactor
from controller.rescue import remote
from controller.rescue.shell import RemoteShell, ShellClosed, ShellTimeout
from controller.rescue.ssh import HostKeyRefused, connect
from controller.rescue.target import NoSshRecord, resolve

HISTORY = 200  # commands in the history


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"


def collect(session: Session, node: Node, *, data_dir, actor: str, ask_agent: Callable[[Node], dict | None],
            ssh_timeout: float = 20.0) -> tuple[bytes, dict[str, Any]]:
    """The archive's bytes and its manifest. ``ask_agent(node)`` returns collect-state's output or None."""
    redact = Redactor()
    parts: dict[str, str] = {}
    manifest: dict[str, Any] = {"node": node.name, "node_id": node.id, "state": node.state,
                                "made_at": utcnow().isoformat(), "made_by": actor, "parts": {}}

    def put(name: str, text: str, source: str) -> None:
        parts[name] = redact(text)
        manifest["parts"][name] = source

    live = ask_agent(node) if node.state == states.NODE_ONLINE else None
    if live is not None:
        put("state-snapshot.json", _json(live), "agent (collect-state, now)")
    else:
        put("state-snapshot.json", _json(node.state_snapshot or {}), "controller (the agent's last snapshot)")
    rows = [lab_progress.table_row(r) for r in session.execute(lab_progress.table_query(node=node.name)).all()]
    put("lab-progress.json", _json(rows), "controller")
    history = []
    for command, result in session.execute(
            select(Command, CommandResult).outerjoin(CommandResult, CommandResult.command_id == Command.id)
            .where(Command.node_id == node.id).order_by(Command.issued_at.desc()).limit(HISTORY)):
        history.append({**commands.to_dict(command),
                        "result": None if result is None else {"ok": result.ok, "error": result.error,
                                                               "output": result.output}})
    put("command-history.json", _json(history), "controller")

    try:
        target = resolve(session, node, data_dir)
    except NoSshRecord as exc:
        manifest["ssh"] = str(exc)
        target = None
    if target is not None:
        try:
            conn = connect(target, timeout=ssh_timeout)
        except HostKeyRefused as exc:
            manifest["ssh"] = f"refused: {exc}"
        except (paramiko.SSHException, OSError, EOFError) as exc:
            manifest["ssh"] = f"unreachable: {type(exc).__name__}: {exc}"
        else:
            manifest["ssh"] = f"{target.user}@{target.address}:{target.port} (host key as recorded)"
            shell = None
            try:
                # One remote shell for every file, as rescue does (controller/rescue/shell.py).
                shell = RemoteShell(conn.client.get_transport(), timeout=ssh_timeout)
                for name, command in remote.BUNDLE_FILES.items():
                    code, output = shell.run(command, timeout=ssh_timeout)
                    if code == 0:
                        put(name, output, "node over SSH")
                    else:
                        manifest["parts"][name] = f"not read (exit {code}): " + redact(output.strip()[-200:])
            except (ShellTimeout, ShellClosed, paramiko.SSHException, OSError, EOFError) as exc:
                manifest["ssh"] += f"; stopped: {type(exc).__name__}: {redact(str(exc))[:200]}"
            finally:
                if shell is not None:
                    shell.close()
                conn.close()
    put("manifest.json", _json(manifest), "controller")
    return _tar(node.name, parts), manifest


def _tar(name: str, parts: dict[str, str]) -> bytes:
    out = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for part, text in parts.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-diagnostics/{part}")
            info.size, info.mtime, info.mode = len(data), now, 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
