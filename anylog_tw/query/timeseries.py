"""`increments(...)` buckets and `period(...)` windows: AnyLog's two time-series functions.

Increments: a row's bucket is the pair (its time truncated to the next larger unit, the unit's
number divided by the interval), so `minute, 5` buckets :00-:04, :05-:09 ... inside each hour.
The keys are written with SQLite's `strftime` in the portable query; sqlglot turns them into
`TO_CHAR` for PostgreSQL, and both give the same text and integers, so replies from operators on
different engines land in the same buckets.  Buckets are in UTC, the zone the data is stored in.

Period: the window of `count` units that ends at the latest time <= `date_time` that exists
(among the rows passing the filter): a leading `max()` query finds that time, then the window
becomes two plain comparisons in the operators' WHERE.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from sqlglot import exp

from anylog_tw.query import timeexpr
from anylog_tw.query.errors import QueryError

# unit -> (strftime of the truncation to the next larger unit, strftime of the unit's number)
_KEYS = {
    "second": ("%Y-%m-%d %H:%M", "%S"),
    "minute": ("%Y-%m-%d %H", "%M"),
    "hour": ("%Y-%m-%d", "%H"),
    "day": ("%Y-%m", "%d"),
    "month": ("%Y", "%m"),
    "year": (None, "%Y"),
}
# for the optimized form: the largest unit not above the wanted interval
_SPANS = (("year", 365.25 * 86400), ("month", 30.44 * 86400), ("week", 7 * 86400), ("day", 86400),
          ("hour", 3600), ("minute", 60), ("second", 1))
DEFAULT_POINTS = 1000


@dataclass(frozen=True)
class Buckets:
    unit: str       # canonical unit (week is kept: it is 7 days)
    count: int
    column: exp.Column

    def key_expressions(self) -> list[tuple[str, exp.Expression]]:
        """[(kind, SQLite expression)]: the truncation (none for year), then the number."""
        unit, count = ("day", self.count * 7) if self.unit == "week" else (self.unit, self.count)
        trunc, part = _KEYS[unit]
        col = self.column.sql(dialect="sqlite", identify=True)
        out = []
        if trunc is not None:
            out.append(("trunc", _parse(f"strftime('{trunc}', {col})")))
        out.append(("extract", _parse(f"CAST(strftime('{part}', {col}) AS INTEGER) / {count}")))
        return out


def _parse(sql: str) -> exp.Expression:
    import sqlglot

    return sqlglot.parse_one(sql, read="sqlite")


def bucket_key(unit: str, count: int, value: datetime.datetime) -> tuple:
    """The bucket of one time, computed in Python (what the SQL keys must agree with)."""
    unit, count = ("day", count * 7) if unit == "week" else (unit, count)
    trunc, part = _KEYS[unit]
    number = int(value.strftime(part)) // count
    return (number,) if trunc is None else (value.strftime(trunc), number)


def _unit_arg(node: exp.Expression, what: str) -> str:
    word = node.name if isinstance(node, (exp.Column, exp.Var, exp.Identifier)) else (
        node.this if isinstance(node, exp.Literal) and node.is_string else "")
    unit = timeexpr.unit_name(str(word), letters=False)
    if unit is None:
        raise QueryError(f"{what}: '{node.sql()}' is not a time unit (second, minute, hour, day, week, "
                         f"month or year)")
    return unit


def _positive_int(node: exp.Expression, what: str) -> int:
    if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit() and int(node.this) > 0:
        return int(node.this)
    raise QueryError(f"{what}: '{node.sql()}' must be a positive integer")


def increments(call: exp.Anonymous, where: exp.Expression | None, now: datetime.datetime) -> Buckets:
    """`increments(unit, n, col)`, or the optimized `increments(col[, N])` / `increments(N, col)`."""
    args = call.expressions
    if len(args) == 3:
        unit = _unit_arg(args[0], "increments")
        count = _positive_int(args[1], "increments")
        if not isinstance(args[2], exp.Column):
            raise QueryError(f"increments: the third argument '{args[2].sql()}' must be the time column")
        return Buckets(unit, count, args[2])
    if len(args) not in (1, 2):
        raise QueryError("increments takes (unit, interval, time column), (time column) or "
                         "(time column, number of points)")
    columns = [a for a in args if isinstance(a, exp.Column)]
    numbers = [a for a in args if not isinstance(a, exp.Column)]
    if len(columns) != 1:
        raise QueryError("increments(...): name the time column once")
    points = _positive_int(numbers[0], "increments points") if numbers else DEFAULT_POINTS
    low, high = time_range(where, columns[0].name)
    if low is None:
        raise QueryError(f"Missing or wrong where condition in an increment query: increments"
                         f"({columns[0].name}) needs '{columns[0].name} >= <start>' in the WHERE clause")
    high = high or now.replace(tzinfo=None)
    unit, count = choose_interval((high - low).total_seconds(), points)
    return Buckets(unit, count, columns[0])


def choose_interval(span_seconds: float, points: int) -> tuple[str, int]:
    """For about `points` buckets over the span: the largest unit not above span/points, and
    the rounded count of it (at least one second)."""
    interval = max(span_seconds / points, 1.0)
    for unit, seconds in _SPANS:
        if seconds <= interval:
            return unit, max(1, round(interval / seconds))
    return "second", 1


def time_range(where: exp.Expression | None, column: str) -> tuple[datetime.datetime | None,
                                                                   datetime.datetime | None]:
    """The literal bounds of `column` among the top-level AND conditions of WHERE."""
    low = high = None
    for cond in conjuncts(where):
        if isinstance(cond, exp.Between) and _is_col(cond.this, column):
            low = _instant(cond.args.get("low")) or low
            high = _instant(cond.args.get("high")) or high
            continue
        if not isinstance(cond, (exp.GT, exp.GTE, exp.LT, exp.LTE)):
            continue
        left, right = cond.this, cond.expression
        lower = isinstance(cond, (exp.GT, exp.GTE))
        if _is_col(right, column):
            left, right, lower = right, left, not lower
        if _is_col(left, column) and _instant(right) is not None:
            if lower:
                low = _instant(right)
            else:
                high = _instant(right)
    return low, high


def conjuncts(where: exp.Expression | None) -> list[exp.Expression]:
    if where is None:
        return []
    node = where.this if isinstance(where, exp.Where) else where
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return conjuncts(node.this) + conjuncts(node.expression)
    return [node]


def _is_col(node, column: str) -> bool:
    return isinstance(node, exp.Column) and node.name == column


def _instant(node) -> datetime.datetime | None:
    if isinstance(node, exp.Literal) and node.is_string:
        try:
            return timeexpr.parse_instant(node.this)
        except QueryError:
            return None
    return None


# --- period ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    unit: str
    count: int
    date_time: str            # the upper bound the user gave, as a storage literal
    column: exp.Column
    filter: exp.Expression | None
    node: exp.Anonymous       # the call inside the statement, replaced once the end is known

    def leading(self, table: str) -> exp.Select:
        """`select max(col) from t where col <= date_time [and filter]`: the window's end."""
        cond = exp.LTE(this=self.column.copy(), expression=exp.Literal.string(self.date_time))
        if self.filter is not None:
            cond = exp.And(this=cond, expression=exp.Paren(this=self.filter.copy()))
        return exp.select(exp.Max(this=self.column.copy()).as_("period_end")).from_(
            exp.to_table(table, quoted=True)).where(cond)

    def window(self, end: str) -> exp.Expression:
        """`col > end - count*unit and col <= end [and filter]`."""
        end_at = timeexpr.parse_instant(end)
        start_at = timeexpr.shift(end_at, -self.count, self.unit)
        cond = exp.And(this=exp.GT(this=self.column.copy(), expression=exp.Literal.string(
            timeexpr.format_literal(start_at))), expression=exp.LTE(
            this=self.column.copy(), expression=exp.Literal.string(timeexpr.format_literal(end_at))))
        if self.filter is not None:
            cond = exp.And(this=cond, expression=exp.Paren(this=self.filter.copy()))
        return exp.Paren(this=cond)


def period(call: exp.Anonymous) -> Period:
    args = call.expressions
    if len(args) not in (4, 5):
        raise QueryError("period takes (unit, count, date_time, time column [, and <filter>])")
    unit = _unit_arg(args[0], "period")
    count = _positive_int(args[1], "period")
    if not (isinstance(args[2], exp.Literal) and args[2].is_string):
        raise QueryError(f"period: the date_time '{args[2].sql()}' must be now() or a quoted date-time")
    date_time = timeexpr.format_literal(timeexpr.parse_instant(args[2].this))
    if not isinstance(args[3], exp.Column):
        raise QueryError(f"period: the fourth argument '{args[3].sql()}' must be the time column")
    flt = args[4] if len(args) == 5 else None
    while isinstance(flt, exp.Paren):
        flt = flt.this
    return Period(unit, count, date_time, args[3], flt, call)


def latest(values) -> str | None:
    """The greatest of the operators' `max(col)` answers (None: no operator has data)."""
    best = None
    for v in values:
        if v is None:
            continue
        t = timeexpr.parse_instant(str(v))
        best = t if best is None or t > best else best
    return None if best is None else timeexpr.format_literal(best)
