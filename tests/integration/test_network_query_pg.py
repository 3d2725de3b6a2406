"""The query path over mixed engines: cluster 1 on SQLite, cluster 2 on the real PostgreSQL.

Each operator turns the portable statement into its own dialect; the merged answers must equal
the same query over all the rows in one SQLite table (the reference), for the aggregates,
increments, period, per, distinct and ordering that the rewrite supports."""

from __future__ import annotations

import datetime
import json
import sqlite3
import uuid

import pytest
import pytest_twisted

from tests.helpers import ok
from tests.integration.test_network_query import CREATE, address, start
from tests.pg import PSQL, drop_pg_database

pytestmark = pytest.mark.postgres


def rows_of(cluster: int) -> list[tuple]:
    start = datetime.datetime(2026, 7, 19, 22, 0, 0)
    out = []
    for i in range(cluster * 300, cluster * 300 + 300):
        at = start + datetime.timedelta(seconds=i * 37)
        value = None if i % 11 == 0 else (i * 7) % 50 / 2
        out.append((at.isoformat(sep=" ", timespec="microseconds" if i % 3 else "seconds")
                    .replace(".000000", ""), f"dev{i % 5}" if i % 13 else None, value))
    return out


OPERATOR_TABLE = "CREATE TABLE ping (timestamp TIMESTAMP, device_name TEXT, value FLOAT)"


@pytest_twisted.async_yield_fixture
async def mixed(tmp_path):
    db = f"anylog_query_{uuid.uuid4().hex[:8]}"  # each test its own: xdist workers run them at once
    started = []
    try:
        query, op1, op2 = [await start(tmp_path, name) for name in ("query", "op1", "op2")]
        started += [query, op1, op2]
        await ok(op1, "connect dbms lsl where type = sqlite")
        await ok(op2, f"connect dbms lsl where {PSQL} and database = {db}")
        for node, cluster in ((op1, 0), (op2, 1)):
            await ok(node, f'sql lsl "{OPERATOR_TABLE}"')
            values = ", ".join(f"('{t}', {'NULL' if d is None else repr(d)}, {'NULL' if v is None else v})"
                               for t, d, v in rows_of(cluster))
            reply = await node.execute(f'sql lsl "insert into ping (timestamp, device_name, value) values {values}"')
            assert reply.ok, reply.text
        policies = [{"table": {"name": "ping", "dbms": "lsl", "create": CREATE}}]
        for i, node in ((1, op1), (2, op2)):
            ip, port = address(node).split(":")
            policies += [{"cluster": {"id": f"c{i}", "name": f"c{i}", "company": "t",
                                      "table": [{"dbms": "lsl", "name": "ping"}]}},
                         {"operator": {"id": f"op{i}", "name": f"op{i}", "company": "t", "ip": ip,
                                       "port": int(port), "cluster": f"c{i}", "main": True}}]
        for p in policies:
            await ok(query, f"blockchain insert where policy = {json.dumps(p)} and local = true")
        ref = sqlite3.connect(":memory:")
        ref.execute(OPERATOR_TABLE)
        ref.executemany("INSERT INTO ping VALUES (?, ?, ?)", rows_of(0) + rows_of(1))
        yield query, ref
    finally:
        for node in started:
            await node.stopService()
        drop_pg_database(db)


def norm(rows):
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in r) for r in rows]


CASES = [
    ("select count(*), count(value), min(value), max(value), sum(value), avg(value), range(value) from ping",
     "select count(*), count(value), min(value), max(value), sum(value), avg(value), max(value) - min(value) "
     "from ping", True),
    ("select device_name, count(*), avg(value), min(timestamp), max(timestamp) from ping group by device_name "
     "order by device_name", "same", True),
    ("select device_name, count(distinct value) as c from ping group by device_name order by c desc, device_name "
     "limit 3", "same", True),
    ("select increments(minute, 10, timestamp), min(timestamp), count(*), max(value) from ping "
     "where timestamp >= '2026-07-19 22:30:00'",
     "select min(timestamp), count(*), max(value) from ping where timestamp >= '2026-07-19 22:30:00' "
     "group by strftime('%Y-%m-%d %H', timestamp), cast(strftime('%M', timestamp) as integer) / 10 "
     "order by strftime('%Y-%m-%d %H', timestamp), cast(strftime('%M', timestamp) as integer) / 10", True),
    ("select timestamp, value from ping order by timestamp desc limit 5", "same", True),
    ("select timestamp, value from ping order by value, timestamp limit 6", "same", True),
    ("select distinct device_name from ping order by device_name", "same", True),
    ("select device_name, timestamp from ping order by timestamp desc, device_name limit 2 per device_name",
     "select device_name, timestamp from (select device_name, timestamp, row_number() over (partition by "
     "device_name order by timestamp desc, device_name) as rn from ping) where rn <= 2 "
     "order by timestamp desc, device_name", True),
    ("select count(*), min(timestamp), max(timestamp) from ping where period(minute, 30, '2026-07-20 02:00:00', "
     "timestamp, and device_name = 'dev1')",
     "select count(*), min(timestamp), max(timestamp) from ping where timestamp > (select datetime(max(timestamp), "
     "'-30 minutes') from ping where timestamp <= '2026-07-20 02:00:00' and device_name = 'dev1') and timestamp <= "
     "(select max(timestamp) from ping where timestamp <= '2026-07-20 02:00:00' and device_name = 'dev1') and "
     "device_name = 'dev1'", True),
]


@pytest.mark.parametrize("text, reference, ordered", CASES)
async def test_mixed_engines_merge_to_the_one_table_answer(mixed, text, reference, ordered):
    query, ref = mixed
    reply = await query.execute(f'run client () sql lsl format = json and timezone = utc "{text}"')
    assert reply.ok, reply.text
    got = [tuple(r.values()) for r in reply.json_data().get("Query", [])]
    want = ref.execute(text if reference == "same" else reference).fetchall()
    assert norm(got) == norm(want) if ordered else sorted(norm(got)) == sorted(norm(want))
