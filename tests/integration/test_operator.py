"""The operator on the real reactor, real files, real SQLite and the real PostgreSQL.

Each test drops files into the watch dir of a running node and polls (with a deadline) until the
rows are queryable and the file is archived or in the error dir.
"""

from __future__ import annotations

import gzip
import json
import os

import psycopg2
import pytest
import pytest_twisted
from twisted.internet import reactor

from anylog_tw.base.filename import parse_file_name
from anylog_tw.node import Node
from anylog_tw.storage.engines import Databases
from tests.helpers import poll
from tests.pg import PG, drop_pg_database, new_database, pg_connect


def _pg_ok() -> bool:
    try:
        pg_connect("test", connect_timeout=2).close()
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
        dbname = new_database("op")
        await dbs.connect("lsl", "psql", database=dbname, **PG)
    node.engine = engine
    yield node
    await node.stopService()
    if dbname:
        drop_pg_database(dbname)


async def start(node, options: str = "") -> None:
    reply = await node.execute("run operator" + (f" where {options}" if options else ""))
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
    reply = await node.execute("get operator error where format = json")
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
    reply = await node.execute("get operator error where format = json")
    text = json.dumps(reply.json_data())
    assert "line 2" in text and "'v'" in text and "4.5" in text


# --- a corpus of malformed files ---------------------------------------------------------------

CORPUS = [
    # (file name, bytes, reason in the error file's name, text in the reason)
    ("lsl.bad1.0.0.0.json", b"this is not json\n", "json", "line 1: not JSON"),
    ("lsl.bad2.0.0.0.json", b"", "empty", "empty"),
    ("lsl.bad3.0.0.0.json", b"  \n\n", "empty", "empty"),
    ("lsl.bad4.0.0.0.json", b'{"a":1}\n{"a":2}\n{"a":3,\n{"a":4}\n', "json", "line 3"),
    ("lsl.bad5.0.0.0.json", b'{"a":1}\n[1,2]\n', "json", "line 2"),
    ("lsl.bad6.0.0.0.json", b'{"a":1}\n{"a":{"b":1},"a_b":2}\n', "mapping", "line 2"),
    ("lsl.bad7.0.0.0.json", b'{"row_id":1}\n', "mapping", "system column"),
    ("lsl.bad8.0.0.0.json.gz", b"not gzip at all", "io", "cannot read"),
    ("nodb.t.0.0.0.json", b'{"a":1}\n', "dbms", "not connected"),
    ("lsl.t.a.b.c.d.json", b'{"a":1}\n', "name", "6 segments"),
    ("lsl.t.0.0.0.csv", b"a,b\n1,2\n", "type", "type 'csv'"),
    ("lsl.t2.0.0.0.sql", b"insert into t2 (a) values (1);\ndrop table t2;\n", "sql", "only INSERT INTO t2"),
    ("lsl.bad9.0.0.0.json", b'{"a":1}\n"text"\n', "json", "line 2"),
    ("lsl.bad10.0.0.0.json", b'\xff\xfe{"a":1}\n', "json", "line 1"),
]


@pytest.mark.allow_logged_errors
async def test_malformed_files_go_to_the_error_dir_with_the_reason(node):
    """Each bad file lands in error/ as <name>.err_<reason>.<epoch>.<type>, no row of it in the table."""
    await start(node)
    for name, data, _, _ in CORPUS:
        drop(node, name, None, raw=data)
    drop(node, "lsl.good.0.0.0.json", [{"a": 1}, {"a": 2}])
    await wait_empty(node)
    errs = os.listdir(node.dictionary["err_dir"])
    assert len(errs) == len(CORPUS), errs
    reply = await node.execute("get operator error where format = json")
    assert reply.ok
    for name, _, reason, text in CORPUS:
        stem = name.rsplit(".json", 1)[0] if ".json" in name else name.rsplit(".", 1)[0]
        match = [e for e in errs if e.startswith(stem + f".err_{reason}.")]
        assert match, (name, reason, errs)
    assert await count(node, "select count(*) from good") == 2
    tables = await node.component(Databases).get("lsl").tables()
    assert "bad4" not in tables or await count(node, "select count(*) from bad4") == 0
    assert "bad6" not in tables
    assert len([e for e in node.errors.entries() if e[2] == "operator"]) == len(CORPUS)


