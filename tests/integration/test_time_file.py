"""`time file ...` on a real node: real files, real SQLite, and the operator where a command's
promise is about what the operator then does with the file (ingest once, duplicate, re-ingest)."""

from __future__ import annotations

import gzip
import json
import os

import pytest
import pytest_twisted
from twisted.internet import reactor

from anylog_tw.base.filename import file_hash
from anylog_tw.node import Node
from anylog_tw.storage.engines import Databases
from tests.helpers import ok, poll, refused
from tests.integration.test_storage_engines import PG, drop_pg_database
from tests.pg import new_database

ROWS = [{"ts": "2026-11-28 05:00:00", "v": 1}, {"ts": "2026-11-28 05:00:01", "v": 2}]
DATA = b"".join(json.dumps(r).encode() + b"\n" for r in ROWS)


@pytest_twisted.async_yield_fixture
async def node(tmp_path):
    node = Node(str(tmp_path / "home"), name="tf", reactor=reactor)
    node.startService()
    dbs = node.component(Databases)
    await dbs.connect("almgm", "sqlite")
    await dbs.connect("lsl", "sqlite")
    os.makedirs(node.dictionary["prep_dir"], exist_ok=True)
    yield node
    await node.stopService()


async def query(node, sql: str, dbms: str = "almgm") -> list[tuple]:
    _, rows = await node.component(Databases).get(dbms).query(sql)
    return [tuple(r) for r in rows]


