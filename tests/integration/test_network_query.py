"""The query path in one process over real sockets: a query node and four operators in two HA
clusters (each an in-process node with its own SQLite dbms and TCP server on port 0).  Cluster 1
holds rows 0-499, cluster 2 rows 500-999; both members of a cluster hold the same rows."""

from __future__ import annotations

import json

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.defer import ensureDeferred

from anylog_tw.net.peers import Peers
from anylog_tw.node import Node
from anylog_tw.query.jobs import QueryJobs
from tests.helpers import ok

CREATE = ("CREATE TABLE ping (row_id INTEGER PRIMARY KEY, insert_timestamp TIMESTAMP, tsd_name CHAR(3), "
          "tsd_id INT, timestamp TIMESTAMP, device_name TEXT, value FLOAT)")


def rows_of(cluster: int) -> list[tuple]:
    base = cluster * 500
    return [(f"2026-07-19 {(i // 60) % 24:02d}:{i % 60:02d}:00", f"dev{i % 7}", float(i % 100)) for i in
            range(base, base + 500)]


async def start(tmp_path, name: str) -> Node:
    node = Node(str(tmp_path / name), name=name, reactor=reactor, environ={})
    node.startService()
    await ok(node, "run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true")
    return node


def address(node: Node) -> str:
    return "%s:%d" % node.process("TCP").external_address


async def load(node: Node, cluster: int) -> None:
    await ok(node, "connect dbms lsl where type = sqlite")
    for table, rows in (("ping", rows_of(cluster)), ("ping2", rows_of(cluster)[:10])):
        await ok(node, f'sql lsl "{CREATE.replace("ping", table)}"')
        values = ", ".join(f"('{t}', '{d}', {v})" for t, d, v in rows)
        await ok(node, f'sql lsl "insert into {table} (timestamp, device_name, value) values {values}"')


@pytest_twisted.async_yield_fixture
async def network(tmp_path):
    tmp = tmp_path
    query = await start(tmp, "query")
    operators = {}
    for cluster in (1, 2):
        for member in ("a", "b"):
            node = await start(tmp, f"op{cluster}{member}")
            await load(node, cluster - 1)
            operators[f"op{cluster}{member}"] = node
    policies = [{"table": {"name": t, "dbms": "lsl", "create": CREATE.replace("ping", t)}} for t in ("ping", "ping2")]
    for cluster in (1, 2):
        policies.append({"cluster": {"id": f"c{cluster}", "name": f"c{cluster}", "company": "t",
                                     "table": [{"dbms": "lsl", "name": t} for t in ("ping", "ping2")]}})
        for member in ("a", "b"):
            ip, port = address(operators[f"op{cluster}{member}"]).split(":")
            policies.append({"operator": {"id": f"op{cluster}{member}", "name": f"op{cluster}{member}",
                                          "company": "t", "ip": ip, "port": int(port), "cluster": f"c{cluster}",
                                          "main": member == "a"}})
    for p in policies:
        await ok(query, f"blockchain insert where policy = {json.dumps(p)} and local = true")
    yield query, operators
    for node in [query, *operators.values()]:
        await node.stopService()


async def answer(node: Node, text: str):
    reply = await node.execute(text)
    assert reply.ok, reply.text
    return reply


async def test_count_is_the_sum_over_the_clusters(network):
    query, _ = network
    reply = await answer(query, 'run client () sql lsl "select count(*), min(value), max(value) from ping"')
    data = reply.json_data()
    assert data["Query"] == [{"count(*)": 1000, "min(value)": 0.0, "max(value)": 99.0}]
    assert data["Statistics"][0]["Nodes"] == 2 and data["Statistics"][0]["Count"] == 1


async def test_main_operators_answer_and_explain_shows_the_merge(network):
    query, ops = network
    await answer(query, 'run client () sql lsl "select count(*) from ping"')
    explain = await answer(query, "query explain")
    row = dict(zip(explain.columns, explain.rows[0]))
    assert "SUM" in row["Local Query"] and "count_all" in row["Local Create"]
    assert set(row["Operators"].split(", ")) == {address(ops["op1a"]), address(ops["op2a"])}


