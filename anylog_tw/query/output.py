"""A query's answer as the user sees it: output casts, time zone, and AnyLog's four shapes.

Casts (`::float(3)`, `::ljust(19)`, `::format(0:*>8s)`, `::timediff(now())`, `::function(...)`)
are formatting on the query node, applied to each row after the merge, left to right.
`function(...)` is a small expression over the row (`'On' if [min_val] > 10 else 'Off'`); it is
read with Python's `ast` and evaluated over a fixed set of node kinds, never with `eval`.
"""

from __future__ import annotations

import ast
import datetime
import json
import operator
import re
from typing import Any, Iterable, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from anylog_tw.query import timeexpr
from anylog_tw.query.errors import QueryError
from anylog_tw.query.statement import Cast

FORMATS = ("json", "table", "json:output", "json:list")
ZONE_ALIASES = {"pt": "America/Los_Angeles", "mt": "America/Denver", "ct": "America/Chicago",
                "et": "America/New_York", "utc": "UTC"}


def zone(name: str) -> datetime.tzinfo | None:
    """The zone of the `timezone` option; None for `local` (the query node's own zone)."""
    key = name.strip().lower()
    if key == "local":
        return None
    try:
        return ZoneInfo(ZONE_ALIASES.get(key, name.strip()))
    except (ZoneInfoNotFoundError, ValueError):
        raise QueryError(f"timezone = {name}: not a time zone (utc, local, pt, mt, ct, et or a tz-database "
                         f"name such as Europe/London)") from None


def is_utc(tz: datetime.tzinfo | None) -> bool:
    """Whether times shown in `tz` (None: this node's zone) are the stored UTC times."""
    probe = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    zones = [tz] if tz is not None else [None]
    return all((probe.astimezone(z).utcoffset() == datetime.timedelta(0)) and
               (probe.replace(month=7).astimezone(z).utcoffset() == datetime.timedelta(0)) for z in zones)


def to_zone(value: Any, tz: datetime.tzinfo | None) -> Any:
    """A stored UTC timestamp as text in the zone (other values unchanged)."""
    if value is None:
        return None
    try:
        at = timeexpr.parse_instant(str(value))
    except QueryError:
        return value
    local = at.replace(tzinfo=datetime.timezone.utc).astimezone(tz)
    return local.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds" if local.microsecond else "seconds")


# --- casts ------------------------------------------------------------------------------------


