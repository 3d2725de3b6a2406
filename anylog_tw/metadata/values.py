"""Values inside policies: paths, equality as `blockchain get` means it, and the store interface.

Shared by the query language (`query.py`), its bring formatting (`bring.py`) and the ledger's
indexes (`ledger.py`), so that an index lookup and a scan always agree on what "equal" means.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol, Sequence

from anylog_tw.base.bring import MISSING, BringError, Segment, split_function  # noqa: F401 (re-exported)
from anylog_tw.base.bring_values import as_number, text_of, walk  # noqa: F401 (re-exported)


# Types a query may name even when the ledger holds none of them yet (an empty answer, not a typo).
class QueryError(BringError):
    """A `blockchain get` that cannot be read or run; the message says which part and why."""


# --- the store interface --------------------------------------------------------------------


class Store(Protocol):
    def types(self) -> Iterable[str]: ...
    def of_type(self, ptype: str) -> Sequence[dict]: ...
    def all(self) -> Sequence[dict]: ...
    def by_id(self, pid: str) -> dict | None: ...
    def equal(self, ptype: str, attr: str, text: str) -> Sequence[dict] | None: ...


class MemoryStore:
    """A store over a plain list of policies (tests, and the reference for the ledger's indexes)."""

    def __init__(self, policies: Iterable[dict]):
        self.policies = list(policies)

    def types(self):
        return {policy_type(p) for p in self.policies}

    def of_type(self, ptype):
        return [p for p in self.policies if policy_type(p) == ptype]

    def all(self):
        return self.policies

    def by_id(self, pid):
        for p in self.policies:
            if body(p).get("id") == pid:
                return p
        return None

    def equal(self, ptype, attr, text):
        return None  # no index: the caller filters


# --- values ---------------------------------------------------------------------------------


def policy_type(policy: dict) -> str:
    return next(iter(policy))


def body(policy: dict) -> dict:
    return next(iter(policy.values()))


def index_keys(value: Any) -> list:
    """The keys under which an attribute value is indexed, so that `matches` and the index agree."""
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, str):
        return [value]
    return []  # lists and objects are not indexed: queries on them scan


def lookup_keys(text: str) -> list:
    """The index keys a where-value `text` can match (see `matches`)."""
    keys: list = [text]
    number = as_number(text)
    if number is not None:
        keys.append(number)
    if text.lower() in ("true", "false") and text != text.lower():
        keys.append(text.lower())
    return keys


def matches(actual: Any, text: str) -> bool:
    """Equality of an attribute value and a where-value typed as text (`port = 32148` matches 32148)."""
    if actual is MISSING or actual is None:
        return False
    if isinstance(actual, list):
        return any(matches(a, text) for a in actual)
    if isinstance(actual, bool):
        return text.lower() == ("true" if actual else "false")
    if isinstance(actual, (int, float)):
        number = as_number(text)
        return number is not None and float(actual) == number
    if isinstance(actual, str):
        return actual == text
    return False


def resolve(policy: dict, segments: Sequence[str] | Sequence[Segment]) -> Any:
    """The value at a path, MISSING when absent; through a list, the list of values found.

    A first segment naming a root key of the record (its type; a joined record has several) or
    `*` starts at that root; any other path starts inside the record's first root.  The walk is
    the bring language's (base/bring.py); `[]` is passed over (`[]` alone is the whole policy).
    """
    if not segments:
        return policy
    segs = [s if isinstance(s, Segment) else Segment(*split_function(s)) for s in segments]
    segs = [s for s in segs if s.name is not None]
    if not segs:
        return policy
    first = segs[0]
    if first.func is None and first.name in policy:
        value: Any = policy[first.name]
        segs = segs[1:]
    else:
        value = policy[policy_type(policy)]
        if first.name == "*":
            segs = segs[1:]
    try:
        return walk(value, segs, each=False)
    except BringError as e:
        raise QueryError(e.message) from None


def compare(actual: Any, op: str, other: Any) -> bool:
    """A conditional test; numbers compare as numbers, everything else as text."""
    if isinstance(actual, list):
        if op == "contains":
            return any(compare(a, "==", other) for a in actual) or any(
                compare(a, "contains", other) for a in actual if isinstance(a, str))
        if op == "!=":
            return all(compare(a, "!=", other) for a in actual)
        return any(compare(a, op, other) for a in actual)
    other_text = text_of(other)
    if op in ("==", "=", "with"):
        return matches(actual, other_text)
    if op == "!=":
        return not matches(actual, other_text)
    if op in ("<", ">", "<=", ">="):
        a, b = as_number(actual), as_number(other)
        left, right = (a, b) if a is not None and b is not None else (text_of(actual), other_text)
        return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]
    text = text_of(actual)
    if op == "contains":
        return other_text in text
    if op == "startswith":
        return text.startswith(other_text)
    if op == "endswith":
        return text.endswith(other_text)
    raise QueryError(f"unknown operator {op!r}")
