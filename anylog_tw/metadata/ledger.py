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

import hashlib
import os
import random
import time
from typing import Callable, Iterable, Sequence

from anylog_tw.base.errors import StorageError
from anylog_tw.metadata.ledger_file import (
    Parsed,
    State,
    build_state,
    parse_and_build,
    parse_lines,
    render,
    write_atomically,
)
from anylog_tw.metadata.rules import (
    MEMBER_RANGE,
    DuplicatePolicy,
    PolicyError,
    canonical,
    iso_date,
    parse_policy,
    policy_id,
    prepare,
    to_line,
    validate,
)
from anylog_tw.metadata.values import body, index_keys, lookup_keys, policy_type

# --- the ledger -----------------------------------------------------------------------------


VERSION_HISTORY = 20000  # versions remembered for delta syncs


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
        self._local: dict[str, None] = {}
        self._eq: dict[tuple[str, str], tuple[dict, list]] = {}
        self._md5 = hashlib.md5()
        self._clean_end = True  # the file ends with a newline (or is empty)
        self.size = 0  # bytes in the file
        # version -> file size, for the versions this file went through by appends only: a
        # synchronizer that has one of them needs only the bytes after it (see sync.py).
        self._versions: dict[str, int] = {self.version: 0}
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
        """The `ledger: local` policies (those the master does not have yet), in ledger order."""
        return [self._by_id[pid] for pid in self._local]

    def read_file(self) -> bytes:
        """The file's bytes; a missing file is an empty ledger. (Blocking: call from a thread.)

        A `.new` left by a node that died while writing one is dropped when the ledger itself is
        there (the rename never happened, so the old ledger is the good one), and renamed in when
        it is not (a first ledger: a line it may have cut short is skipped at parse).
        """
        new = self.path + ".new"
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            try:
                with open(new, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                return b""
            os.replace(new, self.path)
            return data
        try:
            os.unlink(new)
        except FileNotFoundError:
            pass
        return data

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
        self._local = state.local
        self._eq = {}
        self._md5 = state.md5
        self._clean_end = state.clean_end
        self.size = state.size
        self._versions = {self.version: self.size}
        self.changes += 1

    def offset_of(self, version: str) -> int | None:
        """The file size at `version` when the file grew from it by appends only, else None."""
        return self._versions.get(version)

    def _record_version(self) -> None:
        self._versions[self.version] = self.size
        if len(self._versions) > VERSION_HISTORY:
            del self._versions[next(iter(self._versions))]

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

    def write_lines(self, data: bytes) -> None:
        """Append whole lines to the file (fsynced) and follow them in the version (blocking)."""
        if not data:
            return
        if not self._clean_end:
            data = b"\n" + data  # the last line was cut short: do not glue onto it
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        try:
            with open(self.path, "ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            self._clean_end = False  # part of the data may be on disk: the next line starts afresh
            raise StorageError(f"cannot append to the ledger {self.path}: {e.strerror or e}; "
                               f"the policy was not added") from None
        self._md5.update(data)
        self.size += len(data)
        self._clean_end = data.endswith(b"\n")
        self._record_version()

    def _append(self, policy: dict) -> None:
        self.write_lines(to_line(policy).encode("utf-8") + b"\n")
        self.appended(policy)

    def appended(self, policy: dict) -> None:
        """Take in a policy whose line `write_lines` has just appended."""
        self._index_new(policy)
        self.changes += 1

    def _index_new(self, policy: dict) -> None:
        self.policies.append(policy)
        inner = body(policy)
        self._by_id[inner["id"]] = policy
        if inner.get("ledger") == "local":
            self._local[inner["id"]] = None
        ptype = policy_type(policy)
        self._by_type.setdefault(ptype, []).append(policy)
        for (t, attr), (values, unindexed) in self._eq.items():
            if t == ptype:
                self._index_one(values, unindexed, policy, attr)

    def merge(self, policies: list[dict]) -> None:
        """Take in policies whose lines `write_lines` has just appended: a policy with an id the
        ledger holds replaces it where it stands (a local policy coming back global), the others
        are added at the end, as a reload of the file would have them."""
        positions = None
        replaced = False
        for p in policies:
            pid = body(p)["id"]
            old = self._by_id.get(pid)
            if old is None:
                self._index_new(p)
                continue
            if positions is None:
                positions = {id(q): i for i, q in enumerate(self.policies)}
            self.policies[positions[id(old)]] = p
            positions[id(p)] = positions.pop(id(old))
            self._by_id[pid] = p
            if body(p).get("ledger") == "local":
                self._local[pid] = None
            else:
                self._local.pop(pid, None)
            replaced = True
        if replaced:
            # the type lists must follow ledger order again, and the value indexes are rebuilt on use
            self._by_type = {}
            for q in self.policies:
                self._by_type.setdefault(policy_type(q), []).append(q)
            self._eq = {}
        self.changes += 1

    def without(self, ids: Iterable[str]) -> list[dict]:
        drop = set(ids)
        return [p for p in self.policies if body(p).get("id") not in drop]


# The file format and the policy rules live in their own modules; these names are the ledger's API.
__all__ = ["Ledger", "Parsed", "State", "build_state", "parse_and_build", "parse_lines", "render", "write_atomically",
           "MEMBER_RANGE", "DuplicatePolicy", "PolicyError", "canonical", "iso_date", "parse_policy", "policy_id",
           "prepare", "to_line", "validate"]
