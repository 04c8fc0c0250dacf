"""The attendee page's raised hand, instructor messages and "someone is watching" banner, in real headless
Chromium with the real agent and lab of test_node_attendee.py (run it under the kernel-tests lock).

The hand goes through the same help queue as ``lab help`` (controller/help_requests.py): the instructor
sees it with its lab, step and the last check's reason in the help API, claims and replies there, and the
attendee's page shows "is coming" and then the reply without reloading.
"""

from __future__ import annotations

import json
import os

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from controller.models import AuditEntry
from tests.labs.conftest import attendee as attendee  # noqa: F401 - the session's real attendee account
from tests.web import a11y
from tests.web.conftest import login, shot
from tests.web.test_node_attendee import HOSTILE, _get, attendee_login
from tests.web.test_node_attendee import lab_node as lab_node  # noqa: F401 - the real agent with the web-lab

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent's labs act on the kernel as root")


def _api(base: str, seed, path: str, body: dict | None = None) -> tuple[int, dict]:
    status, _, text = _get(f"{base}{path}", method="POST" if body is not None else "GET",
                           body=json.dumps(body).encode() if body is not None else None,
                           headers={**seed.auth, "Content-Type": "application/json"})
    return status, json.loads(text)


def test_attendee_raises_a_hand_the_instructor_claims_and_replies_and_messages_arrive(
        browser, page, live_server, seed, instructor, lab_node, app):  # noqa: F811
    attendee_login(page, live_server, lab_node["email"], lab_node["code"])
    expect(page).to_have_url(f"{live_server}/attendee")
    lab = page.locator("details.lab[data-lab=web-lab]")
    lab.get_by_role("button", name="Check my work").click()  # a failing check: its reason goes with the hand
    expect(lab.locator("[data-f=result]")).to_contain_text("does not exist yet", timeout=15000)
    page.evaluate("window.__not_reloaded = true")

    page.get_by_label("What are you stuck on? (optional)").fill("stuck on touch " + HOSTILE)
    page.get_by_role("button", name="Raise my hand").click()
    expect(page.locator("#help-result")).to_contain_text("Your hand is up")
    expect(page.locator("#help-state-text")).to_have_text("waiting for an instructor")
    expect(page.locator("#help-asked")).to_contain_text("web-lab / make")
    expect(page.locator("#help-asked")).to_contain_text(HOSTILE)  # shown literally, never parsed

    # The instructor's help queue has it, from the same service as `lab help`, with lab, step and reason.
    status, queue = _api(live_server, seed, "/api/v1/help")
    assert status == 200
    (hand,) = queue["requests"]
    assert (hand["node"], hand["attendee"], hand["state"]) == ("vm-web", "Grace Hopper", "open")
    assert (hand["lab"], hand["step"], hand["message"]) == ("web-lab", "make", "stuck on touch " + HOSTILE)
    assert hand["reason"].endswith("does not exist yet")

    status, claimed = _api(live_server, seed, f"/api/v1/help/{hand['id']}/claim", {})
    assert status == 200 and claimed["state"] == "claimed"
    expect(page.locator("#help-state-text")).to_have_text("test-instructor is coming", timeout=5000)
    expect(page.locator("#help-state")).to_have_attribute("data-state", "claimed")
    status, _ = _api(live_server, seed, f"/api/v1/help/{hand['id']}/reply", {"text": "run ls -l " + HOSTILE})
    assert status == 200
    expect(page.locator("#help-reply")).to_have_text("test-instructor replied: run ls -l " + HOSTILE, timeout=5000)

    # An instructor message through the messages API shows on the page, unread (the agent owns read state).
    expect(page.locator("#messages-none")).to_be_visible()
    status, sent = _api(live_server, seed, "/api/v1/messages", {"nodes": ["vm-web"], "text": "break " + HOSTILE})
    assert status in (200, 201), sent
    message = page.locator("#messages li.instructor-message")
    expect(message).to_have_count(1, timeout=5000)
    expect(message.locator(".message-text")).to_have_text("break " + HOSTILE)
    expect(message.locator(".message-head")).to_contain_text("Message from test-instructor")
    expect(message).to_have_class("instructor-message kind-message unread")
    expect(page.locator("#messages-none")).to_be_hidden()
    assert page.locator("img").count() == 0
    # "Mark read": the agent marks it in its message box (as `lab status` does); its next state shows it read.
    message.get_by_role("button", name="Mark read").click()
    expect(message).to_have_class("instructor-message kind-message", timeout=15000)
    expect(message.get_by_role("button", name="Mark read")).to_have_count(0)
    status, listed = _api(live_server, seed, "/api/v1/messages")
    (mine,) = sent["messages"]
    assert status == 200 and [m["read"] for m in listed["messages"] if m["id"] == mine["id"]] == [True], listed

    # Nobody watches the terminal: no banner. An instructor opens it: the banner names them, read-only.
    expect(page.locator("#watching")).to_be_hidden()
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    watcher = context.new_page()
    login(watcher, live_server)
    watcher.goto(f"{live_server}/terminal/{lab_node['node_id']}")
    banner = page.locator("#watching")
    expect(banner).to_be_visible(timeout=10000)
    expect(banner).to_contain_text("is watching your terminal")
    expect(banner).to_contain_text("read-only")
    expect(page.get_by_role("link", name="Open my terminal", exact=True)).to_have_attribute(
        "href", "/attendee/terminal")
    shot(page, "attendee-help-messages-watching")
    context.close()
    expect(banner).to_be_hidden(timeout=10000)

    status, _ = _api(live_server, seed, f"/api/v1/help/{hand['id']}/resolve", {})
    assert status == 200
    expect(page.locator("#help-state-text")).to_have_text("resolved by test-instructor", timeout=5000)
    expect(page.get_by_role("button", name="Raise my hand")).to_be_visible()
    assert page.evaluate("window.__not_reloaded") is True
    a11y.check(page, "the attendee page with a raised hand and messages")
    assert page.console_errors == []

    with app.extensions["labfleet"].db.session() as session:
        actions = session.execute(select(AuditEntry.actor, AuditEntry.action)).all()
    assert ("attendee:grace@example.org", "help.raise") in actions
    assert {a for _, a in actions} >= {"help.claim", "help.reply", "help.resolve", "message.send"}
    assert ("attendee:grace@example.org", "message.read") in actions


def test_a_raised_hand_is_validated_and_rate_limited(page, live_server, lab_node):  # noqa: F811
    attendee_login(page, live_server, lab_node["email"], lab_node["code"])
    expect(page).to_have_url(f"{live_server}/attendee")
    csrf = page.locator("#attendee").get_attribute("data-csrf")

    def post(body) -> tuple[int, dict]:
        answer = page.request.post(f"{live_server}/attendee/help", data=json.dumps(body),
                                   headers={"Content-Type": "application/json", "X-CSRFToken": csrf})
        return answer.status, answer.json()

    status, refused = post({"message": "x" * 501})
    assert status == 400 and refused["field"] == "message"
    assert post({"lab": "not-mine"})[1]["field"] == "lab"
    assert post({"lab": "web-lab", "step": "nope"})[1]["field"] == "step"
    assert post({"message": 3})[1]["field"] == "message"
    first = post({"message": "help"})
    assert first[0] == 201 and first[1]["state"] == "open"
    again = post({"message": "still stuck"})  # the hand is up: its message is updated, no second hand
    assert again[0] == 200 and again[1]["id"] == first[1]["id"] and again[1]["message"] == "still stuck"
    answers = [post({"message": "spam"})[0] for _ in range(40)]
    assert answers.count(429) > 0 and 200 in answers