@pytest.mark.allow_logged_errors
async def test_error_reasons_are_in_get_operator_error_and_the_error_log(node):
    await start(node)
    drop(node, "lsl.bad.0.0.0.json", None, raw=b'{"a":1}\n{"a":\n')
    await wait_empty(node)
    reply = await node.execute("get operator error")
    text = reply.render()
    assert "Last Error Text" in text and "line 2" in text and "json" in text
    logged = [e for e in node.errors.entries() if e[2] == "operator"]
    assert logged and "lsl.bad." in logged[-1][3] and "line 2" in logged[-1][4]


@pytest.mark.allow_logged_errors
async def test_limit_tables_keeps_other_tables_out(node):
    await start(node, "limit_tables = (lsl.allowed)")
    drop(node, "lsl.allowed.0.0.0.json", [{"a": 1}])
    drop(node, "lsl.other.0.0.0.json", [{"a": 1}])
    await wait_empty(node)
    assert await count(node, "select count(*) from allowed") == 1
    assert [e for e in os.listdir(node.dictionary["err_dir"]) if ".err_limit." in e]
    assert "other" not in await node.component(Databases).get("lsl").tables()


async def test_gzipped_files_are_taken_and_archived_as_they_came(node):
    await start(node)
    drop(node, "lsl.gz.0.0.0.json.gz", [{"a": i} for i in range(10)], gz=True)
    await wait_empty(node)
    assert await count(node, "select count(*) from gz") == 10
    archived = listing(node.dictionary["archive_dir"])
    assert len(archived) == 1 and archived[0].endswith(".json.gz")
    with gzip.open(os.path.join(node.dictionary["archive_dir"], archived[0])) as f:
        assert len(f.read().splitlines()) == 10


async def test_archive_off_deletes_and_compress_off_keeps_plain_json(node):
    await start(node, "compress_json = false")
    drop(node, "lsl.plain.0.0.0.json", [{"a": 1}])
    await wait_empty(node)
    archived = listing(node.dictionary["archive_dir"])
    assert len(archived) == 1 and archived[0].endswith(".json")
    await node.execute("exit operator")
    await start(node, "archive_json = false")
    drop(node, "lsl.plain.1.json", [{"a": 2}])
    await wait_empty(node)
    assert len(listing(node.dictionary["archive_dir"])) == 1
    assert await count(node, "select count(*) from plain") == 2


async def test_many_files_many_threads_one_new_table(node):
    """threads = 4, 40 files for the same new table at once: created once, every row there once."""
    await start(node, "threads = 4")
    for i in range(40):
        drop(node, f"lsl.multi.s{i}.json", [{"seq": i * 10 + j, "v": j * 0.5, f"col{i % 3}": "x"} for j in range(10)])
    await wait_empty(node, 60)
    assert await count(node, "select count(*) from multi") == 400
    assert await count(node, "select count(distinct seq) from multi") == 400
    assert await count(node, "select count(distinct tsd_id) from multi") == 40
    _, done = await node.component(Databases).get("almgm").query(
        "select count(*), sum(rows) from tsd_info where status2 = 'done'")
    assert tuple(done[0]) == (40, 400)


async def test_big_file_is_streamed_in_chunks(node, monkeypatch):
    """A file above the small-file size is read in chunks; all rows land, types from the whole file."""
    from anylog_tw.ingest import pipeline, reader

    monkeypatch.setattr(pipeline, "SMALL", 1000)
    monkeypatch.setattr(reader, "CHUNK", 4000)
    await start(node)
    rows = [{"seq": i, "v": i if i < 500 else i + 0.5, "t": "2026-11-28T04:00:00Z"} for i in range(2000)]
    drop(node, "lsl.big.0.0.0.json", rows)
    await wait_empty(node, 60)
    assert await count(node, "select count(*) from big") == 2000
    _, got = await node.component(Databases).get("lsl").query("select sum(v) from big")
    assert abs(float(got[0][0]) - sum(r["v"] for r in rows)) < 1e-6


# --- exactly once after a crash (the states a SIGKILL can leave, built by hand) --------------------


