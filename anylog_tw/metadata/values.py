"""Values inside policies: paths, equality as `blockchain get` means it, and the store interface.

Shared by the query language (`query.py`), its bring formatting (`bring.py`) and the ledger's
indexes (`ledger.py`), so that an index lookup and a scan always agree on what "equal" means.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Protocol, Sequence

from anylog_tw.base.errors import GrammarError

MISSING = object()

# Types a query may name even when the ledger holds none of them yet (an empty answer, not a typo).
class QueryError(GrammarError):
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


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


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


def resolve(policy: dict, segments: Sequence[str]) -> Any:
    """The value at a path, MISSING when absent; through a list, the list of values found.

    A first segment naming a root key of the record (its type; a joined record has several) or
    `*` starts at that root; any other path starts inside the record's first root.
    """
    if not segments:
        return policy
    first = segments[0]
    if first in policy:
        value: Any = policy[first]
        segments = segments[1:]
    else:
        value = policy[policy_type(policy)]
        if first == "*":
            segments = segments[1:]
    for seg in segments:
        seg, func = split_function(seg)
        if isinstance(value, dict):
            value = value.get(seg, MISSING)
        elif isinstance(value, list):
            found = [e[seg] for e in value if isinstance(e, dict) and seg in e]
            value = found if found else MISSING
        else:
            return MISSING
        if value is MISSING:
            return MISSING
        if func is not None:
            value = _apply_function(func, text_of(value))
    return value


_FUNCTION = re.compile(r"^([^()]+)\((rfind|find|prefix|suffix)\((.*)\)\)$")


def split_function(segment: str) -> tuple[str, tuple[str, str] | None]:
    m = _FUNCTION.match(segment)
    if not m:
        return segment, None
    return m.group(1), (m.group(2), m.group(3).strip().strip("'\""))


def _apply_function(func: tuple[str, str], text: str) -> str:
    """Substring functions: find(x) keeps what precedes the first x, rfind(x) what follows the last
    x, prefix(n) the first n characters and suffix(n) the last n."""
    name, arg = func
    if name in ("prefix", "suffix"):
        try:
            n = int(arg)
        except ValueError:
            raise QueryError(f"{name}({arg}) needs a whole number") from None
        return text[:n] if name == "prefix" else (text[-n:] if n else "")
    if name == "find":
        i = text.find(arg)
        return text if i < 0 else text[:i]
    i = text.rfind(arg)
    return text if i < 0 else text[i + len(arg):]


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
