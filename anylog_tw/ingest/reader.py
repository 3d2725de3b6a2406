"""Reading a data file: bytes (gunzipped when `.gz`), its hash, and its JSON objects with line numbers.

Blocking functions over paths and bytes, run in worker threads.  A file is newline-delimited
JSON objects (LF or CRLF, blank lines skipped) or one JSON array of objects.  Small files are
read whole; a big one is read in chunks of whole lines (`iter_chunks`), so memory stays bounded
by the chunk size, not the file size.  Parsing is orjson's (about 5x the stdlib's speed).
"""

from __future__ import annotations

import gzip
import json
from typing import BinaryIO, Iterator

import orjson

from anylog_tw.base.ingest_errors import IngestError

CHUNK = 2 << 20  # bytes of whole lines parsed and inserted at a time for big files (bounds memory)
# orjson reads integers beyond 64 bits as floats (losing digits); text with a run of 20 digits
# or more is parsed with the standard library instead, which keeps them exact.  The check maps
# every digit to "0" and looks for 20 of them in a row: two C-speed passes (a regex scan of the
# same text costs twice as much as parsing it).
_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_RUN = b"0" * 20


def _long_number(data: bytes) -> bool:
    return _RUN in data.translate(_DIGITS)


def open_data(path: str, gz: bool) -> BinaryIO:
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_whole(path: str, gz: bool) -> bytes:
    try:
        with open_data(path, gz) as f:
            return f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise IngestError("io", f"cannot read {path}: {e}") from None


def iter_chunks(path: str, gz: bool, size: int = CHUNK) -> Iterator[tuple[int, bytes]]:
    """(number of the chunk's first line, bytes of whole lines) until the end of the file."""
    line = 1
    tail = b""
    try:
        with open_data(path, gz) as f:
            while True:
                block = f.read(size)
                if not block:
                    break
                block = tail + block
                cut = block.rfind(b"\n")
                if cut < 0:
                    tail = block
                    continue
                body, tail = block[:cut + 1], block[cut + 1:]
                yield line, body
                line += body.count(b"\n")
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise IngestError("io", f"cannot read {path}: {e}") from None
    if tail:
        yield line, tail


def parse_objects(data: bytes, first_line: int = 1, name: str = "") -> tuple[list[dict], list[int]]:
    """The JSON objects of newline-delimited text (or of one JSON array), with their line numbers.

    Fails naming the first line that is not a JSON object; blank lines are skipped.
    """
    start = data.lstrip()[:1]
    if start == b"[":
        return _parse_array(data, first_line, name)
    lines = data.split(b"\n")
    loads = json.loads if _long_number(data) else orjson.loads
    try:
        objs = [loads(x) for x in lines if x]
    except ValueError:  # orjson.JSONDecodeError and json.JSONDecodeError are both ValueErrors
        objs = None
    if objs is not None and all(type(o) is dict for o in objs):
        if len(objs) == len(lines) or len(objs) == len(lines) - 1 and not lines[-1]:
            numbers = list(range(first_line, first_line + len(objs)))
        else:
            numbers = [first_line + i for i, x in enumerate(lines) if x]
        return objs, numbers
    # Slow path: whitespace-only lines, or a bad line to find and name.
    objs, numbers = [], []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            obj = loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise IngestError("json", f"{name}line {first_line + i}: not JSON ({e}): {_show(raw)}") from None
        if type(obj) is not dict:
            raise IngestError("json", f"{name}line {first_line + i}: a {type(obj).__name__} where a JSON object "
                                      f"was expected: {_show(raw)}")
        objs.append(obj)
        numbers.append(first_line + i)
    return objs, numbers


def _parse_array(data: bytes, first_line: int, name: str) -> tuple[list[dict], list[int]]:
    try:
        value = json.loads(data) if _long_number(data) else orjson.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise IngestError("json", f"{name}not JSON ({e})") from None
    if type(value) is not list:
        raise IngestError("json", f"{name}not a JSON array of objects")
    for i, obj in enumerate(value):
        if type(obj) is not dict:
            raise IngestError("json", f"{name}array item {i + 1} is a {type(obj).__name__}, not a JSON object")
    # An array has no lines per row: number the rows instead (the message says "line" for both).
    return value, list(range(first_line, first_line + len(value)))


def _show(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    return repr(text if len(text) <= 80 else text[:77] + "...")