async def _register_by_hand(node, name: str, rows, status: str, inserted: int):
    """Put a file in the state a crash leaves: TSD row (pending/done), renamed, some rows inserted."""
    from anylog_tw.base.filename import file_hash, tsd_date
    from anylog_tw.ingest import tsd

    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    short = parse_file_name(name)
    h = file_hash(short.dbms, short.table, [data])
    almgm = node.component(Databases).get("almgm")
    await almgm.create_tsd_table("tsd_info")
    row, new = await almgm.transaction(tsd.register, "tsd_info", short.dbms, short.table, short.source, h, "0",
                                       "2026-11-28 04:00:00", None)
    full = short.registered_as("0", row.file_id, tsd_date(1_790_000_000))
    full = type(full)(**{**full.__dict__, "hash": h})
    db = node.component(Databases).get("lsl")
    await db.create_table(short.table, {"seq": "integer"})
    if inserted:
        await db.bulk_insert(short.table, ["tsd_name", "tsd_id", "seq"],
                             [("0", row.file_id, r["seq"]) for r in rows[:inserted]])
    if status == "done":
        await almgm.transaction(tsd.mark_done, "tsd_info", row.file_id, inserted)
    drop(node, full.format(), None, raw=data)
    return row.file_id


async def test_pending_file_is_redone_without_duplicating_rows(node):
    rows = [{"seq": i} for i in range(20)]
    file_id = await _register_by_hand(node, "lsl.crash.0.0.0.json", rows, "pending", inserted=7)
    await start(node)
    await wait_empty(node)
    assert await count(node, "select count(*) from crash") == 20
    assert await count(node, f"select count(*) from crash where tsd_id = {file_id}") == 20
    _, st = await node.component(Databases).get("almgm").query("select rows, status2 from tsd_info")
    assert tuple(st[0]) == (20, "done")


async def test_done_file_is_only_archived(node):
    rows = [{"seq": i} for i in range(5)]
    await _register_by_hand(node, "lsl.fin.0.0.0.json", rows, "done", inserted=5)
    await start(node)
    await wait_empty(node)
    assert await count(node, "select count(*) from fin") == 5
    assert len(listing(node.dictionary["archive_dir"])) == 1
    assert not os.listdir(node.dictionary["err_dir"])


async def test_short_named_file_with_a_pending_row_is_taken_over(node):
    """Killed after the TSD row was committed but before the rename: the same row is used, not a new one."""
    from anylog_tw.base.filename import file_hash
    from anylog_tw.ingest import tsd

    rows = [{"seq": i} for i in range(3)]
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    almgm = node.component(Databases).get("almgm")
    await almgm.create_tsd_table("tsd_info")
    await almgm.transaction(tsd.register, "tsd_info", "lsl", "over", "0", file_hash("lsl", "over", [data]), "0",
                            "2026-11-28 04:00:00", None)
    await start(node)
    drop(node, "lsl.over.0.0.0.json", None, raw=data)
    await wait_empty(node)
    _, st = await almgm.query("select file_id, rows, status2 from tsd_info")
    assert [tuple(r) for r in st] == [(1, 3, "done")]
    assert await count(node, "select count(*) from over where tsd_id = 1") == 3


# --- the commands ----------------------------------------------------------------------------------


async def test_get_operator_topics_and_run_twice(node):
    await start(node, "threads = 2")
    drop(node, "lsl.st.0.0.0.json", [{"a": 1}, {"a": 2}])
    await wait_empty(node)
    again = await node.execute("run operator")
    assert not again.ok and "already running" in again.text
    cfg = (await node.execute("get operator config where format = json")).json_data()
    assert cfg[0]["Member"] == "0" and cfg[0]["Status"] == "Running"
    summary = (await node.execute("get operator summary where format = json")).json_data()[0]
    assert summary["Total rows"] == 2 and summary["New rows"] == 2 and "Avg. rows/sec" in summary
    summary = (await node.execute("get operator summary where format = json")).json_data()[0]
    assert summary["New rows"] == 0
    js = (await node.execute("get operator json where format = json")).json_data()
    assert js[0]["DBMS"] == "lsl" and js[0]["Table"] == "st" and js[0]["Files"] == 1
    ins = (await node.execute("get operator inserts where format = json")).json_data()
    assert ins[0]["Rows"] == 2
    both = await node.execute("get operator")
    assert "JSON files" in both.render() and "Inserts" in both.render()
    procs = (await node.execute("get processes where format = json")).json_data()
    assert procs["Operator"]["Status"] == "Running"
    bad = await node.execute("get operator nonsense")
    assert not bad.ok and "unknown operator topic" in bad.text
    assert (await node.execute("exit operator")).ok
    assert "Not declared" in (await node.execute("get operator")).render()


