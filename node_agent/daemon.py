"""The agent's life: enroll, heartbeat, long-poll commands, run each once, deliver every result.

Threads, each blocked on a socket, an event or a queue (never spinning):

- main: waits on a wake-up pipe (signals and stop requests), then shuts down;
- ``poll``: enrolls if needed, then long-polls commands on its own connection;
- ``heartbeat``: beats every interval (±20 %), uploads the state when asked;
- ``results``: delivers the journal's outbox, retrying while the controller is away;
- ``worker-N``: run commands (``command_workers`` of them).

Every thread is a daemon thread: shutdown waits for them for a bounded time
only, so a hung command or socket cannot keep the agent from stopping.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import queue
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

from node_agent import __version__
from node_agent.attendee_socket import AttendeeServer
from node_agent.backoff import Backoff
from node_agent.client import ControllerClient
from node_agent.commands import CommandContext, run_command
from node_agent.config import AgentConfig
from node_agent.errors import (
    ConfigurationError,
    ControllerUnavailable,
    EnrollmentRefused,
    RequestRejected,
    Unauthorized,
)
from node_agent.help_desk import NOTICE_FILE, HelpDesk, HelpUnavailable
from node_agent.identity import (
    Credentials,
    Identity,
    load_credentials,
    load_or_create_identity,
    save_credentials,
)
from node_agent.journal import InvalidCommandId, Journal, check_command_id
from node_agent.kernel import procfs
from node_agent.labs.service import LabService
from node_agent.logs import get_logger
from node_agent.message_box import MessageBox
from node_agent.protocol import (
    CommandMessage,
    CommandResult,
    EnrollRequest,
    Heartbeat,
    HelpRequest,
    StateReport,
)
from node_agent.session_ceiling import SessionWatch
from node_agent.state import collect_state, state_digest
from node_agent.token_file import forget_token

log = get_logger(__name__)

SHUTDOWN_GRACE = 5.0  # running commands may finish this long after a stop request
INTERRUPT_GRACE = 1.0  # then they are told to stop (ctx.shutdown) and get this long to store a result
FLUSH_GRACE = 2.0  # and the results sender this long to deliver what they stored
DEFAULT_HEARTBEAT_INTERVAL = 10.0
NOT_STARTED = "not run: the agent stopped before this command started"
FIX_TOKEN = ("give the agent an enrollment token (--enroll-token, env LABFLEET_AGENT_ENROLL_TOKEN "
             "or enroll_token in the config file) and restart it")


class Agent:
    """One node agent. ``run()`` blocks until SIGTERM/SIGINT or ``stop()`` and returns the exit code."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.credentials: Credentials | None = None
        self.enrolled = threading.Event()
        self.journal: Journal | None = None
        self._identity: Identity | None = None
        self._client = ControllerClient(config.controller_url, ca_file=config.ca_file)  # heartbeats, state, results
        # enroll + long-poll, aborted first at stop
        self._poll_client = ControllerClient(config.controller_url, ca_file=config.ca_file)
        self._ctx = CommandContext(node_name=config.name, output_limit_bytes=config.output_limit_bytes)
        self._stop_polling = threading.Event()
        self._stop_sending = threading.Event()
        self._outbox_ready = threading.Event()
        self._queue: queue.SimpleQueue[CommandMessage] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._in_flight = 0
        self._heartbeat_interval = config.heartbeat_interval or DEFAULT_HEARTBEAT_INTERVAL
        self._restart_after: str | None = None
        self._stop_reason: str | None = None
        self._exit_code = 0
        self._threads: list[threading.Thread] = []
        self._wake_r, self._wake_w = os.pipe()
        self._wake_lock = threading.Lock()  # stop() must never write to the pipe's fd once it is closed
        os.set_blocking(self._wake_w, False)

    # -- public face -------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; 0 after a clean stop, 1 after an internal failure. Re-execs on agent-restart."""
        self._lock_state_dir()
        self._identity = load_or_create_identity(self.config.state_dir)
        self.credentials = self._stored_credentials()
        if self.credentials is None and not self.config.enroll_token:
            raise ConfigurationError(f"enroll_token: required to enroll (no credentials in {self.config.state_dir})")
        if self.credentials is not None:
            self._forget_token_on_disk()  # an earlier life may have stopped between storing and forgetting
        self.journal = Journal(self.config.state_dir)
        self._start_labs()
        log.info("agent.starting", version=__version__, pid=os.getpid(), name=self.config.name,
                 controller_url=self.config.controller_url, state_dir=str(self.config.state_dir))
        with self._signals_wake_main():
            self._start("poll", self._poll_main)
            for n in range(self.config.command_workers):
                self._start(f"worker-{n}", self._worker)
            reason = self._wait_for_stop()
            self._shutdown(reason)
        self._close_wake_pipe()  # only now: until the `with` ends, signals still write to it
        if reason == "restart":
            self._reexec()
        return self._exit_code

    def _start_labs(self) -> None:
        """Subreaper, a namespace self-check, the lab engine, and the attendee socket."""
        from node_agent.kernel import namespaces, reaper
        from node_agent.labs.engine_setup import check_cgroup_parent, engine_from_config

        check_cgroup_parent(self.config)  # before anything: a parent holding the VM itself is refused
        if not reaper.become_subreaper():
            log.warning("labs.no_subreaper", effect="killed lab processes are reaped by PID 1, cleanup is slower")
        try:
            unproven = namespaces.assert_initial(namespaces.ns_ids("self"))
            self.namespaces_initial: bool | None = True
            if unproven:
                log.info("labs.namespaces_unproven", types=unproven)
        except namespaces.NotInitialNamespace as exc:
            # A local-fleet host runs its agent in the host's own namespaces on purpose; on a VM this
            # means checks compare against the wrong baseline, so the instructor must see it.
            self.namespaces_initial = False
            log.warning("labs.not_initial_namespaces", error=str(exc))
        self._ctx.labs = self._labs = LabService(engine_from_config(self.config))
        self._labs.namespaces_initial = self.namespaces_initial
        self._labs.help_desk = HelpDesk(self.config.state_dir, self.config.attendee_socket.parent / NOTICE_FILE,
                                        send=self._raise_hand)
        self._labs.message_box = MessageBox(self.config.state_dir, self.config.attendee_socket.parent / NOTICE_FILE)
        if self.config.session_cgroup:
            self._labs.session_watch = SessionWatch(self.config.session_cgroup,
                                                    state_file=self.config.state_dir / "session-ceiling.json")
        from node_agent.terminal import TerminalService

        self._ctx.terminal = self._labs.terminal = TerminalService(
            controller_url=self.config.controller_url, ca_file=self.config.ca_file,
            attendee_user=self.config.attendee_user, credentials=self._terminal_credentials)
        for error in self._labs.engine.catalog.errors:
            log.warning("labs.broken_lab", error=str(error))
        self._attendee_server = AttendeeServer(self.config.attendee_socket, self._labs,
                                               max_clients=self.config.attendee_max_clients,
                                               client_timeout=self.config.attendee_client_timeout)
        try:
            self._attendee_server.start()
        except OSError as exc:
            log.warning("attendee_socket.unavailable", path=str(self.config.attendee_socket), error=str(exc))

    def _terminal_credentials(self) -> tuple[str, str] | None:
        credentials = self.credentials
        return (credentials.node_id, credentials.node_token) if credentials else None

    def stop(self, reason: str = "stop requested") -> None:
        """Ask ``run()`` to shut down cleanly. Safe from any thread."""
        if self._stop_reason is None:
            self._stop_reason = reason
        with self._wake_lock, contextlib.suppress(BlockingIOError):
            if self._wake_w >= 0:
                os.write(self._wake_w, b"\0")

    # -- enrollment ----------------------------------------------------------------

    def _stored_credentials(self) -> Credentials | None:
        credentials = load_credentials(self.config.state_dir)
        if credentials and credentials.controller_url != self.config.controller_url:
            log.warning("credentials.other_controller", stored=credentials.controller_url,
                        configured=self.config.controller_url, action="enrolling with the configured controller")
            return None
        return credentials

    def _use(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._client.token = self._poll_client.token = credentials.node_token
        self._ctx.node_name = credentials.name or self.config.name
        if self.config.heartbeat_interval is None and credentials.heartbeat_interval:
            self._heartbeat_interval = _sane_interval(credentials.heartbeat_interval)
        self.enrolled.set()

    def _enroll(self, backoff: Backoff) -> bool:
        """Enroll, retrying until it works or the agent stops; False if it stopped first."""
        assert self._identity is not None and self.config.enroll_token
        request = EnrollRequest(
            enrollment_token=self.config.enroll_token, machine_id=self._identity.machine_id,
            machine_secret=self._identity.machine_secret, name=self.config.name,
            hostname=procfs.hostname(), agent_version=__version__,
        )
        while not self._stop_polling.is_set():
            try:
                response = self._poll_client.enroll(request)
            except ControllerUnavailable as exc:
                delay = backoff.next_delay()
                log.warning("enroll.retry", error=str(exc), retry_in_s=round(delay, 2))
                backoff.wait(delay)
                continue
            except EnrollmentRefused as exc:
                delay = backoff.next_delay()
                log.error("enroll.refused", status=exc.status, error=exc.error, detail=exc.detail, field=exc.field,
                          retry_in_s=round(delay, 2), fix="issue a valid enrollment token for this event and " + FIX_TOKEN)
                backoff.wait(delay)
                continue
            credentials = Credentials(
                node_id=response.node_id, node_token=response.node_token, controller_url=self.config.controller_url,
                name=response.name, heartbeat_interval=response.heartbeat_interval, poll_wait=response.poll_wait,
            )
            save_credentials(self.config.state_dir, credentials)
            self._forget_token_on_disk()
            self._use(credentials)
            backoff.reset()
            log.info("enrolled", node_id=response.node_id, name=response.name)
            return True
        return False

    def _forget_token_on_disk(self) -> None:
        """The node credentials are stored: the token's file (env or config) need not hold it any more."""
        path = self.config.enroll_token_file
        if path is None:
            return
        try:
            if forget_token(path):
                log.info("enroll_token.removed", path=str(path))
        except OSError as exc:
            log.warning("enroll_token.not_removed", path=str(path), error=str(exc),
                        fix="remove the LABFLEET_AGENT_ENROLL_TOKEN line from it by hand")

    def _node_token_refused(self, backoff: Backoff) -> None:
        if self.config.enroll_token:
            log.warning("auth.refused", action="re-enrolling with the same machine identity")
            self._enroll(backoff)
            return
        delay = backoff.next_delay()
        log.error("auth.refused", retry_in_s=round(delay, 2),
                  fix="the controller refused this node's token (revoked?); " + FIX_TOKEN)
        backoff.wait(delay)

    # -- polling and running commands --------------------------------------------

    def _poll_main(self) -> None:
        backoff = Backoff(self.config.max_backoff, self._stop_polling)
        if self.credentials is not None:
            self._use(self.credentials)
        elif not self._enroll(backoff):
            return
        self._start("heartbeat", self._heartbeat_loop)
        self._start("results", self._sender_loop)
        self._poll_loop(backoff)

    def _poll_loop(self, backoff: Backoff) -> None:
        resync = True  # first poll, and after any error: ask again for commands whose delivery we may have lost
        while not self._stop_polling.is_set():
            wait, started = self._poll_wait(), time.monotonic()
            try:
                messages = self._poll_client.poll(self._node_id(), wait, resync)
            except ControllerUnavailable as exc:
                if not self._stop_polling.is_set():
                    delay = backoff.next_delay()
                    log.warning("poll.retry", error=str(exc), retry_in_s=round(delay, 2))
                    backoff.wait(delay)
                resync = True
                continue
            except Unauthorized:
                self._node_token_refused(backoff)
                resync = True
                continue
            except RequestRejected as exc:
                log.error("poll.rejected", status=exc.status, error=exc.error, detail=exc.detail)
                backoff.wait()
                resync = True
                continue
            resync = False
            for message in messages:
                if self._stop_polling.is_set():
                    break  # not journaled, so offered again after the restart (resync)
                self._accept(message)
            # An empty answer long before `wait` means the controller does not hold polls: pace ourselves.
            if not messages and time.monotonic() - started < wait / 2:
                backoff.wait()
            else:
                backoff.reset()

    def _accept(self, message: CommandMessage) -> None:
        """Queue a new command once; for a redelivered one, make sure its result goes out again."""
        assert self.journal is not None
        try:
            check_command_id(message.id)
        except InvalidCommandId as exc:
            log.error("command.refused", error=str(exc), kind=message.kind)
            return
        if self.journal.seen(message.id):
            requeued = self.journal.requeue(message.id)
            log.info("command.redelivered", command_id=message.id, kind=message.kind, result_queued=requeued)
            if requeued:
                self._outbox_ready.set()
            return
        self.journal.begin(message.id)
        with self._idle:
            self._in_flight += 1
        self._queue.put(message)
        log.info("command.accepted", command_id=message.id, kind=message.kind)

    def _worker(self) -> None:
        while True:
            message = self._queue.get()
            try:
                if self._stop_polling.is_set():
                    self._store(CommandResult(command_id=message.id, ok=False, error=NOT_STARTED))
                else:
                    self._run(message)
            finally:
                with self._idle:
                    self._in_flight -= 1
                    self._idle.notify_all()

    def _run(self, message: CommandMessage) -> None:
        ctx = dataclasses.replace(self._ctx, restart_requested=threading.Event())
        log.info("command.started", command_id=message.id, kind=message.kind)
        result = run_command(ctx, message)
        if ctx.restart_requested.is_set():
            self._restart_after = message.id  # before storing: the result may be acknowledged at once
        self._store(result)
        log.info("command.finished", command_id=message.id, kind=message.kind, ok=result.ok,
                 duration_ms=result.duration_ms, error=result.error)

    def _store(self, result: CommandResult) -> None:
        assert self.journal is not None
        self.journal.store_result(result)
        self._outbox_ready.set()

    # -- delivering results --------------------------------------------------------

    def _sender_loop(self) -> None:
        backoff = Backoff(self.config.max_backoff, self._stop_sending)
        self._outbox_ready.set()  # results left by an earlier life of the agent
        while not self._stop_sending.is_set():
            self._outbox_ready.wait()
            self._outbox_ready.clear()
            while not self._deliver_outbox():
                if not backoff.wait():
                    return
            backoff.reset()

    def _deliver_outbox(self) -> bool:
        """Post every pending result; False when the controller could not take them now."""
        assert self.journal is not None
        for result in self.journal.pending_results():
            if self._stop_sending.is_set():
                return True
            try:
                self._client.post_result(self._node_id(), result)
            except (ControllerUnavailable, Unauthorized) as exc:
                log.warning("result.retry", command_id=result.command_id, error=str(exc))
                return False
            except RequestRejected as exc:
                # A 4xx will not change on retry (unknown command, too large): drop it, or it blocks the outbox.
                log.error("result.dropped", command_id=result.command_id, status=exc.status, error=exc.error,
                          detail=exc.detail)
            self.journal.mark_delivered(result.command_id)
            if result.command_id == self._restart_after:
                self.stop("restart")
                return True
        return True

    # -- heartbeats ----------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        seq, delay = 0, 0.0
        while not self._stop_polling.wait(delay):
            self._beat(seq)
            seq += 1
            delay = self._heartbeat_interval * random.uniform(0.8, 1.2)

    def _beat(self, seq: int) -> None:
        state = collect_state(getattr(self, "_labs", None))
        digest = state_digest(state)
        try:
            answer = self._client.heartbeat(self._node_id(), Heartbeat(
                seq=seq, digest=digest, agent_version=__version__, interval=self._heartbeat_interval))
            if self.config.heartbeat_interval is None:
                # The controller stretches it while it is over its heartbeat budget, and shrinks it back.
                interval = _sane_interval(answer.heartbeat_interval)
                if interval != self._heartbeat_interval:
                    log.info("heartbeat.interval", seconds=interval, was=self._heartbeat_interval)
                self._heartbeat_interval = interval
            if answer.send_state:
                self._client.put_state(self._node_id(), StateReport(digest=digest, state=state))
                log.info("state.sent", digest=digest)
        except (ControllerUnavailable, Unauthorized) as exc:
            if not self._stop_polling.is_set():
                log.warning("heartbeat.failed", seq=seq, error=str(exc))
        except RequestRejected as exc:
            log.error("heartbeat.rejected", seq=seq, status=exc.status, error=exc.error, detail=exc.detail)

    def _raise_hand(self, body: dict) -> dict:
        """``lab help``: sent with this node's token (its own connection: the socket's threads come and go)."""
        if not self.enrolled.is_set():
            raise HelpUnavailable("this VM is not connected to the instructor's controller yet: try again soon")
        client = ControllerClient(self.config.controller_url, token=self._client.token, ca_file=self.config.ca_file)
        try:
            raised = client.raise_hand(self._node_id(), HelpRequest(**body))
        except (ControllerUnavailable, Unauthorized, RequestRejected) as exc:
            log.warning("help.not_sent", error=str(exc))
            raise HelpUnavailable(f"the instructor's controller did not take it ({exc}): try again") from None
        finally:
            client.close()
        log.info("help.raised", help_id=raised.id)
        return {"id": raised.id, "state": raised.state}

    # -- stopping --------------------------------------------------------------------

    @contextlib.contextmanager
    def _signals_wake_main(self) -> Iterator[None]:
        """SIGTERM/SIGINT write to the wake-up pipe; the main thread does the work, outside the handler."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old_fd = signal.set_wakeup_fd(self._wake_w)
        old = {sig: signal.signal(sig, _note_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(old_fd)

    def _wait_for_stop(self) -> str:
        while True:
            data = os.read(self._wake_r, 64)
            # set_wakeup_fd writes the signal number; stop() writes a zero byte after setting the reason.
            for byte in data:
                if byte in (signal.SIGTERM, signal.SIGINT) and self._stop_reason is None:
                    self._stop_reason = f"signal {signal.Signals(byte).name}"
            if self._stop_reason is not None:
                return self._stop_reason

    def _shutdown(self, reason: str) -> None:
        log.info("agent.stopping", reason=reason)
        self._stop_polling.set()
        self._poll_client.close()  # wakes the long-poll now rather than after `wait` seconds
        self._finish_commands()
        self._finish_delivery()
        if getattr(self, "_attendee_server", None) is not None:
            self._attendee_server.stop()
        if self._ctx.terminal is not None:
            self._ctx.terminal.close_all()  # detach the relays' tmux clients; the attendee's session stays
        for thread in self._threads:
            if not thread.name.startswith("worker-"):
                thread.join(timeout=2.0)
        log.info("agent.stopped", reason=reason, exit_code=self._exit_code)

    def _finish_commands(self) -> None:
        """Running commands get SHUTDOWN_GRACE to finish, then are told to stop; queued ones never start."""
        if not self._wait_idle(SHUTDOWN_GRACE):
            self._ctx.shutdown.set()
            self._wait_idle(INTERRUPT_GRACE)
        self._ctx.shutdown.set()
        self._store_not_started()

    def _finish_delivery(self) -> None:
        """The sender gets FLUSH_GRACE to deliver what was stored; the rest stays on disk for the next start."""
        assert self.journal is not None
        self.journal.wait_outbox_empty(FLUSH_GRACE)
        self._stop_sending.set()
        self._outbox_ready.set()
        self._client.close()

    def _lock_state_dir(self) -> None:
        """Refuse to share the state directory: two agents on one journal would run commands twice.

        The lock fd is close-on-exec, so an agent-restart's execv releases it for the new image.
        """
        path = self.config.state_dir / "agent.lock"
        self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise ConfigurationError(f"state_dir: another agent is running on {self.config.state_dir}") from None

    def _close_wake_pipe(self) -> None:
        with self._wake_lock:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    def _wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def _store_not_started(self) -> None:
        while True:
            try:
                message = self._queue.get_nowait()
            except queue.Empty:
                return
            self._store(CommandResult(command_id=message.id, ok=False, error=NOT_STARTED))

    def _reexec(self) -> None:
        """Replace this process by a fresh agent with the same command line (agent-restart)."""
        argv = [sys.executable, *sys.orig_argv[1:]]
        log.info("agent.reexec", executable=sys.executable)
        for handler in logging.getLogger("node_agent").handlers:
            handler.flush()
        try:
            os.execv(sys.executable, argv)
        except OSError as exc:
            log.error("agent.reexec_failed", error=str(exc))
            self._exit_code = 1

    # -- helpers ---------------------------------------------------------------------

    def _start(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=self._guarded, args=(target,), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _guarded(self, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception:  # a dead thread would leave a half-working agent: stop, systemd restarts us
            log.error("agent.thread_crashed", exc_info=True, thread=threading.current_thread().name)
            self._exit_code = 1
            self.stop("internal error")

    def _node_id(self) -> str:
        assert self.credentials is not None
        return self.credentials.node_id

    def _poll_wait(self) -> float:
        offered = self.credentials.poll_wait if self.credentials else None
        return min(self.config.poll_wait, offered) if offered else self.config.poll_wait


def _note_signal(signum: int, frame: object) -> None:
    """Nothing to do here: the C-level handler already wrote ``signum`` to the wake-up pipe."""


def _sane_interval(seconds: float) -> float:
    # A zero or absurd interval from the controller must not turn the heartbeat into a busy loop.
    return min(max(float(seconds), 0.1), 3600.0)
