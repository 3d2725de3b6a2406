"""The merge of a global aggregate (`count(*)`, `sum`, `min`, `max`, `range`; no GROUP BY) in Python.

Such a merge is one row computed from a few partial values per operator; opening an in-memory
SQLite database, creating the merge table, inserting and selecting costs more than the rest of a
small network query on the query node.  The merge query's tree is compiled once per plan into
functions over the partial columns, for the forms `split.py` writes for these aggregates only.

The answer must be the one SQLite gives (the general merge, `merge.py`), so the fast path
declines — and the caller falls back to SQLite — whenever the values leave the cases where
Python and SQLite agree exactly: a SUM of anything but integers (SQLite's float summation order
and its integer-to-real switch), values of mixed kinds in one column (SQLite's cross-type
ordering and the INTEGER affinity of count columns), NaN, booleans, and integer results past
64 bits (where SQLite raises or turns to a real).
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from sqlglot import exp

from anylog_tw.query.plan import Plan

_INT64 = (-(2**63), 2**63 - 1)
_DECLINE = object()   # a value the fast path cannot compute exactly: use SQLite
_NOT_COMPILED = object()

Columns = list  # one list of values per merge column (extend columns first)
Evaluator = Callable[[Columns], object]


def compile_plan(plan: Plan) -> list[Evaluator] | None:
    """Evaluators of the merge projection, or None when the merge query is not a plain global
    aggregate of the supported forms (remembered on the plan)."""
    cached = plan._written.get("fast", _NOT_COMPILED)
    if cached is not _NOT_COMPILED:
        return cached
    result = _compile(plan)
    plan._written["fast"] = result
    return result


def _compile(plan: Plan) -> list[Evaluator] | None:
    local = plan.local
    if local is None:
        return None
    for key, value in local.args.items():
        if key not in ("expressions", "from", "from_") and value:
            return None  # WHERE, GROUP BY, HAVING, ORDER BY, LIMIT, DISTINCT ...: SQLite
    index = {name: i for i, name in enumerate(plan.local_columns)}
    out = []
    for e in local.expressions:
        f = _expr(e.this if isinstance(e, exp.Alias) else e, index)
        if f is None:
            return None
        out.append(f)
    return out


def _column(e: exp.Expression, index: dict[str, int]) -> int | None:
    if isinstance(e, exp.Column) and not e.table and e.name in index:
        return index[e.name]
    return None


def _expr(e: exp.Expression, index: dict[str, int]) -> Evaluator | None:
    if isinstance(e, exp.Paren):
        return _expr(e.this, index)
    if isinstance(e, exp.Coalesce) and isinstance(e.this, exp.Sum) and len(e.expressions) == 1:
        default = e.expressions[0]
        inner = _expr(e.this, index)
        if inner is None or not (isinstance(default, exp.Literal) and not default.is_string
                                 and default.this.isdigit()):
            return None
        zero = int(default.this)
        return lambda cols: zero if (v := inner(cols)) is None else v
    if isinstance(e, (exp.Sum, exp.Min, exp.Max)) and not isinstance(e.this, exp.Distinct):
        i = _column(e.this, index)
        if i is None:
            return None
        if isinstance(e, exp.Sum):
            return lambda cols: _sum(cols[i])
        pick = min if isinstance(e, exp.Min) else max
        return lambda cols: _extreme(cols[i], pick)
    if isinstance(e, exp.Sub):
        left, right = _expr(e.this, index), _expr(e.expression, index)
        if left is None or right is None:
            return None
        return lambda cols: _minus(left(cols), right(cols))
    return None


def _kind(values: list) -> type | None:
    """int, float or str when every non-NULL value is of that one kind, NoneType when all are
    NULL, else None (mixed kinds, NaN, booleans, integers past 64 bits)."""
    kinds = {v.__class__ for v in values if v is not None}
    if not kinds:
        return type(None)
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    if kind is float and any(v != v for v in values if v is not None):
        return None  # NaN: SQLite stores it as NULL
    if kind is int and any(not _INT64[0] <= v <= _INT64[1] for v in values if v is not None):
        return None
    return kind if kind in (int, float, str) else None


def _sum(values: list):
    kind = _kind(values)
    if kind is type(None):
        return None
    if kind is not int:
        return _DECLINE
    total = sum(v for v in values if v is not None)
    return total if _INT64[0] <= total <= _INT64[1] else _DECLINE


def _extreme(values: list, pick):
    kind = _kind(values)
    if kind is None:
        return _DECLINE
    if kind is type(None):
        return None
    return pick(v for v in values if v is not None)


def _minus(a, b):
    if a is _DECLINE or b is _DECLINE:
        return _DECLINE
    if a is None or b is None:
        return None
    if a.__class__ is not b.__class__ or a.__class__ not in (int, float):
        return _DECLINE
    out = a - b
    if a.__class__ is int and not _INT64[0] <= out <= _INT64[1]:
        return _DECLINE
    return out


def merge(plan: Plan, replies: Iterable[tuple[Sequence, Sequence[Sequence]]]) -> tuple[list[str], list[tuple]] | None:
    """The merged answer of a global aggregate, or None: use the SQLite merge."""
    evaluators = compile_plan(plan)
    if evaluators is None:
        return None
    width = len(plan.remote_columns)
    columns: Columns = [[] for _ in plan.local_columns]
    for ext, rows in replies:
        if len(ext) != len(plan.extend):
            return None  # the SQLite merge says what is wrong
        for row in rows:
            if len(row) != width:
                return None
            for col, value in zip(columns, (*ext, *row)):
                col.append(value)
    types = [None] * len(plan.extend) + list(plan.remote_types)
    for col, typ in zip(columns, types):  # INTEGER affinity: SQLite would convert other values
        if typ == "integer" and _kind(col) not in (int, type(None)):
            return None
    values = tuple(f(columns) for f in evaluators)
    if any(v is _DECLINE for v in values):
        return None
    return plan.output_titles(), [values]
