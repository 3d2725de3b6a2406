"""Compiled mapping rules: a JSON object in, (dbms, table, row) triples out.

The one mapper behind mapping policies on files, and the MQTT client's topics::

    from anylog_tw.ingest.mapping_rules import MappingError, rules_from_policy, rules_from_topic
    from anylog_tw.ingest.mapper import compile_mapper

    mapper = compile_mapper(rules_from_topic([("dbms", "bring [metadata][company]"),
                                              ("table", "bring [machine] _ [serial]"),
                                              ("column.timestamp.timestamp", "bring [ts]"),
                                              ("column.value", "type = int and value = \\"bring [value]\\"")]))
    for dbms, table, row in mapper(message):    # a list; MappingError names the row, column and value
        ...                                      # row: {column: value converted to its type}

    targets = mapper.batch(objs, lines, dbms="lsl", table="ping")   # files: {(dbms, table): Batch}

`compile_mapper(rules, now=None)`: `now()` gives the current UTC time as stored timestamp text
(a `now` column is the same for every row of one message, and comes first in the row).
`mapper(obj, line=None, dbms=None, table=None) -> list[(dbms, table, row)]`: `dbms`/`table`
are used when the rules name none.  A row is one per reading (`readings`), times one per
element of a `[]` bring (several `[]` columns are matched by position; so are `[]` dbms/table
brings).  A missing value takes the column's default, else the row fails naming the key, or
the column is left out with `optional`.  Values are converted by base/convert.py's rules; a
blob column's value is a `BlobValue` (ingest/blobs.py stores it and puts its path in the row).
`mapper.types` are the column types the rules fix (a type brought from the message is not).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from anylog_tw.base.bring import MISSING, BringError, Many
from anylog_tw.base.bring_values import compile_key, compile_value, text_of, walk
from anylog_tw.base.columns import ColumnError, convert_column
from anylog_tw.base.convert import (CONVERTERS, TEXT, ConversionError, convert, data_name, format_timestamp,
                                    logical_type, shown)
from anylog_tw.ingest.condition import compile_condition
from anylog_tw.ingest.mapping import Batch
from anylog_tw.ingest.mapping_rules import NO_DEFAULT, NOW_WORDS, ColumnRule, MappingError, Rules, Value

_SKIP: Any = object()  # an optional column whose value is missing


@dataclass(frozen=True)
class BlobValue:
    """The bytes of a blob column and the file name they get (md5 of the bytes + extension)."""

    data: bytes
    name: str


def utc_now() -> str:
    return format_timestamp(datetime.datetime.now(datetime.timezone.utc))


def compile_mapper(rules: Rules, now: Callable[[], str] | None = None) -> "Mapper":
    return Mapper(rules, now or utc_now)


class _Col:
    """One column rule, compiled."""

    def __init__(self, rule: ColumnRule):
        self.name = rule.name
        self.kind = rule.type
        self.rule = rule
        self.text = rule.value.bring.text if rule.value is not None and rule.value.bring is not None else ""
        self.now = rule.value is not None and rule.value.kind == "now"
        self.literal = rule.value.literal if rule.value is not None and rule.value.kind == "literal" else MISSING
        where = f"column {rule.name!r}"
        self.get = _compile(rule.value.bring, where) if rule.value is not None and rule.value.kind == "bring" else None
        self.type_from = _compile(rule.type_from, where) if rule.type_from is not None else None
        self.condition = compile_condition(rule.condition) if rule.condition else None
        self.default = rule.default
        self.plain_key = None  # the one plain key of a simple bring (the column-wise fast path)
        bring = rule.value.bring if self.get is not None else None
        if bring is not None and not bring.modifiers and len(bring.items) == 1:
            key = bring.keys[0]
            if len(key) == 1 and key[0].name is not None and key[0].func is None:
                self.plain_key = key[0].name

    def default_value(self, now: str) -> Any:
        if isinstance(self.default, str) and self.default.strip().lower() in NOW_WORDS:
            return now
        return self.default


def _compile(bring, where: str) -> Callable[[Any], Any]:
    try:
        return compile_value(bring)
    except BringError as e:
        raise BringError(f"{where}: {e.message}") from None


def _compile_name(value: Value | None, what: str) -> tuple[str | None, Callable[[Any], Any] | None]:
    if value is None:
        return None, None
    if value.kind == "bring":
        return None, _compile(value.bring, what)
    return value.literal, None


class Mapper:
    def __init__(self, rules: Rules, now: Callable[[], str]):
        self.rules = rules
        self.now = now
        try:
            self.columns = [_Col(c) for c in rules.columns]
            self.condition = compile_condition(rules.condition) if rules.condition else None
            self.dbms, self._dbms = _compile_name(rules.dbms, "dbms")
            self.table, self._table = _compile_name(rules.table, "table")
        except BringError as e:
            raise MappingError(f"{_who(rules)}: {e.message}") from None
        # `now` columns come first (AnyLog places them first); the others keep their order.
        self.columns.sort(key=lambda c: not c.now)
        self.readings = rules.readings
        self.types = {c.name: c.kind for c in self.columns if c.type_from is None and c.rule.blob is None}
        self.types.update({c.name: "text" for c in self.columns if c.rule.blob is not None})
        self.simple = (self.readings is None and self.condition is None and self._dbms is None and self._table is None
                       and all(c.type_from is None and c.rule.blob is None for c in self.columns))
        self._plan = self._one_row_plan()
        self._table_joined = _joined_name(rules.table, "table") if self._plan is not None else None

    def _one_row_plan(self) -> list | None:
        """The columns as (name, now?, getter, literal, converter) when an object can only ever give
        one row (no readings or conditions; types, blobs and `apply` fixed by the rules), else None."""
        if self.readings is not None or self.condition is not None:
            return None
        plan = []
        for c in self.columns:
            if c.type_from is not None or c.rule.blob is not None or c.rule.apply or c.condition is not None \
                    or c.kind not in CONVERTERS:
                return None
            plan.append((c.name, c.now, c.get, c.literal, CONVERTERS[c.kind]))
        return plan

    # -- one object ----------------------------------------------------------------------------

    def __call__(self, obj: Any, line: int | None = None, dbms: str | None = None,
                 table: str | None = None) -> list[tuple[str, str, dict]]:
        now = self.now()
        if self._plan is not None:
            one = self._one_row(obj, now, dbms, table)
            if one is not None:
                return [one]
        return self._rows(obj, line, now, dbms, table)

    def _one_row(self, obj: Any, now: str, dbms: str | None, table: str | None) -> tuple | None:
        """The row of an object whose every value is there and converts, else None: `_rows` then
        says what is missing or wrong (it gives the same row for the others, in about twice the time:
        a message is usually one such object)."""
        if type(obj) is not dict:
            return None
        row = {}
        try:
            for name, is_now, get, literal, conv in self._plan:
                v = now if is_now else get(obj) if get is not None else literal
                if v is None or v is MISSING or type(v) is Many:
                    return None
                row[name] = conv(v)
            d = self._dbms(obj) if self._dbms is not None else self.dbms or dbms
            if type(d) is not str:
                return None
            t = self._table_joined(obj) if self._table_joined is not None else None
            if t is not None:
                return _name(d, "dbms", ""), t, row
            t = self._table(obj) if self._table is not None else self.table or table
            if type(t) is not str:
                return None
            return _name(d, "dbms", ""), _name(t, "table", ""), row
        except Exception:  # AnyLogError or a bug: the full path says it with the row's place
            return None

    def _rows(self, obj: Any, line: int | None, now: str, dbms: str | None, table: str | None) -> list:
        where = f"line {line}" if line is not None else "message"
        if type(obj) is not dict:
            raise MappingError(f"{where}: a row comes from a JSON object, not {type(obj).__name__}")
        out: list = []
        for scope, root, here in self._scopes(obj, where):
            if self.condition is not None and not self.condition(scope):
                continue
            pieces = {}
            count: int | None = None  # elements of the `[]` walks (None: no walk, one row)
            for col in self.columns:
                v = self._found(col, scope, root, now)
                pieces[col] = v
                count = _merge_count(count, v, col.name, here)
            names = []
            for literal, get, fallback, what in ((self.dbms, self._dbms, dbms, "dbms"),
                                                 (self.table, self._table, table, "table")):
                v = get(scope) if get is not None else (literal or fallback)
                if v is None or v is MISSING:
                    if get is not None:
                        raise MappingError(f"{here}: the {what} bring {self._rule_text(what)!r} found nothing")
                    raise MappingError(f"{here}: no {what} for the row (the rules name none)")
                names.append(v)
                count = _merge_count(count, v, what, here)
            for i in range(1 if count is None else count):
                at = here if count is None else f"{here}, element {i + 1}"
                d = _name(names[0][i] if type(names[0]) is Many else names[0], "dbms", at)
                t = _name(names[1][i] if type(names[1]) is Many else names[1], "table", at)
                row = {}
                for col, v in pieces.items():
                    value = self._final(col, v[i] if type(v) is Many else v, scope, root, at, now, None if count is None else i)
                    if value is not _SKIP:
                        row[col.name] = value
                out.append((d, t, row))
        return out

    def _scopes(self, obj: dict, where: str):
        if self.readings is None:
            yield obj, obj, where
            return
        items = walk(obj, self.readings, fold_case=True)
        shown_key = "".join(f"[{s.name}]" for s in self.readings)
        if items is MISSING:
            raise MappingError(f"{where}: readings {shown_key} is missing from the message")
        if not isinstance(items, list):
            raise MappingError(f"{where}: readings {shown_key} is {type(items).__name__}, not a list")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise MappingError(f"{where}, reading {i + 1}: a reading is a JSON object, not {shown(item)}")
            # A reading's attributes first, then the message's (AnyLog's lookup order).
            yield {**obj, **item}, obj, f"{where}, reading {i + 1}"

    def _found(self, col: _Col, scope: dict, root: dict, now: str) -> Any:
        src = root if col.rule.root else scope
        if col.condition is not None and not col.condition(src):
            return None
        if col.now:
            return now
        if col.literal is not MISSING:
            return col.literal
        if col.get is None:
            return MISSING
        return col.get(src)

    def _final(self, col: _Col, v: Any, scope: dict, root: dict, where: str, now: str, index: int | None) -> Any:
        if v is MISSING or v is None:
            if col.default is not NO_DEFAULT:
                v = col.default_value(now)
            elif v is MISSING:
                if col.rule.optional:
                    return _SKIP
                raise MappingError(f"{where}: column {col.name!r}: {col.text or 'its rule'} found nothing "
                                   f"(give the column a default, or optional = true)")
            if v is None:
                return None
        if col.rule.apply == "json_dump":
            v = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, separators=(",", ":"))
        if col.rule.blob is not None:
            return _blob(col, v, where)
        kind = col.kind
        if col.type_from is not None:
            word = col.type_from(root if col.rule.root else scope)
            if type(word) is Many:
                if index is None or index >= len(word):
                    raise MappingError(f"{where}: column {col.name!r}: the types brought ({len(word)}) do not match "
                                       f"the values")
                word = word[index]
            try:
                kind = logical_type(word)
            except ConversionError as e:
                raise MappingError(f"{where}: column {col.name!r}: {e.message}") from None
        try:
            return convert(v, kind)
        except ConversionError as e:
            raise MappingError(f"{where}: column {col.name!r} ({kind}) cannot hold {shown(v)}: {e.message}") from None

    def _rule_text(self, what: str) -> str:
        rule = self.rules.dbms if what == "dbms" else self.rules.table
        return rule.bring.text if rule is not None and rule.bring is not None else ""

    # -- a file's objects, column by column --------------------------------------------------------

    def batch(self, objs: Sequence[Any], lines: Sequence[int], dbms: str | None = None,
              table: str | None = None) -> dict[tuple[str, str], Batch]:
        """The rows of many objects grouped by (dbms, table), column-aligned."""
        now = self.now()
        if self.simple:
            fast = self._simple_batch(objs, lines, now)
            if fast is not None:
                d, t = self.dbms or dbms, self.table or table
                if d is None or t is None:
                    raise MappingError(f"{_who(self.rules)}: no {'dbms' if d is None else 'table'} for the rows")
                return {(d, t): fast}
        groups: dict[tuple[str, str], tuple[list, list]] = {}
        names = [c.name for c in self.columns]
        for obj, line in zip(objs, lines):
            for d, t, row in self._rows(obj, line, now, dbms, table):
                rows, row_lines = groups.setdefault((d, t), ([], []))
                rows.append([row.get(n) for n in names])
                row_lines.append(line)
        return {key: Batch.of_rows(list(names), rows, row_lines, dict(self.types))
                for key, (rows, row_lines) in groups.items()}

    def _simple_batch(self, objs: Sequence[Any], lines: Sequence[int], now: str) -> Batch | None:
        """Column by column (no readings, conditions on the policy, per-row names or types): the
        hot path of big files.  None when a value walks a list (rows per element): the caller
        then maps object by object."""
        n = len(objs)
        if any(type(o) is not dict for o in objs):
            return None
        values = []
        converted = dict(self.types)
        for col in self.columns:
            if col.now:
                vals: list = [now] * n
            elif col.literal is not MISSING:
                vals = [col.literal] * n
            elif col.get is None:
                vals = [MISSING] * n
            elif col.plain_key is not None:
                key = col.plain_key
                vals = [o.get(key, MISSING) for o in objs]
                if MISSING in vals:  # a key in another case, or truly missing
                    get = col.get
                    vals = [get(o) if v is MISSING else v for o, v in zip(objs, vals)]
            else:
                get = col.get
                vals = [get(o) for o in objs]
                if Many in set(map(type, vals)):
                    return None
            if col.condition is not None:
                cond = col.condition
                vals = [v if cond(o) else None for o, v in zip(objs, vals)]
            if MISSING in vals or (col.default is not NO_DEFAULT and None in vals):
                vals = [self._filled(col, v, line, now) for v, line in zip(vals, lines)]
            if col.rule.apply == "json_dump":
                vals = [v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False,
                                                                             separators=(",", ":")) for v in vals]
            if col.kind != TEXT and set(map(type, vals)) <= {str, type(None)}:
                converted.pop(col.name, None)  # text: the insert adapts it (PostgreSQL parses what is plain)
            else:
                try:
                    vals = convert_column(vals, col.kind)
                except ColumnError as e:
                    raise MappingError(f"line {lines[e.index]}: column {col.name!r} ({col.kind}) cannot hold "
                                       f"{shown(e.value)}: {e.message}") from None
            values.append(vals)
        return Batch([c.name for c in self.columns], values, list(lines), converted)

    def _filled(self, col: _Col, v: Any, line: int, now: str) -> Any:
        if v is not MISSING and v is not None:
            return v
        if col.default is not NO_DEFAULT:
            return col.default_value(now)
        if v is None or col.rule.optional:
            return None
        raise MappingError(f"line {line}: column {col.name!r}: {col.text or 'its rule'} found nothing "
                           f"(give the column a default, or optional = true)")


def _merge_count(count: int | None, v: Any, what: str, where: str) -> int | None:
    if type(v) is not Many:
        return count
    if count is not None and len(v) != count:
        raise MappingError(f"{where}: {what} walks a list of {len(v)} elements, another of {count}: lists are "
                           f"matched by position")
    return len(v)


def _joined_name(value: Value | None, what: str) -> Callable[[Any], str | None] | None:
    """For a name joined from keys (`[machine_name] _ [serial_number]`), a function giving the
    name made from them, remembered by the keys' texts; None when the name is not such a join.

    Joining the pieces and making a name of the result was a quarter of a message's mapping,
    while a stream has few machines.  The name is a function of the keys' texts alone (literals
    are fixed), so it is remembered only when every key found a text: a number, list or missing
    key gives None, and the caller takes the full way.  Bounded."""
    if value is None or value.kind != "bring" or value.bring.modifiers:
        return None
    keys = [compile_key(x) for kind, x in value.bring.items if kind == "key"]
    if len(value.bring.items) < 2 or not keys:
        return None
    full = compile_value(value.bring)
    names: dict[tuple, str] = {}

    def joined(obj: Any) -> str | None:
        found = tuple([k(obj) for k in keys])
        for v in found:
            if type(v) is not str:
                return None
        name = names.get(found)
        if name is None:
            if len(names) >= 4096:
                names.clear()
            name = names[found] = _name(full(obj), what, "")
        return name
    return joined


_NAMES: dict[tuple[str, str], str] = {}  # the few dbms and table names a stream uses, made once


def _name(value: Any, what: str, where: str) -> str:
    if type(value) is str:
        name = _NAMES.get((value, what))
        if name is not None:
            return name
    try:
        name = data_name(text_of(value) if not isinstance(value, str) else value, what)
    except ConversionError as e:
        raise MappingError(f"{where}: {e.message}") from None
    if type(value) is str:
        if len(_NAMES) >= 4096:
            _NAMES.clear()
        _NAMES[(value, what)] = name
    return name


def _blob(col: _Col, v: Any, where: str) -> BlobValue:
    blob = col.rule.blob
    if blob.apply == "base64decoding":
        if not isinstance(v, str):
            raise MappingError(f"{where}: blob column {col.name!r} expects base64 text, not {shown(v)}")
        try:
            data = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise MappingError(f"{where}: blob column {col.name!r}: {shown(v)} is not base64") from None
    elif isinstance(v, (bytes, bytearray)):
        data = bytes(v)
    else:
        data = (v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)).encode("utf-8")
    name = hashlib.md5(data).hexdigest()
    return BlobValue(data, f"{name}.{blob.extension}" if blob.extension else name)


def _who(rules: Rules) -> str:
    return f"mapping policy {rules.id!r}" if rules.id else "the mapping"


def map_object(rules: Rules | Mapping[str, Any], obj: Any) -> list[tuple[str, str, dict]]:
    """One object through rules (or a policy) once: a convenience for tests and one-off calls."""
    from anylog_tw.ingest.mapping_rules import rules_from_policy

    return compile_mapper(rules if isinstance(rules, Rules) else rules_from_policy(rules))(obj)

