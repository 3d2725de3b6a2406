"""JSON rows -> table rows: the default mapping and `mapping` policies (spec §5.5).

Pure functions over data.  A file's objects become `{column: value}` dicts (`flatten` for the
default mapping, a compiled `MappingPolicy` for the `instructions` segment); `plan_columns`
decides the table's columns (new ones are added, never dropped: AnyLog silently drops unknown
attributes, we keep them); `to_rows` turns the dicts into tuples in column order, adapting every
value to its column's type or failing with the line, column and value named.  Either every row
of a file lands with its values intact, or the file fails with a reason.
"""

from __future__ import annotations

import datetime
import itertools
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from anylog_tw.errors import StorageError
from anylog_tw.ingest.errors import IngestError
from anylog_tw.storage import schema
from anylog_tw.storage.schema import BOOLEAN, FLOAT, INTEGER, TEXT, TIMESTAMP

# --- default mapping --------------------------------------------------------------------------


def flatten(obj: Mapping[str, Any], line: int) -> dict[str, Any]:
    """One JSON object as {column: value}: nested objects flattened with `_`, names made columns.

    `{"a": {"b": 1}}` gives `{"a_b": 1}`; lists stay values (stored as JSON text).  Two
    attributes that end up as the same column (`Temp` and `temp`, or `a_b` and `a.b`) would lose
    one value, so they fail the file instead.
    """
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}

    def put(path: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                put(f"{path}_{k}", v)
            return
        try:
            col = schema.column_name(path)
        except StorageError as e:
            raise IngestError("mapping", f"line {line}: attribute {path!r} cannot be a column: {e.message}") from None
        if col in schema.SYSTEM_COLUMN_NAMES:
            raise IngestError("mapping", f"line {line}: attribute {path!r} is the system column {col!r}; rename it")
        if col in out:
            raise IngestError("mapping", f"line {line}: attributes {origin[col]!r} and {path!r} both map to "
                                         f"column {col!r}; rename one of them")
        out[col] = None if isinstance(value, dict) else value  # {} holds nothing
        origin[col] = path

    for key, value in obj.items():
        if not isinstance(key, str):
            raise IngestError("mapping", f"line {line}: attribute names must be text")
        put(key, value)
    return out


# --- batches: a file's rows, column-aligned -----------------------------------------------------


@dataclass
class Batch:
    """Mapped rows, column by column: `values[j][i]` is row i's value of `columns[j]` (None: null)."""

    columns: list[str]
    values: list[list]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.lines)

    @classmethod
    def of_rows(cls, columns: list[str], rows: list[list], lines: list[int]) -> "Batch":
        """From row lists aligned to `columns` (a row may be shorter: the rest is null)."""
        n = len(columns)
        values = [list(c) for c in itertools.zip_longest(*rows, fillvalue=None)] if rows else []
        values += [[None] * len(rows) for _ in range(n - len(values))]
        return cls(columns, values, lines)


def default_batch(objs: Sequence[Mapping[str, Any]], lines: Sequence[int]) -> Batch:
    """The default mapping of a file's objects: each attribute to the column of its name.

    The hot path: when every object has the first one's attributes and none is nested (nearly
    every file), the columns are picked straight out of the objects; otherwise each row is
    flattened on its own.
    """
    if objs:
        first = objs[0]
        keys = list(first)
        n = len(keys)
        if set(map(len, objs)) == {n}:
            try:
                values = [[o[k] for o in objs] for k in keys]
            except KeyError:
                values = None
            if values is not None and not any(dict in set(map(type, v)) for v in values):
                names = list(flatten({k: None for k in keys}, lines[0]))
                return Batch(names, values, list(lines))
    index: dict[str, int] = {}
    shapes: dict[tuple, list[int] | None] = {}
    rows: list[list] = []
    append = rows.append
    for obj, line in zip(objs, lines):
        keys = tuple(obj)
        vals = list(obj.values())
        if dict not in map(type, vals):
            pos = shapes.get(keys, False)
            if pos is False:
                pos = shapes[keys] = _positions(keys, index, line)
            if pos is None:
                append(vals)
                continue
        else:
            flat = flatten(obj, line)
            pos = [_place(c, index) for c in flat]
            vals = list(flat.values())
        row = [None] * (max(pos) + 1 if pos else 0)
        for p, v in zip(pos, vals):
            row[p] = v
        append(row)
    return Batch.of_rows(list(index), rows, list(lines))


