"""The one way a time is shown to users: UTC, `YYYY-MM-DD HH:MM:SS`."""

from __future__ import annotations

import time


def format_instant(seconds: float) -> str:
    """`seconds` since the epoch as UTC text (0 is 1970-01-01 00:00:00, "since the beginning")."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def format_utc(seconds: float | None) -> str:
    """A recorded time as UTC text; None or 0 (it never happened) is ''."""
    return format_instant(seconds) if seconds else ""
