"""What the Celery task does with a run: token, wheel, extra vars, the playbook, then the nodes.

For ``site``: one single-use enrollment token per host, bound to that host's
inventory name, is minted here, in the worker, so no clear token travels through
the broker or sits in the database; each reaches Ansible only as its host's
variable in the run's private inventory file and is masked in every stored
event. However the run ends (done, failed, cancelled, crashed), its tokens are
revoked: a token left on a VM is worth nothing afterwards. For ``teardown``:
every node the run's hosts were provisioned as (the identity a bound token gave
it, never a name the node chose) is retired (its node token revoked, its node
marked retired).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller import audit, enrollment, terminal_recordings
from controller import states as node_states
from controller.models import Event, Node, ProvisionHostStatus, ProvisionRun, utcnow
from controller.provision import runs, states
from controller.provision.inventory import InventoryHost, ansible_inventory, hosts_from_dicts
from controller.provision.recorder import EventRecorder
from controller.provision.redact import Redactor
from controller.provision.runner import (
    PlaybookRun,
    ProvisionError,
    RunnerOutcome,
    Tuning,
    control_path_dir,
    count_tasks,
    run_playbook,
)
from controller.provision.wheel import agent_wheel
from controller.runtime.app_state import AppState
from controller.settings import Settings

REPO_PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
HOST_TOKEN_VAR = "labfleet_enroll_token"  # playbooks/roles/node_agent writes it to the VM's env file


@dataclass
class Report:
    run_id: str
    state: str

    def as_dict(self) -> dict[str, str]:
        return {"run_id": self.run_id, "state": self.state}


def playbooks_dir(configured: str) -> Path:
    return Path(configured).expanduser() if configured else REPO_PLAYBOOKS


@dataclass
class Claimed:
    """A run taken from pending to running, with what the playbook needs; read in the claiming session."""

    run_id: str
    playbook: str
    actor: str
    hosts: list[InventoryHost]
    limit: list[str]
    names: list[str]  # the hosts this run touches (its limit, else every host)
    tuning: Tuning
    extravars: dict[str, Any]
    folder: Path
    host_tokens: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlaybookHooks:
    """What one playbook adds around the common claim -> run -> settle."""

    # In the claiming session: each host's own enrollment token (site), or none.
    mint_tokens: Callable[[Session, ProvisionRun, Claimed, Settings], dict[str, str]] | None = None
    # After the run is settled: e.g. retire the nodes of the hosts teardown cleaned.
    after_settle: Callable[[AppState, Claimed], None] | None = None


def _mint_site_tokens(session: Session, run: ProvisionRun, claimed: Claimed, settings: Settings) -> dict[str, str]:
    return enrollment.mint_for_run(
        session, event=session.get(Event, run.event_id), run_id=run.id, hosts=claimed.names,
        created_by=claimed.actor, ttl=settings.provision_time_limit + runs.RUN_GRACE)


def _retire_after_teardown(app: AppState, claimed: Claimed) -> None:
    retire_cleaned_nodes(app, claimed.run_id, claimed.actor)


HOOKS: dict[str, PlaybookHooks] = {
    "site": PlaybookHooks(mint_tokens=_mint_site_tokens),
    "teardown": PlaybookHooks(after_settle=_retire_after_teardown),
}


def execute(app: AppState, run_id: str) -> Report:
    """Run a pending run to its end. A run already finished (a redelivered task) is left as it is."""
    claimed = claim(app, run_id)
    if isinstance(claimed, Report):
        return claimed
    recorder = EventRecorder(app.db, run_id, claimed.names, Redactor(list(claimed.host_tokens.values())))
    outcome, error = run_claimed(app, claimed, recorder)
    return settle(app, claimed, recorder, outcome, error)


def claim(app: AppState, run_id: str) -> Claimed | Report:
    """Move the run to running and read what it needs; a finished or missing run is reported as it is."""
    settings = app.settings
    with app.db.session() as session:
        run = session.get(ProvisionRun, run_id)
        if run is None or run.state in states.RUN_DONE_STATES:
            return Report(run_id, run.state if run else "missing")
        run.state, run.started_at = states.RUN_RUNNING, utcnow()
        hosts = hosts_from_dicts(run.hosts)
        limit = list(run.limit_hosts)
        folder = playbooks_dir(settings.playbooks_dir)
        # The project is named explicitly: with facts gathered, the entry playbook is a wrapper elsewhere.
        # Extra vars beat inventory variables, so the setting may not give labfleet_enroll_token: it
        # would override every host's own token.
        extravars = {**{k: v for k, v in settings.provision_extra_vars_dict().items() if k != HOST_TOKEN_VAR},
                     "labfleet_controller_url": run.controller_url,
                     "labfleet_project_dir": str(folder.parent),
                     "labfleet_stage_dir": str(settings.data_dir / "stage")}
        claimed = Claimed(run_id=run.id, playbook=run.playbook, actor=run.requested_by, hosts=hosts, limit=limit,
                          names=limit or [h.name for h in hosts], tuning=Tuning.from_dict(run.tuning),
                          extravars=extravars, folder=folder)
        hooks = HOOKS.get(claimed.playbook, PlaybookHooks())
        if hooks.mint_tokens is not None:
            claimed.host_tokens = hooks.mint_tokens(session, run, claimed, settings)
    return claimed


def run_claimed(app: AppState, claimed: Claimed, recorder: EventRecorder) -> tuple[RunnerOutcome | None, str | None]:
    """Run the playbook; the outcome and, when it did not end with a result, why."""
    settings = app.settings
    private_dir = settings.data_dir / "provision" / claimed.run_id
    outcome, error = None, None
    extravars = dict(claimed.extravars)
    try:
        # teardown.yml reads it too (it records what the host was provisioned with): give it to every run.
        extravars["labfleet_agent_wheel"] = str(_wheel(settings.provision_agent_wheel, settings.data_dir))
        extravars.update(agent_tls_vars(settings))
        spec = PlaybookRun(
            private_dir=private_dir, playbook=claimed.folder / states.PLAYBOOKS[claimed.playbook],
            inventory=_with_host_tokens(
                ansible_inventory(claimed.hosts, ssh_common_args=_default_ssh_args(settings.data_dir)),
                claimed.host_tokens),
            extravars=extravars, limit=claimed.limit, tuning=claimed.tuning,
            control_path_dir=control_path_dir(settings.data_dir), timeout=settings.provision_time_limit)
        _store_tasks_total(app, claimed.run_id, spec, settings.data_dir / "provision")
        outcome = run_playbook(spec, event_handler=recorder.on_event, status_handler=recorder.on_status,
                               cancel_callback=recorder.cancel_requested)
        if outcome.status == "timeout":
            error = f"stopped after LABFLEET_PROVISION_TIME_LIMIT ({settings.provision_time_limit} s)"
        elif recorder.stats is None and outcome.status != "canceled":
            error = f"ansible-playbook ended ({outcome.status}, rc {outcome.rc}) without a result:\n" \
                    f"{outcome.stdout_tail}"
    except ProvisionError as exc:
        error = str(exc)
    except BaseException as exc:
        # Whatever stopped the task (a bug, Celery's time limit), the run must not stay "running":
        # settle it, then let the task fail as it would have.
        recorder.finish(runner_status=None, error=f"the provisioning task stopped: {exc!r}")
        raise
    finally:
        shutil.rmtree(private_dir, ignore_errors=True)
        if claimed.host_tokens:
            _revoke_tokens(app, claimed.run_id, claimed.actor)
    return outcome, error


def settle(app: AppState, claimed: Claimed, recorder: EventRecorder, outcome: RunnerOutcome | None,
           error: str | None) -> Report:
    """Record the run's end state, run the playbook's after-hook, and audit it."""
    final = recorder.finish(runner_status=outcome.status if outcome else None, error=error)
    hooks = HOOKS.get(claimed.playbook, PlaybookHooks())
    if hooks.after_settle is not None:
        hooks.after_settle(app, claimed)
    with app.db.session() as session:
        audit.record(session, actor=claimed.actor, action="provision.finish", target=claimed.run_id,
                     playbook=claimed.playbook, state=final,
                     hosts={p.host: p.state for p in recorder.progress.values()})
    return Report(claimed.run_id, final)


def _with_host_tokens(inventory: dict[str, Any], host_tokens: dict[str, str]) -> dict[str, Any]:
    """Each host's own token as its variable (after the inventory's own vars: ours win)."""
    for name, token in host_tokens.items():
        inventory["all"]["hosts"][name][HOST_TOKEN_VAR] = token
    return inventory


def _revoke_tokens(app: AppState, run_id: str, actor: str) -> None:
    """The run is over: the playbook waited for each host's agent to enroll, so no token is needed any more."""
    with app.db.session() as session:
        enrollment.revoke_run_tokens(session, run_id=run_id, actor=actor, reason="the provisioning run ended")


