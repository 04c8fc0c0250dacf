"""The instructor's pages in real headless Chromium: login, CSRF, the room's tiles, live updates, escaping."""

from __future__ import annotations

from datetime import timedelta

from playwright.sync_api import expect
from sqlalchemy import delete

from controller import sweep
from controller.models import LabProgress, utcnow
from tests.web import a11y
from tests.web.conftest import PASSWORD, login, shot

CATALOG = {"ns-pid": ["new-namespace", "pid-one"]}


def test_wrong_password_is_refused_and_the_sixth_try_is_rate_limited(page, live_server, instructor):
    for _ in range(5):
        login(page, live_server, password="not the password")
        expect(page.get_by_role("alert")).to_have_text("Wrong name or password.")
    login(page, live_server)  # even the right password: the name is locked for this address for a minute
    expect(page.get_by_role("alert")).to_contain_text("Too many wrong passwords")
    shot(page, "login-rate-limited")
    assert "/room" not in page.url


def test_login_opens_the_room_with_a_tile_per_node(page, live_server, instructor, agents):
    agents([("lab-01", "Grace Hopper"), ("lab-02", "Alan Turing"), ("lab-03", "Barbara Liskov")])
    page.goto(f"{live_server}/room")
    expect(page).to_have_url(f"{live_server}/login?next=%2Froom")
    shot(page, "login")
    a11y.check(page, "the login page")
    login(page, live_server)
    expect(page).to_have_url(f"{live_server}/room")
    tiles = page.locator("#tiles > li.tile")
    expect(tiles).to_have_count(3)
    for attendee, node in (("Grace Hopper", "lab-01"), ("Alan Turing", "lab-02"), ("Barbara Liskov", "lab-03")):
        tile = tiles.filter(has_text=attendee)
        expect(tile).to_contain_text(node)
        expect(tile).to_contain_text("online")
    expect(page.locator("#live")).to_have_text("live")
    page.get_by_label("Search attendees, nodes, labs").fill("turing")
    expect(page.locator("#tiles > li.tile:visible")).to_have_count(1)
    shot(page, "room-search")
    page.get_by_label("Search attendees, nodes, labs").fill("")
    shot(page, "room-laptop")
    a11y.check(page, "the room on a laptop")
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.goto(f"{live_server}/room?large=1")
    expect(tiles).to_have_count(3)
    expect(page.locator("#live")).to_have_text("live")
    shot(page, "room-projector")
    a11y.check(page, "the room on a projector")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{live_server}/login")
    assert page.console_errors == []


def test_a_post_without_the_csrf_token_is_refused(page, live_server, instructor):
    login(page, live_server)
    expect(page).to_have_url(f"{live_server}/room")
    response = page.request.post(f"{live_server}/logout", form={}, max_redirects=0)
    assert response.status == 403
    assert "not sent from a labfleet page" in response.text()
    page.goto(f"{live_server}/room")
    expect(page).to_have_url(f"{live_server}/room")  # still logged in: the forged logout did nothing


