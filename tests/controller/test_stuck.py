"""Stuck detection on the real database: progress as the agents report it, the real rules, the real flags.

Progress reaches the controller the way it does in a room (state reports over
the agent API, or rows with the times a timeline gives them); a pass runs at a
chosen ``now``, so a timeline of minutes takes no wall-clock time.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from controller.models import LabProgress, Node, utcnow
from controller.settings import ConfigurationError
from controller.stuck import store
from controller.stuck.rules import Rules

LAB = "demo"
STEPS = ("one", "two", "three")
HINTS = ('"Look at {thing} first."', '"Then try harder."', '"Type the answer."')


@pytest.fixture
def labs_dir(tmp_path):
    folder = tmp_path / "labs" / LAB
    folder.mkdir(parents=True)
    steps = "".join(f'[[steps]]\nid = "{s}"\nhints = [{", ".join(HINTS)}]\n\n' for s in STEPS)
    (folder / "lab.toml").write_text(f'id = "{LAB}"\n\n{steps}')
    return tmp_path / "labs"


@pytest.fixture
def db(app):
    return app.extensions["labfleet"].db


def report(client, node, progress, activity=None):
    """The agent's state report: its catalog, the progress file (with each check's time), activity counts."""
    labs = {"catalog": {LAB: list(STEPS)}, "progress": {LAB: progress}, "activity": activity or {}}
    answer = client.put(f"/api/agent/v1/nodes/{node.id}/state", headers=node.auth,
                        json={"digest": uuid.uuid4().hex, "state": {"labs": labs}})
    assert answer.status_code == 200, answer.json


def failed(reason="the file is missing"):
    return {"status": "failed", "reason": reason, "at": uuid.uuid4().hex}  # a new check each time


def run(db, labs_dir, *, after_minutes=0.0, heard=True, **rules):
    """A pass ``after_minutes`` from now; with ``heard`` every agent's last heartbeat is that moment."""
    now = utcnow() + timedelta(minutes=after_minutes)
    with db.session() as session:
        if heard:
            session.execute(update(Node).values(last_seen_at=now))
        report_ = store.run_pass(session, Rules(**rules), now=now, labs_dir=labs_dir)
    return report_


def flags(db):
    with db.session() as session:
        return {f["node"]: f for f in store.listing(session)}


def rows_at(db, node, times):
    """Progress rows for ``node``: step -> (status, minutes ago)."""
    now = utcnow()
    with db.session() as session:
        for step, (status, minutes_ago) in times.items():
            session.add(LabProgress(node_id=node.id, lab=LAB, step=step, status=status,
                                    updated_at=now - timedelta(minutes=minutes_ago)))


def test_the_same_check_failing_again_and_again_flags_with_its_reason_and_the_next_hint(client, db, enroll,
                                                                                        labs_dir):
    node = enroll("lab-01")
    report(client, node, {"one": failed()}, activity={LAB: {"one": {"hints": 1}}})
    report(client, node, {"one": failed()})
    run(db, labs_dir, after_minutes=10)
    assert flags(db) == {}  # twice is not yet "again and again"

    report(client, node, {"one": failed()}, activity={LAB: {"one": {"hints": 1}}})
    run(db, labs_dir, after_minutes=10)
    flag = flags(db)["lab-01"]
    assert [r["rule"] for r in flag["reasons"]] == ["failing"]
    assert "failed 3 times in a row" in flag["reason"] and "the file is missing" in flag["reason"]
    assert flag["hint"] == "Then try harder."  # they read hint 1: the next one is suggested
    assert (flag["lab"], flag["step"]) == (LAB, "one")


def test_a_new_reason_starts_the_count_again(client, db, enroll, labs_dir):
    node = enroll("lab-01")
    for reason in ("missing", "missing", "wrong owner", "wrong owner"):
        report(client, node, {"one": failed(reason)})
    run(db, labs_dir, after_minutes=10)
    assert flags(db) == {}


def test_nobody_is_flagged_in_their_first_minutes_on_a_step(client, db, enroll, labs_dir):
    node = enroll("lab-01")
    for _ in range(5):
        report(client, node, {"one": failed()})
    run(db, labs_dir, after_minutes=4)
    assert flags(db) == {}  # 4 min < the 5 min grace
    run(db, labs_dir, after_minutes=4, grace_seconds=120)
    assert "lab-01" in flags(db)  # the grace is a setting


