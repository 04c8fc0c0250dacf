"""The progress matrix, bulk actions and the audit log in real headless Chromium."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import expect
from sqlalchemy import select

from controller import audit
from controller.models import AuditEntry, CommandResult, Node, utcnow
from tests.processes import Agent as AgentProcess
from tests.processes import wait_until
from tests.web import a11y
from tests.web.conftest import login, shot

CATALOG = {"ns-pid": ["new-namespace", "pid-one"], "cg-mem": ["limit"]}
NO_PID_NS = "no process in a new PID namespace"
HOSTILE = "<img src=x onerror=alert(1)>"


def failing(reason: str) -> dict:
    return {"labs": {"catalog": CATALOG, "progress": {"ns-pid": {
        "new-namespace": {"status": "failed", "reason": reason}}}}}


def test_matrix_shows_each_cell_with_its_reason_and_groups_the_failures(page, live_server, instructor, agents):
    grace, alan, barbara, edsger = agents([("lab-01", "Grace Hopper"), ("lab-02", "Alan Turing"),
                                           ("lab-03", "Barbara Liskov"), ("lab-04", "Edsger Dijkstra")])
    grace.report("d1", failing(NO_PID_NS))
    alan.report("d1", failing(NO_PID_NS))
    barbara.report("d1", failing(HOSTILE))
    edsger.report("d1", {"labs": {"catalog": CATALOG, "progress": {"ns-pid": {
        "new-namespace": {"status": "passed"}}}}})
    login(page, live_server)
    page.get_by_role("link", name="Matrix").click()
    expect(page).to_have_url(f"{live_server}/matrix")
    header = page.locator("th.step[data-lab=ns-pid][data-step=new-namespace]")
    expect(header).to_contain_text("3 failing")
    expect(header.locator(".reasons li")).to_have_text([f"2 attendees: {NO_PID_NS}", f"1 attendee: {HOSTILE}"])
    expect(page.locator("th.step[data-step=pid-one]")).to_contain_text("0 failing")
    expect(page.locator("th.step[data-lab=cg-mem]")).to_contain_text("limit")

    def cell(attendee: str, column: int = 0):
        return page.locator("#matrix tbody tr").filter(has_text=attendee).locator("td").nth(column)

    expect(cell("Grace Hopper")).to_have_attribute("title", f"failed: {NO_PID_NS}")
    expect(cell("Grace Hopper")).to_have_class("c-failing")
    expect(cell("Barbara Liskov")).to_have_attribute("title", f"failed: {HOSTILE}")
    expect(cell("Barbara Liskov").locator(".visually-hidden")).to_have_text(f"failed: {HOSTILE}")
    expect(cell("Edsger Dijkstra")).to_have_attribute("title", "passed")
    expect(cell("Edsger Dijkstra", 1)).to_have_attribute("title", "not started")
    assert page.locator("#matrix img").count() == 0
    # Every checkbox is labelled with its attendee; every control of the bulk bar has a label.
    for name in ("Grace Hopper", "Alan Turing", "Barbara Liskov", "Edsger Dijkstra"):
        expect(page.get_by_label(name, exact=True)).to_be_visible()
    for label in ("Action", "Lab", "Step"):
        expect(page.get_by_label(label, exact=True)).to_be_visible()
    shot(page, "matrix")
    a11y.check(page, "the progress matrix")

    # Live: Barbara fixes it on her machine; the matrix follows without a reload.
    page.evaluate("window.__not_reloaded = true")
    expect(page.locator("#live")).to_have_text("live")
    barbara.report("d2", {"labs": {"catalog": CATALOG, "progress": {"ns-pid": {
        "new-namespace": {"status": "passed"}}}}})
    expect(cell("Barbara Liskov")).to_have_attribute("title", "passed", timeout=3000)
    expect(header).to_contain_text("2 failing")
    expect(header.locator(".reasons li")).to_have_text([f"2 attendees: {NO_PID_NS}"])
    assert page.evaluate("window.__not_reloaded") is True
    assert page.locator("#matrix img").count() == 0

    # "Select failing" ticks exactly the attendees failing that step and picks the lab and step.
    header.get_by_role("button", name="Select everyone failing ns-pid / new-namespace").click()
    expect(page.locator("#bulk-count")).to_have_text("2 selected")
    expect(page.get_by_label("Grace Hopper", exact=True)).to_be_checked()
    expect(page.get_by_label("Alan Turing", exact=True)).to_be_checked()
    expect(page.get_by_label("Barbara Liskov", exact=True)).not_to_be_checked()
    expect(page.get_by_label("Lab", exact=True)).to_have_value("ns-pid")
    expect(page.get_by_label("Step", exact=True)).to_have_value("new-namespace")
    assert page.console_errors == []


SCRIPTED_LAB = """
id = "two-step"
title = "Two markers"
topic = "namespaces"
minutes = 5
summary = "Make two markers."
[[steps]]
id = "make"
title = "The first marker"
instructions = "make.md"
check = { kind = "script", path = "check.sh" }
solve = { kind = "script", path = "solve.sh" }
reset = { kind = "script", path = "reset.sh" }
[[steps]]
id = "more"
title = "The second marker"
instructions = "make.md"
check = { kind = "script", path = "check.sh" }
solve = { kind = "script", path = "solve.sh" }
reset = { kind = "script", path = "reset.sh" }
"""


def agent_with_a_lab(tmp_path, name: str, live_server: str, token: str) -> tuple[AgentProcess, Path]:
    """A real agent whose one lab's reset leaves a mark in the test's folder (and nothing anywhere else)."""
    home = tmp_path / name
    lab = home / "labs" / "two-step"
    lab.mkdir(parents=True)
    marker = home / "reset-ran"
    (lab / "lab.toml").write_text(SCRIPTED_LAB)
    (lab / "make.md").write_text("Make the markers.\n")
    (lab / "check.sh").write_text("echo '{}'; echo 'no marker yet'; exit 1\n")
    (lab / "solve.sh").write_text("exit 0\n")
    (lab / "reset.sh").write_text(f"echo reset >> {marker}\n")
    config = home / "agent.toml"
    config.write_text(f'labs_dir = "{home / "labs"}"\nattendee_user = "nobody"\nlab_prefix = "wm{name[-2:]}"\n'
                      f'lab_cgroup_parent = "labfleet-test/wm{name[-2:]}"\n'
                      f'attendee_socket = "{home / "attendee.sock"}"\n')
    agent = AgentProcess(name, home / "state").start(live_server, token, insecure_http=True, config_file=config)
    return agent, marker


def test_a_bulk_reset_from_the_matrix_reaches_every_selected_node(page, live_server, instructor, seed, app, tmp_path):
    """Real node agents (``python -m node_agent run``) long-poll the live controller and run the reset."""
    token = seed.enrollment_token(uses=3)
    started = [agent_with_a_lab(tmp_path, name, live_server, token) for name in ("lab-01", "lab-02", "lab-03")]
    db = app.extensions["labfleet"].db
    try:
        def enrolled() -> dict[str, str]:
            with db.session() as session:
                return dict(session.execute(select(Node.name, Node.id).where(
                    Node.state == "online", Node.state_snapshot.is_not(None))).all())

        wait_until(lambda: len(enrolled()) == 3, timeout=30, what="three agents online with their catalog")
        ids = enrolled()
        with db.session() as session:
            from controller.models import Attendee, LabProgress

            event_id = session.scalar(select(Node.event_id).where(Node.id == ids["lab-01"]))
            for i, (node, attendee) in enumerate((("lab-01", "Grace Hopper"), ("lab-02", "Alan Turing"),
                                                  ("lab-03", "Barbara Liskov"))):
                session.add(Attendee(event_id=event_id, name=attendee, email=f"a{i}@example.org", node_id=ids[node]))
                session.add(LabProgress(node_id=ids[node], lab="two-step", step="make",
                                        status="passed" if node == "lab-03" else "failed",
                                        evidence={} if node == "lab-03" else {"reason": NO_PID_NS}))
        login(page, live_server)
        page.goto(f"{live_server}/matrix")
        expect(page.locator("#matrix tbody tr")).to_have_count(3)
        expect(page.locator("#live")).to_have_text("live")
        page.get_by_role("button", name="Select everyone failing two-step / make").click()
        expect(page.locator("#bulk-count")).to_have_text("2 selected")
        page.get_by_label("Action", exact=True).select_option("lab.reset")
        page.get_by_label("Step", exact=True).select_option("")
        page.get_by_role("button", name="Reset 2 machines").click()
        dialog = page.locator("dialog#bulk-confirm")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("Reset lab two-step to its start for 2 attendees?")
        shot(page, "matrix-bulk-confirm")
        a11y.check(page, "the matrix's bulk confirmation")
        dialog.get_by_role("button", name="Reset 2 attendees").click()
        expect(dialog).to_be_hidden()
        results = page.locator("#bulk-list li")
        expect(results).to_have_count(2)
        expect(page.locator("#bulk-summary")).to_contain_text("2 of 2 done", timeout=20_000)
        for node in ("lab-01", "lab-02"):
            expect(results.filter(has_text=node).locator(".r-state")).to_have_text("succeeded")
        expect(results.filter(has_text="Grace Hopper")).to_have_count(1)
        # The reset cleared their progress: the matrix shows them "not started" without a reload.
        grace_cell = page.locator("#matrix tbody tr").filter(has_text="Grace Hopper").locator("td").first
        expect(grace_cell).to_have_attribute("title", "not started", timeout=3000)
        expect(page.locator("#matrix tbody tr").filter(has_text="Barbara Liskov").locator("td").first
               ).to_have_attribute("title", "passed")
        shot(page, "matrix-bulk-results")

        with db.session() as session:
            answered = set(session.scalars(select(CommandResult.node_id)))
            issued = session.scalars(select(AuditEntry).where(AuditEntry.action == "command.issue")).one()
            assert (issued.actor, issued.detail["kind"], sorted(issued.detail["nodes"])) == (
                "instructor:ada", "lab.reset", ["lab-01", "lab-02"])
        assert answered == {ids["lab-01"], ids["lab-02"]}  # every selected node ran it; the other did not
        for (agent, marker) in started:
            assert marker.exists() == (agent.name != "lab-03"), agent.name

        # A forged bulk request without the page's CSRF token is refused and issues nothing.
        forged = page.request.post(f"{live_server}/bulk", data={"kind": "lab.reset", "lab": "ns-pid",
                                                                "nodes": [ids["lab-03"]]})  # noqa: E501
        assert forged.status == 403
        # From the room: select a tile, check it (not destructive: no confirmation).
        page.get_by_role("link", name="Room").click()
        page.locator("#tiles li").filter(has_text="Barbara Liskov").get_by_label("Select Barbara Liskov").check()
        expect(page.locator("#bulk-count")).to_have_text("1 selected")
        page.get_by_label("Lab", exact=True).select_option("two-step")
        page.get_by_role("button", name="Check 1 machine").click()
        expect(page.locator("#bulk-summary")).to_contain_text("1 of 1 done", timeout=20_000)
        expect(page.locator("#bulk-list li").filter(has_text="lab-03").locator(".r-summary")).to_contain_text(
            "make: failed")
        shot(page, "room-bulk-check")
        assert page.console_errors == []
    finally:
        for agent, _ in started:
            agent.proc.stop()


def test_the_audit_page_filters_by_who_action_node_and_time_and_pages(page, live_server, instructor, app):
    now = utcnow()
    with app.extensions["labfleet"].db.session() as session:
        for i in range(60):
            entry = audit.record(session, actor="instructor:grace" if i % 2 else "instructor:alan",
                                 action="command.issue" if i % 3 else "node.revoke", target=f"t{i}",
                                 nodes=[f"lab-{i % 5:02d}"], kind="lab.check")
            entry.at = now - timedelta(hours=60 - i)
        audit.record(session, actor="node:lab-07", action="command.result", target="c1", error=HOSTILE)
    login(page, live_server)
    page.get_by_role("link", name="Audit log").click()
    rows = page.locator("#audit tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.first).to_contain_text("web.login")  # newest first: this very login
    expect(page.locator("#audit")).to_contain_text(HOSTILE)
    assert page.locator("#audit img").count() == 0
    page.get_by_role("link", name="Older entries").click()
    expect(rows).to_have_count(13)  # 60 + the node's + adding ada + her login = 63

    page.goto(f"{live_server}/audit")
    page.get_by_label("Who").fill("grace")
    page.get_by_label("Action").select_option("node.revoke")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(10)  # odd i, multiple of 3: 3, 9, ..., 57
    for text in rows.locator("td.actor").all_text_contents():
        assert text == "instructor:grace"
    expect(rows.locator("td.action")).to_have_text(["node.revoke"] * 10)

    page.get_by_label("Action").select_option("")
    page.get_by_label("Node").fill("lab-03")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(6)  # odd i with i % 5 == 3: 3, 13, ..., 53
    page.get_by_label("Node").fill("")
    since = (now - timedelta(hours=10)).strftime("%Y-%m-%dT%H:%M:%S")
    until = (now - timedelta(hours=4, minutes=30)).strftime("%Y-%m-%dT%H:%M:%S")
    page.get_by_label("From (UTC)").fill(since)
    page.get_by_label("To (UTC)").fill(until)
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(3)  # grace's, 10 h to 4.5 h ago: i = 51, 53, 55
    expect(rows.locator("td.target")).to_have_text(["t55", "t53", "t51"])
    shot(page, "audit-filtered")
    a11y.check(page, "the audit log")
    page.goto(f"{live_server}/audit?since=yesterday")  # a 400: the browser logs it, the page names the field
    expect(page.get_by_role("alert")).to_contain_text("since: expected a time like")


def test_the_audit_api_filters_like_the_page(client, seed, app):
    with app.extensions["labfleet"].db.session() as session:
        audit.record(session, actor="instructor:grace", action="command.issue", target="b1", nodes=["lab-01"])
        audit.record(session, actor="node:lab-01", action="command.result", target="c1")
        audit.record(session, actor="instructor:alan", action="command.issue", target="b2", nodes=["lab-02"])

    def actions(query: str) -> list[tuple[str, str]]:
        response = client.get(f"/api/v1/audit?{query}", headers=seed.auth)
        assert response.status_code == 200, response.json
        return [(e["actor"], e["target"]) for e in response.json["entries"]]

    assert actions("node=lab-01") == [("node:lab-01", "c1"), ("instructor:grace", "b1")]
    assert actions("actor=alan") == [("instructor:alan", "b2")]
    assert actions("actor=instructor:grace&action=command.issue") == [("instructor:grace", "b1")]
    later = (utcnow() + timedelta(minutes=5)).isoformat()
    assert actions(f"since={quote(later)}") == []
    bad = client.get("/api/v1/audit?until=soon", headers=seed.auth)
    assert bad.status_code == 400 and bad.json["field"] == "until"