def test_agent_changes_reach_the_open_page_without_reload(page, live_server, instructor, agents, app):
    first, second = agents([("lab-01", "Grace Hopper"), ("lab-02", "Alan Turing")])
    login(page, live_server)
    expect(page.locator("#live")).to_have_text("live")
    page.evaluate("window.__not_reloaded = true")
    tile = page.locator("#tiles > li.tile").filter(has_text="Grace Hopper")

    # The attendee ran `lab check` on the VM: the agent reports it in its state snapshot.
    first.report("d1", {"labs": {"catalog": CATALOG, "progress": {"ns-pid": {
        "new-namespace": {"status": "failed", "reason": "no process in a new PID namespace"}}}}})
    expect(tile.locator("[data-f=check_reason]")).to_have_text("no process in a new PID namespace", timeout=1000)
    expect(tile.locator("[data-f=lab]")).to_have_text("ns-pid")
    expect(tile.locator("[data-f=step]")).to_have_text("new-namespace")
    expect(tile.locator("[data-f=check_status]")).to_have_text("failed")
    shot(page, "room-check-failed")

    # Silent nodes go offline (the sweep), and a heartbeat brings one back.
    with app.extensions["labfleet"].db.session() as session:
        sweep.mark_silent_offline(session, missed_heartbeats=3, now=utcnow() + timedelta(minutes=5))
    expect(tile.locator("[data-f=state]")).to_have_text("offline", timeout=1000)
    second_tile = page.locator("#tiles > li.tile").filter(has_text="Alan Turing")
    expect(second_tile.locator("[data-f=state]")).to_have_text("offline", timeout=1000)
    first.heartbeat(1)
    # A heartbeat reaches the database at the next flush (0.5 s), then the page within 1 s.
    expect(tile.locator("[data-f=state]")).to_have_text("online", timeout=1500)
    expect(second_tile.locator("[data-f=state]")).to_have_text("offline")

    first.report("d2", {"labs": {"catalog": CATALOG, "progress": {"ns-pid": {
        "new-namespace": {"status": "passed"}, "pid-one": {"status": "passed"}}}}})
    expect(tile.locator("[data-f=state]")).to_have_text("done", timeout=1000)
    assert page.evaluate("window.__not_reloaded") is True
    shot(page, "room-live")
    assert page.console_errors == []


def test_node_text_is_shown_literally(page, live_server, instructor, agents):
    hostile = "<script>alert('x')</script><b>bold</b>"
    (agent,) = agents([("lab-01", hostile)])
    login(page, live_server)
    tile = page.locator("#tiles > li.tile")
    expect(tile.locator("[data-f=attendee]")).to_have_text(hostile)
    assert page.locator("#tiles b").count() == 0
    agent.report("d1", {"labs": {"catalog": CATALOG, "progress": {"ns-pid": {
        "new-namespace": {"status": "failed", "reason": "<img src=x onerror=alert(1)> not yet"}}}}})
    expect(tile.locator("[data-f=check_reason]")).to_have_text("<img src=x onerror=alert(1)> not yet", timeout=1000)
    assert page.locator("#tiles img").count() == 0
    shot(page, "room-escaped")


def test_a_room_of_200_stays_one_screen_of_tiles_and_filters(page, live_server, instructor, app):
    import random

    from sqlalchemy import insert

    from controller import events
    from controller.models import Attendee, LabProgress, Node, new_id

    rng = random.Random(11)
    with app.extensions["labfleet"].db.session() as session:
        event = events.get_or_create(session)
        now = utcnow()
        nodes = [{"id": new_id(), "event_id": event.id, "name": f"lab-{i:03d}", "machine_id": f"m{i}",
                  "hostname": f"lab-{i:03d}.room.example", "machine_secret_hash": "x", "heartbeat_interval": 5.0,
                  "state": "offline" if i % 17 == 0 else "online", "enrolled_at": now} for i in range(200)]
        session.execute(insert(Node), nodes)
        session.execute(insert(Attendee), [{"id": new_id(), "event_id": event.id, "name": f"Attendee {i:03d}",
                                            "email": f"a{i}@example.org", "node_id": n["id"], "created_at": now}
                                           for i, n in enumerate(nodes)])
        passed = [rng.random() < 0.5 for _ in nodes[::2]]
        session.execute(insert(LabProgress), [
            {"id": new_id(), "node_id": n["id"], "lab": "ns-pid", "step": "new-namespace",
             "status": "passed" if ok else "failed", "updated_at": now - timedelta(seconds=rng.randint(0, 900)),
             "evidence": {} if ok else {"reason": "no process in a new PID namespace"}}
            for n, ok in zip(nodes[::2], passed, strict=True)])
    login(page, live_server)
    expect(page.locator("#tiles > li.tile")).to_have_count(200)
    expect(page.locator("#live")).to_have_text("live")
    shot(page, "room-200-laptop")
    page.get_by_label("State").select_option("offline")
    expect(page.locator("#tiles > li.tile:visible")).to_have_count(12)
    page.get_by_label("State").select_option("")
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.goto(f"{live_server}/room?large=1")
    expect(page.locator("#tiles > li.tile")).to_have_count(200)
    page.screenshot(path=str(shot(page, "room-200-projector").with_name("room-200-projector-top.png")))
    assert page.console_errors == []


