"""Grafana's JSON data source, the pure half: a panel's target becomes statements, rows become Grafana's shapes.

Grafana sends, per panel, a time range, an interval, `maxDataPoints` and a list of targets; each
target names a table (`dbms.table` or `table`) and carries AnyLog's payload (`type`, `dbms`,
`table`, `sql`, `where`, `functions`, `time_column`, `value_column`, `interval`, `servers`,
`include`, `extend`, `limit`, ...; the reference is anylog-query-spec.md §10).  Here:

* `read_target` checks a target and its payload and fills the defaults (one `Target`);
* `choose_increment` picks the bucket (unit, count) from the panel's interval and maxDataPoints;
* `local_statements` writes the SQL for this node's own engine (SQLite or PostgreSQL: the
  bucket is an expression of that engine), `network_statement` writes AnyLog's form
  (`increments(...)`, `period(...)`) for `run client () sql`, where each operator translates it;
* `timeseries` and `table` turn rows into Grafana's replies.

User SQL (the `sql` key) is parsed with sqlglot to add the time range and a limit, never edited
as text.  Names (dbms, table, columns) must pass the node's name rule and are always quoted.
"""

from __future__ import annotations

import calendar
import datetime
import re
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

from anylog_tw.base.errors import AnyLogError
from anylog_tw.base.names import is_name
from anylog_tw.storage.schema import format_timestamp, parse_timestamp

KINDS = ("increments", "period", "info", "aggregations", "sql")
FUNCTIONS = ("min", "max", "avg", "count", "range")
DEFAULT_FUNCTIONS = ("min", "max", "avg")
UNITS = (("year", 365.25 * 86400), ("month", 30.44 * 86400), ("week", 7 * 86400.0), ("day", 86400.0),
         ("hour", 3600.0), ("minute", 60.0), ("second", 1.0))
_UNIT_SECONDS = dict(UNITS)
_UNIT_ALIASES = {"s": "second", "sec": "second", "m": "minute", "min": "minute", "h": "hour", "d": "day",
                 "w": "week", "y": "year", "mon": "month"}
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+?)s?\s*$", re.I)
DEFAULT_POINTS = 1000


class GrafanaError(AnyLogError):
    """A target or a request Grafana sent cannot be answered as asked."""

    code = "grafana"


@dataclass
class Target:
    """One panel target, checked, with AnyLog's defaults filled in."""

    ref: str
    name: str  # the `target` as Grafana shows it
    kind: str
    fmt: str  # "timeseries" or "table"
    dbms: str = ""
    table: str = ""
    sql: str = ""
    details: str = ""
    where: str = ""
    functions: tuple[str, ...] = DEFAULT_FUNCTIONS
    time_column: str = "timestamp"
    value_columns: tuple[str, ...] = ("value",)
    interval: str = ""
    servers: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)
    extend: list[str] = field(default_factory=list)
    limit: int | None = None
    time_range: bool = True


def _as_list(value: Any, key: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v).strip() for v in value if str(v).strip()]
    raise GrafanaError(f"payload '{key}' must be a list of strings or one comma-separated string")


def _name(value: str, what: str) -> str:
    value = value.strip().lower()
    if not is_name(value):
        raise GrafanaError(f"{what} {value[:64]!r} is not a valid name (letters, digits and '_', starting with a "
                           f"letter or '_')")
    return value


def payload_of(target: dict) -> dict:
    """The target's payload: `payload` (JSON data source) or `data` (older simple-json), object or JSON text."""
    import orjson

    raw = target.get("payload", target.get("data"))
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise GrafanaError(f"the payload is not JSON: {e}") from None
    if not isinstance(raw, dict):
        raise GrafanaError("the payload must be a JSON object, e.g. {\"type\": \"increments\"}")
    return {str(k).lower(): v for k, v in raw.items()}


