"""The streamer's rows handed to the operator in memory, so a streamed file is not parsed twice.

A message client maps each message to row dicts, the streamer writes them as a watch-dir file
(durably, as before: a crash loses nothing), and the operator, in the same process, would read
that file back and parse every line again.  The streamer leaves the row dicts it wrote here,
under the file's name and with the file's exact bytes; when the operator reads a file it offers
the bytes it read, and takes the rows only if they are byte for byte the ones the rows were
written as.  Anything else (a file from elsewhere, one edited or replaced, an entry evicted or
lost with a restart) is parsed as always, so the file stays the truth and the cache only saves
work.

The rows taken must be exactly what parsing the file gives (`reader.parse_objects`: orjson,
the standard library when a run of 20 digits appears).  That holds for `plain` rows, whose every
value survives orjson's dump and load unchanged in type and value: text, bool, null, integers
(orjson refuses to write one out of 64 bits, so the message failed before), finite floats
(shortest round-trip text, read back correctly rounded), and lists and objects of those.  A file
holding a run of 20 digits is not taken (the parse uses another library then).  Checking every
row costs what the parse it saves costs, so a caller whose rows are plain by construction says
so (`checked=True`): the message clients' rows are either orjson's own output (a message kept
whole for a mapping policy) or the mapper's conversions (text, 64-bit integers, finite floats,
booleans), which tests/unit/test_mapper_one_row.py holds to `plain`.

Bounded: at most `MAX_ROWS` rows and `MAX_BYTES` bytes of files are held; the oldest go first.
Thread-safe: the reactor thread puts, the operator's worker threads take.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

MAX_ROWS = 200_000  # row dicts held for files the operator has not read yet (a few hundred bytes each)
MAX_BYTES = 32 << 20  # bytes of those files
_SCALARS = frozenset((str, int, bool, type(None)))
_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_RUN = b"0" * 20


def plain(rows: list) -> bool:
    """Whether every row is a dict that orjson writes and reads back identical (see the module doc)."""
    kinds: set = set()
    keys: set = set()
    for row in rows:
        if type(row) is not dict:
            return False
        keys.update(map(type, row))
        kinds.update(map(type, row.values()))
    if keys - {str}:
        return False
    if kinds <= _SCALARS:
        return True
    return all(_plain_value(v) for row in rows for v in row.values())


def _plain_value(v) -> bool:
    t = type(v)
    if t in _SCALARS:
        return True
    if t is float:
        return math.isfinite(v)
    if t is list:
        return all(map(_plain_value, v))
    if t is dict:
        return all(type(k) is str for k in v) and all(map(_plain_value, v.values()))
    return False


class Handoff:
    """Rows of streamed files not yet read by the operator (a node component: `node.component(Handoff)`)."""

    def __init__(self, node=None, max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES):
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[bytes, list]] = OrderedDict()
        self._rows = 0
        self._bytes = 0
        self._lock = threading.Lock()
        self.taken = 0  # files handed over without a parse (for tests and `get operator` readers)
        self.missed = 0  # files offered that were not here, or not the same

    def put(self, name: str, data: bytes, rows: list, checked: bool = False) -> None:
        """Leave the rows `data` was written from (one JSON line each) for the file `name`;
        `checked`: the caller vouches that the rows are `plain`."""
        if len(rows) > self.max_rows or len(data) > self.max_bytes or data.count(b"\n") != len(rows):
            return
        if _RUN in data.translate(_DIGITS) or not checked and not plain(rows):
            return
        with self._lock:
            self._drop(name)
            self._entries[name] = (data, rows)
            self._rows += len(rows)
            self._bytes += len(data)
            while self._rows > self.max_rows or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def discard(self, name: str) -> None:
        """The file was not written: forget its rows."""
        with self._lock:
            self._drop(name)

    def take(self, name: str, data: bytes) -> list | None:
        """The rows of the file `name` if `data` is exactly what they were written as, else None (parse it)."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry[0] != data:
                self.missed += 1
                return None
            self._drop(name)
            self.taken += 1
        return entry[1]

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is not None:
            self._rows -= len(entry[1])
            self._bytes -= len(entry[0])
