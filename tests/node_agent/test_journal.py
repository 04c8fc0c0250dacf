"""The journal keeps its promises across restarts: each id runs once, each result is delivered."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from node_agent.journal import INTERRUPTED, InvalidCommandId, Journal
from node_agent.protocol import CommandResult


def ok_result(command_id: str) -> CommandResult:
    return CommandResult(command_id=command_id, ok=True, output={"pong": True}, finished_at="2025-01-01T00:00:00Z")


def executed_ids(state_dir: Path) -> list[str]:
    return (state_dir / "executed.log").read_text().splitlines()


def test_begun_ids_are_remembered_by_the_next_agent(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.begin("c1")
    assert journal.seen("c1") and not journal.seen("c2")

    again = Journal(tmp_path)

    assert again.seen("c1") and not again.seen("c2")
    assert executed_ids(tmp_path) == ["c1"]


def test_command_interrupted_by_a_crash_gets_a_failed_result_and_is_not_rerun(tmp_path: Path) -> None:
    Journal(tmp_path).begin("crashed-mid-run")  # the agent dies before storing a result

    restarted = Journal(tmp_path)

    (result,) = restarted.pending_results()
    assert result.command_id == "crashed-mid-run"
    assert result.ok is False and result.error == INTERRUPTED
    assert restarted.seen("crashed-mid-run")
    assert executed_ids(tmp_path) == ["crashed-mid-run"]
    assert len(Journal(tmp_path).pending_results()) == 1  # recovered once, not once per restart


def test_outbox_survives_restarts_until_delivered(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    for cid in ("a", "b"):
        journal.begin(cid)
        journal.store_result(ok_result(cid))
    journal.mark_delivered("a")

    restarted = Journal(tmp_path)

    assert [r.command_id for r in restarted.pending_results()] == ["b"]
    assert restarted.result("a") == ok_result("a")
    data = json.loads((tmp_path / "results" / "b.json").read_text())
    assert data["delivered"] is False and data["result"]["command_id"] == "b"
    assert stat.S_IMODE((tmp_path / "results" / "b.json").stat().st_mode) == 0o600


def test_requeue_puts_a_delivered_result_back_in_the_outbox(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.begin("a")
    assert journal.requeue("a") is False  # still running: nothing to send yet
    journal.store_result(ok_result("a"))
    journal.mark_delivered("a")

    assert journal.requeue("a") is True
    assert [r.command_id for r in journal.pending_results()] == ["a"]


def test_compaction_keeps_the_newest_ids(tmp_path: Path) -> None:
    journal = Journal(tmp_path, keep_ids=10)
    ids = [f"cmd-{n:03}" for n in range(25)]
    for cid in ids:
        journal.begin(cid)
        journal.store_result(ok_result(cid))

    on_disk = executed_ids(tmp_path)
    assert len(on_disk) <= 11 and on_disk == ids[-len(on_disk):]

    reopened = Journal(tmp_path, keep_ids=10)
    assert executed_ids(tmp_path) == ids[-10:]
    assert all(reopened.seen(cid) for cid in ids[-10:])
    assert not reopened.seen(ids[0])
    assert reopened.pending_results()[0].command_id == ids[0]  # compaction never drops undelivered results


def test_delivered_results_are_pruned_but_not_mistaken_for_interrupted(tmp_path: Path) -> None:
    journal = Journal(tmp_path, keep_results=5)
    for n in range(12):
        cid = f"c{n}"
        journal.begin(cid)
        journal.store_result(ok_result(cid))
        journal.mark_delivered(cid)

    reopened = Journal(tmp_path, keep_results=5)

    assert len(list((tmp_path / "results").glob("*.json"))) == 5
    assert reopened.pending_results() == []
    assert reopened.result("c11") is not None and reopened.result("c0") is None


def test_torn_last_line_from_a_crash_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "executed.log").write_text("a\nb\nhalf-writ")
    journal = Journal(tmp_path)
    journal.begin("c")
    assert executed_ids(tmp_path) == ["a", "b", "c"]


@pytest.mark.parametrize("bad", ["../etc/passwd", ".hidden", "a\nb", "", "x" * 65])
def test_ids_that_are_not_safe_file_names_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidCommandId):
        Journal(tmp_path).begin(bad)


def test_requeue_during_an_inflight_post_sends_the_result_again(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.begin("a")
    journal.store_result(ok_result("a"))
    posted = journal.pending_results()  # the sender starts posting "a"...

    assert journal.requeue("a") is True  # ...the controller redelivers the command meanwhile...
    journal.mark_delivered(posted[0].command_id)  # ...and the ack of the first post arrives

    assert [r.command_id for r in journal.pending_results()] == ["a"]
    journal.mark_delivered("a")
    assert journal.pending_results() == []
