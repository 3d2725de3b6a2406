"""The options of `run client () sql <dbms> [options] "<select>"`, read into one value (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from anylog_tw.base import values
from anylog_tw.base.errors import OptionError
from anylog_tw.query.output import FORMATS, zone
from anylog_tw.query.plan import Extend

EXTEND_AT = ("ip", "port", "dbms_name", "table_name")
_IGNORED = ("test", "source", "title", "option", "topic", "info")
_EXTEND_ITEM = re.compile(r"^([@+!])([A-Za-z_][\w]*)(?:\.(\w+))?(?:\s+as\s+([\w]+))?$", re.IGNORECASE)


@dataclass
class QueryOptions:
    format: str = "json"
    stat: bool = True
    timezone: str = "local"
    extend: tuple[Extend, ...] = ()
    include: list[tuple[str, str]] = field(default_factory=list)
    dest: str | None = None
    file: str | None = None
    table: str | None = None
    drop: bool = True
    max_time: float = 0.0
    nodes: str = "main"
    pass_through: bool | None = None


def _inner(text: str) -> str:
    t = text.strip()
    return t[1:-1] if t.startswith("(") and t.endswith(")") else t


def parse_extend(text: str) -> tuple[Extend, ...]:
    """`(@ip, @port.str, +node_name as node, !city)` -> Extend columns, in the order listed."""
    out = []
    for part in [p.strip() for p in _inner(text).split(",") if p.strip()]:
        m = _EXTEND_ITEM.match(part)
        if not m:
            raise OptionError(f"extend: '{part}' - Wrong variable name prefix (use @ip, @port, @dbms_name, "
                              f"@table_name or +<dictionary key>, optionally 'as <title>')")
        prefix, name, _type, title = m.groups()
        name = name.lower()
        if prefix == "@" and name not in EXTEND_AT:
            raise OptionError(f"extend: '@{name}' is not known (@ip, @port, @dbms_name, @table_name)")
        out.append(Extend("@" if prefix == "@" else "+", name, (title or name).lower()))
    return tuple(out)


def parse_include(text: str, dbms: str) -> list[tuple[str, str]]:
    out = []
    for part in [p.strip() for p in _inner(text).split(",") if p.strip()]:
        d, _, t = part.rpartition(".")
        out.append(((d or dbms).lower(), t.lower()))
    return out


def parse_options(given: dict[str, str], dbms: str) -> QueryOptions:
    o = QueryOptions()
    for key, value in given.items():
        if key == "format":
            if value.lower() not in FORMATS:
                raise OptionError(f"format = {value}: use one of {', '.join(FORMATS)}")
            o.format = value.lower()
        elif key == "stat":
            o.stat = values.parse_bool(value)
        elif key == "timezone":
            zone(value)
            o.timezone = value
        elif key == "extend":
            o.extend = parse_extend(value)
        elif key == "include":
            o.include = parse_include(value, dbms)
        elif key == "dest":
            if value.lower() not in ("stdout", "rest", "file", "dbms"):
                raise OptionError(f"dest = {value}: use stdout, rest, file or dbms")
            o.dest = value.lower()
        elif key == "file":
            o.file = value
        elif key == "table":
            o.table = value.lower()
        elif key == "drop":
            o.drop = values.parse_bool(value)
        elif key == "max_time":
            o.max_time = values.parse_seconds(value)
        elif key == "nodes":
            if value.lower() not in ("main", "all"):
                raise OptionError(f"nodes = {value}: use main or all")
            o.nodes = value.lower()
        elif key == "pass_through":
            o.pass_through = values.parse_bool(value)
        elif key == "committed":
            if values.parse_bool(value):
                raise OptionError("committed = true is not supported by this node (it would need every member's "
                                  "safe ids); query without it")
        elif key not in _IGNORED:
            raise OptionError(f"'{key}' is not an option of a network query (format, stat, timezone, extend, "
                              f"include, dest, file, table, drop, max_time, nodes, pass_through)")
    if o.dest == "file" and not o.file:
        raise OptionError("dest = file needs file = <path>")
    if o.dest == "dbms" and not o.table:
        raise OptionError("dest = dbms needs table = <name> (the result is kept in system_query)")
    titles = [e.title for e in o.extend]
    if len(set(titles)) != len(titles):
        raise OptionError("extend: two columns have the same title (give one an 'as' title)")
    return o