async def test_run_operator_needs_almgm(tmp_path):
    n = Node(str(tmp_path / "h2"), name="op2", reactor=reactor)
    n.startService()
    try:
        reply = await n.execute("run operator")
        assert not reply.ok and "connect dbms almgm" in reply.text
        reply = await n.execute("run operator where threads = 11 and update_tsd_info = false")
        assert not reply.ok and "threads" in reply.text
    finally:
        await n.stopService()


# --- with the metadata layer: operator policy, table and mapping policies, peer files --------------


async def _insert_policy(node, policy: dict) -> str:
    reply = await node.execute(f"blockchain insert where policy = {json.dumps(policy)} and local = true")
    assert reply.ok, reply.render()
    return reply.render().split()[1]


@pytest_twisted.async_yield_fixture
async def meta_node(tmp_path):
    node = Node(str(tmp_path / "home"), name="opm", reactor=reactor)
    node.startService()
    dbs = node.component(Databases)
    await dbs.connect("almgm", "sqlite")
    await dbs.connect("lsl", "sqlite")
    cluster = await _insert_policy(node, {"cluster": {"name": "c1", "company": "acme"}})
    operator = await _insert_policy(node, {"operator": {"name": "op1", "cluster": cluster, "ip": "127.0.0.1",
                                                         "port": 32148, "company": "acme"}})
    node.cluster, node.operator_id = cluster, operator
    yield node
    await node.stopService()


async def _policies(node, text: str) -> list:
    reply = await node.execute(f"blockchain get {text}")
    assert reply.ok, reply.render()
    return json.loads(reply.render() or "[]")


async def test_operator_policy_gives_member_and_tables_are_published(meta_node):
    node = meta_node
    await start(node, f"policy = {node.operator_id}")
    cfg = (await node.execute("get operator config where format = json")).json_data()[0]
    member = cfg["Member"]
    assert cfg["Cluster"] == node.cluster and member.isdigit() and member != "0"
    drop(node, "lsl.pub.0.0.0.json", [{"t": "2026-11-28T04:00:00Z", "v": 1.5}])
    await wait_empty(node)
    _, rows = await node.component(Databases).get("lsl").query("select tsd_name, tsd_id from pub")
    assert [tuple(r) for r in rows] == [(member, 1)]
    name = parse_file_name(os.path.basename(listing(node.dictionary["archive_dir"])[0]))
    assert name.member == member
    tables = await _policies(node, "table where dbms = lsl and name = pub")
    assert len(tables) == 1 and 'CREATE TABLE IF NOT EXISTS "pub"' in tables[0]["table"]["create"]
    children = await _policies(node, f"cluster where parent = {node.cluster}")
    assert len(children) == 1 and children[0]["cluster"]["table"] == [{"dbms": "lsl", "name": "pub"}]
    drop(node, "lsl.pub.1.json", [{"t": "2026-11-28T04:00:01Z", "v": 2.5}])
    await wait_empty(node)
    assert len(await _policies(node, f"cluster where parent = {node.cluster}")) == 1  # assigned once


async def test_missing_operator_policy_is_a_clear_error(meta_node):
    reply = await meta_node.execute("run operator where policy = nosuchpolicy")
    assert not reply.ok and "no policy with id 'nosuchpolicy'" in reply.text
    reply = await meta_node.execute(f"run operator where policy = {meta_node.cluster}")
    assert not reply.ok and "not an operator policy" in reply.text


async def test_table_policy_creates_the_table(meta_node):
    node = meta_node
    create = ('CREATE TABLE IF NOT EXISTS fixed (row_id INTEGER PRIMARY KEY, insert_timestamp TIMESTAMP NOT NULL '
              'DEFAULT CURRENT_TIMESTAMP, tsd_name CHAR(3), tsd_id INT, v REAL, note TEXT)')
    await _insert_policy(node, {"table": {"name": "fixed", "dbms": "lsl", "create": create}})
    await start(node)
    drop(node, "lsl.fixed.0.0.0.json", [{"v": 1, "note": "a"}])
    await wait_empty(node)
    cols = dict(await node.component(Databases).get("lsl").columns("fixed"))
    assert cols["v"] == "REAL" and cols["note"] == "TEXT"
    assert await count(node, "select count(*) from fixed where v = 1.0 and note = 'a'") == 1