def read_target(target: dict, default_dbms: str = "") -> Target:
    """A Grafana target as a `Target`; raises GrafanaError naming what is wrong."""
    if not isinstance(target, dict):
        raise GrafanaError("each target must be a JSON object")
    payload = payload_of(target)
    name = str(target.get("target") or "")
    ref = str(target.get("refId") or "")
    kind = str(payload.get("type") or "").strip().lower()
    if not kind:
        kind = "sql" if payload.get("sql") else "increments"
    if kind == "map":
        raise GrafanaError("type 'map' (a geomap of the nodes) is not supported here; use increments, period, "
                           "info or aggregations")
    if kind not in KINDS:
        raise GrafanaError(f"payload type {kind!r} is not one of increments, period, info, aggregations")
    grafana = payload.get("grafana") if isinstance(payload.get("grafana"), dict) else {}
    fmt = str(grafana.get("format_as") or target.get("type") or target.get("format") or "").lower()
    fmt = "table" if fmt == "table" or (not fmt and kind == "info") else "timeseries"
    t = Target(ref=ref, name=name, kind=kind, fmt=fmt)
    if kind == "info":
        t.details = str(payload.get("details") or payload.get("command") or "").strip()
        if not t.details:
            raise GrafanaError("type 'info' needs 'details': the command to show, e.g. \"get status\"")
        return t
    dbms, table = str(payload.get("dbms") or "").strip(), str(payload.get("table") or "").strip()
    if name and not table:
        first, dot, second = name.partition(".")
        table = second if dot else first
        dbms = dbms or (first if dot else "")
    dbms = dbms or default_dbms
    if not dbms:
        raise GrafanaError("no dbms: name it in the target (dbms.table), in the payload ('dbms'), or in the data "
                           "source's custom header al.dbms.<name>")
    t.dbms = _name(dbms, "dbms")
    t.sql = str(payload.get("sql") or "").strip()
    if not table and not t.sql:
        raise GrafanaError("no table: choose a metric (dbms.table) or give 'table' in the payload")
    t.table = _name(table, "table") if table else ""
    t.where = str(payload.get("where") or "").strip()
    functions = _as_list(payload.get("functions"), "functions")
    bad = [f for f in functions if f.lower() not in FUNCTIONS]
    if bad:
        raise GrafanaError(f"functions {', '.join(bad)} are not among {', '.join(FUNCTIONS)}")
    t.functions = tuple(dict.fromkeys(f.lower() for f in functions)) or DEFAULT_FUNCTIONS
    t.time_column = _name(str(payload.get("time_column") or "timestamp"), "time_column")
    values = _as_list(payload.get("value_column"), "value_column") or ["value"]
    t.value_columns = tuple(_name(v, "value_column") for v in values)
    t.interval = str(payload.get("interval") or "").strip().lower()
    t.servers = _as_list(payload.get("servers"), "servers")
    t.include = _as_list(payload.get("include"), "include")
    t.extend = _as_list(payload.get("extend"), "extend")
    limit = payload.get("limit")
    if limit not in (None, ""):
        try:
            t.limit = int(limit)
        except (TypeError, ValueError):
            raise GrafanaError(f"payload 'limit' must be a whole number, not {limit!r}") from None
        if t.limit <= 0:
            raise GrafanaError("payload 'limit' must be more than 0")
    t.time_range = payload.get("time_range", True) not in (False, "false", "False", 0)
    return t


# --- time ---------------------------------------------------------------------------------------


def parse_time(text: Any, what: str) -> datetime.datetime:
    """Grafana's ISO time (`2016-10-31T06:33:44.866Z`) as a naive UTC datetime."""
    parsed = parse_timestamp(str(text)) if text is not None else None
    if parsed is None:
        raise GrafanaError(f"range.{what} is {text!r}: Grafana sends ISO times like 2024-01-31T06:33:44.866Z")
    return parsed