def test_a_lab_reset_then_passing_checks_show_done_on_the_open_page(page, live_server, instructor, agents, app):
    """The live reader re-reads only new progress rows; rows a reset deleted must not linger on the tile."""
    (agent,) = agents([("lab-03", "Barbara Liskov")])
    login(page, live_server)
    expect(page.locator("#live")).to_have_text("live")
    tile = page.locator("#tiles > li.tile").filter(has_text="Barbara Liskov")
    agent.report("r1", {"labs": {"catalog": CATALOG, "progress": {"ns-pid": {
        "pid-one": {"status": "failed", "reason": "pid 1 is bash"}}}}})
    expect(tile.locator("[data-f=check_reason]")).to_have_text("pid 1 is bash", timeout=1000)

    # A lab reset deletes the lab's rows (command_bulk.ResultPost -> lab_progress.from_result), then the
    # attendee passes both steps again: as many rows as before, none of them the old failure.
    with app.extensions["labfleet"].db.session() as session:
        session.execute(delete(LabProgress).where(LabProgress.node_id == agent.id, LabProgress.lab == "ns-pid"))
    agent.report("r2", {"labs": {"catalog": CATALOG, "progress": {"ns-pid": {
        "new-namespace": {"status": "passed"}, "pid-one": {"status": "passed"}}}}})
    expect(tile.locator("[data-f=state]")).to_have_text("done", timeout=1500)
    expect(tile.locator("[data-f=check_reason]")).to_have_text("")


def _logged_in_cookie(base: str) -> str:
    """A logged-in instructor session cookie, as a browser gets it (login form, CSRF token)."""
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = opener.open(f"{base}/login", timeout=10).read().decode()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form).group(1)
    opener.open(f"{base}/login", data=urllib.parse.urlencode(
        {"name": "ada", "password": PASSWORD, "csrf_token": token}).encode(), timeout=10).read()
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def test_twenty_open_rooms_get_one_frame_read_and_rendered_once(live_server, instructor, agents, app):
    """Dashboards cost the database nothing per stream: only the feed's reader reads tiles, and every open
    stream sends the very same frame for a change."""
    import http.client
    import threading
    import urllib.parse

    from sqlalchemy import event

    (agent,) = agents([("lab-07", "Frances Allen")])
    cookie = _logged_in_cookie(live_server)
    engine = app.extensions["labfleet"].db.engine
    readers: list[str] = []  # the thread of every statement that read the progress rows while pages connected

    def note(conn, cursor, statement, *args):
        if "lab_progress" in statement and statement.lstrip().upper().startswith("SELECT"):
            readers.append(threading.current_thread().name)

    event.listen(engine, "before_cursor_execute", note)
    host = urllib.parse.urlsplit(live_server)
    streams = []
    try:
        for _ in range(20):
            conn = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
            conn.request("GET", "/room/stream", headers={"Cookie": cookie, "Accept": "text/event-stream"})
            response = conn.getresponse()
            assert response.status == 200
            streams.append((conn, response))
        firsts = []
        for _, response in streams:
            lines = [response.readline() for _ in range(5)]  # retry, blank, event, data, blank
            firsts.append(next(line for line in lines if line.startswith(b"data: ")))
        event.remove(engine, "before_cursor_execute", note)
        assert all(b'"full":true' in first and b"Frances Allen" in first for first in firsts)
        assert set(firsts) == {firsts[0]}, "the pages that connected got the same first frame"
        agent.report("f1", {"labs": {"catalog": CATALOG, "progress": {"ns-pid": {
            "new-namespace": {"status": "failed", "reason": "fan-out reason"}}}}})
        frames = []
        for _, response in streams:
            for _ in range(200):  # bounded: a few frames at most before the change's
                line = response.readline()
                if b"fan-out reason" in line:
                    frames.append(line)
                    break
        assert len(frames) == 20 and len(set(frames)) == 1, "every stream sends the same frame"
    finally:
        if event.contains(engine, "before_cursor_execute", note):
            event.remove(engine, "before_cursor_execute", note)
        for conn, _ in streams:
            conn.close()
    assert readers and set(readers) == {"room-feed"}, f"progress read outside the feed's reader: {set(readers)}"
    feed = app.extensions["labfleet_pages"].feed
    assert feed.renders <= feed.reads + 1


