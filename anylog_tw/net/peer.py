"""The peer protocol: one persistent connection between two nodes, carrying everything.

Both ends speak the same protocol; either side may send requests.  Requests carry an id, and
the answer comes back on the same connection with `re` set to that id, so many requests can be
in flight at once and replies may come back in any order (AnyLog instead opens a connection per
message and dials the sender back for the reply).  Waiting requests are failed when the
connection is lost and time out on the node's clock.

The first frames are the `hello` handshake (`hello.py`, the proofs in `auth.py`); until it succeeds
the peer can run nothing.  After it, a peer's commands run with the connection's grant (`Peers.peer_grant`, at
most `write` without a network key or mutual TLS), narrowed to the grant the request carries (the
grant of whoever sent it on the other node), so `run client` never hands a remote node more than
its caller holds.  A malformed frame is answered with an `error` frame and the connection is closed.

What a peer can make the node hold is bounded: commands, events and errors have small bodies
(`wire.KIND_LIMITS`), a reply body is buffered only when one of our requests waits for it, it is
under `max reply` and it fits in the node's memory budget (else it is read and dropped and the
request fails with the reason), and file bodies stream to disk.
"""

from __future__ import annotations

from collections import deque

from twisted.internet import threads
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from anylog_tw.base.errors import PeerError
from anylog_tw.base.origin import Origin
from anylog_tw.base.registry import GRANTS, weaker
from anylog_tw.base.reply import TEXT, Reply
from anylog_tw.net import auth, wire
from anylog_tw.net.backpressure import MAX_RUNNING, Backpressure, ReadGate
from anylog_tw.net.deadlines import Deadlines
from anylog_tw.net.drive import drive
from anylog_tw.net.eager import eager_writer
from anylog_tw.net.filechannel import FileChannel
from anylog_tw.net.hello import Hello
from anylog_tw.net.limits import NO_TICKET, find_ticket
from anylog_tw.net.payload import reply_fields, reply_from_frame
from anylog_tw.net.transfer import FileReceiver

_WAITING_KINDS = frozenset({"cmd", "event"})  # frames that wait while the peer does not read its replies
PRE_AUTH_BODY = 64 * 1024  # the largest body accepted before the hello handshake completes
THREAD_DECODE = 1024 * 1024  # reply bodies above this are parsed off the reactor thread

# What a peer's commands may do by default: the network's own protocols (queries, files into the
# watch dir, metadata, HA and publisher exchanges) need read and write, never admin.  A node whose
# peers prove a network key or a certificate may give them more (`run tcp server ... and peer grant
# = admin`); a peer that proved neither never holds more than this.
PEER_GRANT = "write"


