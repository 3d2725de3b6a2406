"""The operator on the real reactor, real files, real SQLite and the real PostgreSQL.

Each test drops files into the watch dir of a running node and polls (with a deadline) until the
rows are queryable and the file is archived or in the error dir.
"""

from __future__ import annotations

import gzip
import json
import os
import uuid

import psycopg2
import pytest
import pytest_twisted
from twisted.internet import reactor

from anylog_tw.ingest.filename import parse_file_name
from anylog_tw.node import Node
from anylog_tw.storage import Databases
from tests.helpers import poll

PG = dict(ip="127.0.0.1", port=5432, user="postgres", password="")


def _pg_ok() -> bool:
    try:
        psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=2).close()
        return True
    except psycopg2.Error:
        return False


ENGINES = ["sqlite", pytest.param("psql", marks=pytest.mark.postgres)]


def drop(node, name: str, rows, raw: bytes | None = None, gz: bool = False) -> str:
    """Write a file into the watch dir the safe way: a temporary name, then a rename."""
    data = raw if raw is not None else b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    if gz:
        data = gzip.compress(data)
    watch = node.dictionary["watch_dir"]
    tmp = os.path.join(watch, name + ".part")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(watch, name))
    return name


def listing(path: str) -> list[str]:
    out = []
    for root, _, files in os.walk(path):
        out += [os.path.relpath(os.path.join(root, f), path) for f in files]
    return sorted(out)


@pytest_twisted.async_yield_fixture(params=ENGINES)
async def node(request, tmp_path):
    engine = request.param
    node = Node(str(tmp_path / "home"), name="op", reactor=reactor)
    node.startService()
    dbs = node.component(Databases)
    await dbs.connect("almgm", "sqlite")
    dbname = None
    if engine == "sqlite":
        await dbs.connect("lsl", "sqlite")
    else:
        dbname = "op_" + uuid.uuid4().hex[:10]
        await dbs.connect("lsl", "psql", database=dbname, **PG)
    node.engine = engine
    yield node
    await node.stopService()
    if dbname:
        c = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        c.close()


async def start(node, options: str = "") -> None:
    reply = await node.run("run operator" + (f" where {options}" if options else ""))
    assert reply.ok, reply.render()


async def count(node, sql: str, dbms: str = "lsl") -> int:
    _, rows = await node.component(Databases).get(dbms).query(sql)
    return rows[0][0]


async def wait_empty(node, timeout: float = 20.0) -> None:
    watch = node.dictionary["watch_dir"]
    op = node.process("Operator")
    await poll(lambda: not os.listdir(watch) and not op.in_hand and not op.queue, timeout, what="watch dir empty")


async def test_files_become_rows_traced_and_archived(node):
    """Every row lands once, tagged with its file's TSD row; the file is archived under YY/MM/DD gzipped."""
    await start(node)
    rows = [{"timestamp": f"2026-11-28T04:00:{i:02d}Z", "device": f"d{i % 3}", "value": i * 1.5, "status": i % 2 == 0,
             "seq": i} for i in range(50)]
    drop(node, "lsl.ping.dev1.0.0.json", rows)
    await wait_empty(node)
    assert await count(node, "select count(*) from ping") == 50
    _, got = await node.component(Databases).get("lsl").query(
        "select tsd_name, tsd_id, count(*), sum(seq) from ping group by tsd_name, tsd_id")
    assert [tuple(r) for r in got] == [("0", 1, 50, sum(range(50)))]
    _, tsd_rows = await node.component(Databases).get("almgm").query(
        "select file_id, dbms_name, table_name, source, rows, status2, file_hash from tsd_info")
    assert tsd_rows[0][:6] == (1, "lsl", "ping", "dev1", 50, "done")
    archived = listing(node.dictionary["archive_dir"])
    assert len(archived) == 1 and archived[0].endswith(".json.gz")
    name = parse_file_name(os.path.basename(archived[0]))
    assert (name.member, name.tsd_id, name.hash) == ("0", 1, tsd_rows[0][6])
    assert archived[0].startswith(f"{name.tsd_date[0:2]}/{name.tsd_date[2:4]}/{name.tsd_date[4:6]}/")
    with gzip.open(os.path.join(node.dictionary["archive_dir"], archived[0])) as f:
        assert [json.loads(x) for x in f.read().splitlines()] == rows


async def test_duplicate_goes_to_error_dir(node):
    """The same bytes again (another name) are a duplicate: error dir, reason named, no rows added."""
    await start(node)
    rows = [{"a": 1}, {"a": 2}]
    drop(node, "lsl.dup.0.0.0.json", rows)
    await wait_empty(node)
    drop(node, "lsl.dup.other.json", rows)
    await wait_empty(node)
    assert await count(node, "select count(*) from dup") == 2
    errs = os.listdir(node.dictionary["err_dir"])
    assert len(errs) == 1 and ".err_duplicate." in errs[0]
    reply = await node.run("get operator error where format = json")
    assert "already ingested" in json.dumps(reply.json_data())


async def test_new_attributes_add_columns_and_types_are_checked(node):
    """A later file with a new attribute adds a nullable column; a value that does not fit fails the file."""
    await start(node)
    drop(node, "lsl.t.0.0.0.json", [{"v": 1}])
    await wait_empty(node)
    drop(node, "lsl.t.1.json", [{"v": 2, "extra": "x"}])
    await wait_empty(node)
    assert await count(node, "select count(*) from t where extra = 'x'") == 1
    drop(node, "lsl.t.2.json", [{"v": 3}, {"v": 4.5}])
    await wait_empty(node)
    assert await count(node, "select count(*) from t") == 2
    errs = os.listdir(node.dictionary["err_dir"])
    assert len(errs) == 1 and ".err_mapping." in errs[0]
    reply = await node.run("get operator error where format = json")
    text = json.dumps(reply.json_data())
    assert "line 2" in text and "'v'" in text and "4.5" in text
