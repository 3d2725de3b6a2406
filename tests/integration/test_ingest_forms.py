"""Every data form of AnyLog's docs through a real operator, on real SQLite and the real PostgreSQL:
mapping policies (quoted keys, epoch times, numbers as text, readings, per-row tables, blobs) and
`.sql` files (CREATE TABLE IF NOT EXISTS + INSERT, traced in tsd_info, exactly once)."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest
import pytest_twisted
from twisted.internet import reactor

from anylog_tw.ingest import pipeline
from anylog_tw.node import Node
from anylog_tw.storage.engines import Databases
from tests.integration.test_operator import _insert_policy, count, drop, listing, wait_empty
from tests.pg import PG, drop_pg_database, new_database

ENGINES = ["sqlite", pytest.param("psql", marks=pytest.mark.postgres)]


@pytest_twisted.async_yield_fixture(params=ENGINES)
async def node(request, tmp_path):
    """A node with a ledger (for mapping policies), almgm, and dbms lsl, smart_city and monitoring."""
    engine = request.param
    node = Node(str(tmp_path / "home"), name="forms", reactor=reactor)
    node.startService()
    dbs = node.component(Databases)
    await dbs.connect("almgm", "sqlite")
    made = []
    for dbms in ("lsl", "smart_city", "monitoring", "video"):
        if engine == "sqlite":
            await dbs.connect(dbms, "sqlite")
        else:
            made.append(new_database("forms"))
            await dbs.connect(dbms, "psql", database=made[-1], **PG)
    node.engine = engine
    yield node
    await node.stopService()
    for name in made:
        drop_pg_database(name)


async def start(node, options: str = "") -> None:
    reply = await node.execute("run operator" + (f" where {options}" if options else ""))
    assert reply.ok, reply.render()


async def rows(node, sql: str, dbms: str = "lsl") -> list[tuple]:
    _, got = await node.component(Databases).get(dbms).query(sql)
    return [tuple(r) for r in got]


def errors(node) -> list[str]:
    return os.listdir(node.dictionary["err_dir"])


# --- mapping policies ---------------------------------------------------------------------------------


async def test_quoted_keys_epoch_numbers_and_numbers_as_text(node):
    """issue 18's report: ['PM 2.5 (ug/m3)'] gives the value, an epoch 'created' is a time, "81.5" a float."""
    await _insert_policy(node, {"mapping": {"id": "air", "table": "air", "schema": {
        "pm25": {"type": "float", "bring": "['PM 2.5 (ug/m3)']", "default": -1},
        "station": {"type": "str", "bring": "[meta][station id]"},
        "created": {"type": "timestamp", "bring": "[created]"},
        "ok": {"type": "bool", "bring": "[ok]"},
        "count": {"type": "int", "bring": "[n]"}}}})
    await start(node)
    drop(node, "lsl.x.0.0.air.json", [
        {"PM 2.5 (ug/m3)": "81.5", "meta": {"station id": "s 7"}, "created": 1700000000123, "ok": 1, "n": "-12830"},
        {"PM 2.5 (ug/m3)": 12, "meta": {"station id": "s 8"}, "created": "2026-11-28T12:00:00+02:00", "ok": "true",
         "n": "0.000000e+00"},
        {"meta": {"station id": "s 9"}, "created": 1700000000, "ok": False, "n": 3}])
    await wait_empty(node)
    assert errors(node) == []
    got = await rows(node, "select pm25, station, created, ok, count, tsd_id from air order by station")
    stamp = (lambda t: str(t).replace("T", " ")) if node.engine == "psql" else str
    assert [(r[0], r[1], stamp(r[2]), bool(r[3]), r[4], r[5]) for r in got] == [
        (81.5, "s 7", "2023-11-14 22:13:20.123000", True, -12830, 1),
        (12.0, "s 8", "2026-11-28 10:00:00", True, 0, 1),
        (-1.0, "s 9", "2023-11-14 22:13:20", False, 3, 1)]