async def test_avg_group_by_order_and_limit(network):
    query, _ = network
    reply = await answer(query, 'run client () sql lsl format = json "select device_name, avg(value) as a, count(*) '
                                'from ping group by device_name order by a desc, device_name limit 3"')
    got = reply.json_data()["Query"]
    everything = rows_of(0) + rows_of(1)
    stats = {}
    for _, d, v in everything:
        s = stats.setdefault(d, [0.0, 0])
        s[0] += v
        s[1] += 1
    want = sorted(((d, s / n, n) for d, (s, n) in stats.items()), key=lambda r: (-r[1], r[0]))[:3]
    assert [(r["device_name"], round(r["a"], 9), r["count(*)"]) for r in got] == [(d, round(a, 9), n) for d, a, n in want]


async def test_pass_through_stops_at_the_limit_and_table_format(network):
    query, _ = network
    reply = await answer(query, 'run client () sql lsl format = table "select device_name, value from ping limit 7"')
    lines = reply.text.splitlines()
    assert lines[0].split() == ["device_name", "value"]
    assert len([ln for ln in lines[2:] if ln.startswith("dev")]) == 7
    assert '"Count": 7' in reply.text


async def test_extend_gives_one_row_per_operator(network):
    query, ops = network
    reply = await answer(query, 'run client () sql lsl format = json and extend = (@ip, @port, +node_name) '
                                '"select count(*) from ping"')
    rows = reply.json_data()["Query"]
    assert sorted((r["node_name"], r["count(*)"]) for r in rows) == [("op1a", 500), ("op2a", 500)]


async def test_failover_to_the_other_member_when_main_is_down(network):
    query, ops = network
    main = ops["op1a"]
    port = main.process("TCP")
    main_address = address(main)
    await ok(main, "exit tcp")
    try:
        reply = await answer(query, 'run client () sql lsl "select count(*) from ping"')
        data = reply.json_data()
        assert data["Query"] == [{"count(*)": 1000}]
        failover = data["Statistics"][0]["Failover"]
        assert failover == [f"cluster c1: {main_address} -> {address(ops['op1b'])}"]
        again = (await answer(query, 'run client () sql lsl "select count(*) from ping"')).json_data()
        assert again["Query"] == [{"count(*)": 1000}]
        assert "Failover" not in again["Statistics"][0]  # the main is known down: the other member first
        status = await answer(query, "query status")
        assert any(address(ops["op1b"]) == r[4] and r[6] == "Completed" for r in status.rows)
    finally:
        host, number = port.external_address
        await ok(main, f"run tcp server where external_ip = {host} and external_port = {number} and bind = true")


async def test_an_unknown_table_is_no_metadata(network):
    query, _ = network
    reply = await query.execute('run client () sql lsl "select count(*) from nosuch"')
    assert not reply.ok and "No metadata info" in reply.text


async def test_unmergeable_is_refused(network):
    query, _ = network
    reply = await query.execute('run client () sql lsl "select device_name, value from ping group by device_name"')
    assert not reply.ok and "cannot be merged" in reply.text


class Silent(Protocol):
    """A peer that accepts the connection and never says anything."""


async def add_silent_cluster(query: Node):
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory.forProtocol(Silent))
    n = port.getHost().port
    for p in ({"cluster": {"id": "c3", "name": "c3", "company": "t", "table": [{"dbms": "lsl", "name": "ping"}]}},
              {"operator": {"id": "op3", "name": "op3", "company": "t", "ip": "127.0.0.1", "port": n,
                            "cluster": "c3"}}):
        await ok(query, f"blockchain insert where policy = {json.dumps(p)} and local = true")
    return port


async def test_a_silent_operator_fails_the_query_without_subset(network):
    query, _ = network
    port = await add_silent_cluster(query)
    silent = f"127.0.0.1:{port.getHost().port}"
    try:
        reply = await query.execute('run client (timeout = 1) sql lsl "select count(*) from ping"')
        assert not reply.ok and "No active operator for cluster 'c3'" in reply.text
    finally:
        await port.stopListening()
        query.component(Peers).forget(silent)


async def test_a_silent_operator_with_subset_gives_the_partial_answer(network):
    query, _ = network
    port = await add_silent_cluster(query)
    silent = f"127.0.0.1:{port.getHost().port}"
    try:
        reply = await answer(query, 'run client (subset = true, timeout = 1) sql lsl "select count(*) from ping"')
        data = reply.json_data()
        assert data["Query"] == [{"count(*)": 1000}]
        assert data["Statistics"][0]["Target Nodes"] == 3 and data["Statistics"][0]["Participating Nodes"] == 2
    finally:
        await port.stopListening()
        query.component(Peers).forget(silent)