def _positions(keys: tuple, index: dict[str, int], line: int) -> list[int] | None:
    """Where each attribute of a row shape goes; None when it is columns 0..n-1 in order."""
    flat = flatten({k: None for k in keys}, line)  # names checked, collisions refused
    pos = [_place(c, index) for c in flat]
    return None if pos == list(range(len(pos))) else pos


def _place(col: str, index: dict[str, int]) -> int:
    p = index.get(col)
    if p is None:
        p = index[col] = len(index)
    return p


def policy_batch(policy: "MappingPolicy", objs: Sequence[Mapping[str, Any]], lines: Sequence[int]) -> Batch:
    """The rows a mapping policy makes of a file's objects (a reading array gives several)."""
    cols = [c.name for c in policy.columns]
    rows, out_lines = [], []
    for obj, line in zip(objs, lines):
        for r in policy.rows(obj, line):
            rows.append(list(r.values()))
            out_lines.append(line)
    return Batch.of_rows(cols, rows, out_lines)


def _columns_of(batch: Batch) -> list[list]:
    return batch.values


# --- columns and rows -------------------------------------------------------------------------


def plan_columns(batch: Batch, existing: Mapping[str, str] | None,
                 fixed: Mapping[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(the columns the file writes, in order, with their types; the columns to add).

    `existing` is the table's columns -> logical type (None or {} when the table does not exist
    yet); `fixed` are the types a mapping policy declares.  A new column gets the type inferred
    over all the file's values (widened where rows disagree); one seen only with nulls is text.
    Existing columns keep their type: `to_rows` checks that each value fits.
    """
    existing = dict(existing or {})
    fixed = dict(fixed or {})
    columns: dict[str, str] = {}
    added: dict[str, str] = {}
    values = None
    for j, col in enumerate(batch.columns):
        if col in existing:
            columns[col] = existing[col]
            continue
        kind = fixed.get(col)
        if kind is None:
            if values is None:
                values = batch.values
            kind = infer_column(values[j]) or TEXT
        columns[col] = added[col] = kind
    return columns, added


def infer_column(values: Sequence[Any]) -> str | None:
    """The widened type of a column's values (None: only nulls)."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if not kinds:
        return None
    if kinds == {str}:
        for v in values:  # timestamps until one is not: then it is text
            if v is not None and schema.parse_timestamp(v) is None:
                return TEXT
        return TIMESTAMP
    kind = None
    for t in kinds:
        if t is str:
            kind = schema.widen(kind, TIMESTAMP if all(
                schema.parse_timestamp(v) is not None for v in values if type(v) is str) else TEXT)
            continue
        sample = next(v for v in values if type(v) is t)
        k = schema.infer_type(sample)
        if k == INTEGER and t is int:  # a big int anywhere makes the column text
            if any(type(v) is int and not _INT64[0] <= v <= _INT64[1] for v in values):
                k = TEXT
        if k == FLOAT and any(type(v) is float and not math.isfinite(v) for v in values):
            k = TEXT
        kind = schema.widen(kind, k)
    return kind


def to_columns(batch: Batch, columns: Mapping[str, str], engine: str = schema.SQLITE) -> list[Sequence[Any]]:
    """The batch's values as one sequence per column of `columns` (in its order), adapted.

    Each value is adapted to its column's type; one that would lose information (1.5 in an
    integer column, "abc" in a timestamp) fails the file, naming the line, column and value.
    Works column by column: a column whose values are all of the right Python type (nearly
    always) costs one C-level pass.  On PostgreSQL, UTC timestamp texts (`...Z` or no zone) go
    as they are: the server parses them in C (and refuses an impossible date, failing the file).
    """
    n = len(batch)
    values = batch.values
    where = {c: j for j, c in enumerate(batch.columns)}
    out: list[Sequence[Any]] = []
    for col, kind in columns.items():
        j = where.get(col)
        out.append([None] * n if j is None else _adapt_column(values[j], kind, col, batch.lines, engine))
    return out


def to_rows(batch: Batch, columns: Mapping[str, str], prefix: Sequence[Any] = ()) -> list[tuple]:
    """The batch's rows as tuples in `columns` order, after the constant `prefix` values."""
    n = len(batch)
    cols = [itertools.repeat(p, n) for p in prefix] + to_columns(batch, columns)
    return list(zip(*cols)) if cols and n else []


def _adapt_column(values: Sequence[Any], kind: str, col: str, lines: Sequence[int],
                  engine: str = schema.SQLITE) -> Sequence[Any]:
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if kinds <= _FAST.get(kind, set()):
        return values
    if kind == TIMESTAMP and kinds == {str} and engine == schema.PSQL:
        utc = _UTC_TEXT.fullmatch
        if all(utc(v) for v in values if v is not None):
            return values
    if kind == TIMESTAMP and kinds == {str}:
        try:
            return _timestamps(values)
        except (ValueError, TypeError):
            pass  # offsets, odd forms, or a bad value: value by value below
    if kind == INTEGER and kinds == {int}:
        present = values if len(values) and None not in values else [v for v in values if v is not None]
        if not present or _INT64[0] <= min(present) and max(present) <= _INT64[1]:
            return values
    adapt = schema.adapt
    out = []
    for v, line in zip(values, lines):
        try:
            out.append(None if v is None else adapt(v, kind))
        except StorageError as e:
            shown = repr(v)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise IngestError("mapping", f"line {line}: column {col!r} ({kind}) cannot hold {shown}: "
                                         f"{e.message}") from None
    return out


_INT64 = (-(2**63), 2**63 - 1)
# Python types a column takes as they are (the hot path of big files).
_FAST: dict[str, set] = {TEXT: {str}, FLOAT: {float}, BOOLEAN: {bool}}
_ISO = re.compile(r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,6})?)?)?(?:Z|[+-]\d\d:?\d\d)?")
_UTC = datetime.timezone.utc
_UTC_TEXT = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,6})?Z?")


