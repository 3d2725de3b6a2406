"""Counters of message ingestion, as `get msg clients` shows them (spec §4 step 8, §10)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Counts:
    """Messages, successes and errors, with the last of each, for a client or one of its topics."""

    messages: int = 0
    success: int = 0
    errors: int = 0
    last_message: float | None = None
    last_error: str = ""
    last_error_at: float | None = None

    def ok(self, now: float) -> None:
        self.messages += 1
        self.success += 1
        self.last_message = now

    def failed(self, now: float, reason: str) -> None:
        self.messages += 1
        self.errors += 1
        self.last_message = now
        self.last_error = reason
        self.last_error_at = now


@dataclass
class Connection:
    """What `get msg clients` says about the link to an external broker."""

    connected: bool = False
    attempts: int = 0  # connection attempts since the last success
    connects: int = 0  # sessions started
    last_error: str = ""
    session_present: bool = False  # the broker kept our persistent session at the last CONNACK
    next_try: float | None = None

    def text(self, now: float) -> str:
        if self.connected:
            return "Connected" + (" (session resumed)" if self.session_present else "")
        text = "Not connected"
        if self.last_error:
            text += f": {self.last_error}"
        if self.next_try is not None:
            text += f": retrying in {max(0.0, self.next_try - now):.0f} s (attempt {self.attempts + 1})"
        return text
