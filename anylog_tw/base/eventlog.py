"""Bounded, newest-last logs of what a node did: `get event log` and `get error log`."""

from __future__ import annotations

import time
from collections import deque
from typing import Callable


class EventLog:
    """The last `size` entries; old ones fall off so a busy node's memory stays flat."""

    def __init__(self, size: int = 1000, clock: Callable[[], float] = time.time):
        self._entries: deque = deque(maxlen=size)
        self._clock = clock
        self.total = 0

    def add(self, origin: str, command: str, result: str) -> None:
        self.total += 1
        self._entries.append((self.total, self._clock(), origin, command, result))

    def entries(self, limit: int | None = None) -> list[tuple]:
        items = list(self._entries)
        return items[-limit:] if limit else items

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
