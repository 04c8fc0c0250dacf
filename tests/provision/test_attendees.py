"""Attendees: import with errors naming line and column, assignment to nodes, access codes shown once."""

from __future__ import annotations

import csv
import io

from controller import attendees
from controller.credential_sheet import sheet_csv, sheet_html
from controller.models import Attendee

ROOM = "name,email\nAda Lovelace,ada@example.org\nAlan Turing,alan@example.org\nGrace Hopper,grace@example.org\n"


def import_csv(client, seed, text, source="room.csv"):
    return client.post("/api/v1/attendees/import", json={"csv": text, "source": source}, headers=seed.auth)


def test_import_adds_everyone_and_reports_duplicates(client, seed):
    first = import_csv(client, seed, ROOM)
    assert first.status_code == 201
    assert first.json["created"] == 3 and first.json["duplicates"] == []
    again = import_csv(client, seed, ROOM + "Ada Again,ADA@example.org\n")
    assert again.json["created"] == 0
    assert again.json["duplicates"][0] == {"line": 2, "email": "ada@example.org", "reason": "imported before"}
    assert again.json["duplicates"][-1] == {"line": 5, "email": "ADA@example.org", "reason": "also on line 2"}
    listed = client.get("/api/v1/attendees", headers=seed.auth).json["attendees"]
    assert [a["email"] for a in listed] == ["ada@example.org", "alan@example.org", "grace@example.org"]


def test_a_bad_row_names_line_and_column_and_adds_nobody(client, seed):
    cases = [
        ("name,email\nAda,ada@example.org\nAlan,not-an-email\n", "room.csv:3: column email: 'not-an-email'"),
        ("name,email\nAda,ada@example.org\n,alan@example.org\n", "room.csv:3: column name: empty"),
        ("name,mail\nAda,ada@example.org\n", "room.csv:1: column email: missing from the header"),
        ("name,email\nAda\n", "room.csv:2: has 1 column(s)"),
        ("", "room.csv:1: empty file"),
    ]
    for text, words in cases:
        response = import_csv(client, seed, text)
        assert response.status_code == 400, text
        assert response.json["field"] == "csv"
        assert response.json["detail"].startswith(words), response.json["detail"]
    assert client.get("/api/v1/attendees", headers=seed.auth).json["attendees"] == []


def test_round_robin_gives_each_free_node_one_attendee(client, seed, enroll):
    import_csv(client, seed, ROOM)
    for name in ("vm-1", "vm-2"):
        enroll(name)
    result = client.post("/api/v1/attendees/assign", json={}, headers=seed.auth).json
    assert result["assigned"] == [{"attendee": "ada@example.org", "node": "vm-1"},
                                  {"attendee": "alan@example.org", "node": "vm-2"}]
    assert result["unassigned"] == ["grace@example.org"]
    # Running it again moves nobody.
    assert client.post("/api/v1/attendees/assign", json={}, headers=seed.auth).json["assigned"] == []


def test_explicit_assignment_and_its_errors(client, seed, enroll):
    import_csv(client, seed, ROOM)
    enroll("vm-1")

    def assign(body):
        return client.post("/api/v1/attendees/assign", json=body, headers=seed.auth)

    assert assign({"attendee": "grace@example.org", "node": "vm-1"}).json["assigned"] == [
        {"attendee": "grace@example.org", "node": "vm-1"}]
    taken = assign({"attendee": "ada@example.org", "node": "vm-1"})
    assert taken.status_code == 409 and taken.json["field"] == "node"
    assert "grace@example.org" in taken.json["detail"]
    for body, status, field in [({"attendee": "nobody@example.org", "node": "vm-1"}, 404, "attendee"),
                                ({"attendee": "ada@example.org", "node": "vm-9"}, 404, "node"),
                                ({"attendee": "ada@example.org"}, 400, "node"),
                                ({"node": "vm-1"}, 400, "attendee")]:
        response = assign(body)
        assert (response.status_code, response.json["field"]) == (status, field), body
    audit = client.get("/api/v1/audit?action=attendees.assign", headers=seed.auth).json["entries"]
    assert audit[0]["detail"]["pairs"] == {"grace@example.org": "vm-1"}


def test_access_codes_are_shown_once_and_stored_hashed(app, client, seed, enroll):
    import_csv(client, seed, ROOM)
    enroll("vm-1")
    client.post("/api/v1/attendees/assign", json={}, headers=seed.auth)
    sheet = client.post("/api/v1/attendees/credentials", json={}, headers=seed.auth)
    assert sheet.headers["Cache-Control"] == "no-store"
    rows = {r["email"]: r for r in sheet.json["credentials"]}
    ada = rows["ada@example.org"]
    assert ada["node"] == "vm-1" and ada["login"] == "class" and len(ada["access_code"]) == 14
    assert rows["alan@example.org"]["host"] is None
    with app.extensions["labfleet"].db.session() as session:
        stored = {a.email: a.access_code_hash for a in session.query(Attendee)}
    assert ada["access_code"] not in stored["ada@example.org"]
    assert attendees.check_access_code(ada["access_code"], stored["ada@example.org"])
    assert attendees.check_access_code(ada["access_code"].upper().replace("-", " "), stored["ada@example.org"])
    assert not attendees.check_access_code("aaaa-bbbb-cccc", stored["ada@example.org"])

    later = client.post("/api/v1/attendees/credentials", json={}, headers=seed.auth).json["credentials"]
    assert all(r["access_code"] is None and r["issued_at"] for r in later)
    reissued = client.post("/api/v1/attendees/credentials", json={"reissue": True}, headers=seed.auth)
    new_code = {r["email"]: r for r in reissued.json["credentials"]}["ada@example.org"]["access_code"]
    assert new_code and new_code != ada["access_code"]
    with app.extensions["labfleet"].db.session() as session:
        ada_row = session.query(Attendee).filter_by(email="ada@example.org").one()
        assert not attendees.check_access_code(ada["access_code"], ada_row.access_code_hash)


def test_the_sheet_escapes_names_and_says_what_is_missing():
    rows = [{"name": "<script>x</script>", "email": "x@example.org", "node": None, "host": None,
             "login": "class", "access_code": None, "issued_at": "2026-11-29T08:00:00+00:00"}]
    page = sheet_html(rows)
    assert "<script>x" not in page and "&lt;script&gt;" in page
    assert "(not assigned)" in page and "(issued 2026-11-29)" in page
    parsed = list(csv.DictReader(io.StringIO(sheet_csv(rows))))
    assert parsed[0]["host"] == "(not assigned)" and parsed[0]["login"] == "class"