class PeerProtocol(Hello, FileChannel, Backpressure, Protocol):
    """One peer connection (`role` is "client" for connections we dialled, "server" otherwise)."""

    log = Logger()

    def __init__(self, peers, role: str):
        self.peers = peers
        self.node = peers.node
        self.clock = peers.node.reactor
        self.role = role
        # Until the peer is authenticated, no frame may carry more than a short error message.
        self.decoder = wire.Decoder(max_body=PRE_AUTH_BODY, max_file=0)
        self.decoder.pause_after = frozenset({"hello"})
        self.decoder.admit = self._admit
        self.budget = peers.budget
        self._reserved = 0  # bytes of reply bodies being buffered, held in the node's budget
        self.key = peers.network_key
        self._ready_waiters: list[Deferred] = []
        self.authenticated = False
        self.peer_name: str | None = None
        self.peer_address: str | None = None  # the address the peer declared (its TCP server)
        self.remote = "?"  # ip:port of the socket
        self._nonce = peers.nonces.issue(self)
        self._peer_nonce: str | None = None
        self._own_id: list = auth.identity(None, None)  # what we declared in our hello
        self._peer_id: list = auth.identity(None, None)  # what the peer declared in its hello
        self.identity_proven = False  # the declared name and address are bound to a key proof or a certificate
        self.grant = "read"  # what the peer's commands may do, set when the handshake succeeds
        self._next_id = 1
        self._waiting: dict[int, Deferred] = {}
        self._streaming = False
        self._held: list[bytes] = []  # frames written while a file body streams
        self._held_bytes = 0
        self._files: deque = deque()
        self._receiving: FileReceiver | None = None
        self._refusal: str | None = None  # why the file being received is refused
        self._awaiting_md5: dict[int, tuple[FileReceiver, dict]] = {}  # bodies whose md5 trails them
        self._sending: tuple[int, object] | None = None  # (id, hasher) of the file body going out
        self._closed_reason: str | None = None
        self.last_activity = self.clock.seconds()
        self.requests_in = self.requests_out = 0
        self._timers: list = []
        self.open = False  # between connectionMade and connectionLost
        self._origin = ""  # the origin of the peer's commands in the event log
        self._deadlines = Deadlines(self.clock, self._expire, self._waiting)
        self._send = None  # set when connected: transport.write, or the eager writer over it
        self.ticket = NO_TICKET  # what the TCP server's connection gate knows of us (net/limits.py)

    # -- connection --------------------------------------------------------------------------

    @property
    def label(self) -> str:
        """How logs name the peer: its socket address until the handshake is done (a refused peer is
        not named by what it claims), then the address it declared."""
        if self.authenticated and self.peer_address:
            return self.peer_address
        return self.remote

    def connectionMade(self) -> None:
        self.open = True
        self.ticket = find_ticket(self)
        self._send = eager_writer(self.transport)
        self.reading = ReadGate(self.transport)
        peer = self.transport.getPeer()
        self.remote = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        try:
            self.transport.setTcpNoDelay(True)  # small frames go out at once (no Nagle delay)
        except (AttributeError, OSError):
            pass  # not a TCP transport (tests, TLS wrappers that lack it)
        own_address = self.peers.own_address()
        self._own_id = auth.identity(self.node.name, own_address)
        hello = {"kind": "hello", "id": 0, "hs": auth.HANDSHAKE, "name": self.node.name, "addr": own_address,
                 "nonce": self._nonce, "role": self.role}
        if self.key:
            hello["auth"] = auth.SCHEME
        self._write(wire.encode(hello))
        self._timers.append(self.clock.callLater(self.peers.handshake_timeout, self._handshake_expired))
        self.peers.connection_made(self)

    def _handshake_expired(self) -> None:
        self._timers = [t for t in self._timers if t.active()]
        if not self.authenticated:
            self._refuse(f"no complete hello within {self.peers.handshake_timeout:g} s", "handshake")

    def _schedule_idle(self) -> None:
        if self.peers.idle_timeout:
            self._timers.append(self.clock.callLater(self.peers.idle_timeout / 2, self._check_idle))

    def _check_idle(self) -> None:
        self._timers = [t for t in self._timers if t.active()]
        idle = self.clock.seconds() - self.last_activity
        if idle >= self.peers.idle_timeout and not self._waiting and not self._streaming \
                and self._receiving is None:
            self.log.info("closing idle peer connection {peer}", peer=self.label)
            self._closed_reason = f"idle for {idle:.0f} s"
            self.transport.loseConnection()
            return
        self._schedule_idle()

    def connectionLost(self, reason: Failure = None) -> None:
        self.open = False
        self.peers.nonces.retire(self._nonce)
        for t in self._timers:
            if t.active():
                t.cancel()
        self._timers = []
        self._deadlines.clear()
        self._stop_pressure()
        if self._reserved:
            self.budget.release(self._reserved)
            self._reserved = 0
        why = self._closed_reason or (reason.getErrorMessage() if reason is not None else "closed")
        pending = self.decoder.pending() if self.decoder.dead is None else ""
        if pending:
            self.log.warn("peer {peer} closed the connection inside a frame: {pending}", peer=self.label,
                          pending=pending)
        if self._receiving is not None:
            self._receiving.discard_later()
            self._receiving = None
        for receiver, _ in self._awaiting_md5.values():
            receiver.discard_later()
        self._awaiting_md5 = {}
        error = PeerError(f"the connection to peer {self.label} was lost ({why})")
        ready, self._ready_waiters = self._ready_waiters, []
        for d in ready:
            d.errback(Failure(error))
        waiting = list(self._waiting.values())
        self._waiting.clear()
        for d in waiting:
            d.errback(Failure(error))
        while self._files:
            self._files.popleft()[1].close()
        self.peers.connection_lost(self, why)

    # -- writing -----------------------------------------------------------------------------

    def _write(self, data: bytes) -> bool | None:
        """Send a frame; False when it has left at once, else True or None (some may wait)."""
        self.last_activity = self.clock.seconds()
        if self._streaming:
            self._held.append(data)
            self._held_bytes += len(data)
            return True
        return self._send(data)

    def _send_error(self, message: str, code: str, re: int | None = None) -> None:
        header = {"kind": "error", "id": 0, "code": code}
        if re is not None:
            header["re"] = re
        self._write(wire.encode(header, message.encode("utf-8")))

    def _refuse(self, reason: str, code: str) -> None:
        """End the connection over a protocol or authentication failure, with a logged reason."""
        self.log.warn("refusing peer {peer}: {reason}", peer=self.label, reason=reason)
        self.node.errors.add(f"peer {self.label}", "peer connection", reason)
        self._closed_reason = f"refused: {reason}"
        if self.open:
            self._send_error(reason, code)
            self.transport.loseConnection()

    # -- reading -----------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self.last_activity = self.clock.seconds()
        self.ticket.touch()
        while True:
            try:
                events = self.decoder.feed(data)
            except wire.WireError as e:
                self._refuse(e.reason, e.code)
                return
            self._handle(events)
            if not self.decoder.stashed or self._closed_reason is not None:
                return
            data = b""  # the decoder paused after a hello: go on with the rest under the new limits

    def _handle(self, events: list) -> None:
        for event in events:
            if self._closed_reason is not None:
                return
            kind = event[0]
            if kind == wire.FRAME:
                header = event[1]
                if header["kind"] == "reply" and event[2]:  # buffered under the budget: now the handler's
                    self.budget.release(len(event[2]))
                    self._reserved -= len(event[2])
                if self._backlog is not None and header["kind"] in _WAITING_KINDS:  # see backpressure.py
                    self._defer(event, len(header.get("cmd") or "") + len(event[2]) + 64)
                    continue
                self._frame(header, event[2])
            elif kind == wire.CHUNK:
                self._file_chunk(event[1])
            elif kind == wire.SKIP:
                self.log.debug("dropping a {kind} body of {size} bytes from {peer}: {why}", kind=event[1]["kind"],
                               size=event[1].get("size"), peer=self.label, why=event[2])
            elif kind == wire.START:
                if event[1].get("trailer"):
                    self._file_trailer(event[1])
                else:
                    self._file_start(event[1])
            elif not event[1].get("trailer"):
                self._file_end(event[1])

    def _frame(self, header: dict, body: bytes) -> None:
        kind = header["kind"]
        if kind == "reply":
            self._on_reply(header, body)
        elif kind == "cmd":
            self._on_cmd(header, body)
        elif kind == "hello":
            self._on_hello(header)
        elif kind == "event":
            self._on_event(header, body)
        elif kind == "error":
            self._on_error(header, body)

    def _admit(self, header: dict) -> str | None:
        """Whether to buffer a frame's body (see wire.Decoder.admit); only replies are big enough to ask.

        A reply nobody waits for is dropped quietly (it came after a timeout); one over `max
        reply`, or that does not fit in the node's budget, fails its request with the reason.
        """
        if header["kind"] != "reply":
            return None  # the other kinds are held to wire.KIND_LIMITS at the header
        d = self._waiting.get(header.get("re"))
        if d is None:
            return "no request waits for it (it timed out or was cancelled)"
        size = header["size"]
        if size > self.peers.max_reply:
            reason = (f"peer {self.label} sent a reply of {size:,} bytes, over this node's 'max reply' of "
                      f"{self.peers.max_reply:,} bytes (ask for less, or raise it: run tcp server where max reply "
                      f"= ...)")
        elif not self.budget.reserve(size):
            reason = (f"a reply of {size:,} bytes from peer {self.label} does not fit in the node's frame budget "
                      f"({self.budget.used:,} of {self.budget.limit:,} bytes are held by other replies): try again")
        else:
            self._reserved += size
            return None
        del self._waiting[header["re"]]
        d.errback(Failure(PeerError(reason)))
        return reason

    def command_origin(self, carried: str | None = None) -> Origin:
        """The origin a command this peer sent runs with: the connection's grant, narrowed to the
        grant the request carries (its sender's on the other node), never wider."""
        origin = Origin(self._origin or f"peer {self.label}", self.grant, "peer",
                        self.peer_address if self.identity_proven and self.peer_address else "")
        return origin.narrowed(carried) if carried is not None else origin

    def _authenticated(self) -> None:
        self.authenticated = True
        if not self.identity_proven:
            self.identity_proven = self._certificate_names_peer()
        proven = bool(self.key) or self._certificate() is not None  # a key proof or a CA-signed certificate
        self.grant = self.peers.peer_grant if proven else weaker(self.peers.peer_grant, PEER_GRANT)
        # Reply bodies are judged by `_admit` (a too-big one is skipped, not a broken stream), so the
        # decoder's own ceiling is the file limit.
        self.decoder.max_body = self.peers.max_file
        self.decoder.max_file = self.peers.max_file
        self.decoder.pause_after = frozenset()
        self._origin = f"peer {self.label}"
        for t in self._timers:
            if t.active():
                t.cancel()
        self._timers = []
        self._schedule_idle()
        self.ticket.idle()  # the handshake is done: the gate's deadline is over
        self.peers.connection_ready(self)
        ready, self._ready_waiters = self._ready_waiters, []
        for d in ready:
            d.callback(self)

    def _on_cmd(self, header: dict, body: bytes) -> None:
        if not self._gate("command"):
            return
        ident = header["id"]
        text = header.get("cmd")
        if not isinstance(text, str) or not text.strip():
            self._send_reply(Reply.of_error("the cmd frame has no command text", "bad_frame"), ident)
            return
        carried = header.get("grant")
        if carried is not None and carried not in GRANTS:
            self._send_reply(Reply.of_error(f"the cmd frame's grant {str(carried)[:20]!r} is not one of "
                                            f"{', '.join(GRANTS)}", "bad_frame"), ident)
            return
        self.requests_in += 1
        self.running += 1
        drive(self.node.execute(text, self.command_origin(carried)), self._command_done, ident)
        if self.running > MAX_RUNNING:
            self._check_pressure()

    def _command_done(self, reply: Reply, ident: int) -> None:
        self.running -= 1
        self._send_reply(reply, ident)

    def _send_reply(self, reply: Reply, ident: int) -> None:
        if not self.open or self._closed_reason:
            return
        if reply.ok and reply.fmt == TEXT and reply.columns is None and reply.data is None:
            waiting = self._write(wire.encode_text_reply(ident, (reply.text or "").encode("utf-8")))
        else:
            fields, body = reply_fields(reply)
            fields.update(kind="reply", id=0, re=ident)
            waiting = self._write(wire.encode(fields, body))
        if waiting is not False:
            self._check_pressure()

    def _on_reply(self, header: dict, body: bytes) -> None:
        d = self._waiting.pop(header.get("re"), None)
        if d is None:
            return  # timed out or cancelled already
        if len(body) > THREAD_DECODE and header.get("format") in ("json", "table"):
            decoded = threads.deferToThreadPool(self.clock, self.clock.getThreadPool(), reply_from_frame,
                                                header, body)
            decoded.addBoth(self._decoded, d)
            return
        try:
            reply = reply_from_frame(header, body)
        except wire.WireError as e:
            d.errback(Failure(PeerError(f"peer {self.label} sent a reply that does not decode: {e.reason}")))
            return
        d.callback(reply)

    def _decoded(self, result, d: Deferred) -> None:
        if d.called:  # timed out while the body was parsed
            return
        if isinstance(result, Failure):
            why = result.value.reason if result.check(wire.WireError) else result.getErrorMessage()
            d.errback(Failure(PeerError(f"peer {self.label} sent a reply that does not decode: {why}")))
        else:
            d.callback(result)

    def _on_error(self, header: dict, body: bytes) -> None:
        message = body.decode("utf-8", "replace") or header.get("code", "error")
        self.log.warn("peer {peer} reports an error: {message}", peer=self.label, message=message)
        d = self._waiting.pop(header.get("re"), None)
        if d is not None:
            d.errback(Failure(PeerError(f"peer {self.label}: {message}")))
        else:
            self._closed_reason = f"the peer refused: {message}"

    def _on_event(self, header: dict, body: bytes) -> None:
        if not self._gate("event"):
            return
        self.peers.dispatch_event(self, header, body)

    # -- requests ----------------------------------------------------------------------------

    def _new_request(self, timeout: float | None) -> tuple[int, Deferred]:
        ident = self._next_id
        self._next_id += 1

        def cancel(_d):
            self._waiting.pop(ident, None)

        d = Deferred(cancel)
        self._waiting[ident] = d
        if timeout:
            self._deadlines.add(ident, timeout)
        return ident, d

    def _expire(self, ident: int) -> None:
        d = self._waiting.pop(ident, None)
        if d is not None:
            d.errback(Failure(TimeoutError(f"peer {self.label} did not answer request {ident} in time")))

    def request(self, command: str, timeout: float | None = None, grant: str | None = None) -> Deferred:
        """Send a command; the Deferred fires with the peer's Reply (or fails: PeerError, TimeoutError).

        `grant` is what the command's sender holds here; the peer runs it with no more than that
        (nor more than it gives this node).  The node's own protocols send none.
        """
        ident, d = self._new_request(timeout)
        self.requests_out += 1
        if grant is None:
            self._write(wire.encode_cmd(ident, command))
        else:
            self._write(wire.encode({"kind": "cmd", "id": ident, "cmd": command, "grant": grant}))
        return d

    def event(self, name: str, args: dict | None = None, body: bytes = b"") -> None:
        """A one-way event; nothing answers it."""
        header = {"kind": "event", "id": 0, "event": name}
        if args:
            header["args"] = args
        self._write(wire.encode(header, body))
