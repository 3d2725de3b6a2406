"""Mapping rules, read from where users write them: a `mapping` policy or a message client's topic.

Two spellings, one `Rules` value (compiled into a mapper by `ingest/mapper.py`):

* a **mapping policy** (spec §5.5): `{"mapping": {"id", "dbms", "table", "readings",
  "condition", "source", "schema": {column: {"type", "bring", "default", "condition",
  "optional", "root", "apply", "blob", "extension", "hash"}}}}`;
* a **topic** of `run msg client` (anylog-mqtt-spec §2.2, §3): `dbms = x|"bring ..."`,
  `table = ...`, `column.<name>.<type> = "bring ..."|now|literal` and
  `column.<name> = (type = <type>|"bring ..." and value = ... [and optional = true])`.

Pure functions over data; every error is a `MappingError` that names the policy or topic key
and what to write instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from anylog_tw.base import grammar
from anylog_tw.base.bring import Bring, BringError, Key, is_bring, parse_bring, parse_key
from anylog_tw.base.convert import TEXT, ConversionError, data_name, logical_type
from anylog_tw.base.errors import GrammarError
from anylog_tw.base.ingest_errors import IngestError

NOW_WORDS = ("now", "now()")
APPLY = ("epoch_to_datetime", "json_dump", "base64decoding")
NO_DEFAULT: Any = object()


class MappingError(IngestError):
    """Rules that cannot be read, or a row they cannot make; the message names what and where."""

    def __init__(self, message: str):
        super().__init__("mapping", message)


@dataclass(frozen=True)
class Value:
    """Where a value comes from: a bring over the data, the current time, or a literal."""

    kind: str  # "bring" | "now" | "literal"
    bring: Bring | None = None
    literal: Any = None


@dataclass(frozen=True)
class Blob:
    """A blob column: its bytes go to a file under blobs_dir, the row holds the file's path."""

    extension: str = ""
    apply: str = ""  # "" (the value's bytes: text as UTF-8) or "base64decoding"


@dataclass
class ColumnRule:
    name: str
    type: str = TEXT  # a logical type (base/convert.py)
    type_from: Bring | None = None  # the type named by the message (`type = "bring [t]"`)
    value: Value | None = None  # None: only a default
    default: Any = NO_DEFAULT  # NO_DEFAULT, None (null), "now()", or a literal
    optional: bool = False  # a missing value leaves the column out instead of failing the row
    condition: str = ""  # `if [a] == x`: the column is null when false
    root: bool = False  # read from the whole message, not the reading
    apply: str = ""  # epoch_to_datetime | json_dump
    blob: Blob | None = None


@dataclass
class Rules:
    id: str = ""
    dbms: Value | None = None  # None: the caller's (the file name's)
    table: Value | None = None
    columns: list[ColumnRule] = field(default_factory=list)
    readings: Key | None = None  # each element of this list is a row (the message stays the root)
    condition: str = ""  # rows failing it are skipped
    source: Value | None = None


# --- from a mapping policy ------------------------------------------------------------------------

_COLUMN_KEYS = {"type", "bring", "default", "condition", "optional", "root", "apply", "blob", "extension", "hash",
                "value", "script"}