async def test_columns_of_number_and_boolean_text(node):
    """All-text numeric and boolean columns (PostgreSQL reads the plain ones itself) store the same values."""
    await _insert_policy(node, {"mapping": {"id": "texts", "table": "texts", "schema": {
        "f": {"type": "float", "bring": "[f]"}, "i": {"type": "int", "bring": "[i]"},
        "b": {"type": "bool", "bring": "[b]"}, "k": {"type": "int", "bring": "[k]"}}}})
    await start(node)
    drop(node, "lsl.x.0.0.texts.json", [
        {"f": "81.5", "i": "-12830", "b": "TRUE", "k": "1"},
        {"f": "7.934139e+01", "i": "+17", "b": "0", "k": "12.0"},
        {"f": ".5", "i": "007", "b": "false", "k": "0.000000e+00"}])
    await wait_empty(node)
    assert errors(node) == []
    got = await rows(node, "select f, i, b, k from texts order by i")
    assert [(r[0], r[1], bool(r[2]), r[3]) for r in got] == [(81.5, -12830, True, 1), (0.5, 7, False, 0),
                                                            (79.34139, 17, False, 12)]


async def test_a_value_that_does_not_fit_sends_the_file_whole_to_the_error_dir(node):
    await _insert_policy(node, {"mapping": {"id": "strict", "table": "strict", "schema": {
        "v": {"type": "int", "bring": "[v]"}}}})
    await start(node)
    drop(node, "lsl.x.0.0.strict.json", [{"v": "1"}, {"v": "2"}, {"v": "2.5"}])
    await wait_empty(node)
    [err] = errors(node)
    assert ".err_mapping." in err
    reply = await node.execute("get operator error where format = json")
    text = json.dumps(reply.json_data())
    assert "line 3" in text and "column 'v'" in text and "2.5" in text
    assert not await node.component(Databases).get("lsl").has_table("strict") or \
        await count(node, "select count(*) from strict") == 0


async def test_spec_edgex_policy_readings_and_conditions(node):
    """anylog-spec §5.5's policy: condition on the device, a row per reading, a column condition."""
    await _insert_policy(node, {"mapping": {
        "id": "rnd_val", "condition": "if [device] == 'Random-Integer-Generator01'", "dbms": "lsl",
        "table": "rnd_val", "readings": "readings",
        "schema": {"timestamp": {"bring": "[created]", "type": "timestamp", "default": "now()"},
                   "value": {"bring": "[value]", "type": "decimal", "condition": "if [name] == X"}}}})
    await start(node)
    drop(node, "lsl.edgex.0.0.rnd_val.json", [
        {"device": "Random-Integer-Generator01", "created": 1700000000123,
         "readings": [{"name": "X", "value": "12"}, {"name": "Y", "value": "13"}]},
        {"device": "another", "created": 1700000000123, "readings": [{"name": "X", "value": "99"}]}])
    await wait_empty(node)
    assert errors(node) == []
    assert await rows(node, "select value from rnd_val order by value") in ([(12.0,), (None,)], [(None,), (12.0,)])


async def test_per_row_dbms_and_table_from_the_data(node):
    """The docs' sensor-policy: one file, four tables in two dbms, all traced to the one file."""
    await _insert_policy(node, {"mapping": {
        "id": "sensor-policy", "dbms": "bring [dbms]", "table": "bring [sensor]", "readings": "",
        "schema": {"timestamp": {"type": "timestamp", "default": "now()", "bring": "[timestamp]"},
                   "value": {"type": "float", "default": None, "bring": "[value]"}}}})
    await start(node)
    drop(node, "lsl.sensors.0.0.sensor-policy.json", [
        {"dbms": "smart_city", "sensor": "ping_sensor", "timestamp": "2026-07-27T10:00:00Z", "value": 12.4},
        {"dbms": "smart_city", "sensor": "ping_sensor", "timestamp": "2026-07-27T10:05:00Z", "value": 13.1},
        {"dbms": "smart_city", "sensor": "humidity", "value": 60.5},
        {"dbms": "smart_city", "sensor": "co2 level", "timestamp": "2026-07-27T09:55:00Z", "value": 412.7},
        {"dbms": "Monitoring", "sensor": "cpu_temp", "timestamp": "2026-07-27T10:00:00Z", "value": 62.8}])
    await wait_empty(node)
    assert errors(node) == []
    assert await rows(node, "select value, tsd_id from ping_sensor order by value", "smart_city") == [(12.4, 1),
                                                                                                      (13.1, 1)]
    assert await count(node, "select count(*) from humidity where timestamp is not null", "smart_city") == 1
    assert await count(node, "select count(*) from co2_level", "smart_city") == 1
    assert await rows(node, "select value from cpu_temp", "monitoring") == [(62.8,)]
    assert await rows(node, "select rows, status2 from tsd_info", "almgm") == [(5, "done")]
    summary = (await node.execute("get operator inserts where format = json")).json_data()
    assert {(r["DBMS"], r["Table"]) for r in summary} == {
        ("smart_city", "ping_sensor"), ("smart_city", "humidity"), ("smart_city", "co2_level"),
        ("monitoring", "cpu_temp")}