def epoch_ms(value: Any) -> float | None:
    """A timestamp cell (text as the node stores it, or a datetime) as epoch milliseconds."""
    if isinstance(value, datetime.datetime):
        parsed = value if value.tzinfo is None else value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    elif isinstance(value, str):
        parsed = parse_timestamp(value)
        if parsed is None:
            return None
    else:
        return None
    return calendar.timegm(parsed.timetuple()) * 1000 + parsed.microsecond // 1000


def parse_interval(text: str) -> tuple[str, int] | None:
    """`5 minutes`, `1 hour`, `30s` -> (unit, count); None for empty, `dashboard` or `optimize`."""
    if not text or text in ("dashboard", "optimize"):
        return None
    m = _INTERVAL.match(text)
    if m is None:
        raise GrafanaError(f"interval {text!r}: write 'N unit' (e.g. '5 minutes'), 'dashboard' or 'optimize'")
    count, unit = float(m.group(1)), m.group(2).lower()
    unit = _UNIT_ALIASES.get(unit, unit)
    if unit not in _UNIT_SECONDS or count <= 0 or count != int(count):
        raise GrafanaError(f"interval {text!r}: the unit is one of second, minute, hour, day, week, month, year "
                           f"and the count a whole number")
    return unit, int(count)


def choose_increment(span: float, interval_ms: float | None, max_points: int | None,
                     mode: str = "") -> tuple[str, int]:
    """The bucket for a panel: (unit, count).

    `optimize` spreads the range over maxDataPoints buckets; `dashboard` follows the panel's
    interval; by default, the panel's interval but never more buckets than maxDataPoints.  The
    unit is the largest whose length fits the step, the count the step in that unit, rounded.
    """
    points = max(1, max_points or DEFAULT_POINTS)
    by_points = span / points
    by_interval = (interval_ms or 0) / 1000.0
    step = {"optimize": by_points, "dashboard": by_interval or by_points}.get(mode, max(by_points, by_interval))
    step = max(step, 1.0)
    for unit, seconds in UNITS:
        if seconds <= step:
            return unit, max(1, round(step / seconds))
    return "second", 1


# --- statements ---------------------------------------------------------------------------------


def _q(name: str) -> str:
    return f'"{name}"'


def _literal(value: datetime.datetime) -> str:
    return "'" + format_timestamp(value) + "'"


def _projection(t: Target) -> list[tuple[str, str]]:
    """(alias, SQL expression) of every requested function of every value column."""
    out = [("timestamp", f"max({_q(t.time_column)})")]
    for col in t.value_columns:
        for fn in t.functions:
            expr = f"max({_q(col)}) - min({_q(col)})" if fn == "range" else f"{fn}({_q(col)})"
            out.append((f"{fn}__{col}", expr))
    return out


def bucket_expression(engine: str, unit: str, count: int, column: str) -> str:
    """The bucket number of a row, in the node's engine (months and years follow the calendar)."""
    c = _q(column)
    if engine == "psql":
        if unit == "month":
            return f"floor((extract(year from {c}) * 12 + extract(month from {c}) - 1) / {count})"
        if unit == "year":
            return f"floor(extract(year from {c}) / {count})"
        return f"floor(extract(epoch from {c}) / {int(_UNIT_SECONDS[unit] * count)})"
    if unit == "month":
        return f"((CAST(strftime('%Y', {c}) AS INTEGER) * 12 + CAST(strftime('%m', {c}) AS INTEGER) - 1) / {count})"
    if unit == "year":
        return f"(CAST(strftime('%Y', {c}) AS INTEGER) / {count})"
    return f"(CAST(strftime('%s', {c}) AS INTEGER) / {int(_UNIT_SECONDS[unit] * count)})"


def _range_condition(t: Target, start: datetime.datetime, end: datetime.datetime) -> str:
    c = _q(t.time_column)
    cond = f"{c} >= {_literal(start)} AND {c} <= {_literal(end)}"
    return cond + (f" AND ({t.where})" if t.where else "")


