"""Split a user's SELECT into the operators' query and the query node's merge query.

Every operator holds a part of the rows, so an aggregate must be returned in a form that can be
combined: `count` as counts to add, `avg` as a sum and a count (never an average of averages),
`range` as a min and a max, `count(distinct x)` as the distinct values of x (x joins the
operators' GROUP BY).  The merge query recomputes the user's projection over those partial columns,
grouped by the same keys.  A LIMIT is sent to the operators only where the top rows of each part
are sure to contain the top rows of the whole; otherwise each operator returns all its groups.
Anything that cannot be combined exactly (other aggregates, windows, joins, sub-queries) is refused
with the reason, never answered approximately.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from anylog_tw.query import statement as stmt
from anylog_tw.query import timeexpr, timeseries
from anylog_tw.query.errors import QueryError, Unmergeable
from anylog_tw.query.plan import Extend, Plan, placeholder_table
from anylog_tw.query.split import Split, _Builder, _check_refused, _is_aggregate, _Item, _unalias


def plan_query(text: str, now: datetime.datetime, columns: dict[str, str] | None = None,
               extend: tuple[Extend, ...] = ()) -> Plan:
    """The plan of one SELECT.  `columns` (name -> logical type, from the table policy) expands
    `*` and types the merge table; `now` resolves time expressions; `extend` titles lead.

    Plans are pure functions of the resolved text, so the same statement asked again (a
    dashboard's query) is planned once: the cache is keyed by the text after time expressions
    are resolved, except for the optimized increments, whose buckets depend on `now`."""
    return plan_prepared(text, stmt.prepare(text, now), now, columns, extend)


def plan_prepared(text: str, prepared: stmt.Prepared, now: datetime.datetime, columns: dict[str, str] | None = None,
                  extend: tuple[Extend, ...] = ()) -> Plan:
    """`plan_query` for a statement already taken through `statement.prepare`."""
    key = (prepared.sql, tuple(prepared.items), tuple(prepared.casts), prepared.per,
           tuple(sorted((columns or {}).items())), tuple(extend))
    if "increments" in prepared.sql.lower():
        return _plan(text, now, columns, extend, prepared)
    plan = _CACHE.get(key)
    if plan is None:
        plan = _CACHE[key] = _plan(text, now, columns, extend, prepared)
        while len(_CACHE) > 256:
            _CACHE.pop(next(iter(_CACHE)))
    return plan if plan.statement == text else dataclasses.replace(plan, statement=text)


_CACHE: dict = {}


def _plan(text: str, now: datetime.datetime, columns: dict[str, str] | None, extend: tuple[Extend, ...],
          prepared: stmt.Prepared) -> Plan:
    try:
        tree = sqlglot.parse_one(prepared.sql, read="sqlite")
    except sqlglot.errors.SqlglotError as e:
        raise QueryError(f"SQL Failure: {e}") from None
    if not isinstance(tree, exp.Select):
        raise QueryError("a network query must be one SELECT statement")
    tree = normalize_identifiers(tree, dialect="sqlite")
    table = _single_table(tree)
    for key in ("with_", "joins", "laterals", "windows", "qualify", "into", "connect", "pivots"):
        if tree.args.get(key):
            raise Unmergeable(f"'{key.rstrip('_')}' is not supported in a network query (one table, no joins)")
    _check_refused(tree)
    for col in tree.find_all(exp.Column):
        if col.table:
            if col.table != table:
                raise QueryError(f"column '{col.sql()}' names another table than '{table}'")
            col.set("table", None)
    builder = _Builder(types=dict(columns or {}))
    items = _items(tree, prepared, columns)
    titles = [e.title for e in extend] + [i.title for i in items if not _is_increments(i.expr)]
    dup = sorted({t for t in titles if titles.count(t) > 1})
    if dup:
        raise QueryError(f"duplicate column title {', '.join(repr(d) for d in dup)} (give each an alias)")
    where = tree.args.get("where")
    period = _period(where)
    inc_calls = [i for i in items if isinstance(i.expr, exp.Anonymous)
                 and i.expr.name.lower() == "increments"]
    for node in tree.find_all(exp.Anonymous):
        if node.name.lower() == "increments" and not any(node is i.expr for i in inc_calls):
            raise QueryError("increments(...) must be a column of the projection by itself")
        if node.name.lower() == "period" and (period is None or node is not period.node):
            raise QueryError("period(...) must be a condition of the WHERE clause joined by AND")
    if len(inc_calls) > 1:
        raise QueryError("only one increments(...) per query")
    if inc_calls and period is not None:
        raise QueryError("increments and period cannot be combined in one query")
    buckets = timeseries.increments(inc_calls[0].expr, where, now) if inc_calls else None
    original = items
    items = [i for i in items if not any(i is c for c in inc_calls)]
    if where is not None:
        _normalise_times(where, builder.types)
    limit, offset = _limit(tree)
    if offset and prepared.per:
        raise QueryError("'limit N per column' cannot be combined with OFFSET")
    star = any(isinstance(i.expr, exp.Star) for i in items)
    grouped = bool(tree.args.get("group")) or buckets is not None or any(
        _is_aggregate(n) for i in items for n in i.expr.walk()) or tree.args.get("having") is not None
    distinct = bool(tree.args.get("distinct"))
    if isinstance(tree.args.get("distinct"), exp.Distinct) and tree.args["distinct"].args.get("on"):
        raise Unmergeable("DISTINCT ON is not supported in a network query")
    order = tree.args.get("order")
    ctx = Split(tree, original, items, builder, extend, where, buckets, limit, offset, prepared.per, distinct)
    if grouped:
        if star:
            raise QueryError("'*' cannot be combined with aggregates or GROUP BY")
        local = ctx.grouped()
    elif not distinct and order is None and not prepared.per and not offset:
        local = None  # pass-through
        ctx.rows_pass_through()
    else:
        if star:
            raise QueryError(f"'select *' with ORDER BY, DISTINCT or 'per' needs the table's columns "
                             f"(the table policy of '{table}')")
        local = ctx.rows()
    return Plan(statement=text, table=table, remote=ctx.remote_select(), remote_columns=[
        n for n, _, _ in builder.remote], remote_types=[t for _, _, t in builder.remote],
        titles=None if star else [i.title for i in items], casts=[i.casts for i in items], extend=extend,
        local=local, limit=limit, period=period, increments=buckets,
        time_columns=[_is_time(i.expr, builder.types) for i in items])


def _is_time(e: exp.Expression, types: dict[str, str]) -> bool:
    """A projected stored time (the column, or its min/max): rendered in the query's zone."""
    if isinstance(e, (exp.Min, exp.Max)):
        e = e.this
    return isinstance(e, exp.Column) and types.get(e.name) == "timestamp"


def _is_increments(e: exp.Expression) -> bool:
    return isinstance(e, exp.Anonymous) and e.name.lower() == "increments"


def _single_table(tree: exp.Select) -> str:
    frm = tree.args.get("from_") or tree.args.get("from")
    if frm is None:
        raise QueryError("a network query needs FROM <table>")
    t = frm.this
    if not isinstance(t, exp.Table) or not isinstance(t.this, exp.Identifier):
        raise Unmergeable("a network query reads one table (no sub-query or function in FROM)")
    if t.args.get("db") or t.args.get("catalog"):
        raise QueryError(f"write the table without its dbms: '{t.name}' (the dbms is the sql command's)")
    frm.set("this", placeholder_table())
    return t.name


def _items(tree: exp.Select, prepared: stmt.Prepared, columns) -> list[_Item]:
    exprs = tree.expressions
    if len(exprs) != len(prepared.items):
        raise QueryError("SQL Failure: the projection could not be read")
    out: list[_Item] = []
    for e, written, casts in zip(exprs, prepared.items, prepared.casts):
        inner = _unalias(e)
        alias = e.alias if isinstance(e, exp.Alias) else None
        if isinstance(inner, exp.Star) and columns:
            if casts:
                raise QueryError("casts cannot follow '*'")
            out += [_Item(exp.column(c), c, None, ()) for c in columns]
            continue
        out.append(_Item(inner, alias or written, alias, casts))
    return out


def _period(where) -> timeseries.Period | None:
    calls = [n for n in (where.find_all(exp.Anonymous) if where is not None else ())
             if n.name.lower() == "period"]
    if not calls:
        return None
    if len(calls) > 1:
        raise QueryError("only one period(...) per query")
    if not any(c is calls[0] for c in timeseries.conjuncts(where)):
        raise QueryError("period(...) must be a condition of the WHERE clause joined by AND")
    return timeseries.period(calls[0])


def _normalise_times(where: exp.Expression, types: dict[str, str]) -> None:
    """`ts >= '2024-07-19T18:57:46.909Z'` -> the storage's text form, so SQLite compares right."""
    for lit in where.find_all(exp.Literal):
        if not lit.is_string or len(lit.this) < 16 or lit.this[4:5] != "-":
            continue
        cmp = lit.parent
        other = None
        if isinstance(cmp, (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.EQ, exp.NEQ)):
            other = cmp.expression if cmp.this is lit else cmp.this
        elif isinstance(cmp, exp.Between):
            other = cmp.this
        if not isinstance(other, exp.Column):
            continue
        typ = types.get(other.name)
        if typ == "timestamp" or (typ is None and ("T" in lit.this[10:11] or lit.this.endswith("Z"))):
            try:
                lit.replace(exp.Literal.string(timeexpr.format_literal(timeexpr.parse_instant(lit.this))))
            except QueryError:
                pass


def _limit(tree: exp.Select) -> tuple[int | None, int]:
    def number(node, what):
        e = node.expression if node is not None else None
        if e is None:
            return None
        if isinstance(e, exp.Literal) and not e.is_string and e.this.isdigit():
            return int(e.this)
        raise QueryError(f"{what} must be a non-negative integer, not '{e.sql()}'")

    return number(tree.args.get("limit"), "LIMIT"), number(tree.args.get("offset"), "OFFSET") or 0



def table_of(text: str, now: datetime.datetime) -> str:
    """The table a SELECT reads (before its table policy is looked up)."""
    return _table_of(stmt.prepare(text, now).sql)


def table_of_prepared(prepared: stmt.Prepared) -> str:
    return _table_of(prepared.sql)


@functools.lru_cache(maxsize=256)
def _table_of(sql: str) -> str:
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except sqlglot.errors.SqlglotError as e:
        raise QueryError(f"SQL Failure: {e}") from None
    if not isinstance(tree, exp.Select):
        raise QueryError("a network query must be one SELECT statement")
    return _single_table(normalize_identifiers(tree, dialect="sqlite"))


def force_merge(plan: Plan) -> Plan:
    """`pass_through = false`: rows go through the merge table even with nothing to merge."""
    if plan.titles is None:
        raise QueryError("pass_through = false with 'select *' needs the table's columns (its table policy)")
    cols = [exp.column(f"extend_{i + 1}", quoted=True) for i in range(len(plan.extend))]
    cols += [exp.column(n, quoted=True) for n in plan.remote_columns]
    local = exp.select(*[c.as_(t, quoted=True) for c, t in zip(cols, plan.output_titles())]).from_(
        placeholder_table())
    if plan.limit is not None:
        local = local.limit(plan.limit)
    return dataclasses.replace(plan, local=local, _written={})
