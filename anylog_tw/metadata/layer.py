"""The node's metadata component: the ledger, loaded once, changed under one lock, off the reactor.

`await metadata(node)` gives the node's `Metadata` (one of the node's parts, loaded from
`!blockchain_file` in a thread on first use).  Every change goes
through it, so a sync that swaps the file and an insert that appends a line never interleave:

- `add(policy, ledger)`: append one line and fsync it (in a thread);
- `remove(ids)`: write the ledger without them aside, then rename it in (in a thread);
- `install_master_copy(text)`: the synchronizer's swap (see `sync.py`).

`ask(address, command) -> Reply` is how this area talks to peers.  The metadata layer sits below
peer messaging, so it never imports it: the node hands in its peers' `command` when it builds its
parts (`connect_ask`), and tests give a fake with `set_ask`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable, Callable

from twisted.internet.defer import Deferred, DeferredLock
from twisted.logger import Logger

from anylog_tw.base.errors import OptionError, PeerError, StorageError, Timeout
from anylog_tw.metadata.destinations import is_metadata_destination, resolve
from anylog_tw.metadata.ledger import (
    Ledger,
    Parsed,
    State,
    build_state,
    parse_and_build,
    parse_lines,
    render,
    to_line,
    write_atomically,
)
from anylog_tw.metadata.values import body, policy_type

if TYPE_CHECKING:
    from anylog_tw.base.reply import Reply

Ask = Callable[[str, str], Awaitable["Reply"]]


class MasterRefused(PeerError):
    """The master was reached and said no: unlike an unreachable master, trying again will not help."""

    code = "refused"


class Metadata:
    log = Logger()

    def __init__(self, node):
        self.node = node
        self.ledger = Ledger(node.dirs["blockchain_file"], clock=node.reactor.seconds)
        self.lock = DeferredLock()
        self.loaded = False
        self.loading = DeferredLock()
        self._ask: Ask | None = None
        self._default_ask: Ask | None = None
        self.waiters: list[tuple[Callable[[], bool], Deferred]] = []

    # -- plumbing ----------------------------------------------------------------------------

    def connect_ask(self, ask: Ask) -> None:
        """How this node reaches its peers (the node gives its peers' `command`)."""
        self._default_ask = ask

    def set_ask(self, ask: Ask | None) -> None:
        """Replace how commands reach peers (tests); None restores the node's own."""
        self._ask = ask

    async def ask(self, address: str, text: str) -> "Reply":
        ask = self._ask or self._default_ask
        if ask is None:
            raise PeerError(f"cannot reach {address}: this node has no peer messaging")
        return await ask(address, text)

    async def write(self, data: bytes, keep_old: bool) -> None:
        """Replace the ledger file atomically; a disk error is a StorageError and changes nothing."""
        try:
            await self.node.in_thread(write_atomically, self.ledger.path, data, keep_old)
        except OSError as e:
            raise StorageError(f"cannot write the ledger {self.ledger.path}: {e.strerror or e}; "
                               f"the previous ledger is unchanged") from None

    async def ready(self) -> "Metadata":
        """The metadata, loaded from the file on first use (once, however many callers wait)."""
        if self.loaded:
            return self
        await self.loading.acquire()
        try:
            if not self.loaded:
                await self.reload()
                self.loaded = True
        finally:
            self.loading.release()
        return self

    async def reload(self) -> Parsed:
        """Read the file again (`blockchain load metadata`); corrupt lines are logged as errors."""
        await self.lock.acquire()
        try:
            try:
                parsed, state = await self.node.in_thread(_read_and_build, self.ledger)
            except OSError as e:
                raise StorageError(f"cannot read the ledger {self.ledger.path}: {e.strerror or e}") from None
            self.ledger.install_state(state)
            self.ledger.load_errors = parsed.errors
        finally:
            self.lock.release()
        for lineno, message in parsed.errors:
            self.node.errors.add("metadata", f"{self.ledger.path}:{lineno}", f"ledger line skipped: {message}")
            self.log.error("ledger {path}:{lineno} skipped: {message}", path=self.ledger.path, lineno=lineno,
                           message=message)
        self._changed()
        return parsed

    # -- changes -----------------------------------------------------------------------------

    async def add(self, policy: dict, ledger: str = "local") -> dict:
        await self.ready()
        await self.lock.acquire()
        try:
            stored = self.ledger.complete(policy)
            next(iter(stored.values()))["ledger"] = ledger
            # the fsync waits in a thread; the lock keeps other changes out until it is indexed
            await self.node.in_thread(self.ledger.write_lines, to_line(stored).encode("utf-8") + b"\n")
            self.ledger.appended(stored)
        finally:
            self.lock.release()
        self._changed()
        return stored

    async def insert(self, policy: dict, local: bool = True, master: str = "") -> tuple[dict, str | None]:
        """`blockchain insert`: the policy completed (id, date), sent to `master` with `blockchain
        push`, and kept in the local ledger (`global` once the master has it).  Returns (the stored
        policy, why the master was not reached or None).  A master that cannot be reached is
        tolerated when the policy is kept locally (the synchronizer pushes it later); without
        `local` it raises; a master that answers no raises `PeerError`."""
        stored = self.ledger.complete(policy)
        failure = None
        if master:
            try:
                reply = await self.ask(master, "blockchain push " + to_line(stored))
            except (PeerError, Timeout) as e:
                if not local:
                    raise
                failure = e.message
            else:
                if not reply.ok:
                    raise MasterRefused(f"{master} refused 'blockchain push': {reply.text}")
        if local:
            await self.add(stored, "local" if (failure or not master) else "global")
        return stored, failure

    async def remove(self, ids: list[str]) -> int:
        """Remove policies by id; the file is rewritten aside and renamed in. Returns how many."""
        await self.ready()
        await self.lock.acquire()
        try:
            keep = self.ledger.without(ids)
            removed = len(self.ledger) - len(keep)
            if removed:
                data = await self.node.in_thread(render, keep)
                await self.write(data, False)
                self.ledger.install_state(await self.node.in_thread(build_state, keep, data))
        finally:
            self.lock.release()
        self._changed()
        return removed

    async def install_master_copy(self, text: str) -> tuple[int, list[dict]]:
        """Make the master's ledger text our ledger, keeping our local policies it lacks.

        The merged file is written as `.new` and renamed in, the previous file kept as `.old`;
        a node killed at any point has either the old ledger or the new one.  Returns the number
        of policies now held and the local policies the master does not have (to push again).
        """
        await self.ready()
        await self.lock.acquire()
        try:
            # Every change holds the lock, so the ledger cannot move while the thread reads it.
            state, kept = await self.node.in_thread(_merge_and_write, self.ledger, text)
            self.ledger.install_state(state)
        finally:
            self.lock.release()
        self._changed()
        return len(state.policies), kept

    async def changes_since(self, since: str) -> tuple[str, str, bytes]:
        """What a synchronizer at version `since` needs: ("delta", version, the lines appended
        since) when this file grew from `since` by appends only, else ("full", version, all)."""
        await self.ready()
        await self.lock.acquire()
        try:
            version, size = self.ledger.version, self.ledger.size
            offset = self.ledger.offset_of(since) if since else None
            data = await self.node.in_thread(_read_range, self.ledger.path, offset or 0, size)
        finally:
            self.lock.release()
        return ("delta" if offset is not None else "full"), version, data

    async def apply_delta(self, data: bytes) -> int:
        """Append the master's new lines (a delta sync); returns how many policies they carried."""
        await self.ready()
        parsed = await self.node.in_thread(parse_lines, data)
        for lineno, message in parsed.errors:
            self.node.errors.add("metadata", f"delta line {lineno}", f"ledger line skipped: {message}")
        await self.lock.acquire()
        try:
            await self.node.in_thread(self.ledger.write_lines, data if data.endswith(b"\n") else data + b"\n")
            self.ledger.merge(parsed.policies)
        finally:
            self.lock.release()
        self._changed()
        return len(parsed.policies)

    # -- waiting for changes -----------------------------------------------------------------

    def when(self, predicate: Callable[[], bool]) -> Deferred:
        """A Deferred that fires once `predicate()` holds after a change (or at once)."""
        d = Deferred(lambda _: self.waiters.remove(entry) if entry in self.waiters else None)
        entry = (predicate, d)
        if predicate():
            d.callback(True)
        else:
            self.waiters.append(entry)
        return d

    def _changed(self) -> None:
        for entry in list(self.waiters):
            predicate, d = entry
            if predicate():
                self.waiters.remove(entry)
                d.callback(True)

    def close(self) -> None:
        waiters, self.waiters = self.waiters, []
        for _, d in waiters:
            if not d.called:
                d.cancel()


def _read_range(path: str, start: int, end: int) -> bytes:
    """(In a thread.) Bytes [start, end) of a file; a missing file reads as empty."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return f.read(max(0, end - start))
    except FileNotFoundError:
        return b""


def _read_and_build(ledger: Ledger) -> tuple[Parsed, State]:
    """(In a thread.) The file parsed, and the ledger state it gives."""
    return parse_and_build(ledger.read_file())


def _merge_and_write(ledger: Ledger, text: str | bytes) -> tuple[State, list[dict]]:
    """(In a thread.) The master's text plus our local policies it lacks, written aside and renamed
    in (the old file kept as .old); the new state, and the local policies kept."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    if data and not data.endswith(b"\n"):
        data += b"\n"
    parsed, state = parse_and_build(data)
    kept = [p for p in ledger.local_policies() if body(p)["id"] not in state.by_id]
    if kept:
        extra = render(kept)
        data += extra
        state.md5.update(extra)
        state.size += len(extra)
        if state.policies is parsed.policies:
            state.policies = list(state.policies)
        for p in kept:
            state.policies.append(p)
            state.by_id[body(p)["id"]] = p
            state.local[body(p)["id"]] = None
            state.by_type.setdefault(policy_type(p), []).append(p)
    try:
        write_atomically(ledger.path, data, True)
    except OSError as e:
        raise StorageError(f"cannot write the ledger {ledger.path}: {e.strerror or e}; the previous ledger is "
                           f"unchanged") from None
    return state, kept


async def metadata_destination(node, text: str) -> list[str] | None:
    """`ip:port` of the nodes a `run client (...)` destination names through the metadata, or None
    when the text is not a metadata form (then it is a list of addresses)."""

    if not is_metadata_destination(text):
        return None
    meta = await metadata(node)
    found = resolve(meta.ledger, text)
    if found is not None and not found:
        raise OptionError(f"no node in the metadata matches the destination ({text})")
    return found


async def metadata(node) -> Metadata:
    """The node's loaded metadata."""
    return await node.component(Metadata).ready()