def rules_from_policy(policy: Mapping[str, Any]) -> Rules:
    """A `mapping` policy (with or without its `{"mapping": ...}` root) as Rules."""
    body = policy.get("mapping", policy) if isinstance(policy, Mapping) else None
    if not isinstance(body, Mapping):
        raise MappingError("a mapping policy is a JSON object {\"mapping\": {...}}")
    pid = str(body.get("id", ""))
    where = f"mapping policy {pid or '?'!r}"
    schema_ = body.get("schema")
    if not pid or not isinstance(schema_, Mapping) or not schema_:
        raise MappingError(f"{where} needs an 'id' and a non-empty 'schema'")
    if body.get("script"):
        raise MappingError(f"{where}: 'script' is not supported here; use 'condition' (if [key] == value)")
    rules = Rules(id=pid, dbms=_name_rule(body.get("dbms"), "dbms", where),
                  table=_name_rule(body.get("table"), "table", where),
                  condition=_text(body.get("condition"), "condition", where))
    source = body.get("source")
    if isinstance(source, Mapping):
        source = source.get("bring")
    if source:
        rules.source = _value(source, f"{where} source")
    readings = body.get("readings")
    if readings:
        try:
            rules.readings = parse_key(str(readings))
        except BringError as e:
            raise MappingError(f"{where}: readings {readings!r}: {e.message}") from None
    seen: set[str] = set()
    for name, spec in schema_.items():
        col = _column_name(name, where)
        if col in seen:
            raise MappingError(f"{where}: two schema entries make column {col!r}")
        seen.add(col)
        if isinstance(spec, list):
            raise MappingError(f"{where}: column {name!r} lists alternatives; give one definition per column")
        if not isinstance(spec, Mapping):
            raise MappingError(f"{where}: column {name!r} must be an object with type and bring/default")
        rules.columns.append(_policy_column(col, name, spec, f"{where}: column {name!r}"))
    return rules


def _policy_column(col: str, name: str, spec: Mapping[str, Any], where: str) -> ColumnRule:
    unknown = sorted(set(spec) - _COLUMN_KEYS)
    if unknown:
        raise MappingError(f"{where}: unknown attribute {unknown[0]!r} (known: {', '.join(sorted(_COLUMN_KEYS))})")
    if spec.get("script"):
        raise MappingError(f"{where}: 'script' is not supported here; use 'condition' (if [key] == value)")
    bring = spec.get("bring", spec.get("value"))
    if (bring is None or bring == "") and "default" not in spec:
        raise MappingError(f"{where} needs 'bring' or 'default'")
    rule = ColumnRule(col, _type(spec.get("type", "string"), where))
    if bring is not None and bring != "":
        if not isinstance(bring, str):
            raise MappingError(f"{where}: 'bring' {bring!r} must be text like '[a][b]'")
        rule.value = _value(bring, where, bring_only=True)
    if "default" in spec:
        rule.default = spec["default"]
    rule.optional = spec.get("optional") in (True, "true")
    rule.root = spec.get("root") in (True, "true")
    rule.condition = _text(spec.get("condition"), "condition", where)
    apply = str(spec.get("apply") or "").strip().lower()
    if spec.get("blob") in (True, "true"):
        hash_ = str(spec.get("hash") or "md5").lower()
        if hash_ != "md5":
            raise MappingError(f"{where}: blob hash {hash_!r} is not supported (md5 names the file)")
        if apply not in ("", "base64decoding"):
            raise MappingError(f"{where}: blob apply {apply!r} is not supported (base64decoding or none)")
        extension = str(spec.get("extension") or "").strip().lstrip(".")
        if extension and not extension.replace("_", "").isalnum():
            raise MappingError(f"{where}: blob extension {extension!r} must be letters and digits")
        rule.blob = Blob(extension, apply)
        rule.type = TEXT
    elif apply:
        if apply not in APPLY or apply == "base64decoding":
            raise MappingError(f"{where}: apply {apply!r} is not supported (epoch_to_datetime, json_dump; "
                               f"base64decoding with blob = true)")
        rule.apply = apply
    return rule


# --- from a message client's topic ------------------------------------------------------------------


def rules_from_topic(options: Mapping[str, Any] | Iterable[tuple[str, Any]], where: str = "topic") -> Rules:
    """A topic's `dbms`, `table` and `column.*` options as Rules (other options are the caller's).

    `options` are the topic's key/value pairs as the command parser gives them: values are
    text (quotes removed), and `column.<name> = (...)` is the text inside the parentheses or a
    mapping of its keys.
    """
    pairs = list(options.items()) if isinstance(options, Mapping) else list(options)
    rules = Rules()
    seen: set[str] = set()
    for key, value in pairs:
        low = key.strip().lower()
        if low == "dbms":
            rules.dbms = _name_rule(value, "dbms", where)
        elif low == "table":
            rules.table = _name_rule(value, "table", where)
        elif low.startswith("column."):
            rule = _topic_column(key.strip()[len("column."):], value, where)
            if rule.name in seen:
                raise MappingError(f"{where}: column {rule.name!r} is given twice")
            seen.add(rule.name)
            rules.columns.append(rule)
    if not rules.columns:
        raise MappingError(f"{where} maps no column: add column.<name>.<type> = \"bring [key]\" (or a policy)")
    return rules


