"""The query node's record of its network queries: job ids, what each sent where, and how it went.

`query status`, `query explain` and `query destination` read it; `query stop` marks a job
stopped and cancels the parts in flight.  The last 500 jobs are kept, as AnyLog keeps 500 slots.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from anylog_tw.query.errors import QueryError

SLOTS = 500


@dataclass
class PartRun:
    """One cluster's part of a job: the table, the operator that answered, and how."""

    cluster: str
    dbms: str
    table: str
    address: str = ""
    status: str = "Sending"         # Sending, Processing, Completed, Empty Set, Error, Skipped
    rows: int = 0
    started: float = 0.0
    ended: float = 0.0
    error: str = ""
    tried: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return max(0.0, (self.ended or self.started) - self.started)


@dataclass
class Job:
    id: int
    command: str
    dbms: str
    statement: str
    output: str = "stdout"
    started: float = 0.0
    ended: float = 0.0
    status: str = "Processing"
    rows: int = 0
    parts: list[PartRun] = field(default_factory=list)
    remote_sql: str = ""
    local_create: str = ""
    local_sql: str = ""
    tables: list[str] = field(default_factory=list)
    stopped: bool = False
    inflight: set = field(default_factory=set)   # Deferreds of parts on the wire, cancelled by stop

    def stop(self) -> int:
        self.stopped = True
        pending = list(self.inflight)
        for d in pending:
            d.cancel()
        return len(pending)


@dataclass
class QueryMode:
    """`set query mode`: caps for every network query of this node (0: none)."""

    timeout: float = 0.0
    max_volume: int = 0
    send_mode: str = "all"
    reply_mode: str = "all"

    def rows(self) -> list[tuple[str, Any]]:
        return [("timeout", f"{self.timeout:g} seconds" if self.timeout else "none"),
                ("max_volume", f"{self.max_volume} bytes" if self.max_volume else "none"),
                ("send_mode", self.send_mode), ("reply_mode", self.reply_mode)]


class QueryJobs:
    """A node component: the jobs, the round-robin pointer of each cluster, the query mode."""

    def __init__(self, node=None):
        self.node = node
        self.jobs: "OrderedDict[int, Job]" = OrderedDict()
        self.next_id = 1
        self.round_robin: dict[str, int] = {}
        self.mode = QueryMode()
        self.seq = 0  # merge table names: query_<n>

    def new(self, command: str, dbms: str, statement: str, output: str, now: float) -> Job:
        job = Job(self.next_id, command, dbms, statement, output, started=now)
        self.next_id += 1
        self.jobs[job.id] = job
        while len(self.jobs) > SLOTS:
            self.jobs.popitem(last=False)
        return job

    def get(self, which: str | None) -> list[Job]:
        """`all`, an id, or (None) the last job."""
        if which is None or which == "" or which.lower() == "all":
            if not self.jobs:
                return []
            return list(self.jobs.values()) if which else [next(reversed(self.jobs.values()))]
        try:
            job = self.jobs.get(int(which))
        except ValueError:
            raise QueryError(f"'{which}' is not a job id (a number, or all)") from None
        if job is None:
            raise QueryError(f"no query job {which} (the last {SLOTS} are kept)")
        return [job]

    def pick(self, cluster: str, count: int) -> int:
        """The next round-robin start for a cluster of `count` members."""
        i = self.round_robin.get(cluster, 0) % max(count, 1)
        self.round_robin[cluster] = i + 1
        return i
