"""Terminal recordings on disk: asciicast v2 a player reads, names never taken as paths, gone with the node."""

from __future__ import annotations

import json
import uuid

from controller import terminal_recordings as recordings


def test_a_recording_is_asciicast_v2_and_goes_with_its_node(tmp_path):
    node, other = uuid.uuid4().hex, uuid.uuid4().hex
    writer = recordings.AsciicastWriter(tmp_path, node, uuid.uuid4().hex, width=120, height=30, title="lab-1")
    writer.output("héllo".encode()[:2])  # a character split across two chunks
    writer.output("héllo".encode()[2:] + b"\r\n")
    writer.input("ls\r")
    writer.close()
    kept = recordings.AsciicastWriter(tmp_path, other, uuid.uuid4().hex, width=80, height=24, title="lab-2")
    kept.close()

    (item,) = recordings.list_for_node(tmp_path, node)
    lines = recordings.recording_path(tmp_path, node, item["name"]).read_text().splitlines()
    header = json.loads(lines[0])
    assert (header["version"], header["width"], header["height"]) == (2, 120, 30)
    events = [json.loads(line) for line in lines[1:]]
    assert "".join(e[2] for e in events if e[1] == "o") == "héllo\r\n"
    assert [e[2] for e in events if e[1] == "i"] == ["ls\r"]

    recordings.remove_for_nodes(tmp_path, [node])  # teardown retired the node
    assert recordings.list_for_node(tmp_path, node) == []
    assert len(recordings.list_for_node(tmp_path, other)) == 1


def test_a_requested_name_is_looked_up_never_opened_as_a_path(tmp_path):
    node = uuid.uuid4().hex
    (tmp_path / "secret.cast").write_text("{}")
    for name in ("../../secret", "..%2F..%2Fsecret", "/etc/passwd", "20260101T000000Z-" + "0" * 32):
        assert recordings.recording_path(tmp_path, node, name) is None
