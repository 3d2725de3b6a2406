"""Evaluating the bring language: the values a parsed bring (`base/bring.py`) finds in JSON.

Parsing and evaluating are apart so each reads in one sitting: `bring.py` turns text into a
`Bring`, this module turns a `Bring` and a JSON value into values, rows and formatted outcomes.
`compile_key` and `compile_value` return plain closures, compiled once per rule and called once
per message or policy, with a fast path for the common one-key case.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Sequence

from anylog_tw.base.bring import MISSING, BringError, Many, Segment, Key, VALUE_MODIFIERS, Bring, Outcome

# --- values -----------------------------------------------------------------------------------


def text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def apply_function(func: tuple[str, str], text: str) -> str:
    """find(x) keeps what precedes the first x, rfind(x) what follows the last x, prefix(n) the
    first n characters and suffix(n) the last n."""
    name, arg = func
    if name in ("prefix", "suffix"):
        try:
            n = int(arg)
        except ValueError:
            raise BringError(f"{name}({arg}) needs a whole number") from None
        return text[:n] if name == "prefix" else (text[-n:] if n else "")
    if name == "find":
        i = text.find(arg)
        return text if i < 0 else text[:i]
    i = text.rfind(arg)
    return text if i < 0 else text[i + len(arg):]


def _folded(obj: dict, name: str) -> Any:
    """A key looked up without regard to case (AnyLog reads attributes that way)."""
    low = name.lower()
    for k, v in obj.items():
        if isinstance(k, str) and k.lower() == low:
            return v
    return MISSING


def walk(value: Any, segments: Sequence[Segment], fold_case: bool = False, each: bool = True) -> Any:
    """The value at `segments`, MISSING when absent.

    A named segment reads a dict, or collects from the dict elements of a list (a plain list
    value: `[table][dbms]` over a list of tables); `[]` gives `Many`, one value per element
    (MISSING where an element lacks the rest), or, with `each=False`, is passed over.
    """
    for i, seg in enumerate(segments):
        if seg.name is None:
            if not each:
                continue
            if not isinstance(value, list):
                return MISSING
            rest = segments[i + 1:]
            out = Many()
            for element in value:
                found = walk(element, rest, fold_case, each)
                if type(found) is Many:
                    out.extend(found)
                else:
                    out.append(found)
            return out
        name = seg.name
        if isinstance(value, dict):
            found = value.get(name, MISSING)
            if found is MISSING and fold_case:
                found = _folded(value, name)
        elif isinstance(value, list):
            found = [e[name] for e in value if isinstance(e, dict) and name in e]
            found = found if found else MISSING
        else:
            return MISSING
        if found is MISSING:
            return MISSING
        if seg.func is not None:
            found = apply_function(seg.func, text_of(found))
        value = found
    return value


def compile_key(key: Key, fold_case: bool = True) -> Callable[[Any], Any]:
    """A closure reading `key` from a JSON value (the `walk` rule), fast for one or two plain keys."""
    plain = all(s.name is not None and s.func is None for s in key)
    if plain and len(key) == 1:
        name = key[0].name
        if fold_case:
            def one(obj):
                if type(obj) is dict:
                    found = obj.get(name, MISSING)
                    return _folded(obj, name) if found is MISSING else found
                return walk(obj, key, True)
        else:
            def one(obj):
                if type(obj) is dict:
                    return obj.get(name, MISSING)
                return walk(obj, key, False)
        return one
    if plain and len(key) == 2:
        first, second = key[0].name, key[1].name

        def two(obj):
            if type(obj) is dict:
                inner = obj.get(first, MISSING)
                if type(inner) is dict and second in inner:
                    return inner[second]
            return walk(obj, key, fold_case)
        return two
    return lambda obj: walk(obj, key, fold_case)


# --- rows and their formats -------------------------------------------------------------------


def join_row(pieces: Sequence[tuple[str, Any]]) -> str:
    """Keys and literals concatenated as written; two keys side by side are parted by a space."""
    out = []
    prev = None
    for kind, v in pieces:
        if kind == "key" and prev == "key":
            out.append(" ")
        out.append(v if kind == "lit" else text_of(v))
        prev = kind
    return "".join(out)


def unique(values: Iterable[Any], key: Callable[[Any], Any] | None = None) -> list:
    """The values in first-seen order without repeats (equal by `key`, else by their JSON text)."""
    seen: dict[Any, Any] = {}
    for v in values:
        seen.setdefault(key(v) if key else json.dumps(v, ensure_ascii=False, sort_keys=True, default=str), v)
    return list(seen.values())


def extreme(values: Sequence[Any], which: str) -> Any:
    """The smallest or largest value: as numbers when all are numbers, else as text."""
    numbers = [as_number(v) for v in values]
    pick = min if which == "min" else max
    if all(n is not None for n in numbers):
        return values[pick(range(len(values)), key=lambda i: numbers[i])]
    return values[pick(range(len(values)), key=lambda i: text_of(values[i]))]


def format_rows(bring: Bring, rows: list[list[tuple[str, Any]]], labels: list[str]) -> Outcome:
    """The formats of `bring` applied to rows of (kind, value) pieces, one row per record."""
    mods = {name for name, _ in bring.modifiers}
    if "unique" in mods:
        rows = unique(rows, key=lambda r: tuple((k, text_of(v)) for k, v in r))
    key_rows = [[v for k, v in r if k == "key"] for r in rows]
    if "count" in mods:
        return Outcome("text", str(len(rows)))
    if "min" in mods or "max" in mods:
        flat = [v for r in key_rows if r for v in (r[0] if isinstance(r[0], list) else [r[0]])]
        return Outcome("text", text_of(extreme(flat, "min" if "min" in mods else "max")) if flat else "")
    if "table" in mods:
        sort = next((args for name, args in bring.modifiers if name == "sort"), None)
        table_rows = [[text_of(v) for v in r] for r in key_rows]
        if sort:
            bad = [c for c in sort if c < 0 or c >= len(labels)]
            if bad:
                raise BringError(f"'.sort({bad[0]})': the table has columns 0 to {len(labels) - 1}")
            table_rows.sort(key=lambda r: [(as_number(r[c]) is None, as_number(r[c]) or 0, r[c]) for c in sort])
        return Outcome("table", table_rows, labels)
    if "json" in mods:
        keys = bring.keys
        whole = len(keys) == 1 and all(s.name is None for s in keys[0])
        return Outcome("json", [r[0] if whole else dict(zip(labels, r)) for r in key_rows])
    texts = [join_row(r) for r in rows]
    if "list" in mods:
        return Outcome("json", texts)
    return Outcome("text", (bring.separator if bring.separator is not None else "").join(texts))


def label(key: Key) -> str:
    named = [s.name for s in key if s.name is not None]
    return named[-1] if named else "policy"


# --- the one value of a column ----------------------------------------------------------------


def compile_value(bring: Bring, fold_case: bool = True) -> Callable[[Any], Any]:
    """A closure giving the value `bring` names in a JSON object: a value, `Many` (one per element
    of a `[]` walk), or MISSING.

    Literals with keys give text (MISSING when a key is missing; `Many` when a key walks a list,
    matched by position with the other `[]` keys).  Modifiers reduce what was found:
    first/recent (first/last element), unique, count, min, max, list (texts), json (the found
    structure as one value, not rows), null (missing becomes None).
    """
    bad = [m for m, _ in bring.modifiers if m not in VALUE_MODIFIERS]
    if bad:
        raise BringError(f"'bring.{bad[0]}' formats a 'blockchain get' answer; a column takes one value "
                         f"(modifiers here: {', '.join(VALUE_MODIFIERS)})")
    if not bring.keys:
        raise BringError(f"bring {bring.text!r} names no key (write it as [attribute])")
    pieces = [(kind, compile_key(x, fold_case) if kind == "key" else x) for kind, x in bring.items]
    if len(pieces) == 1:
        found = pieces[0][1]
    else:
        found = _joined(pieces, bring.text)
    mods = [m for m, _ in bring.modifiers]
    if not mods:
        return found
    return _reduced(found, mods)


def _joined(pieces: list, text: str) -> Callable[[Any], Any]:
    def joined(obj):
        parts = []
        many = 0
        for kind, x in pieces:
            if kind == "lit":
                parts.append((kind, x))
                continue
            v = x(obj)
            if v is MISSING or v is None:
                return MISSING
            if type(v) is Many:
                many = len(v) if not many else many
                if len(v) != many:
                    raise BringError(f"bring {text!r}: the lists it walks have {many} and {len(v)} elements")
            parts.append((kind, v))
        if not many:
            return join_row(parts)
        out = Many()
        for i in range(many):
            row = [(k, v[i] if type(v) is Many else v) for k, v in parts]
            out.append(MISSING if any(k == "key" and (v is MISSING or v is None) for k, v in row) else join_row(row))
        return out
    return joined


def _reduced(found: Callable[[Any], Any], mods: list[str]) -> Callable[[Any], Any]:
    def reduced(obj):
        v = found(obj)
        for m in mods:
            if m == "null":
                continue
            if v is MISSING:
                if m == "count":
                    v = 0
                continue
            values = [x for x in v if x is not MISSING] if isinstance(v, list) else [v]
            if m == "first":
                v = values[0] if values else MISSING
            elif m == "recent":
                v = values[-1] if values else MISSING
            elif m == "unique":
                v = unique(values)
            elif m == "count":
                v = len(values)
            elif m in ("min", "max"):
                v = extreme(values, m) if values else MISSING
            elif m == "list":
                v = [text_of(x) for x in values]
            elif m == "json":
                v = list(values) if isinstance(v, list) else v
        if v is MISSING and "null" in mods:
            return None
        return v
    return reduced
