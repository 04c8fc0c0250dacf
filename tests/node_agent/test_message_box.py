"""The agent's message box on real files: kept across a restart until read, instructor text cleaned."""

from __future__ import annotations

import os
import stat

from node_agent.message_box import KEPT, MessageBox

ID1, ID2 = "a" * 32, "b" * 32


def box(tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o755, exist_ok=True)
    return MessageBox(tmp_path / "state", run / "help-notice")


def test_a_message_is_kept_until_read_across_a_restart_and_read_once(tmp_path):
    first = box(tmp_path)
    assert first.receive(ID1, text="lunch\x1b[2J at\tnoon\n\x07", by="ana") == {"kept": True, "unread": 1}
    first.receive(ID1, text="lunch at noon", by="ana")  # a redelivery is not a second message
    notice = tmp_path / "run" / "help-notice"
    assert notice.read_text() == f"msg-{ID1[:12]}\tmessage from ana: lunch[2J at noon \n"
    assert stat.S_IMODE(os.lstat(notice).st_mode) == 0o644

    restarted = box(tmp_path)  # a new agent process reads the same state folder
    (unread,) = restarted.unread(mark_read=True)
    assert unread["text"] == "lunch[2J at noon " and unread["id"] == ID1
    assert restarted.unread(mark_read=True) == []
    assert box(tmp_path).snapshot() == {"unread": 0, "read": [ID1]}


def test_a_hint_says_which_step_and_the_second_unread_message_says_how_many(tmp_path):
    messages = box(tmp_path)
    messages.receive(ID1, text="first", by="ana")
    messages.receive(ID2, text="try `unshare -u`", kind="hint", lab="ns-uts", step="rename", by="ana")
    line = (tmp_path / "run" / "help-notice").read_text()
    assert line == f"msg-{ID2[:12]}\thint from ana for ns-uts/rename: try `unshare -u` (2 unread: lab messages)\n"
    assert [m["id"] for m in messages.unread(mark_read=False)] == [ID1, ID2]


def test_the_box_keeps_a_bounded_number_and_drops_read_ones_first(tmp_path):
    messages = box(tmp_path)
    messages.receive(ID1, text="old and unread")
    for n in range(KEPT + 5):
        messages.receive(f"{n:032x}", text=f"m{n}")
        if n == 0:
            messages.unread(mark_read=True)  # ID1 and m0 read
    kept = messages.recent(limit=KEPT * 2)
    assert len(kept) == KEPT


def test_mark_read_from_the_attendee_page_marks_one_message_and_lab_status_no_longer_shows_it(tmp_path):
    messages = box(tmp_path)
    messages.receive(ID1, text="first", by="ana")
    messages.receive(ID2, text="second", by="ana")
    assert messages.mark_read(ID1) == {"found": True, "unread": 1}
    assert messages.mark_read("c" * 32) == {"found": False, "unread": 1}  # not kept here: nothing changes
    assert [m["id"] for m in box(tmp_path).unread(mark_read=False)] == [ID2]  # what `lab status` shows
    assert box(tmp_path).snapshot() == {"unread": 1, "read": [ID1]}
