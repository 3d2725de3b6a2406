"""Typed values of the command language: booleans, times, sizes, dates and lists.

Pure functions over text, as AnyLog users write them (`true`, `30 seconds`, `10KB`, `-3d`,
`start of day`, `(a, b)`); each raises GrammarError naming the forms it accepts.
"""

from __future__ import annotations

import calendar
import datetime
import re
import time

from anylog_tw.base.errors import GrammarError

# --- typed values ----------------------------------------------------------------------------


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low == "true":
        return True
    if low == "false":
        return False
    raise GrammarError(f"{text!r} is not a boolean: use true or false")


_TIME_UNITS = {
    "second": 1, "seconds": 1, "sec": 1, "secs": 1, "s": 1,
    "minute": 60, "minutes": 60, "min": 60, "mins": 60,
    "hour": 3600, "hours": 3600, "h": 3600,
    "day": 86400, "days": 86400, "d": 86400,
    "week": 604800, "weeks": 604800,
}
_TIME = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_seconds(text: str) -> float:
    """`30 seconds`, `1 hour`, `2 days`, `45` (seconds) -> seconds."""
    m = _TIME.match(text)
    if not m:
        raise GrammarError(f"{text!r} is not a time: write e.g. '30 seconds', '5 minutes', '1 hour'")
    amount, unit = float(m.group(1)), m.group(2).lower() or "seconds"
    if unit not in _TIME_UNITS:
        raise GrammarError(f"{text!r}: unknown time unit {unit!r} (seconds, minutes, hours, days, weeks)")
    return amount * _TIME_UNITS[unit]


_SIZE_UNITS = {"": 1, "b": 1, "byte": 1, "bytes": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
_SIZE = re.compile(r"^\s*([\d,]+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int:
    """`10KB`, `10 KB`, `10,000 bytes`, `2MB` -> bytes."""
    m = _SIZE.match(text)
    unit = m.group(2).lower() if m else None
    if not m or unit not in _SIZE_UNITS:
        raise GrammarError(f"{text!r} is not a size: write e.g. '10KB', '2 MB', '10000 bytes'")
    return int(float(m.group(1).replace(",", "")) * _SIZE_UNITS[unit])


_RELATIVE = re.compile(r"^\s*([+-])\s*(\d+)\s*([ymwdhts])\s*$")
_RELATIVE_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "t": 60, "s": 1}
_DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d",
    "%y-%m-%d %H:%M:%S", "%y-%m-%d", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S",
)


def _add_months(t: time.struct_time, months: int) -> float:
    month0 = t.tm_mon - 1 + months
    year, month = t.tm_year + month0 // 12, month0 % 12 + 1
    day = min(t.tm_mday, calendar.monthrange(year, month)[1])
    return calendar.timegm((year, month, day, t.tm_hour, t.tm_min, t.tm_sec, 0, 0, 0))


def parse_date(text: str, now: float) -> float:
    """A point in time, as UTC epoch seconds.

    Accepts AnyLog's relative forms (`-3d`, `+2h`; units y m w d h t s, `t` being minutes),
    `now()`, `start of day|hour|week|month|year`, and absolute dates (`2026-12-01 10:00:00`,
    `26-12-01 10:00:00`, ISO with `Z`), all taken as UTC.
    """
    s = text.strip().strip('"').strip("'")
    low = s.lower()
    if low in ("now", "now()"):
        return now
    m = _RELATIVE.match(low)
    if m:
        sign = 1 if m.group(1) == "+" else -1
        amount, unit = int(m.group(2)), m.group(3)
        if unit in ("y", "m"):
            return _add_months(time.gmtime(now), sign * amount * (12 if unit == "y" else 1)) + now % 1
        return now + sign * amount * _RELATIVE_SECONDS[unit]
    if low.startswith("start of "):
        unit = low[len("start of "):].strip()
        t = time.gmtime(now)
        if unit == "minute":
            return float(calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, 0)))
        if unit == "hour":
            return float(calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, 0, 0)))
        if unit == "day":
            return float(calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)))
        if unit == "week":
            day = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
            return float(day - t.tm_wday * 86400)
        if unit == "month":
            return float(calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0)))
        if unit == "year":
            return float(calendar.timegm((t.tm_year, 1, 1, 0, 0, 0)))
        raise GrammarError(f"{text!r}: 'start of' takes minute, hour, day, week, month or year")
    for fmt in _DATE_FORMATS:
        try:
            dt = datetime.datetime.strptime(s, fmt)
        except ValueError:
            continue
        return calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6
    raise GrammarError(
        f"{text!r} is not a date: write '2026-12-01 10:00:00', '-3d', '+2h', 'now()' or 'start of day'"
    )


def split_list(text: str) -> list[str]:
    """`(a, b, c)`, `a,b,c` or `[a, b]` -> ['a', 'b', 'c']."""
    s = text.strip()
    if s[:1] in "([" and s[-1:] in ")]":
        s = s[1:-1]
    return [part.strip().strip('"').strip("'") for part in s.split(",") if part.strip()]
