"""Blob columns: the bytes go to a file under blobs_dir, the row holds the file's path.

A mapping policy column with `"blob": true` (spec §5.5; `apply: base64decoding` decodes the
value first) makes a `BlobValue` in the mapper: its bytes and a name made of their MD5 and the
column's `extension`.  Before the rows are inserted, `store` writes each blob to
`<blobs_dir>/<dbms>/<table>/<md5>[.<extension>]` and puts that path, relative to blobs_dir, in
the row.  Files are named by their content, so writing one again (a redone file, the same image
sent twice, an HA replica) is a no-op; each is written under a temporary name and renamed, so
a reader never sees half a blob.  Blocking: runs in the operator's worker threads.
"""

from __future__ import annotations

import os
import tempfile

from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.ingest.mapper import BlobValue
from anylog_tw.ingest.mapping import Batch


def blob_path(dbms: str, table: str, blob: BlobValue) -> str:
    """Where a blob lives, relative to blobs_dir (what the row holds)."""
    return f"{dbms}/{table}/{blob.name}"


def store(batches: dict[tuple[str, str], Batch], blobs_dir: str | None, write: bool = True) -> int:
    """Replace every BlobValue in the batches by its path, writing the file unless `write` is
    false (a big file's first pass only needs the column's values); the blobs written."""
    written = 0
    for (dbms, table), batch in batches.items():
        for values in batch.values:
            if BlobValue not in set(map(type, values)):
                continue
            for i, v in enumerate(values):
                if type(v) is BlobValue:
                    rel = blob_path(dbms, table, v)
                    if write:
                        if not blobs_dir:
                            raise IngestError("io", "a blob column needs blobs_dir (set blobs_dir = <path>)")
                        written += _write(blobs_dir, rel, v.data)
                    values[i] = rel
    return written


def _write(root: str, rel: str, data: bytes) -> int:
    path = os.path.join(root, rel)
    try:
        if os.path.getsize(path) == len(data):
            return 0  # named by its MD5: the same bytes are there already
    except OSError:
        pass
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".blob-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError as e:
        raise IngestError("io", f"cannot write blob {rel} under {root}: {e}") from None
    return 1
