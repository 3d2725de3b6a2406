"""`bring`: how `blockchain get` extracts and formats what it selected (spec 5.7).

The language itself (keys, quoting, literals, modifiers, formats) is base/bring.py's, shared
with mapping policies and the MQTT client.  What is particular to policies lives here: the
modifiers that reshape the set of policies (`first` and `recent` by the policy's `date`,
`children` through the store), `ip_port`, keys that start at the policy's type (`[operator][ip]`,
`[*][ip]`, `[]` for the whole policy), and the rule that a key no selected policy has is an
error unless `.null` is given.
"""

from __future__ import annotations

from anylog_tw.base.bring import Bring, BringError, Outcome  # noqa: F401 (re-exported)
from anylog_tw.base.bring_values import format_rows, label  # noqa: F401 (re-exported)
from anylog_tw.metadata.values import MISSING, QueryError, Store, body, policy_type, resolve


def _date(policy: dict) -> str:
    return str(body(policy).get("date", ""))


def apply_bring(bring: Bring, policies: list[dict], store: Store) -> Outcome:
    """Modifiers first reshape the set of policies (first, recent, children), then format it."""
    try:
        return _apply(bring, policies, store)
    except BringError as e:
        if isinstance(e, QueryError):
            raise
        raise QueryError(e.message) from None


def _apply(bring: Bring, policies: list[dict], store: Store) -> Outcome:
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
    keys = bring.keys
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
        for kind, value in bring.items:
            if kind == "lit":
                values.append(("lit", value))
                continue
            v = resolve(p, value)
            if v is MISSING:
                if "null" not in mods:
                    break
                v = ""
            values.append(("key", v))
        else:
            rows.append(values)
    return format_rows(bring, rows, [label(k) for k in keys])


def _check_keys_exist(keys: list, policies: list[dict], null: bool) -> None:
    """A key no selected policy has is an error (a typo would otherwise give an empty answer)."""
    if null or not policies:
        return
    for key in keys:
        if all(s.name is None for s in key):
            continue
        if all(resolve(p, key) is MISSING for p in policies):
            shown = "".join(f"[{s.name}]" for s in key if s.name is not None)
            types = sorted({policy_type(p) for p in policies})
            raise QueryError(f"bring {shown}: no selected policy ({', '.join(types)}) has that attribute "
                             f"(add '.null' to bring empty values instead)")