async def test_a_table_policy_is_read_for_its_columns_never_run(meta_node):
    """A PostgreSQL policy (SERIAL, now(), |quotes|) creates the table on SQLite, and a statement
    smuggled into the policy's text is not run."""
    node = meta_node
    await node.component(Databases).get("lsl").create_table("keep", {"x": "integer"})
    create = ('CREATE TABLE IF NOT EXISTS |pg_made| (row_id SERIAL PRIMARY KEY, insert_timestamp TIMESTAMP '
              'NOT NULL DEFAULT NOW(), tsd_name CHAR(3), tsd_id INT, |reading| DOUBLE PRECISION, '
              'site VARCHAR(20) NOT NULL); DROP TABLE keep;')
    await _insert_policy(node, {"table": {"name": "pg_made", "dbms": "lsl", "create": create}})
    await start(node)
    drop(node, "lsl.pg_made.0.0.0.json", [{"reading": 2.5, "site": "north"}])
    await wait_empty(node)
    assert await count(node, "select count(*) from pg_made where reading = 2.5 and site = 'north'") == 1
    assert await node.component(Databases).get("lsl").has_table("keep")


async def test_mapping_policy_from_the_instructions_segment(meta_node):
    node = meta_node
    await _insert_policy(node, {"mapping": {
        "id": "m1", "table": "mapped", "readings": "readings",
        "schema": {"device": {"bring": "[dev]", "type": "string"},
                   "value": {"bring": "[v]", "type": "float"},
                   "unit": {"default": "C", "type": "string"}}}})
    await start(node)
    drop(node, "lsl.anything.0.0.m1.json", [{"dev": "d1", "readings": [{"v": "1.5"}, {"v": 2}]},
                                            {"dev": "d2", "readings": [{"v": 3.25, "dev": "inner"}]}])
    await wait_empty(node)
    _, rows = await node.component(Databases).get("lsl").query(
        "select device, value, unit from mapped order by value")
    assert [tuple(r) for r in rows] == [("d1", 1.5, "C"), ("d1", 2.0, "C"), ("inner", 3.25, "C")]
    drop(node, "lsl.anything.0.0.nosuch.json", [{"dev": "d1"}])
    await wait_empty(node)
    assert [e for e in os.listdir(node.dictionary["err_dir"]) if ".err_mapping." in e]


async def test_files_from_a_cluster_peer_go_to_tsd_member(meta_node):
    """A file registered by peer member 77 as its file 12 is recorded in tsd_77 with file_id 12.

    The same name with this node's own member is this node's own file: a 1-in-255 chance made
    this test flaky until it picked the peer's member after reading its own.
    """
    node = meta_node
    await start(node, f"policy = {node.operator_id}")
    own = node.process("Operator").config.member
    peer = "77" if own != "77" else "78"  # the ledger draws this node's member at random
    name = f"lsl.peer.0.abc123.0.{peer}.12.261128040000.json"
    drop(node, name, [{"a": 1}, {"a": 2}])
    await wait_empty(node)
    _, rows = await node.component(Databases).get("lsl").query("select tsd_name, tsd_id, count(*) from peer "
                                                             "group by tsd_name, tsd_id")
    assert [tuple(r) for r in rows] == [(peer, 12, 2)]
    _, tsd_rows = await node.component(Databases).get("almgm").query(
        f"select file_id, file_hash, rows, status2 from tsd_{peer}")
    assert [tuple(r) for r in tsd_rows] == [(12, "abc123", 2, "done")]
    assert listing(node.dictionary["archive_dir"])[0].endswith(name + ".gz")