async def test_a_file_failing_in_one_dbms_leaves_no_row_in_another(node):
    """Rows for two dbms: the second refuses its insert, so the first's committed rows are taken out again."""
    db = node.component(Databases).get("monitoring")
    await db.execute('CREATE TABLE "cpu_temp" ("tsd_name" TEXT, "tsd_id" INTEGER, "value" REAL CHECK ("value" < 60))')
    await _insert_policy(node, {"mapping": {"id": "two", "dbms": "bring [dbms]", "table": "bring [sensor]",
                                            "schema": {"value": {"type": "float", "bring": "[value]"}}}})
    await start(node)
    drop(node, "lsl.two.0.0.two.json", [{"dbms": "smart_city", "sensor": "ok_table", "value": 1.0},
                                       {"dbms": "monitoring", "sensor": "cpu_temp", "value": 99.0}])
    await wait_empty(node)
    [err] = errors(node)
    assert ".err_insert." in err
    assert await count(node, "select count(*) from ok_table", "smart_city") == 0
    assert await count(node, "select count(*) from cpu_temp", "monitoring") == 0


async def test_blob_columns_are_files_under_blobs_dir_with_the_path_in_the_row(node):
    await _insert_policy(node, {"mapping": {"id": "cam", "dbms": "video", "table": "frames", "schema": {
        "camera": {"type": "str", "bring": "[camera]"},
        "file": {"root": True, "blob": True, "bring": "[file_content]", "extension": "jpeg",
                 "apply": "base64decoding", "hash": "md5", "type": "varchar"}}}})
    await start(node)
    images = [b"\xff\xd8 first image", b"\xff\xd8 second image"]
    drop(node, "video.frames.0.0.cam.json", [{"camera": f"c{i}", "file_content": base64.b64encode(img).decode()}
                                             for i, img in enumerate(images)])
    await wait_empty(node)
    assert errors(node) == []
    got = await rows(node, "select camera, file from frames order by camera", "video")
    expected = [(f"c{i}", f"video/frames/{hashlib.md5(img).hexdigest()}.jpeg") for i, img in enumerate(images)]
    assert got == expected
    for (_, path), img in zip(got, images):
        with open(os.path.join(node.dictionary["blobs_dir"], path), "rb") as f:
            assert f.read() == img


# --- .sql files ----------------------------------------------------------------------------------------

async def test_sql_file_creates_its_table_inserts_once_and_is_traced(node):
    """CREATE TABLE IF NOT EXISTS + INSERTs (with a column list, and positional after the CREATE): rows
    tagged with the file's TSD row, archived; the same bytes again are a duplicate."""
    body = (b"CREATE TABLE IF NOT EXISTS ping_sensor(row_id SERIAL PRIMARY KEY, insert_timestamp TIMESTAMP NOT NULL "
            b"DEFAULT NOW(), tsd_name CHAR(3), tsd_id INT, device_name VARCHAR, value decimal, "
            b"timestamp timestamp not null default now());\n"
            b"INSERT INTO ping_sensor (device_name, value, timestamp) VALUES ('it''s a', 1.5, "
            b"'2026-01-01T10:00:00Z'), ('b', -2, 1700000000123);\n"
            b"insert into lsl.ping_sensor values (DEFAULT, now(), '0', 0, 'c', '3', '2026-01-01 11:00:00');\n")
    await start(node)
    drop(node, "lsl.ping_sensor.0.0.0.sql", None, raw=body.replace(b"DEFAULT, now()", b"1, now()"))
    await wait_empty(node)
    assert errors(node) == []
    got = await rows(node, "select device_name, value, tsd_name, tsd_id from ping_sensor order by device_name")
    assert got == [("b", -2.0, "0", 1), ("c", 3.0, "0", 1), ("it's a", 1.5, "0", 1)]
    assert await rows(node, "select table_name, rows, status2 from tsd_info", "almgm") == [("ping_sensor", 3, "done")]
    archived = listing(node.dictionary["archive_dir"])
    assert len(archived) == 1 and archived[0].endswith(".sql.gz")
    sql_stats = (await node.execute("get operator sql where format = json")).json_data()
    assert [(r["DBMS"], r["Table or partition"], r["Files"]) for r in sql_stats] == [("lsl", "ping_sensor", 1)]
    drop(node, "lsl.ping_sensor.again.0.0.sql", None, raw=body.replace(b"DEFAULT, now()", b"1, now()"))
    await wait_empty(node)
    assert [e for e in errors(node) if ".err_duplicate." in e]
    assert await count(node, "select count(*) from ping_sensor") == 3


