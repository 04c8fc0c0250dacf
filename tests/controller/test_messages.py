"""Messages and hints over the real API and database: sent to one node, a selection or the room, delivered
as message.notice commands, audited, and listed as unread until the node's agent reports them read."""

from __future__ import annotations

import uuid

from controller.stuck import labs as lab_catalog

MESSAGES = "/api/v1/messages"


def notices(client, node):
    """The message.notice commands the node's agent receives, in order."""
    found = client.get(f"/api/agent/v1/nodes/{node.id}/commands?wait=0", headers=node.auth).json["commands"]
    return [c["args"] for c in found if c["kind"] == "message.notice"]


def unread(client, node):
    answer = client.get(f"/api/agent/v1/nodes/{node.id}/messages", headers=node.auth)
    assert answer.status_code == 200, answer.json
    return [m["text"] for m in answer.json["messages"]]


def report_read(client, node, ids):
    answer = client.put(f"/api/agent/v1/nodes/{node.id}/state", headers=node.auth,
                        json={"digest": uuid.uuid4().hex, "state": {"messages": {"unread": 0, "read": ids}}})
    assert answer.status_code == 200, answer.json


def test_a_message_to_one_node_reaches_only_it_is_audited_and_unread_until_its_agent_reports_it_read(
        client, seed, enroll):
    one, other = enroll("lab-01"), enroll("lab-02")
    sent = client.post(MESSAGES, headers=seed.auth, json={"nodes": ["lab-01"], "text": "break at 11:00"})
    assert sent.status_code == 201, sent.json
    (row,) = sent.json["messages"]
    assert row["node"] == "lab-01" and sent.json["kind"] == "message"
    assert notices(client, one) == [{"message_id": row["id"], "text": "break at 11:00", "kind": "message",
                                     "by": "test-instructor", "lab": "", "step": ""}]
    assert notices(client, other) == []

    assert unread(client, one) == ["break at 11:00"] and unread(client, other) == []
    listed = client.get(MESSAGES, headers=seed.auth).json["messages"]
    assert [(m["node"], m["read"]) for m in listed] == [("lab-01", False)]
    report_read(client, one, [row["id"]])
    assert unread(client, one) == []
    assert client.get(MESSAGES, headers=seed.auth).json["messages"][0]["read"] is True

    (entry,) = client.get("/api/v1/audit?action=message.send", headers=seed.auth).json["entries"]
    assert entry["actor"] == "instructor:test-instructor" and entry["target"] == row["id"]
    assert entry["detail"]["node"] == "lab-01" and entry["detail"]["kind"] == "message"


def test_a_message_to_the_room_reaches_every_node_and_each_is_audited(client, seed, enroll):
    nodes = [enroll(f"lab-0{i}") for i in (1, 2, 3)]
    sent = client.post(MESSAGES, headers=seed.auth, json={"all": True, "text": "we resume in 5 minutes"})
    assert sent.status_code == 201 and sorted(m["node"] for m in sent.json["messages"]) == ["lab-01", "lab-02",
                                                                                            "lab-03"]
    for node in nodes:
        assert [n["text"] for n in notices(client, node)] == ["we resume in 5 minutes"]
    entries = client.get("/api/v1/audit?action=message.send", headers=seed.auth).json["entries"]
    assert sorted(e["detail"]["node"] for e in entries) == ["lab-01", "lab-02", "lab-03"]
    assert len({e["detail"]["batch"] for e in entries}) == 1


def test_a_hint_comes_from_the_lab_catalog(client, seed, enroll):
    node = enroll("lab-01")
    step = lab_catalog.catalog()["ns-uts"].steps[0]
    sent = client.post(MESSAGES, headers=seed.auth, json={"nodes": ["lab-01"], "hint": f"ns-uts/{step}",
                                                          "level": 2})
    assert sent.status_code == 201, sent.json
    expected = lab_catalog.catalog()["ns-uts"].hint(step, 1)
    assert sent.json["kind"] == "hint" and sent.json["text"] == expected
    (notice,) = notices(client, node)
    assert (notice["kind"], notice["lab"], notice["step"], notice["text"]) == ("hint", "ns-uts", step, expected)


def test_bad_messages_are_refused_naming_the_field(client, seed, enroll):
    enroll("lab-01")
    cases = [
        ({"nodes": ["lab-01"]}, "text"),                                   # neither text nor hint
        ({"nodes": ["lab-01"], "text": "x", "hint": "ns-uts/a"}, "text"),  # both
        ({"nodes": ["lab-01"], "text": "   "}, "text"),
        ({"text": "hello"}, "nodes"),                                      # nobody named
        ({"nodes": ["no-such-node"], "text": "hello"}, "nodes"),
        ({"nodes": ["lab-01"], "hint": "not a hint"}, "hint"),
        ({"nodes": ["lab-01"], "hint": "no-such-lab/step"}, "hint"),
        ({"nodes": ["lab-01"], "hint": "ns-uts/no-such-step"}, "hint"),
        ({"nodes": ["lab-01"], "hint": f"ns-uts/{lab_catalog.catalog()['ns-uts'].steps[0]}", "level": 9}, "level"),
        ({"nodes": ["lab-01"], "text": "x" * 1001}, "text"),
        ({"nodes": ["lab-01"], "text": "hello", "node": "lab-02"}, "node"),
    ]
    for body, field in cases:
        answer = client.post(MESSAGES, headers=seed.auth, json=body)
        assert 400 <= answer.status_code < 500 and answer.json["field"] == field, (body, answer.json)
    assert client.get(MESSAGES, headers=seed.auth).json["messages"] == []
    assert client.post(MESSAGES, json={"all": True, "text": "hi"}).status_code == 401


def test_a_node_reads_only_its_own_messages(client, seed, enroll):
    mine, other = enroll("lab-01"), enroll("lab-02")
    client.post(MESSAGES, headers=seed.auth, json={"nodes": ["lab-02"], "text": "for lab-02 only"})
    refused = client.get(f"/api/agent/v1/nodes/{other.id}/messages", headers=mine.auth)
    assert refused.status_code == 403 and refused.json["field"] == "node_id"
    assert unread(client, mine) == [] and unread(client, other) == ["for lab-02 only"]
