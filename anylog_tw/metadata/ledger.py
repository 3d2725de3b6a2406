"""The ledger: the node's copy of the metadata, in memory with indexes, and its JSON-lines file.

A policy is a JSON object with exactly one root key, its type: `{"operator": {...}}`.  On insert
it gets, below the root:

- `id`, when the user gave none: the MD5 hex of the policy's canonical JSON (keys sorted,
  separators `,` and `:`, UTF-8, no ASCII escaping) with `date` and `ledger` left out, so the same
  policy inserted twice gets the same id and is refused the second time;
- `date`: ISO UTC with microseconds and `Z` (`2026-11-28T04:18:44.123456Z`);
- `ledger`: `local` until the master has it, then `global`;
- `member` (operators only): a number 1-255 unique among the operators of the same cluster,
  drawn after the id is computed, so the id does not depend on the draw.

The file (`!blockchain_file`) holds one policy per line.  An insert appends one line; anything
that removes lines writes a complete new file aside and renames it over the old one, so a crash
never leaves half a ledger: at worst the last appended line is cut, and a line that does not parse
is skipped on load with an error (never a crash).  The version of the metadata is the MD5 of the
file's bytes, kept up to date as lines are appended.

This class does blocking file I/O: the node calls its loading and rewriting methods from a
thread (see `metadata/layer.py`); appends of one line are small enough for the reactor thread.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import orjson

from anylog_tw.errors import CommandError, StorageError
from anylog_tw.metadata.query import body, index_keys, lookup_keys, policy_type

AUTO_FIELDS = ("date", "ledger")  # left out of the id
MEMBER_RANGE = (1, 255)


class PolicyError(CommandError):
    """A policy that is not a one-root-key JSON object, or one the ledger refuses."""

    code = "bad_policy"


class DuplicatePolicy(PolicyError):
    code = "duplicate_policy"
    status = 409


# --- policies as values ---------------------------------------------------------------------


def parse_policy(text: str | dict) -> dict:
    """A policy from JSON text (or a dict), checked: one root key whose value is an object."""
    if isinstance(text, dict):
        policy = text
    else:
        try:
            policy = json.loads(text)
        except (TypeError, ValueError) as e:
            shown = text if len(text) < 60 else text[:57] + "..."
            raise PolicyError(f"the policy is not valid JSON ({e}): {shown!r}") from None
    validate(policy)
    return policy


def validate(policy) -> None:
    if not isinstance(policy, dict):
        raise PolicyError(f"a policy is a JSON object with one root key (its type), not {type(policy).__name__}")
    if len(policy) != 1:
        keys = ", ".join(repr(k) for k in list(policy)[:5]) or "none"
        raise PolicyError(f"a policy has exactly one root key, its type (e.g. {{\"operator\": {{...}}}}); "
                          f"this one has {len(policy)}: {keys}")
    ptype, inner = next(iter(policy.items()))
    if not isinstance(ptype, str) or not ptype.strip():
        raise PolicyError("the policy type (root key) is empty")
    if not isinstance(inner, dict):
        raise PolicyError(f"the value of the root key '{ptype}' must be a JSON object of attributes")


def canonical(policy: dict) -> str:
    return json.dumps(policy, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def policy_id(policy: dict) -> str:
    """The id rule: MD5 of the canonical JSON of the policy without `date` and `ledger` (nor `id`)."""
    ptype, inner = next(iter(policy.items()))
    stripped = {k: v for k, v in inner.items() if k not in AUTO_FIELDS and k != "id"}
    return hashlib.md5(canonical({ptype: stripped}).encode("utf-8")).hexdigest()


def iso_date(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def prepare(policy: dict, now: float) -> dict:
    """A copy of the policy with `id` and `date` added where missing (`blockchain prepare policy`)."""
    validate(policy)
    ptype, inner = next(iter(policy.items()))
    inner = dict(inner)
    if not inner.get("id"):
        inner["id"] = policy_id(policy)
    elif not isinstance(inner["id"], str):
        inner["id"] = str(inner["id"])
    if not inner.get("date"):
        inner["date"] = iso_date(now)
    return {ptype: inner}


def to_line(policy: dict) -> str:
    return json.dumps(policy, separators=(",", ":"), ensure_ascii=False)


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
            found = by_type.get(ptype)
            if found is None:
                by_type[ptype] = [p]
            else:
                found.append(p)
    return State(policies, by_id, by_type, hashlib.md5(data), not data or data.endswith(b"\n"))


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


def build_state(policies: list[dict], data: bytes) -> State:
    by_id: dict[str, dict] = {}
    by_type: dict[str, list[dict]] = {}
    for p in policies:
        for ptype, inner in p.items():
            by_id[inner["id"]] = p
            found = by_type.get(ptype)
            if found is None:
                by_type[ptype] = [p]
            else:
                found.append(p)
    return State(policies, by_id, by_type, hashlib.md5(data), not data or data.endswith(b"\n"))


# --- the ledger -----------------------------------------------------------------------------


class Ledger:
    """Policies in memory, indexed by type, by id, and (built on first use) by attribute value."""

    def __init__(self, path: str, clock: Callable[[], float] = time.time, rng: random.Random | None = None):
        self.path = path
        self.clock = clock
        self.rng = rng or random.Random()
        self.policies: list[dict] = []
        self.load_errors: list[tuple[int, str]] = []
        self._by_id: dict[str, dict] = {}
        self._by_type: dict[str, list[dict]] = {}
        self._eq: dict[tuple[str, str], tuple[dict, list]] = {}
        self._md5 = hashlib.md5()
        self._clean_end = True  # the file ends with a newline (or is empty)
        self.changes = 0  # bumped on every change; waiters and caches read it

    # -- the store interface of query.py -----------------------------------------------------

    def types(self) -> Iterable[str]:
        return self._by_type.keys()

    def of_type(self, ptype: str) -> Sequence[dict]:
        return self._by_type.get(ptype, ())

    def all(self) -> Sequence[dict]:
        return self.policies

    def by_id(self, pid: str) -> dict | None:
        return self._by_id.get(pid)

    def equal(self, ptype: str, attr: str, text: str) -> Sequence[dict]:
        """Candidates for `attr = text` among one type: a superset of the matches, from an index."""
        key = (ptype, attr)
        index = self._eq.get(key)
        if index is None:
            index = self._eq[key] = self._build_index(ptype, attr)
        values, unindexed = index
        found: list[dict] = []
        for k in lookup_keys(text):
            found.extend(values.get(k, ()))
        if unindexed:
            found = found + unindexed
            found.sort(key=self._order)
        return found

    def _order(self, policy: dict) -> int:
        return self._positions().get(id(policy), 0)

    def _positions(self) -> dict[int, int]:
        cached = getattr(self, "_pos_cache", None)
        if cached is None or cached[0] != self.changes:
            cached = (self.changes, {id(p): i for i, p in enumerate(self.policies)})
            self._pos_cache = cached
        return cached[1]

    def _build_index(self, ptype: str, attr: str) -> tuple[dict, list]:
        values: dict = {}
        unindexed: list = []
        for p in self._by_type.get(ptype, ()):
            self._index_one(values, unindexed, p, attr)
        return values, unindexed

    @staticmethod
    def _index_one(values: dict, unindexed: list, policy: dict, attr: str) -> None:
        v = body(policy).get(attr)
        if v is None:
            return
        keys = index_keys(v)
        if not keys:
            unindexed.append(policy)
        for k in keys:
            values.setdefault(k, []).append(policy)

    # -- reading -----------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """MD5 of the ledger file's bytes: what `get metadata version` shows."""
        return self._md5.hexdigest()

    def __len__(self) -> int:
        return len(self.policies)

    def __contains__(self, pid: str) -> bool:
        return pid in self._by_id

    def local_policies(self) -> list[dict]:
        return [p for p in self.policies if body(p).get("ledger") == "local"]

    def read_file(self) -> bytes:
        """The file's bytes; a missing file is an empty ledger. (Blocking: call from a thread.)"""
        for candidate in (self.path, self.path + ".new"):
            try:
                with open(candidate, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            if candidate != self.path:
                # A crash between writing .new and renaming it: finish the swap now.
                os.replace(candidate, self.path)
            return data
        return b""

    def load(self) -> Parsed:
        """Read and index the file (blocking); lines that do not parse are skipped and reported."""
        data = self.read_file()
        parsed, state = parse_and_build(data)
        self.install_state(state)
        self.load_errors = parsed.errors
        return parsed

    def install(self, policies: list[dict], data: bytes) -> None:
        """Make `policies` (the content of the file whose bytes are `data`) the ledger."""
        self.install_state(build_state(policies, data))

    def install_state(self, state: State) -> None:
        self.policies = state.policies
        self._by_id = state.by_id
        self._by_type = state.by_type
        self._eq = {}
        self._md5 = state.md5
        self._clean_end = state.clean_end
        self.changes += 1

    # -- changing ----------------------------------------------------------------------------

    def prepare(self, policy: dict) -> dict:
        return prepare(policy, self.clock())

    def complete(self, policy: dict) -> dict:
        """The policy as it would be stored: id, date and (operators) member added; a policy whose
        id the ledger holds already is refused."""
        stored = self.prepare(policy)
        ptype, inner = next(iter(stored.items()))
        pid = inner["id"]
        if pid in self._by_id:
            raise DuplicatePolicy(f"policy {pid} ({ptype}) is already in the ledger")
        if ptype == "operator":
            self._assign_member(inner)
        return stored

    def add(self, policy: dict, ledger: str = "local") -> dict:
        """Complete and append one policy; return it as stored."""
        stored = self.complete(policy)
        next(iter(stored.values()))["ledger"] = ledger
        self._append(stored)
        return stored

    def _assign_member(self, inner: dict) -> None:
        cluster = inner.get("cluster", "")
        taken = {body(p).get("member") for p in self._by_type.get("operator", ())
                 if body(p).get("cluster", "") == cluster}
        if inner.get("member") is not None:
            if inner["member"] in taken:
                raise PolicyError(f"member {inner['member']} is taken in cluster {cluster or '(none)'}: "
                                  f"leave 'member' out and one is assigned")
            return
        low, high = MEMBER_RANGE
        free = [n for n in range(low, high + 1) if n not in taken]
        if not free:
            raise PolicyError(f"cluster {cluster or '(none)'} has {high} operators: no member number is free")
        inner["member"] = self.rng.choice(free)

    def _append(self, policy: dict) -> None:
        line = to_line(policy).encode("utf-8") + b"\n"
        if not self._clean_end:
            line = b"\n" + line  # the last line was cut short: do not glue onto it
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        try:
            with open(self.path, "ab") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            self._clean_end = False  # part of the line may be on disk: the next one starts afresh
            raise StorageError(f"cannot append to the ledger {self.path}: {e.strerror or e}; "
                               f"the policy was not added") from None
        self._md5.update(line)
        self._clean_end = True
        self.policies.append(policy)
        self._by_id[body(policy)["id"]] = policy
        ptype = policy_type(policy)
        self._by_type.setdefault(ptype, []).append(policy)
        for (t, attr), (values, unindexed) in self._eq.items():
            if t == ptype:
                self._index_one(values, unindexed, policy, attr)
        self.changes += 1

    def without(self, ids: Iterable[str]) -> list[dict]:
        drop = set(ids)
        return [p for p in self.policies if body(p).get("id") not in drop]


def render(policies: Iterable[dict]) -> bytes:
    """The file text of a list of policies."""
    return b"".join(orjson.dumps(p) + b"\n" for p in policies)


def write_atomically(path: str, data: bytes, keep_old: bool = False) -> None:
    """Write `path.new`, fsync it, then rename it over `path` (keeping the old file as `.old`).

    On any failure the `.new` file is removed and `path` is untouched; the OSError is raised.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    new = path + ".new"
    try:
        with open(new, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if keep_old and os.path.exists(path):
            _keep_old(path)
        os.replace(new, path)
    except OSError:
        try:
            os.unlink(new)
        except OSError:
            pass
        raise
    dirfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


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