def _timestamp(v: str) -> str:
    """A timestamp text in the one stored form (UTC, `YYYY-MM-DD HH:MM:SS[.ffffff]`), fast.

    The common device forms (no zone, or `Z`) skip the time-zone arithmetic.
    """
    if not _ISO.fullmatch(v):
        raise ValueError(v)
    if v[-1] == "Z":
        d = _fromiso(v[:-1])
    else:
        d = _fromiso(v)
        if d.tzinfo is not None:
            d = d.astimezone(_UTC).replace(tzinfo=None)
    return d.isoformat(" ", "microseconds" if d.microsecond else "seconds")


_fromiso = datetime.datetime.fromisoformat
_HEAD = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")


def _timestamps(values: Sequence[Any]) -> list:
    """A column of UTC timestamp texts (`...SS[.ffffff][Z]`) in the stored form, fast.

    The `YYYY-MM-DD?HH:MM:SS` head is checked (a real date and time) once per distinct second
    and the fraction is copied as text: about a third of the cost of parsing every value.
    Anything else (an offset, a missing seconds field) raises ValueError: the caller then
    adapts value by value.
    """
    heads: dict[str, str] = {}
    out = []
    append = out.append
    for v in values:
        if v is None:
            append(None)
            continue
        key = v[:19]
        head = heads.get(key)
        if head is None:
            if not _HEAD.fullmatch(key):
                raise ValueError(v)
            _fromiso(key)  # a real date and time, or ValueError
            head = heads[key] = key[:10] + " " + key[11:]
        tail = v[19:]
        if tail and tail[-1] == "Z":
            tail = tail[:-1]
        if not tail:
            append(head)
            continue
        digits = tail[1:]
        if tail[0] != "." or not 1 <= len(digits) <= 6 or not digits.isascii() or not digits.isdigit():
            raise ValueError(v)
        append(head if digits.count("0") == len(digits) else f"{head}.{digits.ljust(6, '0')}")
    return out


# --- mapping policies -------------------------------------------------------------------------