@pytest.mark.allow_logged_errors
async def test_small_files_share_commits_and_a_bad_one_fails_alone(node):
    """Small files arriving together are inserted in shared transactions; a file the database
    refuses (PostgreSQL parses the timestamp text itself) fails alone, the others all land once."""
    await start(node, "threads = 2")
    drop(node, "lsl.grp.0.0.0.json", [{"t": "2026-11-28T04:00:00Z", "seq": -1}])
    await wait_empty(node)
    for i in range(40):
        t = "2026-02-30T00:00:00Z" if (i == 17 and node.engine == "psql") else "2026-11-28T04:00:01Z"
        drop(node, f"lsl.grp.s{i}.json", [{"t": t, "seq": i * 3 + j} for j in range(3)])
    await wait_empty(node, 60)
    op = node.process("Operator")
    group = op.inserter.groups["lsl"]
    expected = 39 if node.engine == "psql" else 40
    assert await count(node, "select count(*) from grp where seq >= 0") == expected * 3
    assert await count(node, "select count(distinct seq) from grp where seq >= 0") == expected * 3
    errs = os.listdir(node.dictionary["err_dir"])
    assert len(errs) == 40 - expected and all(".err_insert." in e for e in errs)
    assert group.files == 41


async def test_group_commit_shares_a_transaction_and_isolates_a_bad_file(node):
    """Ten inserts asked for at once: the first goes alone, the other nine share one transaction;
    with a refused one among them, it fails alone and the others land."""
    from twisted.internet.defer import Deferred, DeferredList

    from anylog_tw.ingest.batcher import GroupCommit

    db = node.component(Databases).get("lsl")
    await db.create_table("gc", {"seq": "integer"})
    group = GroupCommit(db)
    cols = {"seq": "integer"}

    def item(i, value):
        return ([("gc", cols, [[value]], [])], "0", i, False)

    ds = [Deferred.fromCoroutine(group.insert(item(i, i), 1)) for i in range(10)]
    results = await DeferredList(ds, consumeErrors=True)
    assert [r for ok, r in results] == [1] * 10
    assert (group.transactions, group.files) == (2, 10)
    bad = "not a number"  # text in an integer column: refused by PostgreSQL; SQLite keeps it (no strict types)
    ds = [Deferred.fromCoroutine(group.insert(item(100 + i, bad if i == 5 else 100 + i), 1)) for i in range(10)]
    results = await DeferredList(ds, consumeErrors=True)
    oks = [ok for ok, _ in results]
    assert oks.count(True) == (9 if node.engine == "psql" else 10)
    if node.engine == "psql":
        assert not oks[5]
    assert await count(node, "select count(*) from gc") == 10 + oks.count(True)


@pytest.mark.allow_logged_errors
async def test_big_file_with_a_bad_value_late_fails_whole(node, monkeypatch):
    """A value that does not fit, far into a big file: the whole file fails, no row of it lands."""
    from anylog_tw.ingest import pipeline, reader

    monkeypatch.setattr(pipeline, "SMALL", 1000)
    monkeypatch.setattr(reader, "CHUNK", 2000)
    await start(node)
    drop(node, "lsl.bigbad.0.0.0.json", [{"seq": 0, "v": 1}])
    await wait_empty(node)
    rows = [{"seq": i, "v": i} for i in range(1, 3000)]
    rows[2500]["v"] = 2.5
    drop(node, "lsl.bigbad.1.json", rows)
    await wait_empty(node, 60)
    assert await count(node, "select count(*) from bigbad") == 1
    errs = os.listdir(node.dictionary["err_dir"])
    assert len(errs) == 1 and ".err_mapping." in errs[0]
    text = json.dumps((await node.execute("get operator error where format = json")).json_data())
    assert "line 2501" in text and "2.5" in text  # rows[2500] is the 2,501st line


