"""QoS 1 and 2 acknowledged only when durable, and a broker's resend of what we took dropped, across restarts.

A PUBACK tells the broker to forget a message, so it goes out only when the message's rows are in
a watch-dir file that is fsynced (`Streamer.add(waiter=...)` tells us).  Waiting for the buffer
thresholds would stall: a broker sends only so many unacknowledged messages (Mosquitto: 20 to an
MQTT 3.1.1 client), so the buffers holding waiting rows are written as soon as the read that
brought them is done, and again when that write ends if more came meanwhile (group commit: the
more messages arrive during one write, the bigger the next file).

The other half is exactly-once.  A message whose rows are durable but whose PUBACK did not reach
the broker (the node killed in between, a connection lost) is sent again with the DUP flag after
the session resumes.  Before a buffer's file is published, the keys of the messages it completes
(packet id and a hash of topic and payload) are appended to a journal and fdatasync'ed; the file
is then renamed from its stage (`ingest/staged.write_staged`).  When the client starts again the
journal is read back: a stage still there is published now, one gone was published before, so
every journaled key is a message whose rows are in the watch dir (or the table), and its DUP
resend is acknowledged and dropped.  Keys of messages not yet durable are not journaled, so a
crash can only make the broker resend what we do not hold: at least once, never lost, and no
doubles from a resend.  What is not covered is said in docs/mqtt.md (QoS 2 after PUBREC, a
message whose rows go to two tables written at the same instant, persist/log files).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import deque

import orjson
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger

from anylog_tw.base import atomic

_LOADED = time.time()  # stages older than this were left by an earlier process (stages need this module)
HISTORY = 32_768  # keys per journal generation; two generations are kept (the current and `.old`)


class Pending:
    """One QoS 1/2 message whose rows wait in the streaming buffers (a streamer `waiter`)."""

    __slots__ = ("sink", "mid", "qos", "key", "remaining")

    def __init__(self, sink: "Acks", mid: int, qos: int, key: str):
        self.sink = sink
        self.mid = mid
        self.qos = qos
        self.key = key
        self.remaining = 0  # buffers holding its rows, not durable yet


def message_key(mid: int, topic: bytes, payload: bytes) -> str:
    """What makes a resend the same message: its packet id, topic and payload (stable across restarts)."""
    return f"{mid}:{hashlib.blake2b(payload, digest_size=10, key=topic[:64]).hexdigest()}"


class Journal:
    """The node's journal of messages whose rows are staged (one file per prep dir, every client's keys).

    One journal for all the clients, so that a stage file no line names is known to be garbage: a
    crash after it was written and before its line was (its messages were never acknowledged and
    come again); recovery removes those.
    """

    log = Logger()

    def __init__(self, path: str, watch_dirs=()):
        self.path = path
        self.watch_dirs = tuple(watch_dirs)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._journaled = 0
        self.keys: list[str] | None = None  # read back by `recover`, once

    def append(self, stage: str, final: str, keys: list[str]) -> None:
        line = orjson.dumps({"stage": stage, "final": final, "keys": keys}) + b"\n"
        with self._lock:
            if self._fd is None:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self._fd, line)
            os.fdatasync(self._fd)
            self._journaled += len(keys)
            if self._journaled > HISTORY:
                os.close(self._fd)
                self._fd = None
                os.replace(self.path, self.path + ".old")
                self._journaled = 0

    def recover(self) -> list[str]:
        """Read the journal back (blocking, once): publish the stages a crash left, remove the stages
        no line names, and return the keys of the messages held."""
        with self._lock:
            if self.keys is not None:
                return self.keys
            keys, named, dirs = [], set(), set(self.watch_dirs)
            for path in (self.path + ".old", self.path):
                try:
                    with open(path, "rb") as f:
                        lines = f.read().splitlines()
                except FileNotFoundError:
                    continue
                for line in lines:
                    try:
                        record = orjson.loads(line)
                        stage, final = record["stage"], record["final"]
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue  # a line cut by the crash: its file was not published, its messages come again
                    named.add(stage)
                    dirs.add(os.path.dirname(stage))
                    if os.path.exists(stage):
                        if os.path.lexists(final):
                            os.unlink(stage)
                        else:
                            atomic.rename_no_replace(stage, final)
                            atomic.fsync_dir(os.path.dirname(final))
                            self.log.info("published {final}, staged before the node stopped", final=final)
                    keys.extend(record["keys"])
            for d in dirs:
                try:
                    entries = [e.path for e in os.scandir(d) if e.name.startswith(".") and e.name.endswith(".stage")
                               and e.stat().st_mtime < _LOADED]
                except OSError:
                    continue
                for stage in entries:
                    if stage not in named:
                        os.unlink(stage)  # its messages were never acknowledged: the broker sends them again
            self.keys = keys[-2 * HISTORY:]
            return self.keys

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class Acks:
    """The acknowledgements of one subscription (`name`: its client id) and the node's journal (None:
    in memory only, for sessions that do not outlive their connection)."""

    log = Logger()

    def __init__(self, reactor, journal: Journal | None, flush, name: str = ""):
        self.reactor = reactor
        self.journal = journal
        self.prefix = name + "/"
        self.flush = flush  # () -> Deferreds of the buffer writes it started (Streamer.flush_waiting)
        self.client = None  # the paho client acknowledging (set by the link)
        self.taken: set[str] = set()
        self._order: deque[str] = deque()
        self.pending: dict[str, Pending] = {}
        self.dropped = 0  # resends dropped (taken already)
        self.acked = 0
        self._call = None
        self._flushing = False
        self._again = False
        self._idle: list[Deferred] = []

    # -- the reactor side ----------------------------------------------------------------------

    def resend(self, message) -> bool:
        """Whether `message` (QoS 1/2, DUP set) is one we hold: acknowledged now if durable, else when it is."""
        key = self.prefix + message_key(message.mid, message._topic, message.payload)
        if key in self.taken:
            self.dropped += 1
            self._ack(message.mid, message.qos)
            return True
        if key in self.pending:
            self.dropped += 1
            return True
        return False

    def waiter(self, message) -> Pending:
        return Pending(self, message.mid, message.qos, self.prefix + message_key(message.mid, message._topic,
                                                                                  message.payload))

    def delivered(self, w: Pending) -> None:
        """After `deliver`: acknowledge now when nothing was buffered (an error, a kept file), else wait."""
        if not w.remaining:
            self._ack(w.mid, w.qos)
            return
        self.pending[w.key] = w
        if self._flushing:
            self._again = True
        elif self._call is None:
            self._call = self.reactor.callLater(0, self._flush)

    def durable(self, waiters: list[Pending]) -> None:
        """The streamer wrote a file holding rows of these messages."""
        for w in waiters:
            w.remaining -= 1
            if w.remaining <= 0 and self.pending.pop(w.key, None) is not None:
                self._remember(w.key)
                self._ack(w.mid, w.qos)
        if not self.pending:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def _flush(self) -> None:
        self._call = None
        started = self.flush()
        if not started:
            return
        self._flushing = True
        DeferredList(started, consumeErrors=True).addBoth(self._flushed)

    def _flushed(self, _) -> None:
        self._flushing = False
        if self._again:
            self._again = False
            self._flush()

    def settle(self, timeout: float) -> Deferred:
        """Write what waits and fire when every waiting message is acknowledged (or after `timeout`)."""
        if not self.pending:
            return succeed(None)
        d = Deferred()
        self._idle.append(d)
        self._flush()
        d.addTimeout(timeout, self.reactor)
        return d.addErrback(lambda _: None)

    def _ack(self, mid: int, qos: int) -> None:
        self.acked += 1
        if self.client is not None:
            self.client.ack(mid, qos)  # without a session it is not sent: the broker resends, we drop it

    def _remember(self, key: str) -> None:
        if key in self.taken:
            return
        self.taken.add(key)
        self._order.append(key)
        if len(self._order) > 2 * HISTORY:
            self.taken.discard(self._order.popleft())

    # -- the worker-thread side ----------------------------------------------------------------

    def staged(self, stage: str, final: str, waiters: list[Pending]) -> None:
        """A file holding rows of `waiters` is staged durably: journal the messages it completes."""
        if self.journal is None:
            return
        keys = [w.key for w in waiters if w.remaining == 1]  # the last of their buffers (see the module doc)
        if keys:
            self.journal.append(stage, final, keys)

    def recover(self) -> int:
        """Learn the messages held before a restart (blocking); their number."""
        if self.journal is None:
            return 0
        mine = [k for k in self.journal.recover() if k.startswith(self.prefix)]
        for key in mine:
            self._remember(key)
        return len(mine)
