"""Bounded, newest-last logs of what a node did: `get event log` and `get error log`.

Bounded in entries and in each entry's size: a command or an error can be as long as a REST body
(64 MB), and a log that kept it whole would pin it for the next thousand commands.
"""

from __future__ import annotations

import re
import time
from collections import deque
from typing import Callable

from anylog_tw.base.grammar import MAX_COMMAND

MAX_TEXT = 2048  # characters kept of each logged command, origin or result


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """`text` cut to about `limit` characters, saying how long it was (a new, small string: the long
    one is not kept alive by a slice of it)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters, cut)"


class EventLog:
    """The last `size` entries; old ones fall off so a busy node's memory stays flat."""

    def __init__(self, size: int = 1000, clock: Callable[[], float] = time.time):
        self._entries: deque = deque(maxlen=size)
        self._clock = clock
        self.total = 0

    def add(self, origin: str, command: str, result: str) -> None:
        self.total += 1
        self._entries.append((self.total, self._clock(), clip(str(origin), 256), clip(command), clip(result)))

    def entries(self, limit: int | None = None) -> list[tuple]:
        items = list(self._entries)
        return items[-limit:] if limit else items

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


# `password = x`, `rest_password = x`, `set network key = x`, `token = x`, `api_key = x` ...: the value goes.
_SECRET = re.compile(r"""(\b(?:\w*(?:password|passwd|secret|token)\w*|network[ _]key|\w+_key|key_\w+|pwd)["']?"""
                     r"""\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,}]+)""", re.IGNORECASE)
_HINTS = re.compile(r"ass|key|token|secret|pwd", re.IGNORECASE)


def masked(text: str) -> str:
    """The command as the event and error logs keep it: passwords and the network key hidden (before
    the log cuts it, so a cut cannot leave half a secret showing)."""
    if len(text) > MAX_COMMAND:  # refused unread: the log keeps its start, without a regex over megabytes
        text = text[:2 * MAX_TEXT]
    if not _HINTS.search(text):
        return text
    return _SECRET.sub(r"\1***", text)