def _topic_column(spec: str, value: Any, where: str) -> ColumnRule:
    parts = spec.split(".")
    if len(parts) == 2:  # column.<name>.<type> = rule
        col = _column_name(parts[0], where)
        here = f"{where}: column.{spec}"
        rule = ColumnRule(col, _type(parts[1], here))
        rule.value = _value(value, here)
        return rule
    if len(parts) != 1:
        raise MappingError(f"{where}: 'column.{spec}' is column.<name>.<type> or column.<name> = (type = .. and "
                           f"value = ..)")
    col = _column_name(parts[0], where)
    here = f"{where}: column.{spec}"
    fields = _group(value, here)
    unknown = sorted(set(fields) - {"type", "value", "optional", "default"})
    if unknown:
        raise MappingError(f"{here}: unknown key {unknown[0]!r} (type, value, optional, default)")
    if "value" not in fields:
        raise MappingError(f"{here} needs value = \"bring [key]\" (or now, or a literal)")
    type_word = fields.get("type", "str")
    rule = ColumnRule(col)
    if is_bring(type_word):
        try:
            rule.type_from = parse_bring(type_word, word=True)
        except BringError as e:
            raise MappingError(f"{here}: type {type_word!r}: {e.message}") from None
    else:
        rule.type = _type(type_word, here)
    rule.value = _value(fields["value"], here)
    rule.optional = str(fields.get("optional", "false")).strip().lower() == "true"
    if "default" in fields:
        rule.default = fields["default"]
    return rule


def _group(value: Any, where: str) -> dict[str, str]:
    """`(type = int and value = "bring [v]")` (or its inside, or a mapping) as {key: text}."""
    if isinstance(value, Mapping):
        return {str(k).lower(): v for k, v in value.items()}
    text = str(value).strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    try:
        pairs = grammar.parse_where(list(grammar.tokenize(text)))
    except GrammarError as e:
        raise MappingError(f"{where}: {e.message} (write (type = int and value = \"bring [key]\"))") from None
    return {k: " ".join(t.value for t in toks) for k, toks in pairs}


# --- pieces -------------------------------------------------------------------------------------------


def _value(text: Any, where: str, bring_only: bool = False) -> Value:
    if isinstance(text, str):
        t = text.strip()
        if is_bring(t) or bring_only:
            try:
                return Value("bring", parse_bring(t))
            except BringError as e:
                raise MappingError(f"{where}: {e.message}") from None
        if t.lower() in NOW_WORDS:
            return Value("now")
    return Value("literal", literal=text)


def _name_rule(value: Any, what: str, where: str) -> Value | None:
    """A dbms/table: literal (checked by the name rule now) or a bring (checked per row)."""
    if value is None or value == "":
        return None
    rule = _value(value, f"{where} {what}")
    if rule.kind == "bring":
        return rule
    if rule.kind == "now":
        raise MappingError(f"{where}: {what} cannot be 'now'")
    try:
        return Value("literal", literal=data_name(value, what))
    except ConversionError as e:
        raise MappingError(f"{where}: {e.message}") from None


def _column_name(name: Any, where: str) -> str:
    try:
        col = data_name(name, "column name")
    except ConversionError as e:
        raise MappingError(f"{where}: {e.message}") from None
    if col in ("row_id", "insert_timestamp", "tsd_name", "tsd_id"):
        raise MappingError(f"{where}: {col!r} is a system column; name the column otherwise")
    return col


def _type(word: Any, where: str) -> str:
    try:
        return logical_type(word)
    except ConversionError as e:
        raise MappingError(f"{where}: {e.message}") from None


def _text(value: Any, what: str, where: str) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise MappingError(f"{where}: {what} {value!r} must be text like \"if [key] == value\"")
    return value