def agent_tls_vars(settings: Settings) -> dict[str, object]:
    """The CA the agents pin, from the controller's own files only; extra vars, so no host var can replace it.

    Plain HTTP stays refused by the playbook unless the operator's LABFLEET_PROVISION_EXTRA_VARS says
    ``labfleet_agent_insecure_http: true``.
    """
    ca_file = settings.tls_ca_file
    try:
        ca_pem = ca_file.read_text() if ca_file is not None else ""
    except OSError as exc:
        raise ProvisionError(f"LABFLEET_TLS_CA: cannot read {ca_file}: {exc.strerror}") from None
    insecure = settings.provision_extra_vars_dict().get("labfleet_agent_insecure_http", False) is True
    return {"labfleet_ca_pem": ca_pem, "labfleet_agent_insecure_http": insecure}


def _wheel(configured: str, data_dir: Path) -> Path:
    if not configured:
        return agent_wheel(data_dir / "wheels")
    path = Path(configured).expanduser()
    if not path.is_file():
        raise ProvisionError(f"LABFLEET_PROVISION_AGENT_WHEEL: no wheel at {path}")
    return path


def _default_ssh_args(data_dir: Path) -> str:
    """Host keys for hosts that bring no policy of their own: trust on first use, then checked."""
    return f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={data_dir / 'provision' / 'known_hosts'}"


