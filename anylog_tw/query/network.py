"""The query node: send each cluster's part to one of its operators, merge what comes back.

Operators are chosen per cluster from the metadata (the `main` one first with `nodes = main`,
round-robin with `nodes = all`; members the peer layer reports not responding go last, so they
are tried again only when no other member answers, which is how they come back).  A part whose
operator fails (unreachable, connection lost, silent past the deadline) is sent again to the
next member of the same cluster within the same query, and the statistics say so.  Each
operator runs its part as an ordinary peer command (`query part`, grant `read`), read-only.
"""

from __future__ import annotations

import datetime
import functools
import json
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.defer import TimeoutError as DeferTimeout

from anylog_tw.base.errors import AnyLogError, PeerError, Timeout
from anylog_tw.base.grammar import quote
from anylog_tw.metadata import policies
from anylog_tw.query import merge as merging
from anylog_tw.query import fastmerge, output, rewrite, stream, timeseries
from anylog_tw.query.errors import QueryError
from anylog_tw.query.jobs import Job, PartRun, QueryJobs
from anylog_tw.query.options import QueryOptions
from anylog_tw.query.plan import Plan
from anylog_tw.query.statement import prepare
from anylog_tw.storage import policy_ddl, schema

INLINE_MERGE = 500  # rows up to which the merge runs on the reactor thread (well under a millisecond)
Ask = Callable[[str, str, float], Awaitable]   # (address, command, timeout) -> Reply


@dataclass
class Member:
    address: str
    main: bool = False


@dataclass
class Target:
    """One part to send: a table of a cluster, and the cluster's members in the order to try."""

    cluster: str
    dbms: str
    table: str
    members: list[Member]


@dataclass
class Answer:
    titles: list[str]
    rows: list
    plan: Plan
    job: Job
    target_nodes: int
    nodes: int
    failover: list[str] = field(default_factory=list)
    seconds: float = 0.0
    partial: bool = False   # some clusters did not answer (subset): Target/Participating in the statistics
    stream: object = None   # pass-through: an async iterator of row batches instead of `rows`


class NoMetadata(QueryError):
    code = "no_metadata"


def table_columns(store, dbms: str, table: str) -> dict[str, str] | None:
    """{column: logical type} from the table policy, or None when there is none."""
    policy = policies.table_policy(store, dbms, table)
    if policy is None:
        return None
    return dict(_columns(policies.attr(policy, "create") or "", table))


@functools.lru_cache(maxsize=256)
def _columns(create: str, table: str) -> tuple:
    cols = policy_ddl.policy_columns(create.replace("|", '"'), table)
    return tuple((name.lower(), schema.logical_type(declared)) for name, declared in cols)


def metadata_targets(store, dbms: str, table: str) -> list[Target]:
    """One target per cluster hosting dbms.table; members in ledger order, main marked."""
    hosting = policies.operators_hosting(store, dbms, table)
    out = []
    for cid, operators in hosting.items():
        members = []
        for p in operators:
            address = policies.ip_port(p)
            if address and all(m.address != address for m in members):
                members.append(Member(address, bool(policies.attr(p, "main", False))))
        if members:
            out.append(Target(cid, dbms, table, members))
    if not out:  # no cluster policy: each operator declaring the table is its own cluster
        for p in store.of_type("operator"):
            if policies.attr(p, "dbms") == dbms and policies.attr(p, "table") == table and policies.ip_port(p):
                out.append(Target(policies.ip_port(p), dbms, table, [Member(policies.ip_port(p))]))
    return out