async def test_rest_destination_network_with_subset_and_timeout_headers(network):
    """REST: `destination: network` runs the query over the clusters; subset and timeout headers apply."""
    from tests.integration.rest_support import Client

    query, _ = network
    await ok(query, "run rest server where internal_ip = 127.0.0.1 and internal_port = 0")
    client = Client(query)
    try:
        headers = {"User-Agent": "AnyLog/1.23", "destination": "network",
                   "command": 'sql lsl format = json "select count(*) from ping"'}
        status, hdrs, body = await client.call("GET", headers=headers)
        assert status == 200, body
        assert hdrs.getRawHeaders("content-type")[0].startswith("text/json") or b'"Query"' in body
        data = json.loads(body)
        assert data["Query"] == [{"count(*)": 1000}] and data["Statistics"][0]["Nodes"] == 2
        port = await add_silent_cluster(query)
        silent = f"127.0.0.1:{port.getHost().port}"
        try:
            headers.update({"subset": "true", "timeout": "1"})
            status, _, body = await client.call("GET", headers=headers)
            assert status == 200, body
            assert json.loads(body)["Statistics"][0]["Participating Nodes"] == 2
            del headers["subset"]
            status, _, body = await client.call("GET", headers=headers)
            assert status != 200 and b"No active operator for cluster 'c3'" in body
        finally:
            await port.stopListening()
            query.component(Peers).forget(silent)
        headers = {"User-Agent": "AnyLog/1.23", "destination": "network",
                   "command": 'sql lsl format = json "select count(*) from nosuchtable"'}
        status, _, body = await client.call("GET", headers=headers)
        assert status == 400 and b"No metadata info" in body
    finally:
        await client.close()


async def test_pass_through_pages_through_cursors_and_closes_them_at_the_limit(network, monkeypatch):
    """Rows come a page at a time from each operator; at the LIMIT the open cursors are closed."""
    from anylog_tw.query import stream
    from anylog_tw.query.cursor import Cursors
    from tests.helpers import poll

    monkeypatch.setattr(stream, "PAGE", 45)
    query, ops = network
    data = (await answer(query, 'run client () sql lsl "select value, timestamp from ping"')).json_data()
    assert data["Statistics"][0]["Count"] == 1000 and len(data["Query"]) == 1000
    everything = sorted((v, t) for t, _, v in rows_of(0) + rows_of(1))
    assert sorted((r["value"], r["timestamp"]) for r in data["Query"]) == everything
    data = (await answer(query, 'run client () sql lsl "select value from ping limit 120"')).json_data()
    assert len(data["Query"]) == 120
    await poll(lambda: all(not n.component(Cursors).open for n in ops.values()), what="cursors closed")


async def test_rest_streams_a_pass_through_answer(network, monkeypatch):
    from anylog_tw.query import stream
    from tests.integration.rest_support import Client

    monkeypatch.setattr(stream, "PAGE", 64)
    query, _ = network
    await ok(query, "run rest server where internal_ip = 127.0.0.1 and internal_port = 0")
    client = Client(query)
    try:
        for fmt in ("json", "table", "json:list", "json:output"):
            headers = {"User-Agent": "AnyLog/1.23", "destination": "network",
                       "command": f'sql lsl format = {fmt} "select device_name, value from ping"'}
            status, hdrs, body = await client.call("GET", headers=headers)
            assert status == 200, body
            text = body.decode()
            if fmt == "json":
                data = json.loads(text)
                assert len(data["Query"]) == 1000 and data["Statistics"][0]["Count"] == 1000
            elif fmt == "json:list":
                rows, stats = text.split("\n")
                assert len(json.loads(rows)) == 1000 and json.loads(stats)["Statistics"][0]["Count"] == 1000
            elif fmt == "json:output":
                lines = text.splitlines()
                assert len(lines) == 1001 and json.loads(lines[0])["device_name"].startswith("dev")
            else:
                assert text.count("device_name value") == len(range(0, 500, 64)) * 2 and '"Count": 1000' in text
    finally:
        await client.close()


async def test_include_with_extend_table_gives_one_row_per_table(network):
    """Acceptance 12/13: include + extend = (@table_name as table): aggregates per table, and per
    (table, day) with increments."""
    query, _ = network
    data = (await answer(query, 'run client () sql lsl include = (ping2) and extend = (@table_name as table) '
                                '"select min(value) as min_value, max(value) as max_value, count(*) as row_count '
                                'from ping"')).json_data()
    assert sorted((r["table"], r["row_count"]) for r in data["Query"]) == [("ping", 1000), ("ping2", 20)]
    assert list(data["Query"][0]) == ["table", "min_value", "max_value", "row_count"]
    data = (await answer(query, 'run client () sql lsl include = (ping2) and extend = (@table_name as table) '
                                '"select increments(hour, 1, timestamp), min(timestamp) as min_ts, count(*) as n '
                                'from ping limit 10"')).json_data()
    assert len(data["Query"]) == 10 and data["Query"][0]["table"] in ("ping", "ping2")


