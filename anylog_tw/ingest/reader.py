"""Reading a data file: bytes (gunzipped when `.gz`), its hash, and its JSON objects with line numbers.

Blocking functions over paths and bytes, run in worker threads.  A file is newline-delimited
JSON objects (LF or CRLF, blank lines skipped) or one JSON array of objects.  Small files are
read whole; a big one is read in chunks of whole lines (`iter_chunks`), so memory stays bounded
by the chunk size, not the file size.  Parsing is orjson's (about 5x the stdlib's speed).

What a file may cost is bounded by `Limits` (`run operator where max_line = .. and max_expanded
= .. and max_ratio = ..`): a line (and a JSON array, which is read whole) longer than
`max_line` is refused, and a `.gz` is decompressed as a stream that stops once it has given
more than `max_expanded` bytes, or more than `max_ratio` times the compressed bytes read so far.
The size on disk of a `.gz` says nothing of what it holds, so it is never trusted: a small file
is read whole only up to a cap, past which it is read in chunks like a big one.  A long line is
gathered as a list of blocks joined once, so its cost is linear in its length.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
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


MIB = 1 << 20
RATIO_FLOOR = MIB  # the ratio is checked once this much has come out: tiny files compress oddly


@dataclass(frozen=True)
class Limits:
    """How much one data file may hold; 0 turns a limit off."""

    max_line: int = 16 * MIB  # bytes of one line, or of a JSON array file (read whole)
    max_expanded: int = 2048 * MIB  # bytes a .gz may expand to
    max_ratio: int = 200  # expanded bytes per compressed byte of a .gz

    def describe(self) -> str:
        return (f"max_line {_size(self.max_line)}, max_expanded {_size(self.max_expanded)}, "
                f"max_ratio {self.max_ratio or 'off'}")


DEFAULT_LIMITS = Limits()
_READ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError


def _size(n: int) -> str:
    if not n:
        return "off"
    return f"{n / MIB:g} MiB" if n % (MIB // 16) == 0 else f"{n} bytes"


class _Counted:
    """The compressed file under a GzipFile, counting the bytes it has given."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.count += len(data)
        return data

    def close(self) -> None:
        self.f.close()


class _Expanding:
    """A gzip stream that refuses to expand past the limits (IngestError "expanded")."""

    def __init__(self, path: str, limits: Limits):
        self.path = path
        self.limits = limits
        self.raw = _Counted(open(path, "rb"))
        self.z = gzip.GzipFile(fileobj=self.raw, mode="rb")
        self.out = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            raise ValueError("read a bounded stream in blocks")
        data = self.z.read(n)
        self.out += len(data)
        lim = self.limits
        if lim.max_expanded and self.out > lim.max_expanded:
            raise IngestError("expanded", f"{self.path} expands to more than max_expanded "
                                          f"({_size(lim.max_expanded)}); raise it with 'run operator where "
                                          f"max_expanded = ...' if the file is genuine")
        if lim.max_ratio and self.out > RATIO_FLOOR and self.out > lim.max_ratio * max(1, self.raw.count):
            raise IngestError("expanded", f"{self.path} expands more than {lim.max_ratio} times its compressed "
                                          f"size (max_ratio; {self.out} bytes from {self.raw.count}): refused as a "
                                          f"compression bomb")
        return data

    def __enter__(self) -> "_Expanding":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.z.close()
        finally:
            self.raw.close()


def open_data(path: str, gz: bool, limits: Limits = DEFAULT_LIMITS):
    """The file's data as a stream of blocks (`read(n)`): gunzipped within the limits when `gz`."""
    return _Expanding(path, limits) if gz else open(path, "rb")


def _read_upto(path: str, gz: bool, cap: int, limits: Limits) -> tuple[bytes, bool]:
    """(at most `cap` bytes of the data, whether there is more)."""
    parts, held = [], 0
    try:
        with open_data(path, gz, limits) as f:
            while held <= cap:
                block = f.read(min(CHUNK, cap + 1 - held))
                if not block:
                    return b"".join(parts), False
                parts.append(block)
                held += len(block)
    except _READ_ERRORS as e:
        raise IngestError("io", f"cannot read {path}: {e}") from None
    return b"", True


def read_small(path: str, gz: bool, cap: int, limits: Limits = DEFAULT_LIMITS) -> bytes | None:
    """The whole data when it is at most `cap` bytes, else None (read it in chunks instead)."""
    data, more = _read_upto(path, gz, cap, limits)
    if more:
        return None
    check_lines(data, 1, limits, path)
    return data


def read_whole(path: str, gz: bool, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """All the data of a file that cannot be split (a JSON array): at most `max_line` bytes."""
    cap = limits.max_line or (1 << 62)
    data, more = _read_upto(path, gz, cap, limits)
    if more:
        raise IngestError("line", f"{path} is one JSON array longer than max_line ({_size(limits.max_line)}), "
                                  f"which is read whole: send its objects one per line instead")
    return data


def check_lines(data: bytes, first_line: int, limits: Limits, path: str) -> None:
    """IngestError "line" naming the first line of `data` longer than max_line (C-speed scans)."""
    lim = limits.max_line
    if not lim or len(data) <= lim:
        return
    start, number = 0, first_line
    while start < len(data):
        end = data.find(b"\n", start)
        if end < 0:
            end = len(data)
        if end - start > lim:
            raise _long_line(path, number, lim)
        start, number = end + 1, number + 1


def _long_line(path: str, number: int, lim: int) -> IngestError:
    return IngestError("line", f"{path}: line {number} is longer than max_line ({_size(lim)}); "
                               f"raise it with 'run operator where max_line = ...' if the line is genuine")


def iter_chunks(path: str, gz: bool, size: int = CHUNK,
                limits: Limits = DEFAULT_LIMITS) -> Iterator[tuple[int, bytes]]:
    """(number of the chunk's first line, bytes of whole lines) until the end of the file.

    A line that spans blocks is kept as a list of its pieces and joined once when its end
    arrives, so a long line costs time in proportion to its length; one past `max_line` is
    refused as soon as that many bytes of it have been read.
    """
    lim = limits.max_line or (1 << 62)
    line = 1
    parts: list[bytes] = []  # the pieces of a line whose end has not come yet
    held = 0
    try:
        with open_data(path, gz, limits) as f:
            while True:
                block = f.read(size)
                if not block:
                    break
                cut = block.rfind(b"\n")
                if cut < 0:
                    parts.append(block)
                    held += len(block)
                    if held > lim:
                        raise _long_line(path, line, lim)
                    continue
                if parts:
                    if held + block.find(b"\n") > lim:
                        raise _long_line(path, line, lim)
                    parts.append(block[:cut + 1])
                    body = b"".join(parts)
                else:
                    body = block[:cut + 1]
                rest = block[cut + 1:]
                parts, held = ([rest], len(rest)) if rest else ([], 0)
                check_lines(body, line, limits, path)
                yield line, body
                line += body.count(b"\n")
    except _READ_ERRORS as e:
        raise IngestError("io", f"cannot read {path}: {e}") from None
    if parts:
        tail = b"".join(parts)
        check_lines(tail, line, limits, path)
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