async def test_tsd_register_semantics(node):
    """A hash registers once; done/pending come back as they are; a peer's id reused for another hash is refused."""
    from anylog_tw.base.errors import StorageError
    from anylog_tw.ingest import tsd

    almgm = node.component(Databases).get("almgm")
    await almgm.create_tsd_table("tsd_info")
    await almgm.create_tsd_table("tsd_5")
    args = ("lsl", "t", "0", "h1", "0", "2026-11-28 04:00:00")
    row, new = await almgm.transaction(tsd.register, "tsd_info", *args, None)
    assert new and row.status == tsd.PENDING and row.file_id == 1
    again, new = await almgm.transaction(tsd.register, "tsd_info", *args, None)
    assert not new and again.file_id == 1 and not again.done
    await almgm.transaction(tsd.mark_done, "tsd_info", 1, 12)
    done, _ = await almgm.transaction(tsd.register, "tsd_info", *args, None)
    assert done.done and done.rows == 12
    peer, new = await almgm.transaction(tsd.register, "tsd_5", "lsl", "t", "0", "p1", "0", "2026-11-28 04:00:00", 40)
    assert new and peer.file_id == 40
    with pytest.raises(StorageError, match="already has file_id 40"):
        await almgm.transaction(tsd.register, "tsd_5", "lsl", "t", "0", "p2", "0", "2026-11-28 04:00:00", 40)
    with pytest.raises(StorageError, match="no file_id 99"):
        await almgm.transaction(tsd.mark_done, "tsd_info", 99, 1)
    assert tsd.tsd_table(None, "3") == "tsd_info" and tsd.tsd_table("3", "3") == "tsd_info"
    assert tsd.tsd_table("007", "3") == "tsd_7" and tsd.tsd_table("003", "3") == "tsd_info"


async def test_a_failed_file_is_recorded_and_redone_when_dropped_again(node):
    """A file that fails after it was registered leaves a failed TSD row (shown by `get tsd errors`),
    not a pending one; dropped again, it is taken over and its rows land once."""
    from anylog_tw.base.errors import StorageError
    from anylog_tw.ingest import tsd

    await start(node)
    op = node.process("Operator")
    finish = op._finish
    calls = []

    async def flaky(job):
        calls.append(job.name)
        if len(calls) == 1:
            raise StorageError("disk full (simulated)")
        return await finish(job)

    op._finish = flaky
    rows = [{"t": "2026-11-28T04:00:00Z", "seq": i} for i in range(5)]
    drop(node, "lsl.flaky.0.0.json", rows)
    await wait_empty(node)
    [failed] = os.listdir(node.dictionary["err_dir"])
    assert ".err_insert." in failed
    _, found = await node.component(Databases).get("almgm").query(
        'select "file_id", "status1", "status2" from tsd_info')
    assert len(found) == 1 and found[0][1] == tsd.FAILED_STATUS and found[0][2].startswith("failed 1: insert")
    errors = (await node.execute("get tsd errors where table = tsd_info and format = json")).json_data()
    assert [e["File ID"] for e in errors] == [found[0][0]] and "disk full" in errors[0]["Status 2"]

    drop(node, "lsl.flaky.0.0.json", rows)  # the same file again, once the cause is gone
    await wait_empty(node)
    assert await count(node, "select count(*) from flaky") == 5
    _, found = await node.component(Databases).get("almgm").query(
        'select "file_id", "status1", "status2", "rows" from tsd_info')
    assert [(r[1], r[2], r[3]) for r in found] == [(None, tsd.DONE, 5)]
    assert (await node.execute("get tsd errors where table = tsd_info and format = json")).json_data() == []


async def test_mark_failed_counts_attempts_and_never_touches_a_done_row(node):
    from anylog_tw.ingest import tsd

    almgm = node.component(Databases).get("almgm")
    await almgm.create_tsd_table("tsd_info")
    args = ("lsl", "t", "0", "h1", "0", "2026-11-28 04:00:00")
    row, _ = await almgm.transaction(tsd.register, "tsd_info", *args, None)
    assert await almgm.transaction(tsd.mark_failed, "tsd_info", row.file_id, "insert: x") == 1
    assert await almgm.transaction(tsd.mark_failed, "tsd_info", row.file_id, "insert: y") == 2
    again, new = await almgm.transaction(tsd.register, "tsd_info", *args, None)
    assert not new and not again.done  # taken over like a pending row
    _, found = await almgm.query('select "status1", "status2" from tsd_info')
    assert tsd.failed_attempts(*found[0]) == 2 and found[0][1] == "failed 2: insert: y"
    await almgm.transaction(tsd.mark_done, "tsd_info", row.file_id, 3)
    assert await almgm.transaction(tsd.mark_failed, "tsd_info", row.file_id, "late") == 0
    _, found = await almgm.query('select "status1", "status2", "rows" from tsd_info')
    assert [tuple(r) for r in found] == [(None, tsd.DONE, 3)]
    assert tsd.failed_attempts(None, "pending") == 0 and tsd.failed_attempts("01", "Missing ...") == 0
