"""Files between peers: the receiving end (temp file, size + md5 check, fsync, no-clobber rename,
then the ack) and the sending end (a push producer that streams the file with flow control).

A file is never whole in memory: the receiver writes each chunk as it arrives and the sender
reads the next chunk only when the transport asks for more.  The file appears under its final
name only once it is complete and on disk, so a watcher in the destination directory never sees
a partial file, and a broken transfer leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from anylog_tw.base.atomic import announce, fsync_dir
from anylog_tw.net.chunkworker import ChunkWorker

CHUNK = 256 * 1024
_NAME = re.compile(r"^[^/\\\x00]{1,255}$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")


class TransferError(Exception):
    """A file cannot be received as announced; the reason goes back to the sender."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_file_name(name: object) -> str:
    """A bare file name (no directory part, not '.', '..' or hidden): the receiver's rule."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", "..") or name.startswith("."):
        raise TransferError(f"{name!r} is not a valid file name (a bare name, no '/', not starting with '.')")
    return name


def check_md5(value: object) -> str:
    if not isinstance(value, str) or not _MD5.match(value):
        raise TransferError(f"{value!r} is not an md5 digest (32 lowercase hex digits)")
    return value


def file_md5(path: str) -> str:
    """The md5 of a file, read in chunks (run it in a thread: it reads the whole file)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while True:
            block = f.read(1024 * 1024)
            if not block:
                return h.hexdigest()
            h.update(block)


# What a `file` frame's `dest` may name: the work directories the network's own transfers fill
# (publisher, HA and `file send` use watch; blobs and backups have their own).  A name is looked up
# in a snapshot of the node's directories, never in the live dictionary, so a peer that assigns
# `evil_dir = /anywhere` (or `watch_dir = /`) cannot move where its files land.
DESTINATIONS = ("watch", "bwatch", "bkup", "blobs", "prep")


@dataclass(frozen=True)
class FileDirs:
    """The directories `file` frames may reach, fixed when taken."""

    dests: Mapping[str, str]
    tmp: str | None = None


def file_destinations(dirs: Mapping[str, str]) -> FileDirs:
    """The destination directories (and the tmp dir) of the node's work-directory snapshot (`node.dirs`,
    fixed when the node is built; only the owner moves one), never of what a peer assigns."""
    dests = {name: dirs[f"{name}_dir"] for name in DESTINATIONS if dirs.get(f"{name}_dir")}
    return FileDirs(MappingProxyType(dests), dirs.get("tmp_dir") or None)


def destination_dir(dirs: FileDirs, dest: object) -> str:
    """The directory a `dest` names: one of DESTINATIONS, mapped to the node's fixed work directories."""
    if not isinstance(dest, str) or dest not in DESTINATIONS:
        shown = dest[:40] if isinstance(dest, str) else dest
        raise TransferError(f"{shown!r} is not a file destination: a peer may send files only to "
                            f"{', '.join(DESTINATIONS)}")
    path = dirs.dests.get(dest)
    if not path:
        raise TransferError(f"no destination '{dest}': this node has no '{dest}_dir'")
    if not os.path.isdir(path):
        raise TransferError(f"destination directory {path} ('{dest}_dir') does not exist")
    return path


