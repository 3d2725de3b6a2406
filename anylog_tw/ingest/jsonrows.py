"""JSON rows from a request body: a JSON array, one JSON object, or one object per line.

Pure functions over bytes, so they run in a worker thread for big bodies and are
property-tested without a reactor.  Every row must be a JSON object; the rows come back as
compact one-line JSON texts, ready to be written one per line (the format the streamer and the
operator read).  EdgeLake refuses newline-delimited rows separated by a bare LF; here LF and
CRLF are both fine, and blank lines are skipped.
"""

from __future__ import annotations

import orjson

from anylog_tw.errors import CommandError


class BodyError(CommandError):
    """The body is not JSON rows; the message says where and what to send instead."""

    code = "bad_body"


_KINDS = {list: "a JSON array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
          type(None): "null"}
_FORMS = "send a JSON array of objects, one JSON object, or one JSON object per line"


def _kind(value) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _check_objects(rows: list) -> None:
    for i, row in enumerate(rows):
        if type(row) is not dict:
            raise BodyError(f"row {i + 1} is {_kind(row)}, not a JSON object ({_FORMS})")


def json_rows(body: bytes) -> list[bytes]:
    """The body's rows, each a compact JSON object text without a newline.

    Raises BodyError naming the first bad row (its line for newline-delimited bodies).
    """
    text = body.strip()
    if not text:
        raise BodyError(f"the body is empty: {_FORMS}")
    try:
        whole = orjson.loads(text)
    except orjson.JSONDecodeError:
        whole = _NOT_ONE
    if whole is not _NOT_ONE:
        if type(whole) is dict:
            return [orjson.dumps(whole)]
        if type(whole) is list:
            if not whole:
                raise BodyError(f"the JSON array is empty: {_FORMS}")
            _check_objects(whole)
            return [orjson.dumps(row) for row in whole]
        raise BodyError(f"the body is {_kind(whole)}: {_FORMS}")
    return _lines(text)


_NOT_ONE = object()


def _lines(text: bytes) -> list[bytes]:
    """Newline-delimited rows (LF or CRLF); blank lines skipped."""
    lines = [line.strip() for line in text.split(b"\n")]
    lines = [line for line in lines if line]
    try:
        rows = orjson.loads(b"[" + b",".join(lines) + b"]")  # one C call validates every line
    except orjson.JSONDecodeError:
        rows = None
    if rows is not None and len(rows) == len(lines) and all(type(row) is dict for row in rows):
        return lines
    # Something is wrong: find the first bad line to name it.
    number = 0
    for number, raw in enumerate(text.split(b"\n"), 1):
        line = raw.strip()
        if not line:
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            sample = line[:60].decode("utf-8", "replace")
            raise BodyError(f"line {number} is not JSON ({e}): {sample!r}; {_FORMS}") from None
        if type(row) is not dict:
            raise BodyError(f"line {number} is {_kind(row)}, not a JSON object ({_FORMS})")
    raise BodyError(f"the body is not JSON rows: {_FORMS}")  # e.g. a line holding two objects


def join_rows(rows: list[bytes]) -> bytes:
    """The text of a data file: one JSON object per line, LF-terminated."""
    return b"\n".join(rows) + b"\n"
