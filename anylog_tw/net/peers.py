"""The node's peers: one connection per peer, reused for everything, with health and reconnects.

Other areas use this through `node.component(Peers)`:

    reply = await peers.command("10.0.0.1:32048", "get status", timeout=20.0)
    await peers.send_file("10.0.0.1:32048", "/path/file.json", dest="watch")
    peers.on_event("metadata_ping", handler)          # handler(peer_address, args, body)
    await peers.send_event("10.0.0.1:32048", "metadata_ping", {"x": 1})

Concurrent callers share one connection attempt.  A peer whose connection breaks is marked
"not responding" and redialled with exponential backoff; `get connections` shows the table.
"""

from __future__ import annotations

import ipaddress
import os
import re
from functools import lru_cache

from twisted.internet import error as net_error
from twisted.internet.defer import CancelledError, Deferred, DeferredList, TimeoutError
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from anylog_tw.base.errors import OptionError, PeerError, Timeout
from anylog_tw.base.reply import Reply
from anylog_tw.net import auth, wire
from anylog_tw.net.budget import MemoryBudget
from anylog_tw.net.peer import PEER_GRANT, PeerProtocol
from anylog_tw.net.transfer import TransferError, check_file_name

_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")


def parse_address(text: str) -> tuple[str, int]:
    """`ip:port` (or `[v6]:port`, or `host:port`) -> (host, port), strictly, with a clear error."""
    if isinstance(text, str) and len(text) > 300:  # no address is this long; and the cache keeps only short texts
        raise OptionError(f"{text[:60]!r}... ({len(text)} characters) is not a peer address: write ip:port")
    return _parse_address(text)


@lru_cache(maxsize=4096)
def _parse_address(text: str) -> tuple[str, int]:
    s = text.strip() if isinstance(text, str) else ""
    m = re.match(r"^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$", s) or re.match(r"^([^:\s]+):(\d{1,5})$", s)
    if not m:
        raise OptionError(f"{text!r} is not a peer address: write ip:port, e.g. 10.0.0.1:32048")
    host, port = m.group(1), int(m.group(2))
    if not 1 <= port <= 65535:
        raise OptionError(f"{text!r}: port {port} is out of range (1-65535)")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if not _HOST.match(host) or host[-1] in ".-" or re.match(r"^[\d.]+$", host):
            raise OptionError(f"{text!r}: {host!r} is neither an IP address nor a host name") from None
    return host, port


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def canonical(text: str) -> str:
    if isinstance(text, str) and len(text) > 300:
        parse_address(text)  # raises
    return _canonical(text)


@lru_cache(maxsize=4096)
def _canonical(text: str) -> str:
    return format_address(*parse_address(text))


class PeerState:
    """What the node knows about one peer address."""

    __slots__ = ("address", "status", "conn", "since", "last_error", "failures", "retry", "backoff", "keep")

    def __init__(self, address: str, now: float):
        self.address = address
        self.status = "new"
        self.conn: PeerProtocol | None = None
        self.since = now
        self.last_error = ""
        self.failures = 0
        self.retry = None  # the DelayedCall of the next reconnect
        self.backoff = 0.0
        self.keep = False  # was connected once: reconnect it when it breaks


class _Factory(Factory):
    def __init__(self, peers: "Peers", role: str):
        self.peers = peers
        self.role = role

    def buildProtocol(self, addr):
        proto = PeerProtocol(self.peers, self.role)
        proto.factory = self
        return proto


