"""The parsed form of a `blockchain get` query: a tree of tests that a policy passes or not.

Kept apart from the parser (`query_parse.py`) and the evaluation (`query.py`), which both use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from anylog_tw.metadata.bring import Bring
from anylog_tw.metadata.values import MISSING, Store, body, compare, resolve, text_of


@dataclass
class Test:
    """One comparison: path op value (value is a literal text or another path)."""

    path: list[str]
    op: str
    value: Any  # str, or ("path", segments)

    def __call__(self, policy: dict, ctx: "Context") -> bool:
        actual = resolve(policy, self.path)
        if self.op == "childfrom":
            return ctx.child_from(policy, self._other(policy, ctx))
        if actual is MISSING:
            return False
        other = self._other(policy, ctx)
        if other is MISSING:
            return False
        return compare(actual, self.op, other)

    def _other(self, policy: dict, ctx: "Context | None" = None) -> Any:
        if isinstance(self.value, tuple):
            segs = self.value[1]
            outer = ctx.outer if ctx is not None else None
            if outer is not None and segs and segs[0] in outer:  # join/merge: a value from the left side
                return resolve(outer, segs)
            return resolve(policy, segs)
        return self.value


@dataclass
class BoolOp:
    op: str  # and / or
    parts: list

    def __call__(self, policy: dict, ctx: "Context") -> bool:
        if self.op == "and":
            return all(p(policy, ctx) for p in self.parts)
        return any(p(policy, ctx) for p in self.parts)


@dataclass
class Query:
    types: tuple[str, ...] | None  # None: every type (`*`)
    where: Any = None  # a Test / BoolOp tree, or None
    equalities: list = field(default_factory=list)  # form 1 tests usable with an index
    bring: Bring | None = None
    joins: list = field(default_factory=list)  # ("join" | "merge", Query): the right side, per left record


class Context:
    def __init__(self, store: Store, outer: dict | None = None):
        self.store = store
        self.outer = outer  # the left record of a join/merge: `[type][attr]` values come from it

    def child_from(self, policy: dict, ancestor: Any) -> bool:
        """True when following `parent` ids from the policy reaches `ancestor` (an id)."""
        target = text_of(ancestor)
        seen = set()
        current = body(policy).get("parent")
        while isinstance(current, str) and current not in seen:
            if current == target:
                return True
            seen.add(current)
            parent = self.store.by_id(current)
            current = body(parent).get("parent") if parent is not None else None
        return False


