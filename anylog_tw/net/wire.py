"""The peer protocol's frames, as pure functions over bytes: encode, and an incremental decoder.

A frame is one header line (a UTF-8 JSON object, at most `MAX_HEADER` bytes, ending in `\\n`)
followed by exactly `size` bytes of body when the header says `size`.  JSON escapes every
newline inside strings, so the first `\\n` always ends the header.  The decoder takes TCP
segments of any size and split, keeps its buffers as chunk lists (Twisted's stock receivers
re-join the whole buffer on every read, which is quadratic for big bodies), and hands bodies of
"streamed" kinds (files) out chunk by chunk so they are never whole in memory.

Nothing here does I/O or knows the reactor; `docs/peer.md` describes the format for other
implementations.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

VERSION = 1
KINDS = ("hello", "cmd", "reply", "file", "event", "error")
MAX_HEADER = 64 * 1024
MAX_BODY = 512 * 1024 * 1024  # a command or reply body; file bodies have their own limit
MAX_FILE = 64 * 1024**3
STREAMED = frozenset({"file"})
_KIND_SET = frozenset(KINDS)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
_decode = json.JSONDecoder().raw_decode


class WireError(Exception):
    """The byte stream is not a valid frame sequence; the connection cannot continue."""

    def __init__(self, reason: str, code: str = "bad_frame"):
        super().__init__(reason)
        self.reason = reason
        self.code = code


def encode_header(header: dict) -> bytes:
    """One header line; `v` is filled in when missing."""
    if "v" not in header:
        header = {"v": VERSION, **header}
    line = _dumps(header).encode("utf-8")
    if len(line) >= MAX_HEADER:
        raise WireError(f"header of {len(line)} bytes is over the {MAX_HEADER} byte limit", "too_large")
    return line + b"\n"


def encode(header: dict, body: bytes = b"") -> bytes:
    """A whole frame: the header (with `size` set from the body) and the body."""
    if body:
        header = {**header, "size": len(body)}
    elif "size" in header:
        header = {k: v for k, v in header.items() if k != "size"}
    return encode_header(header) + body


_quote = json.encoder.encode_basestring  # C speed-up: a str as a JSON string literal, non-ASCII kept


def encode_cmd(ident: int, command: str) -> bytes:
    """A `cmd` frame (the hot path of requests: the same bytes `encode` makes, built directly)."""
    line = ('{"v":%d,"kind":"cmd","id":%d,"cmd":%s}\n' % (VERSION, ident, _quote(command))).encode("utf-8")
    if len(line) > MAX_HEADER:
        raise WireError(f"a command of {len(line)} bytes is over the {MAX_HEADER} byte header limit", "too_large")
    return line


def encode_text_reply(re: int, text: bytes) -> bytes:
    """A successful plain-text `reply` frame (the hot path of answers), built directly."""
    if text:
        return b'{"v":%d,"kind":"reply","id":0,"re":%d,"ok":true,"format":"text","size":%d}\n%b' % (
            VERSION, re, len(text), text)
    return b'{"v":%d,"kind":"reply","id":0,"re":%d,"ok":true,"format":"text"}\n' % (VERSION, re)


def check_header(header: Any, max_body: int = MAX_BODY, max_file: int = MAX_FILE) -> dict:
    """Validate a decoded header: a JSON object with a known version, id, kind and size."""
    if type(header) is not dict:
        raise WireError("a frame header must be a JSON object")
    v = header.get("v")
    if type(v) is not int:
        raise WireError("a frame header needs an integer 'v' (protocol version)")
    if v != VERSION:
        if v > VERSION or v < 1:
            raise WireError(f"protocol version {v} is not supported (this node speaks version {VERSION})",
                            "version")
    kind = header.get("kind")
    if kind not in _KIND_SET:
        raise WireError(f"unknown frame kind {kind!r} (kinds: {', '.join(KINDS)})")
    ident = header.get("id")
    if type(ident) is not int or ident < 0:
        raise WireError("a frame header needs a non-negative integer 'id'")
    size = header.get("size", 0)
    if size:
        if type(size) is not int or size < 0:
            raise WireError("'size' must be a non-negative integer")
        limit = max_file if kind in STREAMED else max_body
        if size > limit:
            raise WireError(f"a {kind} body of {size} bytes is over the {limit} byte limit", "too_large")
    elif size != 0 or type(size) is not int:
        raise WireError("'size' must be a non-negative integer")
    return header


# Events the decoder returns, as tuples (cheap to build, easy to match):
#   ("frame", header, body)   a whole frame (body b"" when none)
#   ("start", header)         a streamed frame begins; its body follows as chunks
#   ("chunk", bytes)          part of a streamed body
#   ("end", header)           the streamed body is complete
FRAME, START, CHUNK, END = "frame", "start", "chunk", "end"


class Decoder:
    """Incremental frame decoder: `feed(segment)` returns the events completed by that segment.

    After a `WireError` the decoder is dead (the stream cannot be resynchronised) and the
    connection must be closed.  Memory is bounded by `max_header` plus one non-streamed body.
    """

    def __init__(self, max_header: int = MAX_HEADER, max_body: int = MAX_BODY, max_file: int = MAX_FILE,
                 streamed: Iterable[str] = STREAMED):
        self.max_header = max_header
        self.max_body = max_body
        self.max_file = max_file
        self.streamed = frozenset(streamed)
        self._head: list[bytes] = []
        self._head_len = 0
        self._header: dict | None = None
        self._need = 0
        self._chunks: list[bytes] = []
        self._stream = False
        self.dead: WireError | None = None
        # Stop decoding after a frame of these kinds, so the caller can act on it (a hello that
        # changes the limits) before the rest is judged; `feed(b"")` goes on with what is left.
        self.pause_after: frozenset[str] = frozenset()
        self._stash = b""

    @property
    def stashed(self) -> bool:
        return bool(self._stash)

    @property
    def idle(self) -> bool:
        """No partial frame is buffered (a clean place for the stream to end)."""
        return self._header is None and self._head_len == 0

    def feed(self, data: bytes) -> list[tuple]:
        if self.dead is not None:
            raise self.dead
        if self._stash:
            data, self._stash = self._stash + data, b""
        try:
            return self._feed(data)
        except WireError as e:
            self.dead = e
            self._chunks = []
            self._head = []
            raise

    def _feed(self, data: bytes) -> list[tuple]:
        events: list[tuple] = []
        pos = 0
        n = len(data)
        while pos < n:
            if self._header is None:
                idx = data.find(b"\n", pos)
                if idx < 0:
                    self._head_len += n - pos
                    if self._head_len >= self.max_header:
                        raise WireError(f"header line longer than {self.max_header} bytes", "too_large")
                    self._head.append(data[pos:] if pos else data)
                    return events
                if self._head:
                    self._head.append(data[pos:idx])
                    line = b"".join(self._head)
                    self._head = []
                    self._head_len = 0
                else:
                    line = data[pos:idx]
                if len(line) >= self.max_header:
                    raise WireError(f"header line longer than {self.max_header} bytes", "too_large")
                pos = idx + 1
                try:
                    text = line.decode("utf-8")
                    header, end = _decode(text)
                except (ValueError, UnicodeDecodeError) as e:
                    raise WireError(f"a frame header is not valid JSON: {e}") from None
                if end != len(text) and text[end:].strip():
                    raise WireError("a frame header line has text after its JSON object")
                header = check_header(header, self.max_body, self.max_file)
                size = header.get("size", 0)
                kind = header["kind"]
                if not size:
                    if kind in self.streamed:
                        events.append((START, header))
                        events.append((END, header))
                    else:
                        events.append((FRAME, header, b""))
                        if kind in self.pause_after and pos < n:
                            self._stash = data[pos:]
                            return events
                    continue
                if n - pos >= size and kind not in self.streamed:  # the whole body is here: no buffering
                    events.append((FRAME, header, data[pos:pos + size]))
                    pos += size
                    continue
                self._header = header
                self._need = size
                self._stream = kind in self.streamed
                if self._stream:
                    events.append((START, header))
                continue
            take = min(self._need, n - pos)
            chunk = data if (pos == 0 and take == n) else data[pos:pos + take]
            pos += take
            self._need -= take
            if self._stream:
                events.append((CHUNK, chunk))
            else:
                self._chunks.append(chunk)
            if self._need == 0:
                header, self._header = self._header, None
                if self._stream:
                    events.append((END, header))
                else:
                    body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
                    self._chunks = []
                    events.append((FRAME, header, body))
        return events

    def pending(self) -> str:
        """What a stream that ends now leaves unfinished (for the error log), or ''."""
        if self._header is not None:
            return f"a {self._header['kind']} body {self._need} bytes short of its announced size"
        if self._head_len:
            return f"a header line cut after {self._head_len} bytes"
        return ""
