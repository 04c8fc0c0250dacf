"""The instructor's attendee API (used by ``labfleet attendees``): import, list, assign, access codes.

The routes hang on the provisioning blueprint: one instructor check for both, and the API document's
operation ids and tags (``provision_api_*``) stay what clients were generated from.
"""

from __future__ import annotations

from flask import g, jsonify

from controller import attendees
from controller.api import responses as r
from controller.api.db_session import get_session
from controller.api.openapi import documented
from controller.api.pagination import Key, page
from controller.api.provision import bp
from controller.api.validation import parse_body
from controller.errors import ValidationFailed
from controller.models import Attendee, Node
from controller.provision.schemas import AssignRequest, CredentialsRequest, ImportAttendeesRequest

__all__ = ["bp"]


@bp.post("/attendees/import")
@documented("Import attendees from CSV", request=ImportAttendeesRequest, responses={201: r.ImportReport},
            errors=(409,))
def import_attendees():
    body = parse_body(ImportAttendeesRequest)
    session = get_session()
    report = attendees.import_csv(session, text=body.csv, source=body.source, actor=g.principal.actor)
    session.commit()
    return jsonify(report.as_dict()), 201


@bp.get("/attendees")
@documented("Attendees, by name", responses={200: r.AttendeePage}, paged=True)
def list_attendees():
    session = get_session()
    found = page(session, attendees.list_query(), [Key(Attendee.name), Key(Attendee.email), Key(Attendee.id)])
    by_id = {n.id: n for n in session.query(Node).filter(Node.id.in_({a.node_id for a in found.items if a.node_id}))}
    return jsonify({"attendees": [attendees.to_dict(a, by_id.get(a.node_id)) for a in found.items],
                    "next": found.next})


@bp.post("/attendees/assign")
@documented("Assign attendees to nodes", request=AssignRequest, responses={200: r.Assignments}, errors=(409,))
def assign():
    return assign_as(g.principal.actor)


def assign_as(actor: str):
    """One pair, or round-robin when neither is named: the API's route and the provisioning page's."""
    body = parse_body(AssignRequest)
    session = get_session()
    if bool(body.attendee) != bool(body.node):
        missing = "node" if body.attendee else "attendee"
        raise ValidationFailed(f"{missing}: give both attendee and node, or neither for round-robin", field=missing)
    if body.attendee:
        attendee, node = attendees.assign_one(session, email=body.attendee, node_ref=body.node, actor=actor)
        pairs, waiting = [(attendee, node)], []
    else:
        pairs, waiting = attendees.assign_round_robin(session, actor=actor)
    session.commit()
    return jsonify({"assigned": [{"attendee": a.email, "node": n.name} for a, n in pairs],
                    "unassigned": [a.email for a in waiting]})


@bp.post("/attendees/credentials")
@documented("Issue attendee access codes", request=CredentialsRequest, responses={200: r.Credentials})
def credentials():
    body = parse_body(CredentialsRequest)
    session = get_session()
    rows = attendees.issue_credentials(session, actor=g.principal.actor, reissue=body.reissue)
    session.commit()
    response = jsonify({"credentials": rows})
    response.headers["Cache-Control"] = "no-store"
    return response
