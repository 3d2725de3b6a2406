"""SQL text and values as pure functions: placeholders, COPY rows, and values for replies.

* `to_pyformat`: the storage interface takes `?` placeholders on every engine (SQLite's own
  style); psycopg2 wants `%s` and a literal `%` doubled.  The conversion skips quoted strings,
  quoted identifiers and comments, so a `?` inside `'...'` stays a question mark.
* `CopyReader`: rows as PostgreSQL COPY text, produced lazily in chunks, so the server parses
  one chunk while Python formats the next and memory stays bounded however many rows there are.
* `json_value` / `reply_rows`: database values (datetime, Decimal, bytes ...) as JSON values.
"""

from __future__ import annotations

import datetime
import decimal
import io
import itertools
import json
import math
import uuid
from typing import Any, Iterable, Iterator, Sequence

# --- placeholders -----------------------------------------------------------------------------


def to_pyformat(sql: str) -> str:
    """`?` -> `%s` and `%` -> `%%` outside quoted text and comments (psycopg2 with parameters)."""
    if "?" not in sql and "%" not in sql:
        return sql
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in ("'", '"'):
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote inside the literal
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i:j + 1].replace("%", "%%"))
            i = j + 1
            continue
        if c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j].replace("%", "%%"))
            i = j
            continue
        if c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j].replace("%", "%%"))
            i = j
            continue
        if c == "?":
            out.append("%s")
        elif c == "%":
            out.append("%%")
        else:
            out.append(c)
        i += 1
    return "".join(out)


# --- COPY text format -------------------------------------------------------------------------

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_value(v: Any) -> str:
    """One value in COPY text format (`\\N` is null; backslash, tab, newline and CR escaped)."""
    if v is None:
        return "\\N"
    if v.__class__ is str:
        return v if v.isprintable() and "\\" not in v else v.translate(_ESCAPES)
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return repr(v)
    if isinstance(v, datetime.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "\\\\x" + bytes(v).hex()
    if isinstance(v, (dict, list)):  # JSON text, as SQLite stores them
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str).translate(_ESCAPES)
    return str(v).translate(_ESCAPES)


def copy_line(row: Sequence[Any]) -> str:
    # The common cases inline (str, int, None), the rest through copy_value: this loop is the
    # client-side cost of COPY, about half of the whole when done naively.
    return "\t".join([
        (v if v.isprintable() and "\\" not in v else v.translate(_ESCAPES)) if v.__class__ is str
        else str(v) if v.__class__ is int
        else "\\N" if v is None
        else copy_value(v)
        for v in row])


# Text that may mean a value needed escaping or a type whose str() is not its COPY form (None,
# bytes, dict, list): a batch containing any of it is formatted value by value instead.
_NOT_PLAIN = ("\\", "\r", "None", "b'", 'b"', "{", "[")


def _fast_batch(batch: list, fmt: str, width: int) -> str | None:
    """A batch as COPY text through one `%`-format per row, or None when that would be wrong.

    `str()` of str, int, float, bool, datetime and Decimal is already valid COPY input; the
    result is checked, not the values: exactly one tab per column gap and one newline per row
    (so no value held a tab or newline, and every row had `width` values), and none of
    `_NOT_PLAIN`.  This runs at the speed of a plain `%`-format loop; any doubt falls back to
    `copy_line`, which is always right.
    """
    if batch[0].__class__ is not tuple:
        batch = list(map(tuple, batch))  # `%` takes a tuple as the values, a list as one value
    try:
        text = "".join(map(fmt.__mod__, batch))
    except TypeError:  # a row of another width, or a value %s cannot take
        return None
    n = len(batch)
    if text.count("\n") != n or text.count("\t") != n * (width - 1):
        return None
    for marker in _NOT_PLAIN:
        if marker in text:
            return None
    return text


class CopyReader(io.TextIOBase):
    """A file-like object for `copy_expert`: each `read` formats the next batch of rows."""

    def __init__(self, rows: Iterable[Sequence[Any]], width: int, batch: int = 20000):
        self._rows: Iterator[Sequence[Any]] = iter(rows)
        self._width = width
        self._batch = batch
        self._pending = ""
        self._fmt = "%s\t" * (width - 1) + "%s\n"
        self.count = 0

    def readable(self) -> bool:
        return True

    def _more(self) -> str:
        batch = list(itertools.islice(self._rows, self._batch))
        if not batch:
            return ""
        text = _fast_batch(batch, self._fmt, self._width)
        if text is None:
            lines = []
            for k, row in enumerate(batch):
                if len(row) != self._width:
                    raise ValueError(f"row {self.count + k + 1} has {len(row)} values, expected {self._width}")
                lines.append(copy_line(row))
            text = "\n".join(lines) + "\n"
        self.count += len(batch)
        return text

    def read(self, size: int = -1) -> str:
        if size is None or size < 0:
            parts = [self._pending]
            while chunk := self._more():
                parts.append(chunk)
            self._pending = ""
            return "".join(parts)
        if not self._pending:
            self._pending = self._more()
        # Hand back whole batches even when psycopg2 asks for less: it only needs some text.
        out, self._pending = self._pending, ""
        return out


# --- values for replies -----------------------------------------------------------------------


def json_value(v: Any) -> Any:
    """A database value as JSON: numbers stay numbers, times become text, bytes hex."""
    if v is None or isinstance(v, (str, int, float, bool)):
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        return v
    if isinstance(v, decimal.Decimal):
        if not v.is_finite():
            return str(v)
        return int(v) if v == v.to_integral_value() and abs(v) < 2**63 else float(v)
    if isinstance(v, datetime.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, datetime.timedelta):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): json_value(x) for k, x in v.items()}
    return str(v)


def reply_rows(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict]:
    """Rows as AnyLog's `Query` list: one object per row, column name -> JSON value."""
    return [dict(zip(columns, map(json_value, row))) for row in rows]


def hms(seconds: float) -> str:
    """Elapsed time as AnyLog's `HH:MM:SS`."""
    s = int(max(0.0, seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def statement_kind(sql: str) -> str:
    """The first keyword of a statement, lower-cased (`select`, `insert` ...), comments skipped."""
    s = sql.lstrip()
    while s.startswith("--") or s.startswith("/*"):
        if s.startswith("--"):
            nl = s.find("\n")
            s = "" if nl < 0 else s[nl + 1:].lstrip()
        else:
            end = s.find("*/")
            s = "" if end < 0 else s[end + 2:].lstrip()
    word = s.split(None, 1)[0] if s else ""
    return word.strip("(").lower()