async def test_destinations_from_metadata_and_nodes_all(network):
    query, ops = network
    data = (await answer(query, 'run client (dbms = lsl and table = ping) sql lsl "select count(*) from ping"'))
    assert data.json_data()["Query"] == [{"count(*)": 1000}]
    one = await answer(query, 'run client (blockchain get operator where [id] = op2b bring.ip_port) sql lsl '
                              '"select count(*) from ping"')
    assert one.json_data()["Query"] == [{"count(*)": 500}]
    used = set()
    for _ in range(2):
        await answer(query, 'run client () sql lsl nodes = all "select count(*) from ping"')
        used |= {r[4] for r in (await answer(query, "query status")).rows if r[4] not in ("All", "-")}
    assert used == {address(n) for n in ops.values()}  # round-robin: both members of each cluster


async def test_query_stop_cancels_a_running_query(network):
    query, _ = network
    port = await add_silent_cluster(query)
    silent = f"127.0.0.1:{port.getHost().port}"
    try:
        running = ensureDeferred(query.execute('run client (timeout = 60) sql lsl "select count(*) from ping"'))
        from tests.helpers import poll

        await poll(lambda: any(p.address == silent and p.status == "Processing"
                               for j in query.component(QueryJobs).jobs.values() for p in j.parts),
                   what="the part on its way to the silent operator")
        stopped = await answer(query, "query stop")
        assert "Stopped 1 queries" in stopped.text
        reply = await running
        assert not reply.ok and "stopped" in reply.text
    finally:
        await port.stopListening()
        query.component(Peers).forget(silent)


async def test_rest_pass_through_rendered_by_the_operators_equals_the_general_path(network, monkeypatch):
    """With json/json:list over REST the operators render the pages (the query node decodes no
    row): the answer is the one the console's path (rows decoded, shaped and rendered on the query
    node) gives, rows in the same order, also when the LIMIT cuts a rendered page in the middle."""
    from anylog_tw.query import cursor, stream
    from tests.integration.rest_support import Client

    monkeypatch.setattr(stream, "PAGE", 64)
    rendered = []
    original = cursor.render
    monkeypatch.setattr(cursor, "render", lambda titles, rows: rendered.append(len(rows)) or original(titles, rows))
    query, _ = network
    await ok(query, "run rest server where internal_ip = 127.0.0.1 and internal_port = 0")
    client = Client(query)
    try:
        for sql in ("select device_name, value, timestamp from ping",
                    "select value as v, device_name from ping where timestamp >= '2026-07-19 07:00:00' limit 100",
                    "select * from ping where value < 3"):
            want = (await answer(query, f'run client () sql lsl "{sql}"')).json_data()
            for fmt in ("json", "json:list"):
                rendered.clear()
                headers = {"User-Agent": "AnyLog/1.23", "destination": "network",
                           "command": f'sql lsl format = {fmt} "{sql}"'}
                status, _, body = await client.call("GET", headers=headers)
                assert status == 200, body
                assert rendered, "the operators did not render the pages"
                if fmt == "json":
                    got = json.loads(body)
                    assert got["Query"] == want["Query"]
                    assert got["Statistics"][0]["Count"] == want["Statistics"][0]["Count"] == len(want["Query"])
                else:
                    rows, stats = body.decode().split("\n")
                    assert json.loads(rows) == want["Query"]
        assert len(want["Query"]) == 30 and list(want["Query"][0]) == ["timestamp", "device_name", "value"]
        limited = (await answer(query, 'run client () sql lsl "select value as v, device_name from ping where '
                                       "timestamp >= '2026-07-19 07:00:00' limit 100\"")).json_data()
        assert len(limited["Query"]) == 100
        # a cast is applied on the query node: the rows come decoded, not rendered
        rendered.clear()
        headers = {"User-Agent": "AnyLog/1.23", "destination": "network",
                   "command": 'sql lsl format = json "select value::int as v from ping limit 3"'}
        status, _, body = await client.call("GET", headers=headers)
        assert status == 200 and not rendered and json.loads(body)["Query"][0]["v"] in range(100)
    finally:
        await client.close()
