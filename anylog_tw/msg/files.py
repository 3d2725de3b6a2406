"""Files message clients keep besides data: error records, persisted and logged messages.

A stream can fail (or be persisted) thousands of times a second, so lines are gathered in memory
and appended in one thread hop every half second (or per megabyte), never written on the reactor
thread; appends to the files run one after another, in arrival order.  The node stopping writes
what is left.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict

import orjson
from twisted.internet.defer import Deferred, DeferredLock
from twisted.logger import Logger

from anylog_tw.base.timefmt import format_instant

FLUSH_AFTER = 0.5  # seconds a line may wait in memory
FLUSH_BYTES = 1024 * 1024


def file_label(topic: str) -> str:
    """A topic as part of a file name: letters, digits, '-' and '_' kept, the rest '_' (spec §6 [I])."""
    label = re.sub(r"[^A-Za-z0-9_-]", "_", topic).strip("_")
    return (label or "topic")[:100]


def error_record(broker: str, topic: str, reason: str, payload: bytes, now: float) -> bytes:
    """One line of an error file: where the message came from, why it failed, and the message itself."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = payload.decode("utf-8", "backslashreplace")
    return orjson.dumps({"time": format_instant(now), "broker": broker, "topic": topic, "reason": reason, "message": text}) + b"\n"


def append_files(batch: dict[str, list[bytes]]) -> None:
    """Append each file's lines (blocking: run in a thread)."""
    for path, lines in batch.items():
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "ab") as f:
            f.write(b"".join(lines))


class Appender:
    log = Logger()

    def __init__(self, node):
        self.node = node
        self.reactor = node.reactor
        self.pending: dict[str, list[bytes]] = defaultdict(list)
        self.size = 0
        self.written = 0  # lines appended so far
        self._timer = None
        self._lock = DeferredLock()

    def append(self, directory: str, name: str, line: bytes) -> None:
        self.pending[os.path.join(directory, name)].append(line)
        self.size += len(line)
        if self.size >= FLUSH_BYTES:
            self.flush()
        elif self._timer is None:
            self._timer = self.reactor.callLater(FLUSH_AFTER, self.flush)

    def flush(self) -> Deferred:
        """Append what is gathered now; fires when it (and every earlier append) is on disk."""
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        batch, self.pending, self.size = dict(self.pending), defaultdict(list), 0
        return self._lock.run(self._write, batch)

    async def _write(self, batch: dict[str, list[bytes]]) -> None:
        if not batch:
            return
        try:
            await self.node.in_thread(append_files, batch)
            self.written += sum(len(lines) for lines in batch.values())
        except OSError as e:
            lost = sum(len(lines) for lines in batch.values())
            self.node.errors.add("msg client", "keep messages", f"{lost} lines lost: {e}")
            self.log.error("message client files: {lost} lines not written: {error}", lost=lost, error=e)

    def close(self) -> Deferred:
        return self.flush()
