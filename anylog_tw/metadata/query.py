"""`blockchain get`: the metadata query language, as pure functions over policies.

    blockchain get <type | (t1, t2) | *> [where <k = v and ...> | <conditional>] [bring[.mods] <items>]
                   [separator = X]

`parse_query(text)` (in `query_parse.py`) turns the text after `blockchain get` into a `Query` (the
tree of `query_model.py`); `evaluate(query, store)` runs it over a store of policies and gives an `Outcome` (JSON data, text or a table).  A store is
anything with the small interface of `values.MemoryStore`: the ledger implements it with indexes,
so `operator where name = x` is a dictionary lookup and not a scan.

Paths: `[operator][name]`, `operator[name]`, `[name]` and `name` all read attribute `name` of an
operator policy; a first segment that is not the policy's type starts inside the policy
(`table[dbms]` reads `dbms` in each element of the cluster's `table` list), `[*]` matches any
type and `[]` is the whole policy.  A path through a list gives the list of values, and a test on
a list is true when any element passes.
"""

from __future__ import annotations

from typing import Sequence

from anylog_tw.metadata.bring import Outcome, apply_bring
from anylog_tw.metadata.query_model import Context, Query
from anylog_tw.metadata.query_parse import parse_query
from anylog_tw.metadata.values import (
    MemoryStore,
    QueryError,
    Store,
    body,
    index_keys,
    lookup_keys,
    matches,
    policy_type,
    resolve,
)

KNOWN_TYPES = frozenset({
    "master", "operator", "query", "publisher", "cluster", "table", "mapping", "config", "distribution",
    "anmp", "schedule", "monitor", "policy", "transform", "security", "member", "permissions", "user", "uns",
})

# --- evaluation -----------------------------------------------------------------------------


def check_types(query: Query, store: Store) -> None:
    """A type that is neither known nor in the ledger is most likely a typo: say so."""
    if query.types is None:
        return
    present = set(store.types())
    unknown = [t for t in query.types if t not in present and t not in KNOWN_TYPES]
    if unknown:
        listed = ", ".join(sorted(present | KNOWN_TYPES))
        raise QueryError(f"unknown policy type {', '.join(repr(u) for u in unknown)}: no such policy in the ledger "
                         f"and not a standard type (types: {listed})")


def select(query: Query, store: Store, outer: dict | None = None) -> list[dict]:
    """The policies the type and where clause select, in ledger order (`outer`: the left record
    of a join, whose attributes `[type][attr]` values name)."""
    ctx = Context(store, outer)
    candidates: Sequence[dict] | None = None
    if query.types is not None and len(query.types) == 1 and query.equalities:
        ptype = query.types[0]
        for test in query.equalities:
            path = test.path
            if len(path) == 2 and path[0] in (ptype, "*"):
                path = path[1:]
            if len(path) == 1:
                found = store.equal(ptype, path[0], test.value)
                if found is not None:
                    candidates = found if candidates is None or len(found) < len(candidates) else candidates
    if candidates is None:
        if query.types is None:
            candidates = store.all()
        elif len(query.types) == 1:
            candidates = store.of_type(query.types[0])
        else:
            wanted = set(query.types)
            candidates = [p for p in store.all() if policy_type(p) in wanted]
    if query.where is None:
        return list(candidates)
    where = query.where
    return [p for p in candidates if where(p, ctx)]


def evaluate(query: Query, store: Store) -> Outcome:
    check_types(query, store)
    policies = select(query, store)
    for kind, side in query.joins:
        check_types(side, store)
        policies = join(kind, policies, side, store)
    if query.bring is None:
        return Outcome("json", policies)
    return apply_bring(query.bring, policies, store)


def join(kind: str, left: list[dict], side: Query, store: Store) -> list[dict]:
    """`join`: one record holding both policies per match, left records without a match dropped
    (an inner join).  `merge`: the matches' attributes added to the left policy where it has none
    (a left join: a left policy without a match stays as it is)."""
    out: list[dict] = []
    for record in left:
        matched = select(side, store, outer=record)
        if kind == "join":
            out.extend({**record, **m} for m in matched)
            continue
        if not matched:
            out.append(record)
            continue
        ptype = policy_type(record)
        merged = dict(record[ptype])
        for m in matched:
            for key, value in body(m).items():
                merged.setdefault(key, value)
        out.append({ptype: merged, **{k: v for k, v in record.items() if k != ptype}})
    return out


def run_query(text: str, store: Store) -> Outcome:
    """Parse and evaluate in one call."""
    return evaluate(parse_query(text), store)


__all__ = ["parse_query", "evaluate", "run_query", "select", "MemoryStore", "Outcome", "Query", "QueryError",
           "resolve", "matches", "index_keys", "lookup_keys", "policy_type", "body", "KNOWN_TYPES"]