def _store_tasks_total(app: AppState, run_id: str, spec: PlaybookRun, cache_dir: Path) -> None:
    inventory_path = spec.prepare()
    total = count_tasks(spec.playbook, inventory_path, spec.private_dir / "env" / "extravars", cache_dir=cache_dir)
    with app.db.session() as session:
        session.get(ProvisionRun, run_id).tasks_total = total


def retire_cleaned_nodes(app: AppState, run_id: str, actor: str) -> None:
    """Teardown removed the agent from these hosts: their nodes will never speak again.

    A node is a host's when a run's bound token made it that host (``Node.provision_host``): a
    node that merely calls itself by a host's name, or shares its address (one NAT), is not.
    """
    retired = []
    with app.db.session() as session:
        run = session.get(ProvisionRun, run_id)
        cleaned = [s.host for s in session.scalars(select(ProvisionHostStatus).where(
            ProvisionHostStatus.run_id == run_id, ProvisionHostStatus.state == states.HOST_OK))]
        for node in session.scalars(select(Node).where(
                Node.event_id == run.event_id, Node.provision_host.in_(cleaned),
                Node.state != node_states.NODE_RETIRED)):
            node_states.check_node_move(node.state, node_states.NODE_RETIRED)
            node.state, node.token_hash = node_states.NODE_RETIRED, None
            audit.record(session, actor=actor, action="node.retire", target=node.id, node=node.name,
                         host=node.provision_host, provision_run=run_id)
            retired.append(node.id)
    # Their terminal recordings go with them (docs/terminal.md).
    terminal_recordings.remove_for_nodes(app.settings.data_dir, retired)
    for node_id in retired:  # no process may answer from a cached identity of these nodes
        app.node_cache.forget_node(node_id)
        app.notifier.node_changed(node_id)