async def test_sql_file_into_an_existing_table_with_a_partition_segment(node):
    db = node.component(Databases).get("lsl")
    await db.create_table("readings", {"ts": "timestamp", "v": "float"})
    await start(node)
    drop(node, "lsl.readings.par_2026_01.0.0.0.sql", None,
         raw=b"insert into readings (ts, v) values ('2026-01-01 00:00:00', '81.5');\n")
    await wait_empty(node)
    assert errors(node) == []
    assert await rows(node, "select v from readings") == [(81.5,)]


CREATE_T = b"create table if not exists t (a int);\n"


@pytest.mark.parametrize("body,fragment", [
    (CREATE_T + b"insert into other (a) values (1);", "not the file's table"),
    (CREATE_T + b"insert into t (a) values (1); drop table t;", "not DROP"),
    (CREATE_T + b"update t set a = 1;", "not UPDATE"),
    (CREATE_T + b"insert into t (a) select 1;", "only VALUES rows"),
    (CREATE_T + b"insert into t (a) values (1) on conflict do nothing;", "found conflict"),
    (CREATE_T + b"insert into t (a) values (pg_sleep(10));", "not a plain value"),
    (b"create table t (a int);", "IF NOT EXISTS"),
    (b"insert into t values (1);", "name the columns"),
    (CREATE_T + b"insert into t (a, b) values (1);", "1 values for 2 columns"),
    (CREATE_T + b"insert into t (a) values (1", "parser can read"),
])
async def test_sql_files_with_anything_else_go_whole_to_the_error_dir(node, body, fragment):
    await start(node)
    drop(node, "lsl.t.0.0.0.sql", None, raw=body + b"\n")
    await wait_empty(node)
    [err] = errors(node)
    assert ".err_sql." in err and err.endswith(".sql")
    reply = await node.execute("get operator error where format = json")
    data = reply.json_data()
    assert data[0]["Type"] == "SQL" and fragment in data[0]["Last Error Text"], data
    assert not await node.component(Databases).get("lsl").has_table("t")


async def test_the_create_and_the_inserts_are_one_transaction(node):
    """A later part that fails rolls the CREATE back too: the table never exists half-filled."""
    from anylog_tw.storage import schema

    db = node.component(Databases).get("lsl")
    ddl = schema.create_table_sql(db.engine, "born", {"a": "integer"})
    parts = [("born", {"a": "integer"}, [[1]], ddl), ("missing_table", {"a": "integer"}, [[2]], [])]
    with pytest.raises(Exception):
        await db.transaction(pipeline.insert_small, parts, "0", 1, False)
    assert not await db.has_table("born")


async def test_get_operator_pool_and_reset_stats(node):
    await start(node)
    drop(node, "lsl.a.0.0.0.json", [{"v": 1}])
    drop(node, "lsl.b.0.0.0.sql", None, raw=b"create table if not exists b (v int); insert into b (v) values (1);")
    drop(node, "lsl.c.0.0.0.sql", None, raw=b"delete from c;")
    await wait_empty(node)
    summary = (await node.execute("get stats where service = operator and topic = summary and format = json"))
    assert summary.ok and summary.json_data()[0]["Total rows"] == 2 and summary.json_data()[0]["Total errors"] == 1
    errs = (await node.execute("get operator error where format = json")).json_data()
    assert sorted(e["Type"] for e in errs) == ["SQL"]
    pool = await node.execute("get operator pool where format = json")
    assert pool.ok and pool.json_data()[0]["Configured"] == 1
    details = await node.execute("get operator pool where details = true and format = json")
    assert details.ok and details.json_data()["Pool"][0]["Configured"] == 1 and details.json_data()["Files"] == []
    assert "File" in (await node.execute("get operator pool where details = true")).render()
    reply = await node.execute("reset stats where service = operator and topic = summary")
    assert reply.ok, reply.render()
    for topic in ("json", "sql", "inserts", "error"):
        assert (await node.execute(f"get operator {topic} where format = json")).json_data() == [], topic
    assert (await node.execute("get operator summary where format = json")).json_data()[0]["Total rows"] == 0
    bad = await node.execute("reset stats where service = streamer")
    assert not bad.ok and "operator" in bad.render()