def _select(t: Target, condition: str, tail: str = "") -> str:
    columns = ", ".join(f"{expr} AS {_q(alias)}" for alias, expr in _projection(t))
    return f"SELECT {columns} FROM {_q(t.table)} WHERE {condition}{tail}"


def period_window(t: Target, start: datetime.datetime, end: datetime.datetime) -> float:
    """The period's length in seconds: the payload's interval, else the dashboard's range."""
    fixed = parse_interval(t.interval)
    if fixed is not None:
        return _UNIT_SECONDS[fixed[0]] * fixed[1]
    return max(1.0, (end - start).total_seconds())


def local_statements(t: Target, engine: str, start: datetime.datetime, end: datetime.datetime,
                     interval_ms: float | None, max_points: int | None) -> str:
    """The statement for this node's engine (period has a second step: see `period_statement`)."""
    limit = t.limit or max_points or DEFAULT_POINTS
    if t.kind == "increments":
        fixed = parse_interval(t.interval)
        unit, count = fixed or choose_increment((end - start).total_seconds(), interval_ms, max_points, t.interval)
        bucket = bucket_expression(engine, unit, count, t.time_column)
        return _select(t, _range_condition(t, start, end), f" GROUP BY {bucket} ORDER BY {bucket} LIMIT {limit}")
    if t.kind == "aggregations":
        return _select(t, _range_condition(t, start, end))
    if t.kind == "period":
        c = _q(t.time_column)
        where = f" AND ({t.where})" if t.where else ""
        return f"SELECT max({c}) AS {_q('timestamp')} FROM {_q(t.table)} WHERE {c} <= {_literal(end)}{where}"
    if t.kind == "sql":
        return user_sql(t, engine, start, end, limit)
    raise GrafanaError(f"type {t.kind!r} has no SQL")


def period_statement(t: Target, last: datetime.datetime, window: float) -> str:
    """The period's main query once its end (the last reading at or before the range's end) is known."""
    c = _q(t.time_column)
    first = last - datetime.timedelta(seconds=window)
    where = f" AND ({t.where})" if t.where else ""
    return _select(t, f"{c} > {_literal(first)} AND {c} <= {_literal(last)}{where}")


def user_sql(t: Target, engine: str, start: datetime.datetime, end: datetime.datetime, limit: int) -> str:
    """The payload's own SQL with the dashboard's range added to its WHERE and a limit if it has none."""
    dialect = "postgres" if engine == "psql" else ("sqlite" if engine == "sqlite" else None)
    try:
        tree = sqlglot.parse_one(t.sql, read=dialect)
    except sqlglot.errors.ParseError as e:
        raise GrafanaError(f"the payload's sql does not parse: {str(e).splitlines()[0]}") from None
    if not isinstance(tree, exp.Select):
        raise GrafanaError("the payload's sql must be one SELECT statement")
    if t.time_range:
        tree = tree.where(f"{_q(t.time_column)} >= {_literal(start)} AND {_q(t.time_column)} <= {_literal(end)}",
                          dialect=dialect)
    if tree.args.get("limit") is None:
        tree = tree.limit(limit)
    return tree.sql(dialect=dialect)


