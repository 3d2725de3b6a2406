"""The blocking half of ingesting one file: read, hash, parse, map, adapt, and (big files) insert.

These functions run in worker threads (parsing) or in the database's writer thread (inserting
big files) and only take and return plain data, so the operator service stays a thin shell.

Small files (up to `SMALL` bytes on disk) are read once: the bytes give the hash, the parsed
rows stay in memory until they are inserted.  A bigger file is read twice in chunks of whole
lines: once for the hash, the row count and the column types, and again inside the insert
transaction, each chunk parsed, adapted and inserted before the next is read, so memory stays
bounded by the chunk size whatever the file's size.

A small file the streamer of this process wrote may have its rows waiting in the `Handoff`:
they are taken instead of parsing when the bytes read are exactly the ones they were written as
(the read and the hash still happen: the file, not the memory, is what tsd_info traces).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import queue
import threading
import zlib
from typing import Mapping

from anylog_tw.base.filename import FileName
from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.ingest import blobs, mapping, reader, sqlfile
from anylog_tw.ingest.mapping import Batch
from anylog_tw.ingest.mapping_policy import MappingPolicy
from anylog_tw.ingest.parsed import Parsed, Part
from anylog_tw.storage import schema, sqlfmt

SMALL = 8 << 20
TSD_COLUMNS = ("tsd_name", "tsd_id")


def _map(objs, lines, policy: MappingPolicy | None, target: tuple[str, str], blobs_dir: str | None = None,
         write: bool = True) -> dict[tuple[str, str], Batch]:
    if policy is None:
        return {target: mapping.default_batch(objs, lines)}
    batches = policy.batch(objs, lines, *target)
    if policy.has_blobs:
        blobs.store(batches, blobs_dir, write)
    return batches


def first_pass(path: str, name: FileName, policy: MappingPolicy | None, target: tuple[str, str] | None = None,
               blobs_dir: str | None = None, small: int = SMALL, chunk: int = reader.CHUNK,
               limits: reader.Limits = reader.DEFAULT_LIMITS, handoff=None) -> Parsed:
    """Hash, parse and map a file (in a worker thread); IngestError when it cannot be ingested.

    `target` is the (dbms, table) of rows the mapping does not place elsewhere: the file
    name's, or the mapping policy's literal ones.  The hash is always over the file name's.
    Blob columns are written under `blobs_dir` (a big file's on its second reading).
    """
    target = target or (name.dbms, name.table)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise IngestError("io", f"cannot read {path}: {e}") from None
    if name.type == "sql":
        return sqlfile.first_pass(path, name, limits)
    fixed = policy.types if policy is not None else {}
    data = None
    if _starts_array(path, name.gz, limits):
        data = reader.read_whole(path, name.gz, limits)
    elif size <= (small // 8 if name.gz else small):  # a .gz holds ~8x its size, maybe far more:
        data = reader.read_small(path, name.gz, small, limits)  # None past `small`: read in chunks
    if data is not None:
        digest = hashlib.md5(f"{name.dbms}.{name.table}".encode("utf-8"))
        digest.update(data)
        if not data.strip():
            raise IngestError("empty", f"{os.path.basename(path)} is empty")
        objs = handoff.take(os.path.basename(path), data) if handoff is not None else None
        if objs is None:
            objs, lines = reader.parse_objects(data, 1)
        else:  # one object a line, no blank line (Handoff.put checks): the parse would number them so
            lines = list(range(1, len(objs) + 1))
        del data
        parts = {key: Part(key[0], key[1], batch, list(batch.columns), rows=len(batch), fixed=fixed)
                 for key, batch in _map(objs, lines, policy, target, blobs_dir).items()}
        return Parsed(digest.hexdigest(), len(objs), parts)
    digest = hashlib.md5(f"{name.dbms}.{name.table}".encode("utf-8"))
    objects = 0
    parts: dict[tuple[str, str], Part] = {}
    for first, data in reader.iter_chunks(path, name.gz, chunk, limits):
        digest.update(data)
        objs, lines = reader.parse_objects(data, first)
        objects += len(objs)
        for key, batch in _map(objs, lines, policy, target, blobs_dir, write=False).items():
            part = parts.get(key)
            if part is None:
                part = parts[key] = Part(key[0], key[1], None, fixed=fixed)
            part.rows += len(batch)
            for col, vals in zip(batch.columns, batch.values):
                part.types[col] = schema.widen(part.types.get(col), mapping.infer_column(vals))
    if objects == 0:
        raise IngestError("empty", f"{os.path.basename(path)} holds no JSON objects")
    for part in parts.values():
        part.columns = list(part.types)
    return Parsed(digest.hexdigest(), objects, parts, big=True)


def _starts_array(path: str, gz: bool, limits: reader.Limits) -> bool:
    """A JSON array cannot be split on lines: it is read whole (up to max_line)."""
    try:
        with reader.open_data(path, gz, limits) as f:
            return f.read(4096).lstrip()[:1] == b"["
    except (OSError, EOFError, zlib.error) as e:
        raise IngestError("io", f"cannot read {path}: {e}") from None


def adapt(batch: Batch, columns: Mapping[str, str], engine: str) -> list:
    """The batch's values adapted to the table's columns (in a worker thread), column by column."""
    return mapping.to_columns(batch, columns, engine)


def rows_of(columns: list, tsd_name: str, tsd_id: int):
    """Row tuples (tsd_name, tsd_id, values...), made lazily while the database reads them."""
    if not columns:
        return iter(())
    n = len(columns[0])
    return zip(itertools.repeat(tsd_name, n), itertools.repeat(tsd_id, n), *columns)


def copy_text(adapted: list, tsd_name: str, tsd_id: int) -> tuple[str, int]:
    """PostgreSQL: the rows as COPY text, made in a worker thread (not on the writer's critical path)."""
    if not adapted or not len(adapted[0]):
        return "", 0
    reader = sqlfmt.CopyReader(rows_of(adapted, tsd_name, tsd_id), len(adapted) + 2)
    text = reader.read()
    return text, reader.count


def insert_small(tx, parts: list[tuple], tsd_name: str, tsd_id: int, redo: bool) -> int:
    """One file's rows in one transaction; a redo first removes rows of an earlier attempt.

    `parts` are (table, columns, adapted, ddl) of one dbms: `adapted` is the adapted columns,
    or (PostgreSQL) the rows already as (COPY text, count); `ddl` are statements that create
    the table first (a `.sql` file's CREATE TABLE IF NOT EXISTS, in the same transaction).
    """
    total = 0
    for table, columns, adapted, ddl in parts:
        for statement in ddl:
            tx.execute(statement)
        if redo:
            _delete_tagged(tx, table, tsd_name, tsd_id)
        total += _insert_prepared(tx, table, columns, adapted, tsd_name, tsd_id)
    return total


def _insert_prepared(tx, table: str, columns: Mapping[str, str], adapted, tsd_name: str, tsd_id: int) -> int:
    if isinstance(adapted, tuple):
        text, count = adapted
        if count:
            cols = ", ".join(schema.quote(c, "column name") for c in (*TSD_COLUMNS, *columns))
            tx.cursor.copy_expert(f"COPY {schema.quote(table, 'table name')} ({cols}) FROM STDIN",
                                  io.StringIO(text), size=1 << 20)
        return count
    if not adapted or not len(adapted[0]):
        return 0
    return tx.insert_rows(table, [*TSD_COLUMNS, *columns], rows_of(adapted, tsd_name, tsd_id))


def insert_big(tx, tables: dict[tuple[str, str], Mapping[str, str]], path: str, name: FileName,
               policy: MappingPolicy | None, tsd_name: str, tsd_id: int, redo: bool,
               chunk: int | None = None, limits: reader.Limits = reader.DEFAULT_LIMITS, ddl: list[str] | None = None,
               blobs_dir: str | None = None) -> int:
    """A big file read again chunk by chunk inside the transaction: parse, adapt, insert each.

    `tables` are the file's targets in this transaction's dbms ((dbms, table) -> its columns);
    rows for other dbms are left to their own transaction.  A helper thread parses and adapts
    the next chunk (at most two waiting) while this one, the database's writer thread, inserts
    the current one: memory stays at a few chunks.  `name` carries the target of rows the
    mapping does not place elsewhere.
    """
    for statement in ddl or ():
        tx.execute(statement)
    if redo:
        for (_, table) in tables:
            _delete_tagged(tx, table, tsd_name, tsd_id)
    size = chunk or reader.CHUNK
    psql = tx.engine == schema.PSQL
    dbms = {d for d, _ in tables}
    chunks: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        try:
            for first, data in reader.iter_chunks(path, name.gz, size, limits):
                if stop.is_set():
                    return
                objs, lines = reader.parse_objects(data, first)
                del data
                batches = _map(objs, lines, policy, (name.dbms, name.table), blobs_dir)
                del objs
                prepared = []
                for key, batch in batches.items():
                    if key[0] not in dbms:
                        continue
                    columns = tables.get(key)
                    if columns is None:
                        raise IngestError("mapping", f"rows for {key[0]}.{key[1]} appeared on the second reading "
                                                     f"of the file only")
                    adapted = mapping.to_columns(batch, columns, tx.engine)
                    prepared.append((key[1], columns, copy_text(adapted, tsd_name, tsd_id) if psql else adapted))
                del batches
                chunks.put(("rows", prepared))
            chunks.put(("end", None))
        except BaseException as e:  # handed to the writer thread, which fails the transaction
            chunks.put(("error", e))

    helper = threading.Thread(target=produce, name="operator-big-file", daemon=True)
    helper.start()
    total = 0
    try:
        while True:
            kind, item = chunks.get()
            if kind == "end":
                return total
            if kind == "error":
                raise item
            for table, columns, adapted in item:
                total += _insert_prepared(tx, table, columns, adapted, tsd_name, tsd_id)
    finally:
        stop.set()
        while helper.is_alive():  # let a helper blocked on a full queue finish
            try:
                chunks.get(timeout=0.05)
            except queue.Empty:
                pass
        helper.join()


def delete_tagged(tx, tables: list[str], tsd_name: str, tsd_id: int) -> int:
    """Remove a file's rows from its tables (undoing the part of a file that committed before
    another of its dbms failed)."""
    return sum(_delete_tagged(tx, table, tsd_name, tsd_id) for table in tables)


def _delete_tagged(tx, table: str, tsd_name: str, tsd_id: int) -> int:
    return tx.execute(f'DELETE FROM {schema.quote(table)} WHERE "tsd_id" = ? AND "tsd_name" = ?',
                      (int(tsd_id), tsd_name))


def column_types(declared: list[tuple[str, str]]) -> dict[str, str]:
    """A table's user columns (without the system ones) as logical types."""
    return {n.lower(): schema.logical_type(t) for n, t in declared if n.lower() not in schema.SYSTEM_COLUMN_NAMES}


def new_columns(part: Part, existing: Mapping[str, str] | None,
                fixed: Mapping[str, str] | None) -> tuple[dict[str, str], dict[str, str]]:
    """(the columns this part writes with their types, those the table lacks) for either size."""
    if part.batch is not None:
        return mapping.plan_columns(part.batch, existing, fixed)
    existing = dict(existing or {})
    fixed = dict(fixed or {})
    columns: dict[str, str] = {}
    added: dict[str, str] = {}
    for col in part.columns:
        if col in existing:
            columns[col] = existing[col]
        else:
            columns[col] = added[col] = fixed.get(col) or part.types.get(col) or schema.TEXT
    return columns, added


def first_row_part(part: Part) -> Part:
    """The part as its first row alone, without the columns that row leaves null: what a table
    made from "the first message" has (a big file, read again later, is taken whole)."""
    batch = part.batch
    if batch is None or len(batch) <= 1:
        return part
    keep = [j for j, values in enumerate(batch.values) if values[0] is not None] or list(range(len(batch.columns)))
    first = mapping.Batch([batch.columns[j] for j in keep], [[batch.values[j][0]] for j in keep], batch.lines[:1],
                          batch.types)
    return Part(part.dbms, part.table, first, list(first.columns), rows=1, fixed=part.fixed)
