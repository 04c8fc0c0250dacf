"""Enrollment: a one-time token turns a new machine into a node with its own token.

Tokens made by hand (``labfleet enroll-token create``) may have several uses and
take any free name; a provisioning run mints one single-use token per inventory
host, bound to that host's name, and revokes them all when it ends.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controller import audit, states
from controller.errors import Conflict, NotFound, Unauthenticated
from controller.models import EnrollmentToken, Event, Node, utcnow
from controller.tokens import ENROLLMENT_TOKEN_PREFIX, NODE_TOKEN_PREFIX, hash_token, new_token, same_hash
from node_agent.protocol import EnrollRequest

_CHANGED_NODES = "labfleet.enrollment.changed_nodes"


def create_token(
    session: Session, *, event: Event, created_by: str, ttl: float, label: str = "", uses: int = 1
) -> tuple[EnrollmentToken, str]:
    """A new enrollment token; the clear value is returned once and never stored."""
    token = new_token(ENROLLMENT_TOKEN_PREFIX)
    row = EnrollmentToken(
        event_id=event.id, token_hash=hash_token(token), prefix=token[:10], label=label, uses_left=uses,
        created_by=created_by, expires_at=utcnow() + timedelta(seconds=ttl),
    )
    session.add(row)
    session.flush()
    audit.record(session, actor=created_by, action="enroll_token.create", target=row.id,
                 label=label, uses=uses, expires_at=row.expires_at.isoformat())
    return row, token


def list_query() -> Select:
    return select(EnrollmentToken)


def prefix_is_live(session: Session, prefix: str) -> bool:
    """Whether an enrollment token that can still be used starts with ``prefix`` (the limiter lets it through)."""
    now = utcnow()
    return session.scalar(
        select(EnrollmentToken.id).where(EnrollmentToken.prefix == prefix, EnrollmentToken.uses_left > 0,
                                         EnrollmentToken.revoked_at.is_(None), EnrollmentToken.expires_at > now)
        .limit(1)) is not None


def revoke_token(session: Session, *, token_id: str, actor: str) -> EnrollmentToken:
    row = session.get(EnrollmentToken, token_id)
    if row is None:
        raise NotFound(f"no enrollment token {token_id!r}", field="token_id")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record(session, actor=actor, action="enroll_token.revoke", target=row.id)
    return row


def token_status(row: EnrollmentToken) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.uses_left <= 0:
        return "consumed"
    if row.expires_at <= utcnow():
        return "expired"
    return "active"


def token_to_dict(row: EnrollmentToken) -> dict[str, Any]:
    return {"id": row.id, "prefix": row.prefix, "label": row.label, "status": token_status(row),
            "uses_left": row.uses_left, "bound_host": row.bound_host, "provision_run": row.provision_run_id,
            "created_by": row.created_by,
            "created_at": row.created_at.isoformat(), "expires_at": row.expires_at.isoformat()}


def mint_for_run(session: Session, *, event: Event, run_id: str, hosts: list[str], created_by: str,
                 ttl: float) -> dict[str, str]:
    """One single-use token per inventory host of a provisioning run, bound to that host.

    Returns host -> clear token (given to Ansible only); the rows keep the hash.
    """
    expires_at = utcnow() + timedelta(seconds=ttl)
    minted: dict[str, str] = {}
    for host in hosts:
        token = new_token(ENROLLMENT_TOKEN_PREFIX)
        session.add(EnrollmentToken(
            event_id=event.id, token_hash=hash_token(token), prefix=token[:10],
            label=f"provision {run_id} {host}"[:120], uses_left=1, created_by=created_by, expires_at=expires_at, bound_host=host, provision_run_id=run_id))
        minted[host] = token
    session.flush()
    audit.record(session, actor=created_by, action="enroll_token.create", target=run_id, hosts=hosts, uses=1,
                 bound=True, expires_at=expires_at.isoformat())
    return minted


def revoke_run_tokens(session: Session, *, run_id: str, actor: str, reason: str) -> int:
    """Revoke every token a run minted (used or not): once the run is over, none of them may enroll anything."""
    rows = list(session.scalars(select(EnrollmentToken).where(
        EnrollmentToken.provision_run_id == run_id, EnrollmentToken.revoked_at.is_(None))))
    now = utcnow()
    for row in rows:
        row.revoked_at = now
    if rows:
        audit.record(session, actor=actor, action="enroll_token.revoke", target=run_id, tokens=len(rows),
                     reason=reason)
    return len(rows)


class EnrollmentRefused(Exception):
    """Mixin for refusals worth an audit entry: the caller held a real token (or a real machine id)."""

    audit_detail: dict[str, Any]


class RefusedConflict(Conflict, EnrollmentRefused):
    def __init__(self, detail: str, *, field: str, **audit_detail: Any) -> None:
        super().__init__(detail, field=field)
        self.audit_detail = audit_detail


class RefusedToken(Unauthenticated, EnrollmentRefused):
    def __init__(self, detail: str, **audit_detail: Any) -> None:
        super().__init__(detail, field="enrollment_token")
        self.audit_detail = audit_detail


def record_refusal(session: Session, exc: Exception, request: EnrollRequest, *, address: str) -> None:
    """Audit a refused enrollment in its own transaction (the refused one is rolled back, nothing spent)."""
    session.info.pop(_CHANGED_NODES, None)
    if not isinstance(exc, EnrollmentRefused):
        return
    session.rollback()
    audit.record(session, actor=f"address:{address}", action="node.enroll_refused",
                 target=exc.audit_detail.get("enrollment_token", ""), name=request.name, hostname=request.hostname,
                 machine_id=request.machine_id, address=address, reason=str(exc),
                 **{k: v for k, v in exc.audit_detail.items() if k != "enrollment_token"})
    session.commit()


def enroll(session: Session, request: EnrollRequest, *, address: str, heartbeat_interval: float) -> tuple[Node, str]:
    """Return the node of this machine with a fresh node token, enrolling it if it is new.

    - A new machine spends one use of the token and gets the name it asked for, which must be
      free (a name held by another machine is refused, never renamed) and, for a token a
      provisioning run bound to an inventory host, must be that host's name.
    - The same (machine_id, machine_secret) keeps its node and spends nothing while the node is
      online or offline; a revoked or retired node needs a use to come back. A machine_id
      presented with another secret is refused, so nobody takes over another VM's identity.
    """
    token_row = _usable_token(session, request.enrollment_token)
    node = session.scalar(
        select(Node).where(Node.event_id == token_row.event_id, Node.machine_id == request.machine_id)
    )
    if node is None:
        node, action = _new_node(session, token_row, request, heartbeat_interval), "node.enroll"
    else:
        _check_same_machine(session, token_row, node, request)
        action = "node.re_enroll"
    node_token = new_token(NODE_TOKEN_PREFIX)
    node.token_hash = hash_token(node_token)
    node.state = states.NODE_ONLINE
    node.hostname = request.hostname
    node.agent_version = request.agent_version
    node.address = address
    node.last_seen_at = utcnow()
    node.heartbeat_interval = heartbeat_interval
    try:
        session.flush()
    except IntegrityError:
        # Another machine took the name (or this machine enrolled) in a concurrent request.
        raise RefusedConflict(f"the name {request.name!r} was taken while this machine enrolled", field="name",
                              enrollment_token=token_row.id) from None
    audit.record(session, actor=f"node:{node.name}", action=action, target=node.id,
                 enrollment_token=token_row.id, address=address, hostname=request.hostname,
                 **({"provision_host": node.provision_host} if node.provision_host else {}))
    return node, node_token


def _usable_token(session: Session, token: str) -> EnrollmentToken:
    """The token's row if it is known, not revoked and not expired (it may be spent: see ``enroll``)."""
    row = session.scalar(select(EnrollmentToken).where(EnrollmentToken.token_hash == hash_token(token)))
    if row is None:
        raise Unauthenticated("enrollment token is unknown, revoked, expired or already used",
                              field="enrollment_token")
    if row.revoked_at is not None or row.expires_at <= utcnow():
        raise RefusedToken("enrollment token is unknown, revoked, expired or already used",
                           enrollment_token=row.id, token_status=token_status(row))
    return row


