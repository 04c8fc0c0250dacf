"""Who is calling, and what they may do to which node: decided here, nowhere else.

A node token speaks only for its own node (docs/architecture.md: attendees are root
on their VM, so whatever the agent holds is theirs). An instructor token may act
on every node of the controller.
"""

from __future__ import annotations

import hmac
import ipaddress

from flask import current_app, g, request
from sqlalchemy import select

from controller import states
from controller.api.db_session import get_session
from controller.errors import Forbidden, Unauthenticated
from controller.models import ApiToken, Node
from controller.principals import NodeIdentity, Principal
from controller.tokens import hash_token


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
    return token.strip()


_NODE_IDENTITY = select(Node.id, Node.name, Node.state, Node.state_digest, Node.heartbeat_interval)


def require_node(node_id: str) -> NodeIdentity:
    """The calling node, which must be ``node_id``: 401 for a bad token, 403 for another node's."""
    token_hash = hash_token(bearer_token())
    cache = current_app.extensions["labfleet"].node_cache
    node = cache.get(token_hash)
    if node is None:
        row = get_session().execute(_NODE_IDENTITY.where(Node.token_hash == token_hash)).first()
        if row is None or row.state in (states.NODE_REVOKED, states.NODE_RETIRED):
            raise Unauthenticated("node token is unknown or revoked")
        node = NodeIdentity(*row)
        cache.put(token_hash, node)
    if node.id != node_id:
        raise Forbidden("a node token may only act for its own node", field="node_id")
    g.principal = Principal("node", node.id, node.name)
    return node


def node_changed(node_id: str) -> None:
    """A node's token, state or digest changed: no process may answer from its cached identity."""
    state = current_app.extensions["labfleet"]
    state.node_cache.forget_node(node_id)
    state.notifier.node_changed(node_id)


def require_metrics_scraper() -> None:
    """/metrics: the scrape token (``LABFLEET_METRICS_TOKEN``) or an allowed address (``LABFLEET_METRICS_ALLOW``).

    With neither configured only loopback may scrape. The node and command
    counts it shows are read from the database on every scrape: the room must
    not be able to read them, nor to make the controller run those queries.
    """
    settings = current_app.extensions["labfleet"].settings
    if settings.metrics_token and request.headers.get("Authorization"):
        if hmac.compare_digest(bearer_token().encode(), settings.metrics_token.encode()):
            return
        raise Unauthenticated("metrics scrape token is wrong")
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        address = None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # a dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d
    if address is not None and any(address in network for network in settings.metrics_networks()):
        return
    if settings.metrics_token:
        raise Unauthenticated("metrics need the scrape token (Authorization: Bearer <LABFLEET_METRICS_TOKEN>)")
    raise Forbidden(f"{request.remote_addr or 'this address'} may not scrape metrics (LABFLEET_METRICS_ALLOW)")


def require_instructor() -> Principal:
    token = bearer_token()
    session = get_session()
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("instructor API token is unknown or revoked")
    principal = Principal("instructor", row.instructor.id, row.instructor.name)
    g.principal = principal
    return principal
