"""The ledger file's format: JSON lines, parsed fast, written atomically.

One policy per line.  `parse_and_build` reads a whole ledger text (a later line with an id
replaces an earlier one; a line that does not parse is skipped and reported with its number) and
builds the in-memory state from it in one pass; `write_atomically` writes a complete file aside,
fsyncs it and renames it in, so a reader or a crash never sees half a ledger.  All of this is
blocking and runs in a thread.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Iterable

import orjson

from anylog_tw.base import atomic
from anylog_tw.metadata.rules import PolicyError, validate
from anylog_tw.metadata.values import body


@dataclass
class Parsed:
    """What a ledger text holds: policies in order (a later line with the same id replaces an
    earlier one) and the lines that were skipped, with why."""

    policies: list[dict] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    lines: int = 0


def parse_lines(text: str | bytes) -> Parsed:
    """Parse a ledger text: the policies (a later line with the same id replaces an earlier one)
    and the lines skipped, with why."""
    return parse_and_build(text.encode("utf-8") if isinstance(text, str) else text)[0]


def parse_and_build(data: bytes) -> tuple[Parsed, "State"]:
    """Parse a ledger text and build the ledger state from it in one pass.

    The common case (every line a good policy, no id twice) is one orjson call over the whole
    text turned into a JSON array, and one loop that checks and indexes; anything odd falls back
    to a line-by-line parse that names each bad line.
    """
    stripped = data.rstrip(b"\n")
    lines = stripped.count(b"\n") + 1 if stripped else 0
    try:
        policies = orjson.loads(b"[" + stripped.replace(b"\n", b",") + b"]")
    except orjson.JSONDecodeError:
        policies = None
    if policies is not None and len(policies) == lines:
        state = _checked_state(policies, data)
        if state is not None:
            return Parsed(policies, [], lines), state
    parsed = _parse_slowly(data)
    return parsed, build_state(parsed.policies, data)


def _checked_state(policies: list, data: bytes) -> "State | None":
    """The state of a list of decoded lines, or None when one is not a good policy or an id repeats."""
    by_id: dict[str, dict] = {}
    by_type: dict[str, list[dict]] = {}
    local: dict[str, None] = {}
    for p in policies:
        if type(p) is not dict or len(p) != 1:
            return None
        for ptype, inner in p.items():
            if type(inner) is not dict:
                return None
            pid = inner.get("id")
            if type(pid) is not str or not pid or pid in by_id:
                return None
            by_id[pid] = p
            if inner.get("ledger") == "local":
                local[pid] = None
            found = by_type.get(ptype)
            if found is None:
                by_type[ptype] = [p]
            else:
                found.append(p)
    return State(policies, by_id, by_type, hashlib.md5(data), not data or data.endswith(b"\n"), len(data), local)


def _parse_slowly(data: bytes) -> Parsed:
    out = Parsed()
    position: dict[str, int] = {}
    for lineno, line in enumerate(data.split(b"\n"), 1):
        line = line.strip()
        if not line:
            continue
        out.lines += 1
        try:
            policy = orjson.loads(line)
            validate(policy)
        except (orjson.JSONDecodeError, PolicyError) as e:
            message = e.message if isinstance(e, PolicyError) else f"not JSON: {e}"
            out.errors.append((lineno, message))
            continue
        pid = body(policy).get("id")
        if not isinstance(pid, str) or not pid:
            out.errors.append((lineno, "the policy has no id"))
            continue
        if pid in position:
            out.policies[position[pid]] = policy
        else:
            position[pid] = len(out.policies)
            out.policies.append(policy)
    return out


@dataclass
class State:
    """Everything the ledger derives from its policies, built off the reactor thread."""

    policies: list[dict]
    by_id: dict[str, dict]
    by_type: dict[str, list[dict]]
    md5: "hashlib._Hash"
    clean_end: bool
    size: int = 0
    local: dict[str, None] = field(default_factory=dict)  # ids of the `ledger: local` policies, in order


def build_state(policies: list[dict], data: bytes) -> State:
    by_id: dict[str, dict] = {}
    by_type: dict[str, list[dict]] = {}
    local: dict[str, None] = {}
    for p in policies:
        for ptype, inner in p.items():
            by_id[inner["id"]] = p
            if inner.get("ledger") == "local":
                local[inner["id"]] = None
            found = by_type.get(ptype)
            if found is None:
                by_type[ptype] = [p]
            else:
                found.append(p)
    return State(policies, by_id, by_type, hashlib.md5(data), not data or data.endswith(b"\n"), len(data), local)


def render(policies: Iterable[dict]) -> bytes:
    """The file text of a list of policies."""
    return b"".join(orjson.dumps(p) + b"\n" for p in policies)


def write_atomically(path: str, data: bytes, keep_old: bool = False) -> None:
    """Replace `path` with `data` through `atomic.TempFile` (synced, renamed over it, the directory
    synced), keeping the old file as `.old` when asked.

    On any failure the temp file is removed and `path` is untouched; the OSError is raised.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with atomic.TempFile(directory, os.path.basename(path)) as tmp:
        tmp.file.write(data)
        if keep_old and os.path.exists(path):
            _keep_old(path)
        tmp.publish(path, replace=True)


def _keep_old(path: str) -> None:
    old = path + ".old"
    try:
        os.unlink(old)
    except FileNotFoundError:
        pass
    try:
        os.link(path, old)
    except OSError:
        with open(path, "rb") as src, open(old, "wb") as dst:
            dst.write(src.read())
