"""The rescue of one host: its steps, each timed, all inside one time bound.

Steps: ``connect`` (strict host key), ``diagnose`` (agent status and log, process
tree, load, memory, pids per lab cgroup, kernel log tail), ``kill_runaway``,
``restart_agent``, ``wait_online`` (the node's last_seen advances past the
restart). A step that fails ends the rescue; every step's command and output go
to the transcript, through the redactor (tokens, passwords, private keys).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paramiko

from controller.provision.redact import Redactor
from controller.rescue import remote
from controller.rescue.shell import RemoteShell, ShellClosed
from controller.rescue.ssh import HostKeyRefused, connect
from controller.rescue.target import SshTarget

MAX_OUTPUT = 8000  # characters of one command's output kept in the transcript
MARK = "@@labfleet-rescue@@ "
STEPS = ("connect", "diagnose", "kill_runaway", "restart_agent", "wait_online")

RECOVERED, FAILED, REFUSED, UNREACHABLE = "recovered", "failed", "refused", "unreachable"


@dataclass
class Outcome:
    state: str = FAILED
    message: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: dict[str, str] = field(default_factory=dict)
    transcript: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.transcript)


class StepFailed(Exception):
    def __init__(self, state: str, message: str) -> None:
        super().__init__(message)
        self.state = state


def rescue_host(target: SshTarget, *, time_bound: float, runaway_limit: int,
                wait_online: Callable[[float], bool], on_step: Callable[[str, dict | None], None],
                redact: Redactor | None = None) -> Outcome:
    """Run the steps on ``target`` within ``time_bound`` seconds; ``on_step(name, done_or_None)`` reports progress.

    ``wait_online(seconds)`` returns True once the node's agent spoke after the restart.
    """
    redact = redact or Redactor()
    deadline = time.monotonic() + time_bound
    out = Outcome()
    conn = None
    shell: RemoteShell | None = None

    def left(cap: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0.5:
            raise StepFailed(FAILED, f"time bound of {time_bound:.0f} s reached")
        return min(cap, remaining)

    def sh(label: str, command: str, cap: float = 20.0) -> tuple[int, str]:
        code, output = shell.run(command, timeout=left(cap))
        text = redact(output[-MAX_OUTPUT:])
        out.transcript.append(f"$ {label}  [exit {code}]\n{text.rstrip()}")
        return code, text

    def step(name: str, body: Callable[[], str]) -> None:
        on_step(name, None)
        started = time.monotonic()
        record = {"name": name, "ok": False, "seconds": 0.0, "summary": ""}
        try:
            record["summary"] = body()
            record["ok"] = True
        except StepFailed as exc:
            record["summary"] = str(exc)
            raise
        except (paramiko.SSHException, OSError, EOFError, ShellClosed) as exc:
            record["summary"] = redact(f"{type(exc).__name__}: {exc}")
            raise StepFailed(UNREACHABLE if name == "connect" else FAILED, record["summary"]) from None
        except Exception as exc:  # ShellTimeout and the like
            record["summary"] = redact(f"{type(exc).__name__}: {exc}")[:500]
            raise StepFailed(FAILED, record["summary"]) from None
        finally:
            record["seconds"] = round(time.monotonic() - started, 3)
            out.steps.append(record)
            out.transcript.append(f"# step {name}: {'ok' if record['ok'] else 'FAILED'} "
                                  f"in {record['seconds']:.2f} s: {record['summary']}")
            on_step(name, record)

    init = {"kind": "supervisor"}

    def do_connect() -> str:
        nonlocal conn, shell
        try:
            conn = connect(target, timeout=left(10.0))
        except HostKeyRefused as exc:
            raise StepFailed(REFUSED, str(exc)) from None
        # Every step's command goes through this one shell (controller/rescue/shell.py).
        shell = RemoteShell(conn.client.get_transport(), timeout=left(10.0))
        code, text = sh("init system", remote.INIT, 10)
        init["kind"] = "systemd" if text.strip().endswith("systemd") else "supervisor"
        return f"{target.user}@{target.address}:{target.port}, host key as recorded, agent under {init['kind']}"

    def do_diagnose() -> str:
        # One remote command for all of them (one SSH round trip, not seven), split by marker lines.
        parts = []
        for name, command in remote.DIAGNOSTICS.items():
            command = command[init["kind"]] if isinstance(command, dict) else command
            parts.append(f"echo '{MARK}{name}'; ( {command} ) 2>&1")
        code, output = shell.run("\n".join(parts), timeout=left(30.0))
        current = None
        sections: dict[str, list[str]] = {}
        for line in output.splitlines():
            if line.startswith(MARK):
                current = line[len(MARK):]
                sections[current] = []
            elif current is not None:
                sections[current].append(line)
        for name in remote.DIAGNOSTICS:
            text = redact("\n".join(sections.get(name, []))[-MAX_OUTPUT:])
            out.diagnostics[name] = text
            out.transcript.append(f"$ {name}\n{text.rstrip()}")
        lines = out.diagnostics.get("agent_status", "").strip().splitlines()
        return f"agent status: {lines[0]}" if lines else "collected"

    def do_kill() -> str:
        code, text = sh("kill runaway lab processes", remote.KILL_RUNAWAY % {"limit": runaway_limit}, 30)
        killed = [line for line in text.splitlines() if line.startswith("killed")]
        return "; ".join(killed) or "no runaway process"

    def do_restart() -> str:
        code, text = sh("restart agent", remote.RESTART[init["kind"]], 40)
        if code != 0:
            raise StepFailed(FAILED, f"restart failed (exit {code}): {text.strip()[-300:]}")
        return text.strip().splitlines()[-1] if text.strip() else "restarted"

    def do_wait() -> str:
        if not wait_online(left(120.0)):
            raise StepFailed(FAILED, "the agent did not come back online within the time bound")
        return "the node reported again: online"

    try:
        for name, body in zip(STEPS, (do_connect, do_diagnose, do_kill, do_restart, do_wait), strict=True):
            step(name, body)
        out.state, out.message = RECOVERED, "agent restarted; node online"
    except StepFailed as exc:
        out.state, out.message = exc.state, str(exc)
    finally:
        if shell is not None:
            shell.close()
        if conn is not None:
            conn.close()
    return out
