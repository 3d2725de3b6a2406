"""The one way a time is shown to users: UTC, `YYYY-MM-DD HH:MM:SS`, empty for "never"."""

from __future__ import annotations

import time


def format_utc(seconds: float | None) -> str:
    """`seconds` since the epoch as UTC text; None or 0 (never happened) is ''."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) if seconds else ""