def _new_node(session: Session, token_row: EnrollmentToken, request: EnrollRequest,
              heartbeat_interval: float) -> Node:
    name, bound = request.name, token_row.bound_host
    if token_row.uses_left <= 0:
        _refuse_spent(token_row)
    if bound is not None and name != bound:
        raise RefusedConflict(f"this enrollment token is for host {bound!r}, not {name!r}", field="name",
                              enrollment_token=token_row.id, bound_host=bound)
    holder = session.scalar(select(Node).where(Node.event_id == token_row.event_id, Node.name == name))
    if holder is not None and _replaced_by_the_same_host(holder, bound):
        _retire(session, holder, reason=f"host {bound} was provisioned again as another machine")
    elif holder is not None and holder.state != states.NODE_RETIRED:
        raise RefusedConflict(
            f"a node named {name!r} is enrolled already, as another machine; retire or revoke it first",
            field="name", enrollment_token=token_row.id, holder=holder.id)
    if bound is None and _reserved_for_a_host(session, token_row.event_id, name):
        raise RefusedConflict(f"the name {name!r} is reserved for the provisioned host of that name", field="name",
                              enrollment_token=token_row.id)
    _spend(session, token_row)
    if holder is not None:
        _release_name(session, holder)
    node = Node(event_id=token_row.event_id, machine_id=request.machine_id,
                machine_secret_hash=hash_token(request.machine_secret), name=name, provision_host=bound,
                heartbeat_interval=heartbeat_interval)
    session.add(node)
    return node