_TYPE_WORDS = {
    "string": TEXT, "str": TEXT, "varchar": TEXT, "text": TEXT, "char": TEXT, "uuid": TEXT,
    "int": INTEGER, "integer": INTEGER, "bigint": INTEGER, "smallint": INTEGER,
    "float": FLOAT, "decimal": FLOAT, "numeric": FLOAT, "double": FLOAT, "real": FLOAT,
    "timestamp": TIMESTAMP, "date": TIMESTAMP, "datetime": TIMESTAMP,
    "bool": BOOLEAN, "boolean": BOOLEAN,
}
_BRING = re.compile(r"\[([^\[\]]*)\]")
_COND = re.compile(r"^\s*(\[[^\]]*\](?:\[[^\]]*\])*)\s*(==|!=|>=|<=|>|<)\s*(.+?)\s*$")


def policy_type(word: Any) -> str:
    """A mapping policy's column type (`char(20)`, `decimal`, `int` ...) as a logical type."""
    if not isinstance(word, str):
        raise IngestError("mapping", f"mapping type {word!r} must be text")
    base = word.strip().lower().split("(", 1)[0].strip()
    if base not in _TYPE_WORDS:
        raise IngestError("mapping", f"mapping type {word!r} is unknown (use string, int, float, decimal, "
                                     f"timestamp or bool)")
    return _TYPE_WORDS[base]


def _path(text: str) -> list[str]:
    keys = _BRING.findall(text)
    if not keys or _BRING.sub("", text).strip():
        raise IngestError("mapping", f"{text!r} is not a path like [a][b]")
    return keys