def test_resets_and_hints_flag_with_their_reasons(client, db, enroll, labs_dir):
    resetting, reading = enroll("lab-01"), enroll("lab-02")
    report(client, resetting, {"one": {"status": "passed", "reason": "", "at": "a"}},
           activity={LAB: {"two": {"resets": 2}}})
    report(client, reading, {"one": {"status": "passed", "reason": "", "at": "a"}},
           activity={LAB: {"two": {"hints": 3}}})
    run(db, labs_dir, after_minutes=6)
    found = flags(db)
    assert [r["rule"] for r in found["lab-01"]["reasons"]] == ["resets"]
    assert found["lab-01"]["reason"] == f"reset {LAB} 2 times on this step"
    assert [r["rule"] for r in found["lab-02"]["reasons"]] == ["hints"]
    assert found["lab-02"]["reason"] == "read 3 hints for two"
    assert found["lab-02"]["hint"] == "Type the answer."


def test_resets_the_instructor_issued_count_too(client, seed, db, enroll, labs_dir):
    node = enroll("lab-01")
    report(client, node, {"one": failed()})
    for _ in range(2):
        issued = client.post("/api/v1/commands", headers=seed.auth,
                             json={"kind": "lab.reset", "args": {"lab": LAB}, "nodes": ["lab-01"]})
        assert issued.status_code == 201
    run(db, labs_dir, after_minutes=6)
    assert "reset demo 2 times" in flags(db)["lab-01"]["reason"]


def test_a_silent_agent_is_flagged(client, db, enroll, labs_dir):
    node = enroll("lab-01")
    report(client, node, {"one": failed()})
    with db.session() as session:
        session.execute(update(Node).values(last_seen_at=utcnow() + timedelta(minutes=4)))
    run(db, labs_dir, after_minutes=6, heard=False)
    assert "their agent has been silent for" in flags(db)["lab-01"]["reason"]


def test_the_room_median_flags_only_the_one_far_behind(client, db, enroll, labs_dir):
    # Three attendees did step two in 5 minutes; one has been on it for 30, one for 6.
    fast = [enroll(f"lab-0{i}") for i in (1, 2, 3)]
    behind, steady = enroll("lab-04"), enroll("lab-05")
    for node in fast:
        rows_at(db, node, {"one": ("passed", 40), "two": ("passed", 35)})
    rows_at(db, behind, {"one": ("passed", 30)})
    rows_at(db, steady, {"one": ("passed", 6)})
    report_ = run(db, labs_dir)
    found = flags(db)
    assert set(found) == {"lab-04"} and report_.flagged == 1 and report_.evaluated == 5
    (reason,) = found["lab-04"]["reasons"]
    assert reason["rule"] == "slow"
    assert reason["text"] == "on demo/two for 30 min; the room's median is 5 min (5 attendees)"
    assert found["lab-04"]["hint"] == "Look at <thing> first."


def test_a_median_needs_enough_attendees(client, db, enroll, labs_dir):
    done, behind = enroll("lab-01"), enroll("lab-02")
    rows_at(db, done, {"one": ("passed", 40), "two": ("passed", 35)})
    rows_at(db, behind, {"one": ("passed", 30)})
    run(db, labs_dir, slow_factor=1.5)
    assert flags(db) == {}  # a median of two is not a room's
    run(db, labs_dir, slow_factor=1.5, min_peers=2)
    assert "lab-02" in flags(db)


def test_the_flag_clears_itself_when_they_move_on(client, db, enroll, labs_dir):
    node = enroll("lab-01")
    for _ in range(3):
        report(client, node, {"one": failed()})
    run(db, labs_dir, after_minutes=10)
    since = flags(db)["lab-01"]["since"]
    run(db, labs_dir, after_minutes=11)
    assert flags(db)["lab-01"]["since"] == since  # still stuck on the same step: the same flag

    report(client, node, {"one": {"status": "passed", "reason": "", "at": "z"}})
    cleared = run(db, labs_dir, after_minutes=11)
    assert flags(db) == {} and cleared.cleared == 1  # on step two for 0 min: inside the grace


