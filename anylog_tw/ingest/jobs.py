"""What the operator works from: its configuration (`run operator where ...`) and one file in hand.

Plain data, kept apart from the service so `operator.py` reads as the pipeline it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from anylog_tw.base.filename import FileName
from anylog_tw.ingest.mapping_policy import MappingPolicy
from anylog_tw.ingest.reader import Limits

# A file of at most SMALL_ROWS rows is "small": a worker lets up to SMALL_IN_FLIGHT of them wait
# for their insert at once, so they can share a commit (batcher.py).
SMALL_ROWS = 1000
SMALL_IN_FLIGHT = 16


@dataclass
class OperatorConfig:
    watch_dir: str
    err_dir: str
    archive_dir: str
    policy: str = ""
    cluster: str = ""
    member: str = "0"
    company: str = ""
    create_table: bool = True
    update_tsd_info: bool = True
    archive_json: bool = True
    compress_json: bool = True
    limit_tables: list[str] = field(default_factory=list)
    threads: int = 1
    master_node: str = ""
    rescan: float = 10.0
    use_inotify: bool = True
    limits: Limits = field(default_factory=Limits)
    durable: bool = True
    blobs_dir: str = ""  # where blob columns of mapping policies are written

    def allows(self, dbms: str, table: str) -> bool:
        if not self.limit_tables:
            return True
        return any(e in (f"{dbms}.{table}", f"{dbms}.*", "*") for e in self.limit_tables)


@dataclass
class Target:
    """The rows of a file for one table: its dbms, columns and the values ready to insert."""

    dbms: str
    table: str
    db: Any
    columns: dict
    rows: int
    adapted: Any = None
    ddl: list = field(default_factory=list)  # a .sql file's CREATE, run in the insert transaction


@dataclass
class Job:
    """One file in hand: its current name (it changes when registered) and what is known of it."""

    name: str
    fname: FileName | None = None
    dbms: str = ""
    table: str = ""
    tsd_table: str = "tsd_info"
    tsd_name: str = "0"
    tsd_id: int = 0
    date: str = ""
    redo: bool = False
    done: bool = False
    hash: str = ""
    first_name: str = ""
    start: float = 0.0
    policy: MappingPolicy | None = None
    targets: list[Target] = field(default_factory=list)
    big: bool = False
    rows: int = 0

    @property
    def kind(self) -> str:
        return "SQL" if self.fname is not None and self.fname.type == "sql" else "JSON"

    @property
    def small(self) -> bool:
        return not self.big and self.rows <= SMALL_ROWS
