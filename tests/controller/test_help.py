"""The help queue over the real API and database: a node raises its own hand, instructors answer, all audited."""

from __future__ import annotations

import pytest

HELP = "/api/v1/help"


def raise_hand(client, node, body=None, *, node_id=None):
    return client.post(f"/api/agent/v1/nodes/{node_id or node.id}/help", headers=node.auth,
                       json={"lab": "ns-uts", "step": "hostname", "reason": "hostname is still lab-01",
                             "message": "my hostname does not change", **(body or {})})


def notices(client, node):
    """The help.notice commands the node's agent receives, in order."""
    found = client.get(f"/api/agent/v1/nodes/{node.id}/commands?wait=0", headers=node.auth).json["commands"]
    return [c["args"] for c in found if c["kind"] == "help.notice"]


def audit(client, seed, action):
    return client.get(f"/api/v1/audit?action={action}", headers=seed.auth).json["entries"]


def test_a_raised_hand_is_claimed_answered_and_resolved_and_the_attendee_hears_each(client, seed, enroll):
    node = enroll("lab-01")
    raised = raise_hand(client, node)
    assert raised.status_code == 201 and raised.json["state"] == "open"
    help_id = raised.json["id"]

    (listed,) = client.get(HELP, headers=seed.auth).json["requests"]
    assert listed["node"] == "lab-01" and listed["lab"] == "ns-uts" and listed["step"] == "hostname"
    assert listed["reason"] == "hostname is still lab-01" and listed["message"] == "my hostname does not change"
    assert listed["state"] == "open" and listed["waited_s"] >= 0 and listed["source"] == "attendee"

    claimed = client.post(f"{HELP}/{help_id}/claim", headers=seed.auth)
    assert claimed.status_code == 200 and claimed.json["claimed_by"] == "test-instructor"
    assert notices(client, node) == [{"help_id": help_id, "event": "claimed", "by": "test-instructor", "text": ""}]

    replied = client.post(f"{HELP}/{help_id}/reply", headers=seed.auth, json={"text": "run it in the new UTS ns"})
    assert replied.status_code == 200 and replied.json["reply"] == "run it in the new UTS ns"
    assert notices(client, node)[-1]["text"] == "run it in the new UTS ns"

    resolved = client.post(f"{HELP}/{help_id}/resolve", headers=seed.auth)
    assert resolved.status_code == 200 and resolved.json["state"] == "resolved"
    assert notices(client, node)[-1]["event"] == "resolved"
    assert client.get(HELP, headers=seed.auth).json["requests"] == []
    assert [r["id"] for r in client.get(f"{HELP}?state=resolved", headers=seed.auth).json["requests"]] == [help_id]

    assert [e["actor"] for e in audit(client, seed, "help.raise")] == ["node:lab-01"]
    for action in ("help.claim", "help.reply", "help.resolve"):
        (entry,) = audit(client, seed, action)
        assert entry["actor"] == "instructor:test-instructor" and entry["target"] == help_id
        assert entry["detail"]["node"] == "lab-01"


def test_raising_again_while_the_hand_is_up_updates_it(client, seed, enroll):
    node = enroll("lab-01")
    first = raise_hand(client, node).json["id"]
    again = raise_hand(client, node, {"message": "still stuck"})
    assert again.status_code == 200 and again.json["id"] == first
    (listed,) = client.get(HELP, headers=seed.auth).json["requests"]
    assert listed["message"] == "still stuck"
    client.post(f"{HELP}/{first}/resolve", headers=seed.auth)
    assert raise_hand(client, node).json["id"] != first  # a new hand once the old one is resolved


def test_a_node_raises_a_hand_only_for_itself(client, seed, enroll):
    mine, other = enroll("lab-01"), enroll("lab-02")
    refused = raise_hand(client, mine, node_id=other.id)
    assert refused.status_code == 403 and refused.json["field"] == "node_id"
    named = raise_hand(client, mine, {"node": other.id})
    assert named.status_code == 400 and named.json["field"] == "node"
    assert client.post(f"/api/agent/v1/nodes/{mine.id}/help", json={}).status_code == 401
    assert client.get(HELP, headers=seed.auth).json["requests"] == []
    assert raise_hand(client, mine).status_code == 201
    assert [r["node"] for r in client.get(HELP, headers=seed.auth).json["requests"]] == ["lab-01"]


@pytest.mark.parametrize(("body", "field"), [
    ({"message": "x" * 501}, "message"),
    ({"message": 5}, "message"),
    ({"lab": "../etc"}, "lab"),
    ({"step": "A B"}, "step"),
    ({"reason": "r" * 501}, "reason"),
])
def test_a_malformed_raised_hand_is_a_400_naming_the_field(client, enroll, body, field):
    answer = raise_hand(client, enroll("lab-01"), body)
    assert answer.status_code == 400 and answer.json["field"] == field, answer.json


def test_malformed_instructor_requests_are_4xx_naming_the_field(client, seed, enroll):
    help_id = raise_hand(client, enroll("lab-01")).json["id"]
    for body, field in (({}, "text"), ({"text": ""}, "text"), ({"text": 3}, "text"), ({"text": " "}, "text"),
                        ({"text": "x" * 501}, "text"), ({"text": "ok", "to": "all"}, "to")):
        answer = client.post(f"{HELP}/{help_id}/reply", headers=seed.auth, json=body)
        assert answer.status_code == 400 and answer.json["field"] == field, (body, answer.json)
    bad_state = client.get(f"{HELP}?state=closed", headers=seed.auth)
    assert bad_state.status_code == 400 and bad_state.json["field"] == "state"
    missing = client.post(f"{HELP}/{'0' * 32}/claim", headers=seed.auth)
    assert missing.status_code == 404 and missing.json["field"] == "help_id"
    client.post(f"{HELP}/{help_id}/resolve", headers=seed.auth)
    again = client.post(f"{HELP}/{help_id}/claim", headers=seed.auth)
    assert again.status_code == 409 and again.json["field"] == "help_id"
    assert client.get(HELP).status_code == 401
    assert audit(client, seed, "help.reply") == []  # nothing refused was recorded as done


def test_a_claim_by_another_instructor_is_refused_while_the_first_holds_it(app, client, seed, enroll):
    from controller import instructors

    with app.extensions["labfleet"].db.session() as session:
        _, other_token = instructors.create_with_token(session, name="second-instructor")
    help_id = raise_hand(client, enroll("lab-01")).json["id"]
    assert client.post(f"{HELP}/{help_id}/claim", headers=seed.auth).status_code == 200
    taken = client.post(f"{HELP}/{help_id}/claim", headers={"Authorization": f"Bearer {other_token}"})
    assert taken.status_code == 409 and "test-instructor" in taken.json["detail"]
