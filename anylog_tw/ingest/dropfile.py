"""Writing one data file into a watch dir, atomically: the way REST PUT and the streamer hand rows over.

The file is published with `base/atomic.py`: written to a hidden temp name in the watch dir,
fsynced, renamed to its final name without replacing, and the watch dir fsynced before the
sender is answered, so a watcher never sees half a file, an acknowledged file survives a power
loss, and an existing file is never overwritten (a second file with the same content has the
same name: that is a duplicate, refused, as AnyLog refuses it through the hash in `tsd_info`).  On a publisher node the files go to the publisher's watch dir.
The blocking part runs in the node's thread pool (`node.in_thread`).
"""

from __future__ import annotations

import os

from anylog_tw.base import atomic
from anylog_tw.base.errors import AnyLogError, CommandError, no_space
from anylog_tw.base.filename import FileName, error_name, file_hash, parse_file_name
from anylog_tw.base.ingest_errors import IngestError


class DuplicateFile(CommandError):
    """A file with the same name (so the same dbms, table and content) is waiting in the watch dir."""

    code = "duplicate"
    status = 409


class WriteError(AnyLogError):
    """The file could not be written (disk full, permissions ...): nothing was half-written."""

    code = "io"
    status = 503

    def __init__(self, message: str, full: bool = False):
        super().__init__(message)
        self.full = full  # no space left: worth trying again once space returns


def ingest_dirs(node) -> tuple[str, str]:
    """(watch_dir, err_dir) for new data files: the publisher's watch dir when one runs."""
    d = node.dirs
    watch = d["watch_dir"]
    publisher = node.process("Publisher")
    if publisher is not None and getattr(publisher, "watch_dir", None):
        watch = publisher.watch_dir
    return watch, d["err_dir"]


def data_file_name(dbms: str, table: str, source: str, instructions: str, data: bytes) -> FileName:
    """The short-form name `dbms.table.source.hash.instructions.json` of `data`, checked as the operator will.

    Raises CommandError naming the bad header value (dbms, table, source or instructions).
    """
    for what, value in (("dbms", dbms), ("table", table), ("source", source), ("instructions", instructions)):
        if not value:
            raise CommandError(f"the {what} name is missing")
    name = FileName(dbms.lower(), table.lower(), source, file_hash(dbms.lower(), table.lower(), (data,)),
                    instructions)
    try:
        return parse_file_name(name.format())
    except IngestError as e:
        raise CommandError(f"cannot name a data file after dbms {dbms!r}, table {table!r}, source {source!r} and "
                           f"instructions {instructions!r}: {e.message}") from None


def write_file(watch_dir: str, name: str, data: bytes) -> str:
    """Write `data` as `watch_dir/name` atomically and durably (blocking); returns the path.

    Raises DuplicateFile if that name is already there, WriteError on any I/O failure; in both
    cases nothing is left behind.
    """
    target = os.path.join(watch_dir, name)
    try:
        return atomic.publish(target, data)
    except FileExistsError:
        raise DuplicateFile(f"{name} is already in the watch dir: the same data was sent twice "
                            f"(the hash names the content)") from None
    except OSError as e:
        raise WriteError(f"cannot write {name} into {watch_dir}: {e.strerror or e}", no_space(e)) from None


def write_error_file(err_dir: str, name: str, data: bytes, reason: str, now: float) -> str:
    """Keep rows that could not be delivered in the error dir, named as the operator names its
    failures (`<stem>.err_<reason>.<epoch>.json`); blocking; returns the path."""
    os.makedirs(err_dir, exist_ok=True)
    stamp = int(now)
    while True:
        try:
            return atomic.publish(os.path.join(err_dir, error_name(name, reason, stamp)), data)
        except FileExistsError:
            stamp += 1
