"""Recordings of shared terminals (asciicast v2), stored with their node and removed with it.

A recording runs while someone other than the attendee is attached to the
attendee's terminal (controller/runtime/terminal_hub.py). Files live in
``<data_dir>/recordings/<node id>/<name>.cast``; names are made here
(``<UTC time>-<session>``), never taken from a request as a path: a request
names a recording, and the name must match ``NAME`` and be listed in its
node's folder. Teardown (``remove_for_nodes``) deletes a retired node's folder.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NAME = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{32}$")
NODE_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_BYTES = 64 * 1024 * 1024  # one recording stops growing here (a runaway `yes` must not fill the disk)


def node_dir(data_dir: Path, node_id: str) -> Path:
    if not NODE_ID.match(node_id):
        raise ValueError("node_id: expected 32 hex digits")
    return data_dir / "recordings" / node_id


class AsciicastWriter:
    def __init__(self, data_dir: Path, node_id: str, session_id: str, *, width: int, height: int,
                 title: str) -> None:
        folder = node_dir(data_dir, node_id)
        folder.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        self.name = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{session_id}"
        self.path = folder / f"{self.name}.cast"
        self._file = self.path.open("w", encoding="utf-8")
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._bytes = 0
        self._decoder = _Utf8()
        self._write({"version": 2, "width": width, "height": height, "timestamp": int(now.timestamp()),
                     "title": title})

    def output(self, data: bytes) -> None:
        text = self._decoder.feed(data)
        if text:
            self._event("o", text)

    def input(self, data: str) -> None:
        self._event("i", data)

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def _event(self, kind: str, text: str) -> None:
        self._write([round(time.monotonic() - self._start, 6), kind, text])

    def _write(self, item: Any) -> None:
        line = json.dumps(item, ensure_ascii=False) + "\n"
        with self._lock:
            if self._file.closed or self._bytes > MAX_BYTES:
                return
            self._bytes += len(line)
            self._file.write(line)
            self._file.flush()


class _Utf8:
    """Output arrives in chunks that may split a character: keep the tail for the next chunk."""

    def __init__(self) -> None:
        import codecs

        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)


def list_for_node(data_dir: Path, node_id: str) -> list[dict[str, Any]]:
    folder = node_dir(data_dir, node_id)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.cast"), reverse=True):
        if NAME.match(path.stem):
            out.append({"name": path.stem, "bytes": path.stat().st_size,
                        "started": datetime.strptime(path.stem[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)})
    return out


def recording_path(data_dir: Path, node_id: str, name: str) -> Path | None:
    """The file of a listed recording, or None: the name is checked, then looked up among the node's files."""
    if not NAME.match(name):
        return None
    for item in list_for_node(data_dir, node_id):
        if item["name"] == name:
            return node_dir(data_dir, node_id) / f"{name}.cast"
    return None


def remove_for_nodes(data_dir: Path, node_ids: list[str]) -> None:
    for node_id in node_ids:
        if NODE_ID.match(node_id):
            shutil.rmtree(node_dir(data_dir, node_id), ignore_errors=True)