def test_a_stuck_attendee_is_in_the_help_list_and_becomes_a_raised_hand(client, seed, db, enroll, labs_dir):
    node = enroll("lab-01")
    for _ in range(3):
        report(client, node, {"one": failed()})
    run(db, labs_dir, after_minutes=10)
    listed = client.get("/api/v1/help", headers=seed.auth).json
    assert listed["requests"] == [] and [s["node"] for s in listed["stuck"]] == ["lab-01"]
    assert listed["stuck"][0]["hand_raised"] is False

    raised = client.post("/api/v1/stuck/lab-01/raise", headers=seed.auth)
    assert raised.status_code == 201 and raised.json["source"] == "stuck"
    assert "failed 3 times in a row" in raised.json["reason"] and raised.json["node"] == "lab-01"
    after = client.get("/api/v1/help", headers=seed.auth).json
    assert [r["id"] for r in after["requests"]] == [raised.json["id"]] and after["stuck"][0]["hand_raised"]
    (entry,) = client.get("/api/v1/audit?action=help.raise", headers=seed.auth).json["entries"]
    assert entry["actor"] == "instructor:test-instructor" and entry["detail"]["source"] == "stuck"
    not_stuck = client.post(f"/api/v1/stuck/{enroll('lab-02').name}/raise", headers=seed.auth)
    assert not_stuck.status_code == 404 and not_stuck.json["field"] == "node"


def test_the_beat_task_runs_the_pass_with_the_rules_from_the_settings(app, client, enroll, labs_dir):
    from controller.celery_app import celery_config
    from controller.tasks.stuck import stuck

    settings = app.extensions["labfleet"].settings
    assert celery_config(settings)["beat_schedule"]["stuck"]["task"] == "labfleet.stuck"
    node = enroll("lab-01")
    for _ in range(3):
        report(client, node, {"one": failed()})
    settings.labs_dir = str(labs_dir)
    settings.stuck_rules = '{"grace_seconds": 0}'
    with app.app_context():
        assert stuck.apply().get() == {"evaluated": 1, "flagged": 1, "cleared": 0}
    settings.stuck_rules = '{"grace_seconds": 0, "fail_repeats": 4}'
    with app.app_context():
        assert stuck.apply().get() == {"evaluated": 1, "flagged": 0, "cleared": 1}


def test_rule_settings_are_checked():
    assert Rules.from_setting('{"grace_seconds": 60}').grace_seconds == 60
    for bad in ('{"grace": 60}', '{"hints": -1}', '{"hints": true}', "[1]", "{"):
        with pytest.raises(ConfigurationError):
            Rules.from_setting(bad)


def report_session(client, node, session, progress=None):
    labs = {"catalog": {LAB: list(STEPS)}, "progress": {LAB: progress or {}}, "activity": {}}
    answer = client.put(f"/api/agent/v1/nodes/{node.id}/state", headers=node.auth,
                        json={"digest": uuid.uuid4().hex, "state": {"labs": labs, "session": session}})
    assert answer.status_code == 200, answer.json


def test_a_hit_session_ceiling_flags_at_once_with_its_reason_and_clears_when_it_is_old(client, db, enroll,
                                                                                     labs_dir):
    bombed, calm = enroll("lab-01"), enroll("lab-02")
    hit_at = utcnow().isoformat().replace("+00:00", "Z")
    report_session(client, bombed, {"cgroup": "user.slice/user-1000.slice", "present": True, "pids_max": 512,
                                    "pids_hits": 37, "memory_max": None, "oom_kills": 0, "last_hit_at": hit_at})
    report_session(client, calm, {"cgroup": "user.slice/user-1001.slice", "present": True, "pids_max": 512,
                                  "pids_hits": 0, "memory_max": None, "oom_kills": 0, "last_hit_at": None},
                   {"one": failed()})
    run(db, labs_dir, after_minutes=1)  # inside the grace period, and without any lab progress: still flagged
    found = flags(db)
    assert set(found) == {"lab-01"}
    assert "hit its pids ceiling of 512 processes (37 forks refused)" in found["lab-01"]["reason"]
    assert "fork bomb" in found["lab-01"]["reason"] and found["lab-01"]["reasons"][0]["rule"] == "ceiling"
    run(db, labs_dir, after_minutes=16)  # ceiling_seconds (15 min) later, no new hit
    assert "lab-01" not in flags(db)
