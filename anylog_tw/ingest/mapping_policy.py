"""A `mapping` policy (spec §5.5) ready for the operator: its rules compiled into a mapper.

The rules are read by `mapping_rules.rules_from_policy` and evaluated by `mapper.Mapper`, the
same code the MQTT client uses for its topics.  What the operator needs on top: the literal
dbms/table that override the file name's (None when the policy names none, or brings them per
row), the column types the policy fixes (for creating the table), and whether the rows of one
file can go to several tables.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from anylog_tw.base.convert import ConversionError, logical_type
from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.ingest.mapper import Mapper, compile_mapper
from anylog_tw.ingest.mapping import Batch
from anylog_tw.ingest.mapping_rules import rules_from_policy


def policy_type(word: Any) -> str:
    """A mapping policy's column type (`char(20)`, `decimal`, `int` ...) as a logical type."""
    try:
        return logical_type(word)
    except ConversionError as e:
        raise IngestError("mapping", e.message) from None


class MappingPolicy:
    """A compiled `mapping` policy: source objects -> rows, with the column types it declares."""

    def __init__(self, policy: Mapping[str, Any], now: Callable[[], str] | None = None):
        self.rules = rules_from_policy(policy)
        self.mapper: Mapper = compile_mapper(self.rules, now)
        self.id = self.rules.id
        self.dbms = self.mapper.dbms  # literal names, or None (the file name's, or per row)
        self.table = self.mapper.table
        self.per_row = self.mapper._dbms is not None or self.mapper._table is not None
        self.has_blobs = any(c.blob is not None for c in self.rules.columns)

    @property
    def columns(self):
        return self.mapper.columns

    @property
    def types(self) -> dict[str, str]:
        return dict(self.mapper.types)

    def batch(self, objs: Sequence[Any], lines: Sequence[int], dbms: str, table: str) -> dict[tuple[str, str], Batch]:
        """A file's objects as rows grouped by (dbms, table); the file name's when the policy names none."""
        return self.mapper.batch(objs, lines, dbms, table)

    def rows(self, obj: Mapping[str, Any], line: int) -> list[dict[str, Any]]:
        """The rows one source object gives (none if the policy's condition rejects it)."""
        return [row for _, _, row in self.mapper(obj, line, self.dbms or "_", self.table or "_")]
