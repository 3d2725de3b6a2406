"""What the first pass over a data file learned: its hash and its rows, per target table.

Shared by the JSON pipeline (`pipeline.py`) and the SQL file reader (`sqlfile.py`), which both
hand the operator a `Parsed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from anylog_tw.ingest.mapping import Batch


@dataclass
class Part:
    """The rows of one file that go to one table (a mapping policy can send rows to several)."""

    dbms: str
    table: str
    batch: Batch | None  # a small file's mapped rows; None for a big one (read again to insert)
    columns: list[str] = field(default_factory=list)  # column names in first-seen order
    types: dict[str, str | None] = field(default_factory=dict)  # inferred types (big files)
    rows: int = 0
    fixed: dict[str, str] = field(default_factory=dict)  # types the mapping (or the SQL) declares


@dataclass
class Parsed:
    """What the first pass learned about a file."""

    hash: str
    objects: int
    parts: dict[tuple[str, str], Part]
    big: bool = False
    create: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)  # a .sql file's CREATEs

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts.values())