def _check_same_machine(session: Session, token_row: EnrollmentToken, node: Node, request: EnrollRequest) -> None:
    if not same_hash(request.machine_secret, node.machine_secret_hash):
        raise RefusedConflict("this machine id is enrolled already, with another machine secret",
                              field="machine_id", enrollment_token=token_row.id, node=node.id)
    bound = token_row.bound_host
    if bound is not None and node.provision_host != bound:
        if node.provision_host is None and node.name == bound:
            node.provision_host = bound  # enrolled by hand as this host before the run provisioned it
        else:
            raise RefusedConflict(f"this enrollment token is for host {bound!r}, not for node {node.name!r}",
                                  field="enrollment_token", enrollment_token=token_row.id, node=node.id,
                                  bound_host=bound)
    if node.state in (states.NODE_REVOKED, states.NODE_RETIRED):
        _spend(session, token_row)  # coming back after a revocation is a new admission
    if node.state != states.NODE_ONLINE:
        states.check_node_move(node.state, states.NODE_ONLINE)


def _spend(session: Session, token_row: EnrollmentToken) -> None:
    # One atomic UPDATE, so two machines racing for a one-time token cannot both win.
    result = session.execute(
        update(EnrollmentToken)
        .where(EnrollmentToken.id == token_row.id, EnrollmentToken.uses_left > 0,
               EnrollmentToken.revoked_at.is_(None), EnrollmentToken.expires_at > utcnow())
        .values(uses_left=EnrollmentToken.uses_left - 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        _refuse_spent(token_row)
    session.refresh(token_row)


def _refuse_spent(token_row: EnrollmentToken) -> None:
    raise RefusedToken("enrollment token is unknown, revoked, expired or already used",
                       enrollment_token=token_row.id, token_status="consumed")


def _replaced_by_the_same_host(holder: Node, bound: str | None) -> bool:
    """The name's holder is an earlier machine of this very host, and it is not online.

    A run writes a host's token only where it found no agent credentials (a rebuilt or
    reinstalled VM), so the holder's identity is gone with that machine. An online holder
    is still heartbeating: then two machines claim the host, and the new one is refused.
    """
    return (bound is not None and holder.provision_host == bound
            and holder.state in (states.NODE_OFFLINE, states.NODE_REVOKED))


def _retire(session: Session, node: Node, *, reason: str) -> None:
    states.check_node_move(node.state, states.NODE_RETIRED)
    node.state, node.token_hash = states.NODE_RETIRED, None
    session.info.setdefault(_CHANGED_NODES, []).append(node.id)
    audit.record(session, actor="controller", action="node.retire", target=node.id, node=node.name,
                 host=node.provision_host, reason=reason)


def changed_nodes(session: Session) -> list[str]:
    """Nodes other than the enrolling one that this session's enrollment retired (their cached tokens must go)."""
    return session.info.pop(_CHANGED_NODES, [])


def _reserved_for_a_host(session: Session, event_id: str, name: str) -> bool:
    """A live token of a provisioning run is bound to this name: only that host may take it."""
    return session.scalar(select(EnrollmentToken.id).where(
        EnrollmentToken.event_id == event_id, EnrollmentToken.bound_host == name, EnrollmentToken.uses_left > 0,
        EnrollmentToken.revoked_at.is_(None), EnrollmentToken.expires_at > utcnow()).limit(1)) is not None


def _release_name(session: Session, retired: Node) -> None:
    """A retired node (its agent removed by teardown) gives its name up to the machine now taking it.

    The retired record keeps its history under ``<name>~<id prefix>``; a live node is never renamed.
    """
    old = retired.name
    retired.name = f"{old[:55]}~{retired.id[:8]}"
    session.flush()
    audit.record(session, actor="controller", action="node.name_released", target=retired.id, old=old,
                 new=retired.name)
