"""Destinations from metadata, for `run client (...)` (spec 6.2): a pure resolver.

    resolve(ledger, "blockchain get operator where [country] contains US bring.ip_port")
    resolve(ledger, "operator where [country] contains US")         # the shortcut
    resolve(ledger, "(operator, query) where [city] == Paris")      # several node types
    resolve(ledger, "dbms = lsl and table = ping")                  # the operators hosting lsl.ping
    resolve(ledger, "10.0.0.1:32048, 10.0.0.2:32048")               # -> None: not a metadata form

The text is what sits between the parentheses of `run client ( ... )`, with dictionary
references already resolved.  The answer is a list of `ip:port` (each once, in ledger order),
or None when the text is none of the metadata forms, so the caller reads it as addresses.
An empty list means the metadata names no node: the caller says so rather than sending nowhere.
"""

from __future__ import annotations

import re

from anylog_tw.metadata import policies
from anylog_tw.metadata.query import QueryError, Store, parse_query, select

NODE_TYPES = ("master", "query", "operator", "publisher")

_SHORTCUT = re.compile(r"^\s*(\(\s*[A-Za-z_]+(?:\s*,\s*[A-Za-z_]+)*\s*\)|[A-Za-z_]+)\s+where\s+", re.IGNORECASE)
_TABLE = re.compile(r"^\s*dbms\s*=\s*([^\s]+)\s+and\s+table\s*=\s*([^\s]+)\s*$", re.IGNORECASE)
_TABLE_REVERSED = re.compile(r"^\s*table\s*=\s*([^\s]+)\s+and\s+dbms\s*=\s*([^\s]+)\s*$", re.IGNORECASE)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def is_metadata_destination(text: str) -> bool:
    """Whether the text is one of the metadata forms (cheap: no ledger needed)."""
    s = text.strip()
    low = s.lower()
    if low.startswith("blockchain get ") or low.startswith("blockchain read "):
        return True
    if _TABLE.match(s) or _TABLE_REVERSED.match(s):
        return True
    m = _SHORTCUT.match(s)
    return bool(m) and all(t.strip().lower() in NODE_TYPES for t in m.group(1).strip("() ").split(","))


def resolve(store: Store, text: str) -> list[str] | None:
    s = text.strip()
    low = s.lower()
    if low.startswith("blockchain get ") or low.startswith("blockchain read "):
        query = parse_query(s.split(None, 2)[2])
        if query.bring is None or not query.bring.has("ip_port"):
            raise QueryError("a destination from 'blockchain get' ends with 'bring.ip_port', "
                             "e.g. (blockchain get operator where [country] = US bring.ip_port)")
        return _addresses(select(query, store))
    m = _TABLE.match(s) or _TABLE_REVERSED.match(s)
    if m:
        dbms, table = (m.group(1), m.group(2)) if _TABLE.match(s) else (m.group(2), m.group(1))
        hosting = policies.operators_hosting(store, dbms.strip("'\""), table.strip("'\""))
        return _addresses([p for ops in hosting.values() for p in ops])
    m = _SHORTCUT.match(s)
    if m:
        types = [t.strip().lower() for t in m.group(1).strip("() ").split(",")]
        if all(t in NODE_TYPES for t in types):
            return _addresses(select(parse_query(s), store))
    return None


def _addresses(found) -> list[str]:
    return _unique([policies.ip_port(p) or "" for p in found])
