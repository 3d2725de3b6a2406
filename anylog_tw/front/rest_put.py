"""REST PUT: data in, as a watch-dir file (`mode: file`) or into the streaming buffers (`mode: streaming`).

Headers: `dbms`, `table` (required), `source` and `instructions` (default "0"), `type` (json),
`mode` (file, the default, or streaming).  The body is a JSON array, one JSON object, or one
object per line (LF or CRLF).  In file mode the rows become one file, written atomically, named
with AnyLog's md5 (of "dbms.table" + the file's bytes), and the reply carries that hash; in
streaming mode the hash is "0", as in AnyLog.  Big bodies are parsed, hashed and written in a
worker thread, in one hop; small ones are parsed inline, which is cheaper than the hop.
"""

from __future__ import annotations

from dataclasses import dataclass

from anylog_tw.base.errors import CommandError
from anylog_tw.base.metrics import Metrics
from anylog_tw.ingest.dropfile import data_file_name, ingest_dirs, write_file
from anylog_tw.ingest.jsonrows import json_rows, rows_text
from anylog_tw.ingest.streamer import Streamer

INLINE_LIMIT = 64 * 1024  # bodies up to this size are parsed on the reactor thread
MODES = ("file", "streaming")


class PutError(CommandError):
    code = "bad_put"


@dataclass(frozen=True)
class PutTarget:
    dbms: str
    table: str
    source: str
    instructions: str
    mode: str


def read_put_headers(headers: dict[str, str]) -> PutTarget:
    """The destination of a PUT from its (lower-case) headers; PutError names a bad or missing one."""
    dbms = headers.get("dbms", "").strip().lower()
    table = headers.get("table", "").strip().lower()
    missing = [h for h, v in (("dbms", dbms), ("table", table)) if not v]
    if missing:
        raise PutError(f"a PUT needs the {' and '.join(missing)} header{'s' if len(missing) > 1 else ''} "
                       f"(e.g. -H 'dbms: lsl_demo' -H 'table: ping_sensor')")
    kind = headers.get("type", "json").strip().lower() or "json"
    if kind != "json":
        raise PutError(f"the type header is {kind!r}: only json data is taken")
    mode = headers.get("mode", "file").strip().lower() or "file"
    if mode not in MODES:
        raise PutError(f"the mode header is {mode!r}: use file or streaming")
    source = headers.get("source", "").strip() or "0"
    instructions = headers.get("instructions", "").strip() or "0"
    data_file_name(dbms, table, source, instructions, b"")  # checks the names now, before reading rows
    return PutTarget(dbms, table, source, instructions, mode)


def _file_from_body(target: PutTarget, body: bytes, watch: str) -> tuple[str, int]:
    """Parse, name and write one file (blocking, in a thread for big bodies): (hash, rows)."""
    data, count = rows_text(body)
    name = data_file_name(target.dbms, target.table, target.source, target.instructions, data)
    write_file(watch, name.format(), data)
    return name.hash, count


async def put_data(node, headers: dict[str, str], body: bytes) -> dict:
    """Take one PUT; returns AnyLog's success reply, raises an AnyLogError otherwise."""
    target = read_put_headers(headers)
    metrics = node.component(Metrics)
    streamer = node.component(Streamer)
    metrics.bytes_received.labels(mode=target.mode).inc(len(body))
    if target.mode == "streaming":
        rows = json_rows(body) if len(body) <= INLINE_LIMIT else await node.in_thread(json_rows, body)
        streamer.add(target.dbms, target.table, rows, target.source, target.instructions)
        metrics.rows_received.labels(mode="streaming").inc(len(rows))
        return {"AnyLog.status": "Success", "AnyLog.hash": "0"}
    watch, _ = ingest_dirs(node)
    if len(body) <= INLINE_LIMIT:
        data, count = rows_text(body)
        name = data_file_name(target.dbms, target.table, target.source, target.instructions, data)
        await node.in_thread(write_file, watch, name.format(), data)
        digest = name.hash
    else:
        digest, count = await node.in_thread(_file_from_body, target, body, watch)
    streamer.count_put(target.dbms, target.table, count)
    metrics.rows_received.labels(mode="file").inc(count)
    metrics.files_written.labels(source="rest").inc()
    return {"AnyLog.status": "Success", "AnyLog.hash": digest}