class Peers:
    """The node's peer connections (client side and the ones its TCP server accepted)."""

    log = Logger()

    def __init__(self, node):
        self.node = node
        self.reactor = node.reactor
        key = node.environ.get("ANYLOG_NETWORK_KEY")
        self.network_key: bytes | None = key.encode() if key else None
        self.tls = None  # auth.TLSConfig when the TCP server runs with ssl = true
        self.nonces = auth.NonceBook(node.reactor)  # our handshake nonces: a peer answering with one is refused
        self.peer_grant = PEER_GRANT  # what authenticated peers' commands may do (`run tcp server ... peer grant`)
        self.connect_timeout = 5.0
        self.handshake_timeout = 10.0
        self.idle_timeout = 600.0
        self.max_reply = wire.MAX_BODY  # the largest reply body buffered (`run tcp server where max reply`)
        self.max_file = wire.MAX_FILE
        self.budget = MemoryBudget()  # bytes all peer connections together may hold (`frame budget`)
        self.backoff_initial = 1.0
        self.backoff_max = 60.0
        self.close_grace = 5.0  # seconds a closing connection may take before it is aborted
        self.states: dict[str, PeerState] = {}
        self.live: set[PeerProtocol] = set()
        self._connecting: dict[str, list[Deferred]] = {}
        self._attempts: set[Deferred] = set()
        self._handlers: dict[str, list] = {}
        self._lost_waiters: list[Deferred] = []
        self._closing = False

    # -- identity and configuration ----------------------------------------------------------

    def own_address(self) -> str | None:
        tcp = self.node.process("TCP")
        address = getattr(tcp, "external_address", None) if tcp is not None else None
        return format_address(*address) if address else None

    def server_factory(self) -> Factory:
        return _Factory(self, "server")

    def set_network_key(self, key: str | None) -> None:
        """New connections use the key; established ones stay as they were authenticated."""
        self.network_key = key.encode() if key else None

    # -- connections -------------------------------------------------------------------------

    def _state(self, address: str) -> PeerState:
        st = self.states.get(address)
        if st is None:
            st = self.states[address] = PeerState(address, self.reactor.seconds())
        return st

    def _usable(self, proto: PeerProtocol | None) -> bool:
        return proto is not None and proto.authenticated and proto.open and proto._closed_reason is None

    async def connection(self, address: str) -> PeerProtocol:
        """The authenticated connection to `address`, dialled if there is none."""
        address = canonical(address)
        if self._closing:
            raise PeerError("the node is stopping")
        st = self._state(address)
        if self._usable(st.conn):
            return st.conn
        waiter: Deferred = Deferred()
        waiters = self._connecting.get(address)
        if waiters is not None:
            waiters.append(waiter)
        else:
            self._connecting[address] = [waiter]
            Deferred.fromCoroutine(self._connect(address)).addBoth(self._resolve, address)
        return await waiter

    def _endpoint(self, host: str, port: int):
        if self.tls is not None:
            return SSL4ClientEndpoint(self.reactor, host, port, self.tls.options(), timeout=self.connect_timeout)
        cls = TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint
        return cls(self.reactor, host, port, timeout=self.connect_timeout)

    async def _connect(self, address: str) -> PeerProtocol:
        host, port = parse_address(address)
        attempt = self._endpoint(host, port).connect(_Factory(self, "client"))
        self._attempts.add(attempt)
        try:
            proto = await attempt
        except CancelledError:
            raise PeerError(f"connecting to peer {address} was cancelled (the node is stopping)") from None
        except (net_error.ConnectError, net_error.DNSLookupError, OSError) as e:
            raise PeerError(f"peer {address} is not reachable: {_why(e)}") from None
        finally:
            self._attempts.discard(attempt)
        try:
            await proto.when_ready()
        except PeerError as e:
            raise PeerError(f"peer {address} did not accept the connection: {e.message}") from None
        return proto

    def _resolve(self, result, address: str) -> None:
        waiters = self._connecting.pop(address, [])
        st = self._state(address)
        if isinstance(result, Failure):
            reason = result.value.message if result.check(PeerError) else result.getErrorMessage()
            self._mark_down(st, reason)
            for w in waiters:
                w.errback(Failure(result.value if result.check(PeerError) else PeerError(reason)))
            return
        st.conn = result
        st.keep = True
        self._mark_up(st)
        for w in waiters:
            w.callback(result)

    def _mark_up(self, st: PeerState) -> None:
        if st.status != "active":
            st.since = self.reactor.seconds()
        st.status = "active"
        st.failures = 0
        st.backoff = 0.0
        if st.retry is not None and st.retry.active():
            st.retry.cancel()
        st.retry = None

    def _mark_down(self, st: PeerState, reason: str) -> None:
        if st.status != "not responding":
            st.since = self.reactor.seconds()
            self.log.warn("peer {peer} is not responding: {reason}", peer=st.address, reason=reason)
        st.status = "not responding"
        st.last_error = reason
        st.failures += 1
        if st.keep and not self._closing:
            self._schedule_retry(st)

    def _schedule_retry(self, st: PeerState) -> None:
        if st.retry is not None and st.retry.active():
            return
        st.backoff = min(self.backoff_max, st.backoff * 2 if st.backoff else self.backoff_initial)
        st.retry = self.reactor.callLater(st.backoff, self._retry, st.address)

    def _retry(self, address: str) -> None:
        st = self._state(address)
        st.retry = None
        if self._closing or self._usable(st.conn):
            return
        d = Deferred.fromCoroutine(self.connection(address))
        d.addErrback(lambda f: None)  # _resolve recorded it and scheduled the next try

    def forget(self, address: str) -> None:
        """Stop reconnecting to a peer (its connection, if any, stays until it closes)."""
        st = self.states.pop(canonical(address), None)
        if st is not None and st.retry is not None and st.retry.active():
            st.retry.cancel()

    # callbacks from PeerProtocol

    def connection_made(self, proto: PeerProtocol) -> None:
        self.live.add(proto)

    def connection_ready(self, proto: PeerProtocol) -> None:
        """An accepted connection also carries our requests to the peer, but only when the peer proved
        the address it declared (a key proof that covers it, or a certificate that names it): else
        anyone could declare another node's address and receive the requests meant for it."""
        if proto.role != "server" or not proto.peer_address or not proto.identity_proven:
            return
        try:
            address = canonical(proto.peer_address)
        except OptionError:
            return
        st = self._state(address)
        if not self._usable(st.conn):
            st.conn = proto
            self._mark_up(st)

    def connection_lost(self, proto: PeerProtocol, why: str) -> None:
        self.live.discard(proto)
        for st in self.states.values():
            if st.conn is proto:
                st.conn = None
                if why.startswith("idle"):
                    st.status = "idle"
                elif not self._closing and proto.authenticated:
                    self._mark_down(st, f"connection lost: {why}")
        if not self.live:
            waiters, self._lost_waiters = self._lost_waiters, []
            for w in waiters:
                w.callback(None)

    # -- the API ---------------------------------------------------------------------------------

    async def command(self, address: str, text: str, timeout: float | None = 20.0, grant: str | None = None) -> Reply:
        """Run `text` on the peer and return its Reply (PeerError if unreachable, Timeout if slow).

        `grant`: what the user who asked holds here; the peer runs the command with no more.
        """
        address = canonical(address)
        st = self.states.get(address)
        proto = st.conn if st is not None and self._usable(st.conn) else await self.connection(address)
        try:
            reply = await proto.request(text, timeout=timeout, grant=grant)
        except (TimeoutError, CancelledError):
            st = self._state(address)
            self._mark_down(st, f"no reply within {timeout:g} s")
            raise Timeout(f"peer {address} did not answer '{text[:60]}' within {timeout:g} s") from None
        if st is None or st.status != "active":
            self._mark_up(self._state(address))
        return reply

    async def send_file(self, address: str, path: str, dest: str = "watch", name: str | None = None,
                        timeout: float | None = None, md5: str | None = None) -> Reply:
        """Copy a file into the peer's `<dest>_dir`; returns once the peer has it on disk.

        `md5`, when the caller knows it, goes in the header; otherwise the file is hashed as it
        streams and the digest follows the body (one read of the file instead of two).
        """
        address = canonical(address)
        try:
            name = check_file_name(name or os.path.basename(path))
        except TransferError as e:
            raise PeerError(e.reason) from None
        try:
            size = os.path.getsize(path)
            f = open(path, "rb")
        except OSError as e:
            raise PeerError(f"cannot read {path}: {e.strerror}") from None
        if timeout is None:
            timeout = 30.0 + size / (2 * 1024 * 1024)
        try:
            proto = await self.connection(address)
        except BaseException:
            f.close()
            raise
        try:
            reply = await proto.send_file(f, size, md5, dest, name, timeout)
        except (TimeoutError, CancelledError):
            raise Timeout(f"peer {address} did not acknowledge {name} within {timeout:g} s") from None
        if not reply.ok:
            raise PeerError(reply.text or f"peer {address} refused {name}")
        return reply

    def on_event(self, name: str, handler) -> None:
        """Call `handler(peer_address, args, body)` for each `event` frame named `name`."""
        self._handlers.setdefault(name, []).append(handler)

    async def send_event(self, address: str, name: str, args: dict | None = None, body: bytes = b"") -> None:
        proto = await self.connection(address)
        proto.event(name, args, body)

    def dispatch_event(self, proto: PeerProtocol, header: dict, body: bytes) -> None:
        name = header.get("event")
        handlers = self._handlers.get(name) if isinstance(name, str) else None
        if not handlers:
            self.log.debug("no handler for event {name!r} from {peer}", name=name, peer=proto.label)
            return
        args = header.get("args") if isinstance(header.get("args"), dict) else {}
        for handler in handlers:
            try:
                result = handler(proto.label, args, body)
            except Exception:
                self.log.failure("event {name} from {peer}", name=name, peer=proto.label)
                continue
            if isinstance(result, Deferred):
                result.addErrback(lambda f: self.log.failure("event {name} from {peer}", f, name=name,
                                                             peer=proto.label))

    # -- monitoring and life cycle ---------------------------------------------------------------

    def rows(self) -> list[tuple]:
        """Peer, Name, Direction, Status, Requests out, Requests in, Failures, Last error."""
        rows = []
        seen = set()
        for address, st in sorted(self.states.items()):
            conn = st.conn if self._usable(st.conn) else None
            if conn is not None:
                seen.add(conn)
            rows.append((address, conn.peer_name if conn else "", _direction(conn), st.status,
                         conn.requests_out if conn else 0, conn.requests_in if conn else 0, st.failures,
                         st.last_error))
        for proto in sorted(self.live - seen, key=lambda p: p.label):
            rows.append((proto.label, proto.peer_name or "", _direction(proto),
                         "active" if proto.authenticated else "handshake", proto.requests_out,
                         proto.requests_in, 0, ""))
        return rows

    def close_inbound(self) -> None:
        """`exit tcp`: close the connections the TCP server accepted."""
        for proto in list(self.live):
            if proto.role == "server" and proto.transport is not None:
                proto.transport.loseConnection()

    def close(self) -> Deferred:
        """Close every connection and stop reconnecting; fires when all are closed."""
        self._closing = True
        for st in self.states.values():
            if st.retry is not None and st.retry.active():
                st.retry.cancel()
        for attempt in list(self._attempts):
            attempt.cancel()
        if not self.live:
            return DeferredList([])
        d: Deferred = Deferred()
        self._lost_waiters.append(d)
        for proto in list(self.live):
            proto._closed_reason = proto._closed_reason or "the node is stopping"
            proto.transport.loseConnection()
        # A peer that stops reading would keep a closing connection (and the node's stop) waiting.
        abort = self.reactor.callLater(self.close_grace, self._abort_all)
        d.addBoth(lambda r: (abort.cancel() if abort.active() else None, r)[1])
        return d

    def _abort_all(self) -> None:
        for proto in list(self.live):
            self.log.warn("aborting the connection to {peer}: it did not close in time", peer=proto.label)
            proto.transport.abortConnection()


def _direction(proto: PeerProtocol | None) -> str:
    if proto is None:
        return ""
    return "out" if proto.role == "client" else "in"


def _why(e: Exception) -> str:
    if isinstance(e, net_error.ConnectionRefusedError):
        return "connection refused (is its TCP server running?)"
    if isinstance(e, net_error.TCPTimedOutError) or isinstance(e, net_error.TimeoutError):
        return "no answer to the connection attempt (timed out)"
    text = str(e).strip()
    return text or type(e).__name__
