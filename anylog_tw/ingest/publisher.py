"""The publisher (`run publisher`): each file of the watch dir goes to an operator that hosts its table.

The watch dir is the queue.  A file leaves it only after an operator acknowledged it (the peer
file transfer answers once the file is complete, checked and on the operator's disk); then it is
deleted (`delete_json`) or kept in `bkup_dir` (gzipped with `compress_json`).  So a publisher
stopped or killed at any point starts again from what is still there, and a file sent twice
(acknowledged, then the node died before removing it) carries its hash in its name and is
refused by the operator as a duplicate: no row is ingested twice.

A file goes through:

    offered by the watcher -> inspected in a thread (name rules, size, hash) -> routed
    (`routing.route`) -> waiting for a slot on its operator (`per_operator` at once, and
    `max_in_flight` overall) -> sent -> backed up or deleted

A bad file goes to the error dir with the reason in its name (`*.err_<reason>.<epoch>.json`) and
in the error log; nothing is sent.  A file with no live operator waits ("pending"): pending files
are routed again on a backoff timer (which also probes the operators they wait for) and at once
on every metadata change.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.logger import Logger

from anylog_tw.base.errors import AnyLogError, PeerError, Timeout
from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.base.metrics import Metrics
from anylog_tw.base.process import NodeProcess
from anylog_tw.ingest import archive, outbox, routing
from anylog_tw.ingest.distribution import Distribution
from anylog_tw.ingest.outbox import Outgoing
from anylog_tw.ingest.publisher_stats import PublisherMetrics, PublisherStats
from anylog_tw.ingest.watcher import DirectoryWatcher
from anylog_tw.net.peers import canonical


@dataclass
class PublisherConfig:
    watch_dir: str
    bkup_dir: str
    err_dir: str
    delete_json: bool = False
    compress_json: bool = False
    master_node: str = ""
    company: str = ""
    per_operator: int = 4
    max_in_flight: int = 32
    retry_max: float = 30.0
    retry_initial: float = 1.0
    rescan: float = 10.0
    use_inotify: bool = True
    inspect_at_once: int = 8


class Publisher(NodeProcess):
    name = "Publisher"
    exit_command = "exit publisher"
    log = Logger()

    def __init__(self, config: PublisherConfig, meta, peers, distribution: Distribution):
        self.config = config
        self.meta = meta  # the node's loaded Metadata (its ledger), or None
        self.peers = peers
        self.distribution = distribution
        self.stats = PublisherStats()
        self.watcher: DirectoryWatcher | None = None
        self.known: set[str] = set()  # every name in hand, whatever its stage
        self.to_inspect: deque[str] = deque()
        self.inspecting = 0
        self.files: dict[str, Outgoing] = {}  # inspected, not yet delivered
        self.ready: dict[str, deque[Outgoing]] = {}  # operator -> files waiting for a slot
        self.in_flight: dict[str, int] = {}
        self.total_in_flight = 0
        self.pending: dict[str, tuple[Outgoing, routing.Route]] = {}
        self.stuck: set[str] = set()
        self.backoff = config.retry_initial
        self._retry_call = None
        self._meta_wait: Deferred | None = None
        self._seen_changes = -1
        self._topologies: dict[tuple[str, str], routing.Topology] = {}
        self._clusters: dict | None = None
        self._tasks: set[Deferred] = set()
        self.started_at = 0.0

    @property
    def watch_dir(self) -> str:
        """Where new data files go on this node (REST PUT and the streamer read it)."""
        return self.config.watch_dir


    # -- life cycle ----------------------------------------------------------------------------

    def startService(self) -> None:
        NodeProcess.startService(self)
        self.started_at = self.reactor.seconds()
        for path in (self.config.watch_dir, self.config.bkup_dir, self.config.err_dir):
            os.makedirs(path, exist_ok=True)
        self._arm_metadata()
        self.watcher = DirectoryWatcher(self.reactor, self.config.watch_dir, self.offer,
                                        rescan=self.config.rescan, use_inotify=self.config.use_inotify,
                                        in_thread=self.node.in_thread)
        self.watcher.start()
        metrics = self._metrics()
        metrics.watch_queue("publisher", lambda: len(self.known))

    def stopService(self) -> Deferred:
        NodeProcess.stopService(self)
        watching = self.watcher.stop() if self.watcher is not None else None
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        if self._meta_wait is not None and not self._meta_wait.called:
            self._meta_wait.cancel()
        self._meta_wait = None
        self.to_inspect.clear()
        metrics = self._metrics()
        metrics.forget_queue("publisher")

        async def drain() -> None:
            if watching is not None:
                await watching  # a scan in flight ends before the process is stopped
            # Transfers in flight end (acknowledged, or failed by their timeout); what was not
            # acknowledged stays in the watch dir for the next start.
            while self._tasks:
                await DeferredList(list(self._tasks), consumeErrors=True)

        return Deferred.fromCoroutine(drain())

    def details(self) -> str:
        s = self.stats
        return (f"Watching: {self.config.watch_dir}, Sent: {s.files_sent} files to {len(s.operators)} operator(s), "
                f"Pending: {len(self.known)}, Using Master: {self.config.master_node or 'none'}")

    def _spawn(self, coro) -> Deferred:
        d = Deferred.fromCoroutine(coro)
        if not d.called:
            self._tasks.add(d)
            d.addBoth(lambda r: (self._tasks.discard(d), r)[1])
        d.addErrback(lambda f: self.log.failure("publisher task failed", f))
        return d

    # -- files in ------------------------------------------------------------------------------

    def offer(self, name: str) -> None:
        """The watcher says `name` is complete: take it unless it is in hand already."""
        if not self.running or name in self.known or name in self.stuck:
            return
        self.known.add(name)
        self.to_inspect.append(name)
        self._inspect_more()

    def _inspect_more(self) -> None:
        while self.to_inspect and self.inspecting < self.config.inspect_at_once and self.running:
            name = self.to_inspect.popleft()
            self.inspecting += 1
            self._spawn(self._inspect(name))

    async def _inspect(self, name: str) -> None:
        try:
            path = os.path.join(self.config.watch_dir, name)
            try:
                out = await self.node.in_thread(outbox.inspect_file, path)
            except FileNotFoundError:
                self.known.discard(name)
                return
            except IngestError as e:
                await self._reject(name, e.reason, e.message)
                return
            except OSError as e:
                await self._reject(name, "io", f"{name} cannot be read: {e.strerror or e}")
                return
            if not self.running:
                self.known.discard(name)
                return
            self.files[name] = out
            self._route(out)
        finally:
            self.inspecting -= 1
            self._inspect_more()

    async def _reject(self, name: str, reason: str, message: str) -> None:
        """A bad file: to the error dir with the reason, nothing sent."""
        self.stats.bad_file(reason, message, self.reactor.seconds())
        self.node.errors.add("publisher", name, message)
        self.log.warn("publisher: {name} not sent ({reason}): {message}", name=name, reason=reason, message=message)
        try:
            await self.node.in_thread(archive.move_to_error, os.path.join(self.config.watch_dir, name),
                               self.config.err_dir, name, reason, int(time.time()))
        except FileNotFoundError:
            pass
        except OSError as e:
            self.stuck.add(name)  # never retried in a loop; it stays in the watch dir
            self.log.warn("publisher: cannot move {name} to the error dir: {error}", name=name, error=e)
        self.known.discard(name)

    # -- routing -------------------------------------------------------------------------------

    def live(self, address: str) -> bool:
        """An operator is live unless the peer layer marks it not responding."""
        try:

            st = self.peers.states.get(canonical(address))
        except AnyLogError:
            return False
        return st is None or st.status != "not responding"

    def topology(self, dbms: str, table: str) -> routing.Topology:
        if self.meta is None:
            return routing.Topology()
        ledger = self.meta.ledger
        if ledger.changes != self._seen_changes:
            self._seen_changes = ledger.changes
            self._topologies.clear()
            self._clusters = None
        key = (dbms, table)
        found = self._topologies.get(key)
        if found is None:
            if self._clusters is None:
                self._clusters = routing.clusters_with_operators(ledger)
            found = self._topologies[key] = routing.topology(ledger, dbms, table, self._clusters)
        return found

    def decide(self, out: Outgoing) -> routing.Route:
        return routing.route(out.dbms, out.table, out.hash, self.distribution.rules,
                             self.topology(out.dbms, out.table), self.live)

    def _route(self, out: Outgoing) -> None:
        r = self.decide(out)
        if r.target is None:
            self.pending[out.name] = (out, r)
            self._schedule_retry()
            return
        self.pending.pop(out.name, None)
        self.ready.setdefault(r.target, deque()).append(out)
        self._pump()

    def _reroute_pending(self) -> None:
        waiting = list(self.pending.values())
        for out, _ in waiting:
            self._route(out)

    # -- sending -------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Start transfers while operators have free slots (and the overall bound allows)."""
        for address in list(self.ready):
            queue = self.ready[address]
            while queue and self.in_flight.get(address, 0) < self.config.per_operator \
                    and self.total_in_flight < self.config.max_in_flight and self.running:
                out = queue.popleft()
                self.in_flight[address] = self.in_flight.get(address, 0) + 1
                self.total_in_flight += 1
                self._spawn(self._send(out, address))
            if not queue:
                self.ready.pop(address, None)

    async def _send(self, out: Outgoing, address: str) -> None:
        path = os.path.join(self.config.watch_dir, out.name)
        start = self.reactor.seconds()
        try:
            await self.peers.send_file(address, path, dest="watch", name=out.send_name, md5=out.md5)
        except (PeerError, Timeout) as e:
            self._failed(out, address, e.message)
            return
        except Exception as e:  # a bug, not the network: keep the file and say so
            self.log.failure("publisher: sending {name} to {address} failed", name=out.name, address=address)
            self._failed(out, address, f"{type(e).__name__}: {e}")
            return
        finally:
            self.in_flight[address] -= 1
            self.total_in_flight -= 1
        self.stats.sent(address, out.dbms, out.table, out.size, self.reactor.seconds() - start)
        metrics = self._pmetrics()
        if metrics is not None:
            metrics.files.labels(operator=address).inc()
            metrics.bytes.labels(operator=address).inc(out.size)
        self.backoff = self.config.retry_initial
        self._pump()  # the slot is free: the next transfer overlaps this file's removal
        try:
            if self.config.delete_json:
                await self.node.in_thread(outbox.discard, path)
            else:
                await self.node.in_thread(outbox.backup, path, self.config.bkup_dir, out.send_name,
                                   self.config.compress_json)
        except OSError as e:
            # Delivered, but still in the watch dir: never sent again by this run (a restart would
            # send it again and the operator refuse it as a duplicate).
            self.stuck.add(out.name)
            self.stats.error(f"{out.name} was delivered but cannot be removed from the watch dir: {e}",
                             self.reactor.seconds())
            self.log.warn("publisher: {name} delivered but not removed: {error}", name=out.name, error=e)
        self.files.pop(out.name, None)
        self.known.discard(out.name)
        self._pump()

    def _failed(self, out: Outgoing, address: str, message: str) -> None:
        now = self.reactor.seconds()
        self.stats.failed(address, f"{out.name}: {message}", now)
        self.log.warn("publisher: {name} not delivered to {address}: {error}", name=out.name, address=address,
                      error=message)
        metrics = self._pmetrics()
        if metrics is not None:
            metrics.failures.labels(operator=address).inc()
        if not self.running:
            self.files.pop(out.name, None)
            self.known.discard(out.name)
            return
        if not os.path.exists(os.path.join(self.config.watch_dir, out.name)):
            self.files.pop(out.name, None)
            self.known.discard(out.name)
            return
        # The operator may be down now: what waits for it is routed again, this file included.
        moved = list(self.ready.pop(address, ())) if not self.live(address) else []
        r = self.decide(out)
        if r.target is None or r.target == address:
            # Same answer: wait for the retry timer rather than loop on a refusing operator.
            self.pending[out.name] = (out, r if r.target is None else routing.Route(
                r.how, None, r.cluster, r.candidates, f"{address} refused the file: {message}"))
            self._schedule_retry()
        else:
            self._route(out)
        for other in moved:
            self._route(other)
        self._pump()

    # -- waiting files -------------------------------------------------------------------------

    def _schedule_retry(self) -> None:
        if not self.running or (self._retry_call is not None and self._retry_call.active()):
            return
        self._retry_call = self.reactor.callLater(self.backoff, self._retry)

    def _retry(self) -> None:
        """Probe the operators the pending files wait for, and route them again."""
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        if not self.running or not self.pending:
            return
        self.backoff = min(self.config.retry_max, self.backoff * 2)
        probes = []
        for _, r in self.pending.values():
            if r.candidates and r.candidates[0] not in probes:
                probes.append(r.candidates[0])
        for address in probes[:16]:
            self._spawn(self._probe(address))
        self._reroute_pending()
        if self.pending:
            self._schedule_retry()

    async def _probe(self, address: str) -> None:
        try:
            await self.peers.connection(address)
        except AnyLogError:
            return
        except CancelledError:
            return
        if self.running and self.pending:
            self._reroute_pending()

    def retry_now(self) -> None:
        """Route the pending files again at once (a metadata change, or the user asks)."""
        self.backoff = self.config.retry_initial
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        self._reroute_pending()
        if self.pending:
            self._retry()  # also probes the operators they wait for

    def _arm_metadata(self) -> None:
        """Be told of the next metadata change (the ledger counts its changes)."""
        if self.meta is None or not self.running:
            return
        seen = self.meta.ledger.changes
        d = self._meta_wait = self.meta.when(lambda: self.meta.ledger.changes != seen)
        d.addCallbacks(self._metadata_changed, lambda f: f.trap(CancelledError))

    def _metadata_changed(self, _=None) -> None:
        self._meta_wait = None
        if not self.running:
            return
        self._arm_metadata()  # the change being announced no longer satisfies the new waiter
        self.retry_now()

    # -- status ----------------------------------------------------------------------------------

    def pending_rows(self) -> list[list]:
        """DBMS, Table, Files waiting, Reason (of the last one)."""
        per: dict[tuple[str, str], list] = {}
        for out in self.files.values():
            row = per.setdefault((out.dbms, out.table), [out.dbms, out.table, 0, ""])
            row[2] += 1
        for out, r in self.pending.values():
            row = per.get((out.dbms, out.table))
            if row is not None:
                row[3] = r.reason
        return [per[k] for k in sorted(per)]

    def operator_rows(self) -> list[list]:
        rows = []
        for address, st in sorted(self.stats.operators.items()):
            status = "live" if self.live(address) else "not responding"
            rows.append([address, status, st.files, st.bytes, self.in_flight.get(address, 0),
                         len(self.ready.get(address, ())), st.failures, st.last_error])
        return rows

    def _metrics(self) -> Metrics:
        return self.node.component(Metrics)

    def _pmetrics(self):
        return self.node.component(PublisherMetrics)