class NetworkQuery:
    """One network query, from the user's statement to the merged rows."""

    def __init__(self, jobs: QueryJobs, ask: Ask, store, clock, in_thread, is_down: Callable[[str], bool],
                 own_address: str = ""):
        self.jobs, self.ask, self.store, self.clock = jobs, ask, store, clock
        self.in_thread, self.is_down, self.own_address = in_thread, is_down, own_address
        self.render_titles: list[str] | None = None   # pass-through pages rendered by the operators

    def deadline(self, dest_timeout: float, opts: QueryOptions) -> float:
        """The smallest of the destination timeout, max_time and the query mode's timeout."""
        found = [t for t in (dest_timeout, opts.max_time, self.jobs.mode.timeout) if t and t > 0]
        return min(found) if found else 20.0

    async def run(self, job: Job, dbms: str, statement: str, opts: QueryOptions, addresses: list[str] | None,
                  subset: bool, timeout: float, streams_json: bool = False) -> Answer:
        """`streams_json`: the caller sends a pass-through answer on as it comes, as JSON row
        objects (`json`, `json:list` over REST); then, when nothing changes the rows on the way
        (no extend, cast or time zone), the operators render the pages themselves and the rows
        are never decoded here (`stream.pages` yields `Rendered` pages)."""
        started = time.monotonic()
        now = datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.timezone.utc).replace(tzinfo=None)
        prepared = prepare(statement, now)
        table = rewrite.table_of_prepared(prepared)
        columns = table_columns(self.store, dbms, table)
        if columns is None and addresses is None:
            raise NoMetadata(f"No metadata info: table '{dbms}.{table}' has no table policy (the query node needs "
                             f"it to type the merge and expand '*')")
        plan = rewrite.plan_prepared(statement, prepared, now, columns, opts.extend)
        if opts.pass_through is False and plan.pass_through:
            plan = rewrite.force_merge(plan)
        job.remote_sql = plan.remote_sql() if plan.period is None else plan.leading_sql()
        job.tables = [f"{dbms}.{table}"] + [f"{d}.{t}" for d, t in opts.include]
        targets = self._targets(dbms, table, opts, addresses)
        self.render_titles = None
        if streams_json and plan.pass_through and plan.titles is not None and not plan.extend \
                and not any(plan.casts) and (output.is_utc(output.zone(opts.timezone)) or not any(plan.time_columns)):
            self.render_titles = plan.output_titles()
        deadline = self.deadline(timeout, opts)
        first = plan
        if plan.period is not None:
            ends = await self._gather(job, targets, plan, deadline, subset, opts, leading=True)
            plan = plan.with_period_end(timeseries.latest(r[1][0][0] for r in ends if r is not None and r[1]))

            if plan is None:  # no operator has data inside the period's bound: an empty result
                return Answer(first.output_titles(), [], first, job, len(targets), 0,
                              seconds=time.monotonic() - started)
            job.remote_sql = plan.remote_sql()
        if not plan.pass_through:
            self.jobs.seq += 1
            name = opts.table or f"query_{self.jobs.seq}"
            job.local_create, job.local_sql = plan.local_create(name), plan.local_sql(name)
            # (the merge itself runs in a fresh in-memory database, on the table merge.Merge names)
        replies = await self._gather(job, targets, plan, deadline, subset, opts)
        answered = [r for r in replies if r is not None]
        source = None
        if plan.pass_through:  # rows stream on from the operators' cursors, up to the LIMIT
            titles = plan.output_titles(answered[0][2] if answered else None)
            rows = []
            source = stream.pages(self.ask, answered, plan, deadline, job)
        else:
            replies = [(r[0], r[1]) for r in answered]
            small = sum(len(r[1]) for r in replies) <= INLINE_MERGE
            quick = fastmerge.merge(plan, replies) if small else None
            if quick is not None:  # a global count/sum/min/max: no SQLite needed
                titles, rows = quick
            elif small:  # a thread hop costs more than the merge
                titles, rows = merging.merge(plan, replies)
            else:
                titles, rows = await self.in_thread(merging.merge, plan, replies)
        done = [p for p in job.parts if p.status in ("Completed", "Empty Set")]
        failover = [f"cluster {p.cluster}: {' -> '.join(p.tried)}" for p in done if len(p.tried) > 1]
        answer = Answer(titles, rows, plan, job, len(targets), len({p.address for p in done}), failover,
                        seconds=time.monotonic() - started)
        answer.partial = len(done) < len(targets)
        answer.stream = source
        if answer.partial:
            answer.nodes = len(done)
        return answer

    # --- targets ------------------------------------------------------------------------------

    def _targets(self, dbms: str, table: str, opts: QueryOptions, addresses: list[str] | None) -> list[Target]:
        tables = [(dbms, table)] + [t for t in opts.include if t != (dbms, table)]
        out: list[Target] = []
        for d, t in tables:
            if addresses is not None:
                out += [Target(a, d, t, [Member(a)]) for a in addresses]
                continue
            found = metadata_targets(self.store, d, t)
            if not found:
                raise NoMetadata(f"Failed to identify destination nodes for 'select' command - Using DBMS: {d} "
                                 f"Table: {t}")
            out += found
        for target in out:
            target.members = self._order(target, opts.nodes)
        return out

    def _order(self, target: Target, nodes: str) -> list[Member]:
        members = list(target.members)
        if nodes == "all":
            start = self.jobs.pick(target.cluster, len(members))
            members = members[start:] + members[:start]
        else:
            members.sort(key=lambda m: not m.main)
        return [m for m in members if not self.is_down(m.address)] + [m for m in members if self.is_down(m.address)]

    # --- sending ------------------------------------------------------------------------------

    async def _gather(self, job: Job, targets: list[Target], plan: Plan, deadline: float, subset: bool,
                      opts: QueryOptions, leading: bool = False) -> list:
        runs = [PartRun(t.cluster, t.dbms, t.table, started=self.clock.seconds()) for t in targets]
        if not leading:
            job.parts = runs
        results = await DeferredList([Deferred.fromCoroutine(self._part(job, t, r, plan, deadline, opts, leading))
                                      for t, r in zip(targets, runs)], consumeErrors=True)
        out, errors = [], []
        for target, run, (ok, value) in zip(targets, runs, results):
            if ok:
                out.append(value)
                continue
            err = value.value
            if job.stopped or isinstance(err, CancelledError):
                raise QueryError(f"query {job.id} was stopped")
            operator_error = isinstance(err, _OperatorError)
            message = err.message if isinstance(err, AnyLogError) else value.getErrorMessage()
            if operator_error or not subset:
                errors.append(message)
            out.append(None)
        if errors:
            raise QueryError(errors[0]) if len(errors) == 1 else QueryError("; ".join(errors[:3]))
        return out

    async def _part(self, job: Job, target: Target, run: PartRun, plan: Plan, deadline: float,
                    opts: QueryOptions, leading: bool):
        sql = plan.leading_sql(target.table) if leading else plan.remote_sql(target.table)
        plus = [e.name for e in plan.extend if e.kind == "+"] if not leading else []
        page = stream.PAGE if plan.pass_through and not leading else 0
        text = (f"query part where dbms = {target.dbms} and table = {target.table} and job = {job.id}"
                + f" and timeout = {deadline:g}" + (f" and page = {page}" if page else "")
                + (f" and node = {self.own_address}" if self.own_address else "")
                + (f" and extend = {quote(','.join(plus))}" if plus else "")
                + (f" and titles = {quote(json.dumps(self.render_titles))}" if page and self.render_titles else "")
                + f" and sql = {quote(sql)}")
        reasons = []
        for member in target.members:
            if job.stopped:
                raise CancelledError()
            run.address, run.status = member.address, "Processing"
            run.tried.append(member.address)
            d = Deferred.fromCoroutine(self.ask(member.address, text, deadline))
            d.addTimeout(deadline + 0.5, self.clock)  # also bounds connecting to a peer that never answers
            job.inflight.add(d)
            try:
                reply = await d
            except (PeerError, Timeout) as e:
                reasons.append(f"{member.address}: {e.message}")
                continue
            except DeferTimeout:
                if job.stopped:
                    raise CancelledError() from None
                reasons.append(f"{member.address}: no answer within {deadline:g} s")
                continue
            finally:
                job.inflight.discard(d)
            run.ended = self.clock.seconds()
            if not reply.ok:
                run.status, run.error = "Error", reply.text or ""
                raise _OperatorError(f"operator {member.address}: {reply.text}")
            data = reply.data if isinstance(reply.data, dict) else {}
            rows, cursor = stream.page_of(reply) if page else (reply.rows or [], None)
            run.rows = len(rows)
            run.status = "Completed" if rows else "Empty Set"
            ext = tuple(_extend_value(e, member.address, target, data) for e in plan.extend)
            return ext, rows, reply.columns, cursor, member.address, run
        run.status, run.error, run.ended = "Error", "; ".join(reasons), self.clock.seconds()
        raise PeerError(f"No active operator for cluster '{target.cluster}' (table {target.dbms}.{target.table}): "
                        + "; ".join(reasons) + " (add subset = true to the destination to accept partial results)")


class _OperatorError(QueryError):
    """An operator ran the part and refused or failed it: the query fails with its message."""


def _extend_value(e, address: str, target: Target, data: dict):
    if e.kind == "+":
        return (data.get("extend") or {}).get(e.name)
    ip, _, port = address.rpartition(":")
    return {"ip": ip, "port": port, "dbms_name": target.dbms, "table_name": target.table}[e.name]