def prep(node, name: str, data: bytes = DATA) -> str:
    path = os.path.join(node.dictionary["prep_dir"], name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


async def start_operator(node) -> None:
    await ok(node, "run operator")


async def ingest(node, path: str) -> None:
    """Move a file into the watch dir and wait until the operator has archived it or failed it."""
    watch = node.dictionary["watch_dir"]
    os.replace(path, os.path.join(watch, os.path.basename(path)))
    op = node.process("Operator")
    await poll(lambda: not os.listdir(watch) and not op.in_hand and not op.queue, 20, what="watch dir empty")


# --- rename ----------------------------------------------------------------------------------------------


async def test_rename_adds_the_operators_hash_and_keeps_the_data(node):
    """The hash in the new name is the one the operator computes; the file's bytes are untouched."""
    path = prep(node, "lsl.ping.json")
    new = (await ok(node, f"time file rename {path}")).render()
    digest = file_hash("lsl", "ping", [DATA])
    assert new == os.path.join(node.dictionary["prep_dir"], f"lsl.ping.0.{digest}.0.json")
    assert not os.path.exists(path) and read(new) == DATA


async def test_rename_to_other_parts_keeps_source_and_instructions_and_rehashes(node):
    """A new table changes the hash (it covers 'dbms.table'); source and mapping id stay unless given."""
    path = prep(node, "lsl.ping.dev7.abc.my_map.json")
    new = (await ok(node, f"time file rename {path} to table = heat_sensor")).render()
    assert os.path.basename(new) == f"lsl.heat_sensor.dev7.{file_hash('lsl', 'heat_sensor', [DATA])}.my_map.json"
    newer = (await ok(node, f"time file rename {new} to source = dev8 and hash = h1 and instructions = 0")).render()
    assert os.path.basename(newer) == "lsl.heat_sensor.dev8.h1.0.json" and read(newer) == DATA


async def test_rename_stores_the_new_path_in_the_dictionary(node):
    path = prep(node, "readings.json")
    await ok(node, f"new_name = time file rename {path} to dbms = lsl and table = ping")
    assert node.dictionary["new_name"].endswith(f"lsl.ping.0.{file_hash('lsl', 'ping', [DATA])}.0.json")
    assert os.path.isfile(node.dictionary["new_name"])


async def test_rename_of_a_gzipped_file_hashes_the_data_inside(node):
    """Compressed or not, the same data gets the same hash (the operator's duplicate key)."""
    path = prep(node, "lsl.ping.json.gz", gzip.compress(DATA))
    new = (await ok(node, f"time file rename {path}")).render()
    assert os.path.basename(new) == f"lsl.ping.0.{file_hash('lsl', 'ping', [DATA])}.0.json.gz"


@pytest.mark.parametrize("name, to, says", [
    ("readings.json", "", "give the parts it lacks"),
    ("readings.json", "to dbms = lsl", "give the parts it lacks"),
    ("lsl.ping.csv", "", "not a JSON data file"),
    ("lsl.ping.0.h.0.7.12.261128050000.json", "", "already registered"),
    ("lsl.ping.json", "to dbms = 9bad", "not a valid name"),
    ("lsl.ping.json", "to table = a.b", "cannot be a file name segment"),
    ("lsl.ping.json", "to hash = x/y", "cannot be a file name segment"),
    ("lsl.ping.json", "to colour = red", "has no option 'colour'"),
    ("lsl.ping.json", "to", "must be followed by"),
])
async def test_rename_refuses_bad_input_and_leaves_the_file(node, name, to, says):
    path = prep(node, name)
    assert says in await refused(node, f"time file rename {path} {to}")
    assert os.listdir(node.dictionary["prep_dir"]) == [name] and read(path) == DATA


async def test_rename_never_replaces_an_existing_file(node):
    path = prep(node, "lsl.ping.json")
    taken = prep(node, f"lsl.ping.0.{file_hash('lsl', 'ping', [DATA])}.0.json", b'{"other": 1}\n')
    assert "exists already" in await refused(node, f"time file rename {path}")
    assert read(path) == DATA and read(taken) == b'{"other": 1}\n'


async def test_rename_of_a_missing_file_names_it(node):
    missing = os.path.join(node.dictionary["prep_dir"], "lsl.ping.json")
    assert missing in await refused(node, f"time file rename {missing}")


# --- new / add -------------------------------------------------------------------------------------------


async def test_new_registers_a_pending_row_that_the_operator_takes_over(node):
    """The row made by hand is the one the operator uses: same file_id, ingested once, then done."""
    digest = file_hash("lsl", "ping", [DATA])
    path = prep(node, f"lsl.ping.dev1.{digest}.0.json")
    text = (await ok(node, f"time file new {path}")).render()
    assert "tsd_info as file_id 1" in text and "'pending'" in text
    assert await query(node, "select file_id, dbms_name, table_name, source, file_hash, status2 from tsd_info") == \
        [(1, "lsl", "ping", "dev1", digest, "pending")]
    await start_operator(node)
    await ingest(node, path)
    assert await query(node, "select file_id, rows, status2 from tsd_info") == [(1, 2, "done")]
    assert await query(node, "select tsd_id, count(*) from ping group by tsd_id", "lsl") == [(1, 2)]


@pytest.mark.allow_logged_errors
async def test_new_with_status2_done_makes_the_operator_refuse_the_file(node):
    """status2 'done' means ingested: the file is a duplicate and no row of it is inserted."""
    digest = file_hash("lsl", "ping", [DATA])
    path = prep(node, f"lsl.ping.0.{digest}.0.json")
    text = (await ok(node, f'time file new {path} "from publisher 7" done')).render()
    assert "never ingests" in text
    assert await query(node, "select status1, status2 from tsd_info") == [("from publisher 7", "done")]
    await start_operator(node)
    await ingest(node, prep(node, "lsl.ping.again.json"))
    errs = os.listdir(node.dictionary["err_dir"])
    assert len(errs) == 1 and ".err_duplicate." in errs[0]
    assert await query(node, "select count(*) from ping", "lsl") == [(0,)]  # created, never filled


async def test_new_refuses_a_hash_already_recorded_and_keeps_the_row(node):
    path = prep(node, "lsl.ping.0.h1.0.json")
    await ok(node, f"time file new {path} a b")
    other = prep(node, "lsl.other.5.h1.0.json")
    assert "already in tsd_info as file_id 1" in await refused(node, f"time file new {other} c d")
    assert await query(node, "select file_id, table_name, status1, status2 from tsd_info") == [(1, "ping", "a", "b")]


async def test_new_needs_a_hash_in_the_name_and_add_computes_it(node):
    path = prep(node, "lsl.ping.json")
    assert "has no hash" in await refused(node, f"time file new {path}")
    assert "tsd_info" not in await node.component(Databases).get("almgm").tables()
    await ok(node, f"time file add {path}")
    assert await query(node, "select file_hash from tsd_info") == [(file_hash("lsl", "ping", [DATA]),)]


async def test_add_checks_that_the_file_exists(node):
    missing = os.path.join(node.dictionary["prep_dir"], "lsl.ping.0.h1.0.json")
    assert "no file" in await refused(node, f"time file add {missing}")
    assert "tsd_info" not in await node.component(Databases).get("almgm").tables()
    await ok(node, f"time file new {missing}")  # new takes the name alone
    assert await query(node, "select file_hash from tsd_info") == [("h1",)]


async def test_new_of_a_peers_file_goes_to_its_member_table_with_its_id(node):
    """An 8-segment name of member 7 is recorded in tsd_7 under member 7's file_id."""
    peer = "lsl.ping.0.h7.0.7.42.261128050000.json"
    assert "start the operator" in await refused(node, f"time file new {peer}")
    await start_operator(node)  # member 0
    assert "can only be recorded as done" in await refused(node, f"time file new {peer}")  # HA would never fetch it
    await ok(node, f'time file new {peer} "" done')
    assert await query(node, "select file_id, file_hash, status2 from tsd_7") == [(42, "h7", "done")]
    own = "lsl.ping.0.h0.0.0.3.261128050000.json"
    assert "registered by this node" in await refused(node, f"time file new {own}")
    assert "streamer" in await refused(node, "time file new lsl.ping.0.h0.0.@.3.261128050000.json")


@pytest.mark.parametrize("name, says", [
    ("lsl.ping.a.b.c.d.json", "6 segments"),
    ("lsl.ping.0.h.0.csv", "type 'csv'"),
    ("9x.ping.0.h.0.json", "not a valid name"),
])
async def test_new_refuses_names_that_break_the_convention(node, name, says):
    assert says in await refused(node, f"time file new {name}")


# --- update ----------------------------------------------------------------------------------------------


async def test_update_sets_the_given_statuses_only(node):
    await ok(node, "time file new lsl.ping.0.h1.0.json first")
    await ok(node, "time file update h1 second")
    assert await query(node, "select status1, status2 from tsd_info") == [("second", "pending")]
    await ok(node, 'time file update h1 "" "File delivered to backup"')
    assert await query(node, "select status1, status2 from tsd_info") == [(None, "File delivered to backup")]


async def test_update_refuses_unknown_hashes_and_tables(node):
    await ok(node, "time file new lsl.ping.0.h1.0.json")
    assert "no file with hash 'nope'" in await refused(node, "time file update nope x")
    assert "give status1" in await refused(node, "time file update h1")
    assert "not a TSD table" in await refused(node, "time file update h1 x where table = ping")
    assert "no table tsd_9" in await refused(node, "time file update h1 x where table = tsd_9")
    assert "cannot be empty" in await refused(node, 'time file update h1 x ""')
    assert await query(node, "select status1, status2 from tsd_info") == [(None, "pending")]


async def test_update_of_a_done_file_lets_it_be_ingested_again_without_duplicates(node):
    """A done file set back is ingested again when dropped again: its earlier rows are replaced."""
    await start_operator(node)
    await ingest(node, prep(node, "lsl.ping.json"))
    digest = file_hash("lsl", "ping", [DATA])
    assert await query(node, "select file_id, status2 from tsd_info") == [(1, "done")]
    text = (await ok(node, f"time file update {digest} redo again")).render()
    assert "no longer recorded as ingested" in text and "2 earlier rows" in text
    await ingest(node, prep(node, "lsl.ping.json"))
    assert await query(node, "select file_id, rows, status2 from tsd_info") == [(1, 2, "done")]
    assert await query(node, "select tsd_id, count(*) from ping group by tsd_id", "lsl") == [(1, 2)]
    assert os.listdir(node.dictionary["err_dir"]) == []


# --- tables / drop / delete ------------------------------------------------------------------------------


async def test_tables_lists_only_tsd_tables_with_their_counts(node):
    await ok(node, 'sql almgm "create table readings (v integer)"')
    await ok(node, "time file new lsl.ping.0.h1.0.json")
    await ok(node, "time file new lsl.ping.0.h2.0.json x done")
    await start_operator(node)
    await ok(node, "time file new lsl.ping.0.h7.0.7.42.261128050000.json \"\" done")
    reply = await node.execute("time file tables where format = json")
    assert reply.json_data() == [{"TSD table": "tsd_info", "Files": 2, "Done": 1, "Rows": 0},
                                 {"TSD table": "tsd_7", "Files": 1, "Done": 1, "Rows": 0}]


async def test_drop_refuses_tables_that_are_not_tsd_tables(node):
    await ok(node, 'sql almgm "create table ping (v integer)"')
    await ok(node, 'sql almgm "insert into ping values (1)"')
    for name in ("ping", "tsd_info_old", "tsd_x", "ledger"):
        assert "not a TSD table" in await refused(node, f"time file drop {name}")
    assert await query(node, "select v from ping") == [(1,)]
    assert "no table tsd_5" in await refused(node, "time file drop tsd_5")


async def test_drop_refuses_a_table_without_the_tsd_columns(node):
    await ok(node, 'sql almgm "create table tsd_9 (v integer)"')
    assert "does not have the TSD columns" in await refused(node, "time file drop all")
    assert "tsd_9" in await node.component(Databases).get("almgm").tables()


async def test_drop_of_tsd_info_keeps_its_numbering(node):
    """Emptied, not dropped: the next file gets a new file_id, so rows' tsd_id tags never repeat."""
    await ok(node, "time file new lsl.ping.0.h1.0.json")
    await ok(node, "time file new lsl.ping.0.h2.0.json")
    text = (await ok(node, "time file drop tsd_info")).render()
    assert "Emptied tsd_info (2 rows)" in text and "duplicated" in text
    assert await query(node, "select count(*) from tsd_info") == [(0,)]
    await ok(node, "time file new lsl.ping.0.h1.0.json")
    assert await query(node, "select file_id, file_hash from tsd_info") == [(3, "h1")]


@pytest.mark.postgres
async def test_drop_of_tsd_info_keeps_its_numbering_on_postgresql(node):
    """The same promise with almgm on PostgreSQL (a SERIAL key)."""
    dbs = node.component(Databases)
    await dbs.disconnect("almgm")
    name = new_database("tf")
    await dbs.connect("almgm", "psql", database=name, **PG)
    try:
        await ok(node, "time file new lsl.ping.0.h1.0.json")
        await ok(node, "time file new lsl.ping.0.h2.0.json")
        await ok(node, "time file drop all")
        await ok(node, "time file new lsl.ping.0.h1.0.json")
        assert await query(node, "select file_id, file_hash from tsd_info") == [(3, "h1")]
    finally:
        await dbs.disconnect("almgm")
        drop_pg_database(name)


async def test_drop_all_and_drop_one_member_table(node):
    await start_operator(node)
    await ok(node, "time file new lsl.ping.0.h7.0.7.42.261128050000.json \"\" done")
    await ok(node, "time file new lsl.ping.0.h8.0.8.43.261128050000.json \"\" done")
    await ok(node, "time file new lsl.ping.0.h1.0.json")
    assert "refused while Operator" in await refused(node, "time file drop tsd_7")
    await ok(node, "exit operator")
    assert "Dropped tsd_7 (1 rows)" in (await ok(node, "time file drop tsd_7")).render()
    assert "tsd_7" not in await node.component(Databases).get("almgm").tables()
    text = (await ok(node, "time file drop all")).render()
    assert "emptied tsd_info (1 rows)" in text.lower() and "dropped tsd_8 (1 rows)" in text
    assert [t for t in await node.component(Databases).get("almgm").tables() if t.startswith("tsd")] == ["tsd_info"]


async def test_delete_removes_one_row_and_says_what_it_means(node):
    await ok(node, "time file new lsl.ping.0.h1.0.json")
    await ok(node, "time file new lsl.ping.0.h2.0.json x done")
    text = (await ok(node, "time file delete 2 from tsd_info")).render()
    assert "Deleted file_id 2" in text and "duplicated" in text
    assert await query(node, "select file_id from tsd_info") == [(1,)]
    assert "no file_id 2" in await refused(node, "time file delete 2 from tsd_info")
    assert "not a TSD table" in await refused(node, "time file delete 1 from ping")
    assert "expected 'from'" in await refused(node, "time file delete 1 in tsd_info")
    assert "positive number" in await refused(node, "time file delete x from tsd_info")
    assert "wrong number of arguments" in await refused(node, "time file delete 1")
    assert await query(node, "select file_id from tsd_info") == [(1,)]


async def test_delete_of_a_row_not_done_waits_for_the_operator_to_stop(node):
    """A pending row may be a file in the operator's hands: deleting it then is refused."""
    await ok(node, "time file new lsl.ping.0.h1.0.json")
    await start_operator(node)
    assert "exit operator" in await refused(node, "time file delete 1 from tsd_info")
    assert await query(node, "select file_id from tsd_info") == [(1,)]
    await ok(node, "exit operator")
    await ok(node, "time file delete 1 from tsd_info")
    assert await query(node, "select count(*) from tsd_info") == [(0,)]


async def test_commands_need_almgm(node):
    await node.component(Databases).disconnect("almgm")
    for cmd in ("time file tables", "time file new lsl.ping.0.h1.0.json", "time file drop all",
                "time file delete 1 from tsd_info", "time file update h1 x"):
        assert "almgm is not connected" in await refused(node, cmd), cmd


async def test_a_peers_file_ingested_again_after_its_row_is_deleted_replaces_its_rows(node):
    """A tsd_<member> row deleted by hand, then the same file from the peer again (an HA pull):
    the rows tagged with the peer's (member, file_id) are replaced, not doubled."""
    await start_operator(node)  # member 0
    name = f"lsl.ping.0.{file_hash('lsl', 'ping', [DATA])}.0.7.42.261128050000.json"
    await ingest(node, prep(node, name))
    assert await query(node, "select count(*) from ping", "lsl") == [(2,)]
    await ok(node, "time file delete 42 from tsd_7")
    await ingest(node, prep(node, name))
    assert await query(node, "select count(*) from ping", "lsl") == [(2,)]
    assert await query(node, "select file_id, status2 from tsd_7") == [(42, "done")]
