"""The publisher's file work, blocking functions over paths (run them in worker threads).

`inspect_file` decides whether a file in the publisher's watch dir may be sent and what it is
sent as; `backup` and `discard` are what happens to it once an operator acknowledged it.  Each
leaves the file either where it was or complete at its destination, never half-written.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass, replace

from anylog_tw.base import atomic
from anylog_tw.base.filename import FileName, file_hash, parse_file_name
from anylog_tw.base.ingest_errors import IngestError

_BUF = 1 << 20


@dataclass(frozen=True)
class Outgoing:
    """A file that may be sent: its parsed name, its content hash, its size, and the name it is
    sent under (the short form with the hash filled in, so the operator refuses a second copy)."""

    name: str
    fname: FileName
    hash: str
    size: int
    send_name: str
    md5: str | None = None  # of the bytes as they are on disk: the transfer's check, computed here

    @property
    def dbms(self) -> str:
        return self.fname.dbms

    @property
    def table(self) -> str:
        return self.fname.table


class _Tee:
    """A file that hashes what is read from it (gzip reads the compressed bytes through it)."""

    def __init__(self, f, h):
        self.f = f
        self.h = h

    def read(self, n=-1):
        data = self.f.read(n)
        self.h.update(data)
        return data

    def drain(self) -> None:
        """Hash what gzip left unread (trailing bytes after the last member)."""
        while block := self.f.read(_BUF):
            self.h.update(block)


def inspect_file(path: str) -> Outgoing:
    """The file as it will be sent, or an IngestError whose reason says why it cannot be.

    Reasons: `name` / `type` (the name does not parse or fails the name rules), `empty` (no
    bytes, or a gzip with no data), `io` (a .gz that does not decompress).  A file whose name
    has no hash (`0`) gets its hash computed the operator's way (md5 of "dbms.table" and the
    uncompressed bytes).  The md5 of the bytes on disk, which the peer transfer sends ahead of the
    file, is computed in the same read, so the reactor thread never hashes a file.
    FileNotFoundError passes through (the file is gone: nothing to do).
    """
    name = os.path.basename(path)
    fname = parse_file_name(name)
    size = os.path.getsize(path)
    if size == 0:
        raise IngestError("empty", f"{name} is empty: there is nothing to send")
    raw = hashlib.md5()
    total = 0

    def blocks(f):
        nonlocal total
        if fname.gz:
            tee = _Tee(f, raw)
            with gzip.GzipFile(fileobj=tee, mode="rb") as z:
                while block := z.read(_BUF):
                    total += len(block)
                    yield block
            tee.drain()
        else:
            while block := f.read(_BUF):
                total += len(block)
                raw.update(block)
                yield block

    try:
        with open(path, "rb") as f:
            computed = file_hash(fname.dbms, fname.table, blocks(f))
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zlib.error) as e:
        raise IngestError("io", f"{name} cannot be read{' as gzip' if fname.gz else ''}: {e}") from None
    if total == 0:
        raise IngestError("empty", f"{name} holds no data once uncompressed")
    digest = computed if fname.hash == "0" else fname.hash
    send = replace(fname, hash=digest).format() if fname.hash == "0" else name
    return Outgoing(name, fname, digest, size, send, raw.hexdigest())


def backup(path: str, bkup_dir: str, name: str, compress: bool, fsync: bool = True) -> str:
    """Keep a delivered file in `bkup_dir` as `name` (gzipped when `compress` and not gzipped yet).

    The copy is published whole (`base/atomic.py`); the source is removed last, so a crash leaves
    the file in the watch dir (sent again, refused as a duplicate) or backed up.  A backup already
    there under that name (the same content: the name holds its hash) is kept.
    """
    os.makedirs(bkup_dir, exist_ok=True)
    gz_in = name.lower().endswith(".gz")
    final = os.path.join(bkup_dir, name + (".gz" if compress and not gz_in else ""))
    try:
        if not compress or gz_in:
            return atomic.move(path, final, fsync=fsync)
        atomic.publish(final, atomic.copy_writer(path, "gzip"), fsync=fsync)
    except FileExistsError:
        pass
    os.unlink(path)
    return final


def discard(path: str) -> None:
    """`delete_json = true`: the operator has the file, the publisher keeps nothing."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
