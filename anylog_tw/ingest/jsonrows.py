"""JSON rows from a request body: a JSON array, one JSON object, or one object per line.

Pure functions over bytes, so they run in a worker thread for big bodies and are
property-tested without a reactor.  Every row must be a JSON object; the rows come back as
compact one-line JSON texts, ready to be written one per line (the format the streamer and the
operator read).  EdgeLake refuses newline-delimited rows separated by a bare LF; here LF and
CRLF are both fine, and blank lines are skipped.
"""

from __future__ import annotations

import threading

import orjson

from anylog_tw.base.errors import CommandError

try:  # simdjson checks a big body about five times faster than building it with orjson
    import cysimdjson
except ImportError:  # not on every platform: orjson alone is correct, only slower
    cysimdjson = None

_local = threading.local()


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


_NOT_ONE = object()


def json_rows(body: bytes) -> list[bytes]:
    """The body's rows, each a JSON object text without a newline.

    Raises BodyError naming the first bad row (its line for newline-delimited bodies).
    """
    data, _ = rows_text(body)
    return data[:-1].split(b"\n")


def rows_text(body: bytes) -> tuple[bytes, int]:
    """The body as the text of a data file (one JSON object per line, LF-terminated) and its row count.

    Newline-delimited bodies, the common big case, are checked in one C call (the lines joined
    into a JSON array with `bytes.replace`) and written as sent, CRLF made LF, with no row
    re-encoded; arrays are re-encoded one row per line.  Raises BodyError naming the bad row.
    """
    text = body.strip()
    if not text:
        raise BodyError(f"the body is empty: {_FORMS}")
    if text[:1] == b"{":
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n")
        count = text.count(b"\n") + 1
        if _objects(b"[" + text.replace(b"\n", b",") + b"]", count):
            return text + b"\n", count
    try:
        whole = orjson.loads(text)
    except orjson.JSONDecodeError:
        whole = _NOT_ONE
    if whole is not _NOT_ONE:
        if type(whole) is dict:  # one object, perhaps over several lines
            return orjson.dumps(whole) + b"\n", 1
        if type(whole) is list:
            if not whole:
                raise BodyError(f"the JSON array is empty: {_FORMS}")
            _check_objects(whole)
            return join_rows([orjson.dumps(row) for row in whole]), len(whole)
        raise BodyError(f"the body is {_kind(whole)}: {_FORMS}")
    lines = _lines(text)  # blank lines, or an error to name
    return join_rows(lines), len(lines)


def _objects(array: bytes, count: int) -> bool:
    """Whether `array` is a JSON array of exactly `count` objects.

    simdjson answers without building the rows; where it refuses a text that orjson takes (an
    integer over 64 bits), orjson decides, so both paths accept the same bodies.
    """
    if cysimdjson is not None:
        parser = getattr(_local, "parser", None)
        if parser is None:
            parser = _local.parser = cysimdjson.JSONParser()  # a parser serves one thread
        try:
            parsed = parser.parse(array)
        except Exception:
            pass
        else:
            return len(parsed) == count and all(isinstance(row, cysimdjson.JSONObject) for row in parsed)
    try:
        rows = orjson.loads(array)
    except orjson.JSONDecodeError:
        return False
    return len(rows) == count and all(type(row) is dict for row in rows)


def _lines(text: bytes) -> list[bytes]:
    """Newline-delimited rows (LF or CRLF), blank lines skipped; BodyError names the first bad line."""
    lines = [line.strip() for line in text.split(b"\n")]
    lines = [line for line in lines if line]
    try:
        rows = orjson.loads(b"[" + b",".join(lines) + b"]")
    except orjson.JSONDecodeError:
        rows = None
    if rows is not None and len(rows) == len(lines) and all(type(row) is dict for row in rows):
        return lines
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
