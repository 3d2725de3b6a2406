"""`mapping` policies (spec §5.5): a compiled policy turns source objects into rows.

`{"mapping": {"id", "schema": {column: {"type", "bring", "default", "condition"}}, "readings",
"condition", "dbms", "table"}}`.  `bring` is a path like `[a][b]` (or text with paths in it,
joined); `default` fills a missing value (`now()` is the current UTC time); a column
`condition` leaves the column null when false; the policy's `condition` skips source objects;
`readings` names an array whose items each become a row, attributes looked up in the item
first and then in its parent.  Pure functions over data.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from anylog_tw.base.errors import StorageError
from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.storage import schema
from anylog_tw.storage.schema import BOOLEAN, FLOAT, INTEGER, TEXT, TIMESTAMP

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
