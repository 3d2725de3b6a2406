"""`bring`: how `blockchain get` extracts and formats what it selected (spec 5.7).

Modifiers first reshape the set of policies (`first`, `recent`, `children`), then one of the
formats applies (`ip_port`, `count`, `min`/`max`, `table[.sort(i)]`, `json`, `list`, or text
joined by the separator).  Two keys written side by side are parted by a space; literals are
inserted as written; a key no selected policy has is an error unless `.null` is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from anylog_tw.metadata.values import (
    MISSING,
    QueryError,
    Store,
    as_number,
    body,
    policy_type,
    resolve,
    split_function,
    text_of,
)

MODIFIERS = ("unique", "first", "recent", "json", "list", "table", "count", "null", "ip_port", "min", "max",
             "children")


@dataclass
class Bring:
    items: list = field(default_factory=list)  # ("key", segments) | ("lit", text)
    modifiers: list = field(default_factory=list)  # (name, args)
    separator: str | None = None

    def has(self, name: str) -> bool:
        return any(m == name for m, _ in self.modifiers)


@dataclass
class Outcome:
    kind: str  # json, text, table
    value: Any
    columns: list | None = None


def _date(policy: dict) -> str:
    return str(body(policy).get("date", ""))


def apply_bring(bring: Bring, policies: list[dict], store: Store) -> Outcome:
    """Modifiers first reshape the set of policies (first, recent, children), then format it."""
    for name, _ in bring.modifiers:
        if name == "first" and policies:
            policies = [min(policies, key=_date)]
        elif name == "recent" and policies:
            policies = [max(policies, key=_date)]
        elif name == "children":
            ids = {body(p).get("id") for p in policies}
            policies = [p for p in store.all() if body(p).get("parent") in ids]
    mods = {name for name, _ in bring.modifiers}
    sep = bring.separator
    if "ip_port" in mods:
        rows = [f"{body(p)['ip']}:{body(p)['port']}" for p in policies
                if body(p).get("ip") is not None and body(p).get("port") is not None]
        if "unique" in mods:
            rows = list(dict.fromkeys(rows))
        if "count" in mods:
            return Outcome("text", str(len(rows)))
        if "json" in mods or "list" in mods:
            return Outcome("json", rows)
        return Outcome("text", (sep if sep is not None else ",").join(rows))
    keys = [item for item in bring.items if item[0] == "key"]
    if not keys:
        if "count" in mods:
            return Outcome("text", str(len(policies)))
        if bring.items and "json" not in mods:  # only literals
            return Outcome("text", (sep or "").join("".join(v for _, v in bring.items) for _ in policies))
        return Outcome("json", policies)
    _check_keys_exist(keys, policies, "null" in mods)
    rows: list[list] = []
    for p in policies:
        values = []
        skip = False
        for kind, value in bring.items:
            if kind == "lit":
                values.append(("lit", value))
                continue
            v = resolve(p, value)
            if v is MISSING:
                if "null" not in mods:
                    skip = True
                    break
                v = ""
            values.append(("key", v))
        if not skip:
            rows.append(values)
    if "unique" in mods:
        seen = {}
        for r in rows:
            seen.setdefault(json.dumps([[k, text_of(v)] for k, v in r], ensure_ascii=False), r)
        rows = list(seen.values())
    labels = [_label(segs) for _, segs in keys]
    key_rows = [[v for k, v in r if k == "key"] for r in rows]
    if "count" in mods:
        return Outcome("text", str(len(rows)))
    if "min" in mods or "max" in mods:
        flat = [v for r in key_rows for v in (r[0] if isinstance(r[0], list) else [r[0]])] if key_rows else []
        if not flat:
            return Outcome("text", "")
        numbers = [as_number(v) for v in flat]
        pick = min if "min" in mods else max
        if all(n is not None for n in numbers):
            best = pick(range(len(flat)), key=lambda i: numbers[i])
        else:
            best = pick(range(len(flat)), key=lambda i: text_of(flat[i]))
        return Outcome("text", text_of(flat[best]))
    if "table" in mods:
        sort = next((args for name, args in bring.modifiers if name == "sort"), None)
        table_rows = [[text_of(v) for v in r] for r in key_rows]
        if sort:
            bad = [c for c in sort if c < 0 or c >= len(labels)]
            if bad:
                raise QueryError(f"'.sort({bad[0]})': the table has columns 0 to {len(labels) - 1}")
            table_rows.sort(key=lambda r: [(as_number(r[c]) is None, as_number(r[c]) or 0, r[c]) for c in sort])
        return Outcome("table", table_rows, labels)
    if "json" in mods:
        out = []
        for r in key_rows:
            if len(keys) == 1 and not keys[0][1]:
                out.append(r[0])
            else:
                out.append({label: v for label, v in zip(labels, r)})
        return Outcome("json", out)
    texts = [_join_row(r) for r in rows]
    if "list" in mods:
        return Outcome("json", texts)
    return Outcome("text", (sep if sep is not None else "").join(texts))


def _label(segments: list[str]) -> str:
    return split_function(segments[-1])[0] if segments else "policy"


def _join_row(values: list) -> str:
    """Keys and literals concatenated as written; two keys in a row are parted by a space."""
    out = []
    prev = None
    for kind, v in values:
        if kind == "key" and prev == "key":
            out.append(" ")
        out.append(v if kind == "lit" else text_of(v))
        prev = kind
    return "".join(out)


def _check_keys_exist(keys: list, policies: list[dict], null: bool) -> None:
    """A key no selected policy has is an error (a typo would otherwise give an empty answer)."""
    if null or not policies:
        return
    for _, segs in keys:
        if not segs:
            continue
        if all(resolve(p, segs) is MISSING for p in policies):
            shown = "".join(f"[{s}]" for s in segs)
            types = sorted({policy_type(p) for p in policies})
            raise QueryError(f"bring {shown}: no selected policy ({', '.join(types)}) has that attribute "
                             f"(add '.null' to bring empty values instead)")