def _number(value: Any, cast: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise QueryError(f"::{cast}: '{value}' is not a number") from None


def _arg_int(cast: Cast) -> int:
    try:
        return int((cast.arg or "").strip())
    except ValueError:
        raise QueryError(f"::{cast.name}({cast.arg}): a whole number is expected") from None


def _unquote(text: str) -> str:
    t = text.strip()
    return t[1:-1] if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"" else t


def _timediff(value: Any, cast: Cast, now: datetime.datetime) -> str:
    start = timeexpr.parse_instant(str(value))
    end = timeexpr.evaluate(cast.arg, now) if cast.arg and cast.arg.strip() else now.replace(tzinfo=None)
    delta = end - start
    sign = "-" if delta.total_seconds() < 0 else ""
    seconds = abs(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{int(hours):02d}:{int(minutes):02d}:{secs:09.6f}".rstrip("0").rstrip(".")


def apply_cast(value: Any, cast: Cast, row: dict[str, Any], now: datetime.datetime) -> Any:
    name = cast.name
    if name == "function":
        return evaluate_function(cast.arg or "", row)
    if value is None:
        return None
    if name == "float":
        arg = (cast.arg or "").strip()
        if arg.startswith("%"):
            digits = int(arg[1:] or 0)
            return f"{_number(value, name):,.{digits}f}"
        return round(_number(value, name), _arg_int(cast)) if arg else _number(value, name)
    if name == "int":
        return int(_number(value, name))
    if name == "str":
        return str(value)
    if name in ("ljust", "rjust"):
        width = _arg_int(cast)
        return str(value).ljust(width) if name == "ljust" else str(value).rjust(width)
    if name in ("lstrip", "rstrip"):
        return str(value).lstrip() if name == "lstrip" else str(value).rstrip()
    if name == "format":
        spec = _unquote(cast.arg or "")
        try:
            return (spec if "{" in spec else "{" + spec + "}").format(value)
        except (ValueError, IndexError, KeyError) as e:
            raise QueryError(f"::format({cast.arg}) cannot format {value!r}: {e}") from None
    if name == "datetime":
        return timeexpr.parse_instant(str(value)).strftime(_unquote(cast.arg or "%Y-%m-%d %H:%M:%S"))
    if name == "timediff":
        return _timediff(value, cast, now)
    if name == "timezone":
        return to_zone(value, zone(_unquote(cast.arg or "utc")))
    if name == "replace":
        parts = re.split(r"\s+by\s+", cast.arg or "", maxsplit=1)
        if len(parts) != 2:
            raise QueryError(f"::replace({cast.arg}): write replace(old by new)")
        return str(value).replace(_unquote(parts[0]), _unquote(parts[1]))
    raise QueryError(f"'::{name}' is not a cast (float, int, str, ljust, rjust, format, datetime, function, "
                     f"lstrip, rstrip, timediff, timezone, replace)")


# --- function(...) ------------------------------------------------------------------------------

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Gt: operator.gt, ast.GtE: operator.ge}
_CALLS = {"abs": abs, "round": round, "int": int, "float": float, "str": str, "len": len, "min": min, "max": max}
_COLUMN_REF = re.compile(r"\[([^\[\]]+)\]")


def evaluate_function(text: str, row: dict[str, Any]) -> Any:
    """`'On' if [min_val] > 10 else 'Off'` over the row's values (by title)."""
    names: dict[str, str] = {}

    def ref(m):
        key = f"_col{len(names)}"
        names[key] = m.group(1).strip()
        return key

    source = _COLUMN_REF.sub(ref, text)
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as e:
        raise QueryError(f"::function({text}): {e.msg}") from None

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id in names:
            if names[node.id] not in row:
                raise QueryError(f"::function: [{names[node.id]}] is not a column of the result")
            return row[names[node.id]]
        if isinstance(node, ast.IfExp):
            return ev(node.body) if ev(node.test) else ev(node.orelse)
        if isinstance(node, ast.BoolOp):
            values = [ev(v) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            v = ev(node.operand)
            return (not v) if isinstance(node.op, ast.Not) else -v
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            return _BIN[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.Compare) and all(type(o) in _CMP for o in node.ops):
            left = ev(node.left)
            for op, right_node in zip(node.ops, node.comparators):
                right = ev(right_node)
                if not _CMP[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS \
                and not node.keywords:
            return _CALLS[node.func.id](*[ev(a) for a in node.args])
        raise QueryError(f"::function({text}): '{ast.unparse(node)}' is not allowed (constants, [columns], "
                         f"arithmetic, comparisons, and/or/not, x if c else y, abs/round/int/float/str/len/min/max)")

    try:
        return ev(tree)
    except QueryError:
        raise
    except (TypeError, ValueError, ZeroDivisionError, ArithmeticError) as e:
        raise QueryError(f"::function({text}): {e}") from None


def format_rows(titles: Sequence[str], rows: Iterable[Sequence[Any]], casts: Sequence[tuple[Cast, ...]],
                time_columns: Sequence[bool], tz: datetime.tzinfo | None, now: datetime.datetime,
                lead: int = 0):
    """Rows with the time zone and casts applied.  `casts`/`time_columns` describe the columns
    after the first `lead` ones (the extend columns)."""
    has_casts = any(casts)
    convert = [] if is_utc(tz) else [i + lead for i, t in enumerate(time_columns) if t]
    if not has_casts and not convert:  # stored times are UTC already: rows go as they are
        yield from rows
        return
    for row in rows:
        values = list(row)
        for i in convert:
            values[i] = to_zone(values[i], tz)
        if has_casts:
            raw = dict(zip(titles, values))
            for i, chain in enumerate(casts):
                for cast in chain:
                    values[i + lead] = apply_cast(values[i + lead], cast, raw, now)
        yield values


# --- shapes -------------------------------------------------------------------------------------


def statistics(count: int, seconds: float, nodes: int, target: int | None = None) -> dict:
    stats: dict[str, Any] = {"Count": count, "Time": hms(seconds)}
    if target is not None and target != nodes:
        stats["Target Nodes"] = target
        stats["Participating Nodes"] = nodes
    else:
        stats["Nodes"] = nodes
    return stats


def hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode("utf-8")


def dumps_rows(titles: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Row objects joined by commas (no brackets): one orjson call per batch."""
    return orjson.dumps([dict(zip(titles, r)) for r in rows], default=str)[1:-1].decode("utf-8")


def stats_json(stats: dict, pretty: bool = False) -> str:
    """`{"Statistics":[{"Count": 3,"Time":"00:00:00","Nodes": 0}]}`; pretty: one key a line."""
    parts = [f"{json.dumps(k)}:{' ' if not isinstance(v, str) else ''}{json.dumps(v)}" for k, v in stats.items()]
    if pretty:
        return '{"Statistics":[{' + (",\n" + " " * 16).join(parts) + "}]}"
    return '{"Statistics":[{' + ",".join(parts) + "}]}"


def table_text(titles: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """AnyLog's query table: titles, dashes, rows; text left-aligned, numbers right-aligned."""
    cells = [["" if v is None else str(v) for v in r] for r in rows]
    widths = [len(t) for t in titles]
    for r in cells:
        for i, v in enumerate(r):
            widths[i] = max(widths[i], len(v))
    numeric = [all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool) for r in rows if r[i] is not None)
               and any(r[i] is not None for r in rows) for i in range(len(titles))]
    lines = [" ".join(t.ljust(w) for t, w in zip(titles, widths)), " ".join("-" * w for w in widths) + " "]
    for r in cells:
        lines.append(" ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(r, widths, numeric)) + " ")
    return "\n".join(lines)


def render(fmt: str, titles: Sequence[str], rows: Sequence[Sequence[Any]], stats: dict | None) -> str:
    """The whole answer in one of AnyLog's formats (`stats` None: stat = false)."""
    if fmt not in FORMATS:
        raise QueryError(f"format = {fmt}: not a query format ({', '.join(FORMATS)})")
    objects = [dict(zip(titles, r)) for r in rows]
    if not rows:
        return stats_json(stats) if stats is not None else '{"reply" : "Empty data set"}'
    if fmt == "json":
        body = '{"Query":' + dumps(objects)
        return body + (",\n" + stats_json(stats)[1:] if stats is not None else "}")
    if fmt == "json:list":
        return dumps(objects) + ("\n" + stats_json(stats) if stats is not None else "")
    if fmt == "json:output":
        return "\n".join(dumps(o) for o in objects) + ("\n" + stats_json(stats) if stats is not None else "")
    text = table_text(titles, rows)
    return text + ("\n\n" + stats_json(stats, pretty=True) if stats is not None else "")