class FileReceiver:
    """One incoming file: chunks go to a temp file; `finish()` (in a thread) makes it final.

    The temp file lives in the node's tmp dir when that is on the same file system as the
    destination (so a watcher on the destination never sees it), else in the destination
    under a hidden name.  The final name is created with `link`, which fails if the name
    exists: an identical file already there (a resend after a lost ack) counts as success, a
    different one is refused, and nothing is overwritten.
    """

    log = Logger()

    def __init__(self, dest_dir: str, name: str, size: int, md5: str | None, tmp_dir: str | None = None):
        self.final = os.path.join(dest_dir, name)
        self.dest_dir = dest_dir
        self.size = size
        self.md5 = md5
        where = dest_dir
        if tmp_dir and os.path.isdir(tmp_dir) and os.stat(tmp_dir).st_dev == os.stat(dest_dir).st_dev:
            where = tmp_dir
        self.tmp = os.path.join(where, f".{name}.{os.urandom(6).hex()}.part")
        self._hash = hashlib.md5()
        self.received = 0
        self._f = open(self.tmp, "wb", buffering=0)
        self.worker = None

    def use_worker(self, reactor, pause, resume, budget=None) -> None:
        """Hash and write on a worker thread; `pause`/`resume` throttle the incoming stream."""
        self.worker = ChunkWorker(reactor, self._consume, pause, resume, budget=budget)

    def _consume(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._f.write(chunk)

    def write(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.size:
            raise TransferError(f"more than the announced {self.size} bytes arrived")
        if self.worker is not None:
            self.worker.put(chunk)
        else:
            self._consume(chunk)

    def complete(self, reactor):
        """A Deferred firing with the final path once every chunk is on disk and checked."""
        from twisted.internet import threads

        if self.worker is not None:
            d = self.worker.finish(self.finish)
            d.addErrback(self._worker_failed)
            return d
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), self.finish)

    def _worker_failed(self, failure):
        if not failure.check(TransferError):
            self.discard_later()
            raise TransferError(f"writing the file failed: {failure.getErrorMessage()}")
        return failure

    def discard_later(self) -> None:
        """Drop the temp file once the worker (if any) has stopped touching it."""
        if self.worker is not None and not self.worker.finished:
            self.worker.finish(self.discard).addErrback(lambda f: self.discard())
        else:
            self.discard()

    def finish(self) -> str:
        """Check, fsync and publish the file; blocking, so it runs in a thread. Returns the path."""
        try:
            if self.received != self.size:
                raise TransferError(f"{self.received} bytes arrived, {self.size} were announced")
            digest = self._hash.hexdigest()
            if self.md5 is None:
                raise TransferError("the sender never gave the file's md5")
            if digest != self.md5:
                raise TransferError(f"md5 mismatch: the file arrived as {digest}, the sender announced {self.md5}")
            os.fsync(self._f.fileno())
            self._f.close()
            try:
                os.link(self.tmp, self.final)
            except FileExistsError:
                if os.path.getsize(self.final) == self.size and file_md5(self.final) == self.md5:
                    return self.final
                raise TransferError(f"a different file named {os.path.basename(self.final)} already exists "
                                    f"in {self.dest_dir}") from None
            fsync_dir(self.dest_dir)
            announce(self.final)
            return self.final
        finally:
            self.discard()

    def discard(self) -> None:
        """Drop the temp file (after success its content lives on under the final name)."""
        try:
            self._f.close()
        except OSError:
            pass
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass
        except OSError as e:
            self.log.warn("cannot remove temp file {path}: {error}", path=self.tmp, error=e)


@implementer(IPushProducer)
class FileProducer:
    """Streams `size` bytes of an open file into a transport, as fast as it drains.

    The transport pauses us when its buffer fills and resumes us when it empties, so at most
    a chunk or two is in memory whatever the file's size.  `done(error)` is called once: with
    None when every byte is written, or with a reason when stopped early.
    """

    def __init__(self, f, size: int, transport, done, chunk: int = CHUNK, hasher=None, reactor=None):
        self.f = f
        self.remaining = size
        self.transport = transport
        self.done = done
        self.chunk = chunk
        self.paused = False
        self.hash_paused = False
        self.finished = False
        self.hashing = False  # waiting for the worker to finish the digest
        self.worker = None
        if hasher is not None:  # the md5 follows the body: hash on a thread as the bytes go

            self.worker = ChunkWorker(reactor, hasher.update, self._hash_pause, self._hash_resume)

    def start(self) -> None:
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def _hash_pause(self) -> None:
        self.hash_paused = True

    def _hash_resume(self) -> None:
        self.hash_paused = False
        if not self.paused:
            self._pump()

    def resumeProducing(self) -> None:
        self.paused = False
        self._pump()

    def _pump(self) -> None:
        while not self.paused and not self.hash_paused and not self.finished and self.remaining > 0:
            try:
                data = self.f.read(min(self.chunk, self.remaining))
            except OSError as e:
                self._end(f"reading the file failed: {e}")
                return
            if not data:
                self._end("the file shrank while it was being sent")
                return
            self.remaining -= len(data)
            if self.worker is not None:
                self.worker.put(data)
            self.transport.write(data)
        if self.remaining == 0 and not self.finished and not self.hashing:
            if self.worker is None:
                self._end(None)
                return
            self.hashing = True
            self.worker.finish().addBoth(lambda r: self._end(None if not isinstance(r, Failure) else
                                                             f"hashing the file failed: {r.getErrorMessage()}"))

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        if not self.finished:
            self._end("the connection closed during the transfer")

    def _end(self, error: str | None) -> None:
        if self.finished:
            return
        if self.worker is not None and not self.worker.finished:
            self.worker.finish()  # stop the thread; its digest is not needed any more
        self.finished = True
        try:
            self.f.close()
        except OSError:
            pass
        try:
            self.transport.unregisterProducer()
        except Exception:  # the transport may already be gone
            pass
        self.done(error)