def test_the_room_selects_everyone_failing_a_step_and_the_reset_names_how_many(page, live_server, instructor,
                                                                                agents, app):
    from sqlalchemy import select

    from controller.models import Command

    grace, alan, barbara = agents([("lab-01", "Grace Hopper"), ("lab-02", "Alan Turing"),
                                   ("lab-03", "Barbara Liskov")])
    for agent, status in ((grace, "failed"), (alan, "failed"), (barbara, "passed")):
        agent.report("s1", {"labs": {"catalog": CATALOG, "progress": {"ns-pid": {
            "new-namespace": {"status": status, "reason": "no process in a new PID namespace"}}}}})
    login(page, live_server)
    expect(page.locator("#live")).to_have_text("live")
    failing = page.locator("#select-failing")
    expect(failing).to_be_disabled()  # no step picked yet
    page.get_by_label("Action", exact=True).select_option("lab.reset")
    page.get_by_label("Lab", exact=True).select_option("ns-pid")
    page.get_by_label("Step", exact=True).select_option("new-namespace")
    page.get_by_role("button", name="Select everyone failing ns-pid / new-namespace").click()
    expect(page.locator("#bulk-count")).to_have_text("2 selected")
    expect(page.locator("#bulk-note")).to_have_text("2 attendees fail ns-pid / new-namespace.")
    expect(page.get_by_label("Select Grace Hopper")).to_be_checked()
    expect(page.get_by_label("Select Alan Turing")).to_be_checked()
    expect(page.get_by_label("Select Barbara Liskov")).not_to_be_checked()

    page.get_by_role("button", name="Reset 2 machines").click()
    dialog = page.locator("dialog#bulk-confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Reset lab ns-pid to step new-namespace for 2 attendees?")
    shot(page, "room-select-failing-confirm")
    a11y.check(page, "the room's bulk confirmation")
    dialog.get_by_role("button", name="Reset 2 attendees").click()
    expect(page.locator("#bulk-list li")).to_have_count(2)
    with app.extensions["labfleet"].db.session() as session:
        issued = session.execute(select(Command.node_id, Command.kind, Command.args)).all()
    assert sorted(node for node, _, _ in issued) == sorted([grace.id, alan.id])
    assert {(kind, args.get("lab"), args.get("to_step")) for _, kind, args in issued} == {
        ("lab.reset", "ns-pid", "new-namespace")}

    # A filter that hides Alan: he is not selected, and the note says so.
    page.get_by_label("Search attendees, nodes, labs").fill("grace")
    page.get_by_role("button", name="Clear").click()
    page.get_by_role("button", name="Select everyone failing ns-pid / new-namespace").click()
    expect(page.locator("#bulk-count")).to_have_text("1 selected")
    expect(page.locator("#bulk-note")).to_have_text(
        "2 attendees fail ns-pid / new-namespace (1 hidden by the filter, not selected).")
    shot(page, "room-select-failing-filtered")
    a11y.check(page, "the room with a filtered selection")