def _lookup(obj: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        if key in obj:
            obj = obj[key]
            continue
        low = key.lower()  # AnyLog looks attributes up without regard to case
        for k, v in obj.items():
            if isinstance(k, str) and k.lower() == low:
                obj = v
                break
        else:
            return None
    return obj


def _compile_bring(text: str) -> Callable[[list], Any]:
    """`[a][b]` gives that value; literal text around paths gives the joined text."""
    pieces: list[Any] = []
    pos = 0
    for m in re.finditer(r"(?:\[[^\[\]]*\])+", text):
        if m.start() > pos:
            pieces.append(text[pos:m.start()])
        pieces.append(_BRING.findall(m.group(0)))
        pos = m.end()
    if pos < len(text):
        pieces.append(text[pos:])
    if not any(isinstance(p, list) for p in pieces):
        raise IngestError("mapping", f"bring {text!r} names no attribute (write it as [attribute])")
    if len(pieces) == 1:
        keys = pieces[0]
        return lambda scopes: _first(scopes, keys)

    def joined(scopes):
        out = []
        for p in pieces:
            if isinstance(p, str):
                out.append(p)
                continue
            v = _first(scopes, p)
            if v is None:
                return None
            out.append(v if isinstance(v, str) else schema.adapt(v, TEXT))
        return "".join(out)

    return joined


def _first(scopes: list, keys: Sequence[str]) -> Any:
    """The value at `keys` in the innermost scope that has it (a reading, then its parent)."""
    for scope in scopes:
        v = _lookup(scope, keys)
        if v is not None:
            return v
    return None


def _literal(text: str) -> Any:
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def compile_condition(text: str) -> Callable[[list], bool]:
    """`if [a] == 'x' and [b] > 3`: comparisons joined by `and`/`or` (left to right)."""
    body = text.strip()
    if body.lower().startswith("if "):
        body = body[3:]
    parts = re.split(r"\s+(and|or)\s+", body, flags=re.IGNORECASE)
    tests = []
    for i in range(0, len(parts), 2):
        m = _COND.match(parts[i])
        if not m:
            raise IngestError("mapping", f"condition {text!r}: {parts[i]!r} is not '[attribute] <op> value'")
        keys, op, want = _path(m.group(1)), m.group(2), _literal(m.group(3))
        tests.append((keys, op, want))
    joins = [p.lower() for p in parts[1::2]]

    def check(scopes) -> bool:
        result = _compare(_first(scopes, tests[0][0]), tests[0][1], tests[0][2])
        for join, (keys, op, want) in zip(joins, tests[1:]):
            value = _compare(_first(scopes, keys), op, want)
            result = (result and value) if join == "and" else (result or value)
        return result

    return check


def _compare(value: Any, op: str, want: Any) -> bool:
    if value is None:
        return op == "!="
    if isinstance(want, (int, float)) and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return op == "!="
    if isinstance(want, str) and not isinstance(value, str):
        value = str(value)
    try:
        return {"==": value == want, "!=": value != want}.get(op) if op in ("==", "!=") else \
            {">": value > want, "<": value < want, ">=": value >= want, "<=": value <= want}[op]
    except TypeError:
        return False


@dataclass
class _Column:
    name: str
    kind: str
    bring: Callable[[list], Any] | None
    default: Any
    condition: Callable[[list], bool] | None


class MappingPolicy:
    """A compiled `mapping` policy: source objects -> rows, with the column types it declares."""

    def __init__(self, policy: Mapping[str, Any], now: Callable[[], str] | None = None):
        body = policy.get("mapping", policy) if isinstance(policy, Mapping) else None
        if not isinstance(body, Mapping):
            raise IngestError("mapping", "a mapping policy is a JSON object {\"mapping\": {...}}")
        self.id = str(body.get("id", ""))
        schema_ = body.get("schema")
        if not self.id or not isinstance(schema_, Mapping) or not schema_:
            raise IngestError("mapping", f"mapping policy {self.id or '?'!r} needs an 'id' and a non-empty 'schema'")
        self.dbms = self._literal_name(body.get("dbms"), "dbms")
        self.table = self._literal_name(body.get("table"), "table")
        readings = body.get("readings")
        self.readings = _path(f"[{readings}]" if "[" not in readings else readings) if readings else None
        self.condition = compile_condition(body["condition"]) if body.get("condition") else None
        self._now = now or _utc_now
        self.columns: list[_Column] = []
        for name, spec in schema_.items():
            col = schema.column_name(name)
            if col in schema.SYSTEM_COLUMN_NAMES:
                raise IngestError("mapping", f"mapping policy {self.id!r}: {col!r} is a system column")
            if not isinstance(spec, Mapping):
                raise IngestError("mapping", f"mapping policy {self.id!r}: column {name!r} must be an object "
                                             f"with type and bring/default")
            if "bring" not in spec and "default" not in spec:
                raise IngestError("mapping", f"mapping policy {self.id!r}: column {name!r} needs 'bring' or "
                                             f"'default'")
            bring = spec.get("bring")
            self.columns.append(_Column(
                col, policy_type(spec.get("type", "string")),
                _compile_bring(bring) if isinstance(bring, str) and bring.strip() else None,
                spec.get("default"),
                compile_condition(spec["condition"]) if spec.get("condition") else None))

    def _literal_name(self, value: Any, what: str) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or value.strip().lower().startswith("bring") or "[" in value:
            raise IngestError("mapping", f"mapping policy {self.id!r}: a per-row {what} ({value!r}) is not "
                                         f"supported; name the {what} literally or in the file name")
        try:
            return schema.check_name(value.strip(), what)
        except StorageError as e:
            raise IngestError("mapping", f"mapping policy {self.id!r}: {e.message}") from None

    @property
    def types(self) -> dict[str, str]:
        return {c.name: c.kind for c in self.columns}

    def rows(self, obj: Mapping[str, Any], line: int) -> list[dict[str, Any]]:
        """The rows one source object gives: none if the policy's condition rejects it."""
        if self.condition is not None and not self.condition([obj]):
            return []
        if self.readings is None:
            return [self._row([obj], line)]
        items = _lookup(obj, self.readings)
        if items is None:
            return []
        if not isinstance(items, list):
            raise IngestError("mapping", f"line {line}: readings {'.'.join(self.readings)!r} is not a list")
        return [self._row([item, obj], line) for item in items]

    def _row(self, scopes: list, line: int) -> dict[str, Any]:
        row = {}
        for c in self.columns:
            value = None
            if c.condition is None or c.condition(scopes):
                value = c.bring(scopes) if c.bring is not None else None
            if value is None and c.default is not None:
                value = self._now() if c.default == "now()" else c.default
            row[c.name] = _coerce(value, c.kind, c.name, line)
        return row


def _coerce(value: Any, kind: str, column: str, line: int) -> Any:
    """A declared type lets numeric text count as a number (devices often send "21.5")."""
    if isinstance(value, str) and kind in (INTEGER, FLOAT):
        try:
            return int(value) if kind == INTEGER else float(value)
        except ValueError:
            raise IngestError("mapping", f"line {line}: column {column!r} ({kind}) cannot hold {value!r}") from None
    return value


def _utc_now() -> str:
    return schema.format_timestamp(datetime.datetime.now(datetime.timezone.utc))