def network_statement(t: Target, start: datetime.datetime, end: datetime.datetime, interval_ms: float | None,
                      max_points: int | None) -> str:
    """AnyLog's statement for `run client () sql`: increments(...) / period(...) as the spec writes them."""
    limit = t.limit or max_points or DEFAULT_POINTS
    if t.kind == "sql":
        return user_sql(t, "", start, end, limit)
    projection = ", ".join(f"{expr} AS {alias}" for alias, expr in _projection(t))
    c = t.time_column
    if t.kind == "increments":
        fixed = parse_interval(t.interval)
        unit, count = fixed or choose_increment((end - start).total_seconds(), interval_ms, max_points, t.interval)
        return (f"SELECT increments({unit}, {count}, {c}), {projection} FROM {t.table} WHERE "
                f"{c} >= '{format_timestamp(start)}' AND {c} <= '{format_timestamp(end)}'"
                f"{f' AND ({t.where})' if t.where else ''} LIMIT {limit}")
    if t.kind == "aggregations":
        return (f"SELECT {projection} FROM {t.table} WHERE {c} >= '{format_timestamp(start)}' AND "
                f"{c} <= '{format_timestamp(end)}'{f' AND ({t.where})' if t.where else ''}")
    if t.kind == "period":
        fixed = parse_interval(t.interval)
        unit, count = fixed or _period_unit(period_window(t, start, end))
        extra = f", and {t.where}" if t.where else ""
        return (f"SELECT {projection} FROM {t.table} WHERE period({unit}, {count}, '{format_timestamp(end)}', "
                f"{c}{extra})")
    raise GrafanaError(f"type {t.kind!r} has no SQL")


def _period_unit(window: float) -> tuple[str, int]:
    for unit, seconds in UNITS:
        if seconds <= window and window % seconds == 0:
            return unit, int(window // seconds)
    return "second", max(1, int(window))


# --- replies ------------------------------------------------------------------------------------


def _label(t: Target, alias: str) -> str:
    fn, _, col = alias.partition("__")
    return f"{t.table or t.name} {fn}({col})"


def timeseries(t: Target, rows: list[dict]) -> list[dict]:
    """Rows with a `timestamp` and one column per function: one Grafana series per function and column."""
    if t.kind == "sql":
        return _sql_timeseries(t, rows)
    aliases = [alias for alias, _ in _projection(t)][1:]
    points = sorted(((epoch_ms(r.get("timestamp")), r) for r in rows), key=lambda p: (p[0] is None, p[0]))
    return [{"target": _label(t, alias), "refId": t.ref,
             "datapoints": [[r.get(alias), ms] for ms, r in points if ms is not None]} for alias in aliases]


def _sql_timeseries(t: Target, rows: list[dict]) -> list[dict]:
    if not rows:
        return []
    columns = list(rows[0])
    time_col = t.time_column if t.time_column in columns else next(
        (c for c in columns if all(epoch_ms(r.get(c)) is not None for r in rows if r.get(c) is not None)), None)
    if time_col is None:
        raise GrafanaError(f"the sql's rows have no time column (name it with time_column; columns: "
                           f"{', '.join(columns)})")
    wanted = [c for c in t.value_columns if c in columns] or [
        c for c in columns if c != time_col and all(isinstance(r.get(c), (int, float)) and not isinstance(
            r.get(c), bool) for r in rows if r.get(c) is not None)]
    points = sorted(((epoch_ms(r.get(time_col)), r) for r in rows), key=lambda p: (p[0] is None, p[0]))
    return [{"target": f"{t.table or t.name} {c}", "refId": t.ref,
             "datapoints": [[r.get(c), ms] for ms, r in points if ms is not None]} for c in wanted]


def _column_type(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "number"
    if present and all(epoch_ms(v) is not None for v in present):
        return "time"
    return "string"


def table(columns: list[str], rows: list[list], ref: str = "") -> dict:
    """Grafana's table shape; time columns become epoch milliseconds."""
    types = [_column_type([r[i] for r in rows]) for i in range(len(columns))]
    out_rows = [[epoch_ms(v) if types[i] == "time" and v is not None else v for i, v in enumerate(r)] for r in rows]
    out = {"type": "table", "columns": [{"text": c, "type": ty} for c, ty in zip(columns, types)], "rows": out_rows}
    if ref:
        out["refId"] = ref
    return out


def table_of_records(t: Target, rows: list[dict]) -> dict:
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    names = [(_label(t, c) if "__" in c and t.kind != "sql" else c) for c in columns]
    return table(names, [[r.get(c) for c in columns] for r in rows], t.ref)
