"""Dynamic (UNS) topics: the table from the topic, the columns from the message.

With `dynamic = true` a topic needs no column rules.  A message that is a JSON object (or a list
of them) becomes rows whose columns are its attributes (nested objects flattened with `_`,
names made columns by the operator's rule); a `column.*` rule given as well adds or overrides a
column (`column.timestamp.timestamp = now`).  The table comes from the topic the message was
published to, in AnyLog's order of precedence, for `Plant/CX1/Motor1`:

    table_name_as_topic = true   -> plant_cx1_motor1
    table = some_table           -> some_table
    table_prefix = prefix1       -> prefix1_motor1
    nothing                      -> motor1

The first schema wins: the rows' file carries the instructions `keep_schema`, so the operator
makes a missing table from the first message's attributes and leaves out, rather than adds,
attributes an existing table lacks (AnyLog's documented behaviour).

A payload that is not a JSON object (a number, a word, text that is not JSON) is a value: the
topic's last segment is its column, the rest of the topic names the table the same way
(`Plant/Line1/temperature` = 42.5 -> table `line1`, column `temperature`), and the UNS streamer
(`run uns streamer`) writes the latest values of each such table as a row every few seconds.

Every topic path seen gets UNS policies (msg/uns.py).  Everything here is a pure function of the
topic's options, the topic and the message, except the two caches, which are bounded.
"""

from __future__ import annotations

from typing import Any, Callable

from anylog_tw.base.convert import ConversionError, data_name
from anylog_tw.base.filename import KEEP_SCHEMA
from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.ingest.mapper import compile_mapper
from anylog_tw.ingest.mapping import flatten
from anylog_tw.ingest.mapping_rules import rules_from_topic
from anylog_tw.msg.mapping import Mapper, MappingError, Target
from anylog_tw.msg.options import TopicSpec

CACHE = 4096  # topics remembered per subscription (their tables and mappers)
VALUE_COLUMN = "value"  # the column of a one-segment topic's value


def segments(topic: str) -> list[str]:
    return [s for s in topic.split("/") if s.strip()]


def table_name(parts: list[str], spec: TopicSpec) -> str:
    """The table of a topic path (its segments) by AnyLog's precedence; MappingError if no name can be made."""
    if not parts:
        raise MappingError("the topic has no segment to name a table after")
    if spec.table_name_as_topic:
        raw = "_".join(parts)
    elif spec.table is not None:
        raw = spec.table.text
    elif spec.table_prefix:
        raw = f"{spec.table_prefix}_{parts[-1]}"
    else:
        raw = parts[-1]
    try:
        return data_name(raw, "table")
    except ConversionError as e:
        raise MappingError(f"topic {'/'.join(parts)!r}: {e.message}") from None


def value_place(parts: list[str], spec: TopicSpec) -> tuple[str, str]:
    """(table, column) of a plain value published to a topic path: the last segment is the column."""
    if len(parts) < 2:
        return table_name(parts, spec), VALUE_COLUMN
    try:
        column = data_name(parts[-1], "column")
    except ConversionError as e:
        raise MappingError(f"topic {'/'.join(parts)!r}: {e.message}") from None
    return table_name(parts[:-1], spec), column


class DynamicTopic:
    """One dynamic subscription: per received topic, where its rows and values go."""

    def __init__(self, spec: TopicSpec, extra: Callable[[Any], list] | None, on_new_path: Callable[..., None]):
        self.spec = spec
        if spec.dbms is None or spec.dbms.kind != "literal":
            raise MappingError(f"topic {spec.name}: a dynamic topic needs a literal dbms")
        if spec.table is not None and spec.table.kind != "literal":
            raise MappingError(f"topic {spec.name}: a dynamic topic's table must be a name, not a bring")
        try:
            self.dbms = data_name(spec.dbms.text, "dbms")
        except ConversionError as e:
            raise MappingError(f"topic {spec.name}: {e.message}") from None
        self.extra = extra  # the topic's column.* rules, compiled: obj -> [(dbms, table, row)]
        self.on_new_path = on_new_path  # called (topic parts, dbms, table[, column]) once per topic seen
        self._mappers: dict[str, Mapper] = {}
        self._values: dict[str, tuple[str, str]] = {}

    def mapper_for(self, topic: str) -> Mapper:
        """The mapper of messages published to `topic` (MappingError when it cannot name a table)."""
        mapper = self._mappers.get(topic)
        if mapper is None:
            parts = segments(topic)
            target = Target(self.dbms, table_name(parts, self.spec), "0", KEEP_SCHEMA)
            mapper = self._remember(self._mappers, topic, self._mapper(target))
            self.on_new_path(parts, self.dbms, target.table)
        return mapper

    def value_for(self, topic: str) -> tuple[str, str, str]:
        """(dbms, table, column) of a plain value published to `topic`."""
        place = self._values.get(topic)
        if place is None:
            parts = segments(topic)
            place = self._remember(self._values, topic, value_place(parts, self.spec))
            self.on_new_path(parts, self.dbms, *place)
        return (self.dbms, *place)

    @staticmethod
    def _remember(cache: dict, key: str, value):
        if len(cache) >= CACHE:
            cache.clear()
        cache[key] = value
        return value

    def _mapper(self, target: Target) -> Mapper:
        extra = self.extra

        def rows(obj: Any, now: float) -> list[tuple[Target, dict]]:
            try:
                row = flatten(obj, 1)
            except IngestError as e:
                raise MappingError(e.message.replace("line 1: ", "")) from None
            if extra is not None:
                found = extra(obj)
                if len(found) != 1:
                    raise MappingError(f"the column rules of a dynamic topic give one value each, not {len(found)} "
                                       f"rows (no [] in them)")
                row.update(found[0][2])
            return [(target, row)]

        return rows


def compile_dynamic(spec: TopicSpec, on_new_path: Callable[..., None]) -> DynamicTopic:
    """A dynamic topic with its `column.*` rules (if any) compiled by the ingest mapper."""
    extra = None
    columns = [(k, v) for k, v in spec.rules if k.startswith("column.")]
    if columns:
        extra = compile_mapper(rules_from_topic([("dbms", "x"), ("table", "x"), *columns],
                                                where=f"topic {spec.name}"))
    return DynamicTopic(spec, extra, on_new_path)
