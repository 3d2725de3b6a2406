"""The self-tests and status commands on real nodes in one process (sockets on 127.0.0.1, port 0,
real SQLite): `test node`, `test network [metadata]`, `test cluster setup|databases`, `get ip list`,
`get ... pool`, `get system threads`, `get metadata info`; plus the pure helpers behind them."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol

from anylog_tw.commands import _probes as diag
from anylog_tw.metadata.ledger import Ledger
from anylog_tw.node import Node
from tests.helpers import ok, poll, refused

TCP = "run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true"


async def start_node(tmp_path, name: str, *setup: str) -> Node:
    node = Node(str(tmp_path / name), name=name, reactor=reactor, environ={})
    node.startService()
    for line in setup:
        await ok(node, line)
    return node


def addr(node: Node) -> str:
    return "%s:%d" % node.process("TCP").external_address


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def table(reply) -> list[dict]:
    return json.loads(reply.render("json"))


def checks(reply) -> dict[str, tuple[str, str]]:
    return {r["Check"]: (r["Result"], r["Detail"]) for r in table(reply)}


@pytest_twisted.async_yield_fixture
async def nodes(tmp_path):
    """Nodes started by a test, all stopped at its end."""
    started: list[Node] = []

    async def make(name: str, *setup: str) -> Node:
        node = await start_node(tmp_path, name, *setup)
        started.append(node)
        return node

    yield make
    for node in started:
        if node.running:
            await node.stopService()


@pytest_twisted.async_yield_fixture
async def silent():
    """A TCP port that accepts connections and never says a word: a node that hangs."""
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    yield f"127.0.0.1:{port.getHost().port}"
    await port.stopListening()


# --- test node ---------------------------------------------------------------------------------


async def test_node_passes_every_check_on_a_well_set_up_node(nodes):
    node = await nodes("n1", TCP, "run rest server where internal_ip = 127.0.0.1 and internal_port = 0",
                       "connect dbms lsl where type = sqlite",
                       'blockchain add {"master": {"name": "m", "company": "t", "ip": "127.0.0.1", "port": 1}}')
    found = checks(await ok(node, "test node"))
    assert found["TCP server"][0] == "ok" and f"n1@{addr(node)}" in found["TCP server"][1]
    assert found["REST server"][0] == "ok" and "/health answered" in found["REST server"][1]
    assert found["Metadata"] == ("ok", found["Metadata"][1]) and "1 policies" in found["Metadata"][1]
    assert found["Blockchain Sync"][0] == "off"
    assert found["DBMS lsl"][0] == "ok" and found["DBMS lsl"][1].startswith("sqlite")
    assert found["Work directories"][0] == "ok"
    assert (await ok(node, "test node")).render().startswith("Node n1\nCheck")


@pytest.mark.allow_logged_errors
async def test_node_says_what_is_wrong(tmp_path, nodes):
    """No servers, no dbms, a ledger line that does not parse, a deleted work directory: each is named."""
    home = tmp_path / "n2"
    os.makedirs(home / "blockchain")
    (home / "blockchain" / "blockchain.json").write_text(
        '{"master": {"name": "m", "id": "m1", "ip": "127.0.0.1", "port": 1}}\n{"broken\n')
    node = await nodes("n2")
    shutil.rmtree(node.dictionary["archive_dir"])
    found = checks(await ok(node, "test node"))
    assert found["TCP server"][0] == "off" and "run tcp server" in found["TCP server"][1]
    assert found["REST server"][0] == "off"
    assert found["Metadata"][0] == "failed" and "1 lines" in found["Metadata"][1] and "line 2" in found["Metadata"][1]
    assert found["DBMS"][0] == "warning" and "connect dbms" in found["DBMS"][1]
    assert found["Work directory archive_dir"][0] == "failed"
    assert "create work directories" in found["Work directory archive_dir"][1]
    assert "Work directories" not in found


async def test_node_finds_an_external_address_that_does_not_answer(nodes):
    """The identity peers are told (external) is unreachable while the bound port answers: said, with both."""
    dead = closed_port()
    node = await nodes("n3", f"run tcp server where external_ip = 127.0.0.1 and external_port = {dead} and "
                             f"internal_ip = 127.0.0.1 and internal_port = 0 and bind = true")
    result, detail = checks(await ok(node, "test node where timeout = 2 seconds"))["TCP server"]
    assert result == "warning" and f"127.0.0.1:{dead}" in detail
    assert "%s:%d" % node.process("TCP").internal_address in detail


async def test_node_rejects_a_timeout_of_zero(nodes):
    node = await nodes("n4")
    assert "more than 0" in await refused(node, "test node where timeout = 0 seconds")


# --- test network ------------------------------------------------------------------------------


def node_policy(kind: str, name: str, address: str) -> str:
    ip, port = address.rsplit(":", 1)
    return f'blockchain add {{"{kind}": {{"name": "{name}", "company": "t", "ip": "{ip}", "port": {port}}}}}'


async def test_network_asks_every_node_and_reports_the_silent_and_the_dead(nodes, silent):
    a = await nodes("alpha", TCP)
    b = await nodes("beta", TCP)
    dead = f"127.0.0.1:{closed_port()}"
    for line in (node_policy("operator", "op-a", addr(a)), node_policy("query", "q-b", addr(b)),
                 node_policy("master", "m-dead", dead), node_policy("publisher", "p-silent", silent),
                 'blockchain add {"operator": {"name": "op-nowhere", "company": "t"}}'):
        await ok(a, line)
    started = time.monotonic()
    reply = await ok(a, "test network where timeout = 1 second")
    assert time.monotonic() - started < 5, "a silent node must not hold the command past its timeout"
    rows = {r["Node Name"]: r for r in table(reply)}
    assert [r["Node Type"] for r in table(reply)] == ["master", "operator", "operator", "query", "publisher"]
    assert rows["op-a"]["Status"] == "+" and rows["op-a"]["Reply"] == f"alpha@{addr(a)} running"
    assert rows["q-b"]["Status"] == "+" and rows["q-b"]["Reply"] == f"beta@{addr(b)} running"
    assert isinstance(rows["q-b"]["ms"], float)
    assert rows["m-dead"]["Status"] == "" and "not reachable" in rows["m-dead"]["Reply"]
    assert rows["p-silent"]["Status"] == "" and "1 s" in rows["p-silent"]["Reply"]
    assert rows["op-nowhere"]["Reply"] == "no ip and port in its policy"
    only = table(await ok(a, "test network with operator where timeout = 1 second"))
    assert {r["Node Name"] for r in only} == {"op-a", "op-nowhere"}
    one = table(await ok(a, f"test network with {addr(b)}"))
    assert [r["Node Name"] for r in one] == ["q-b"]


async def test_network_errors_name_the_problem(nodes):
    a = await nodes("alpha")
    assert "no node policies" in await refused(a, "test network")
    await ok(a, node_policy("query", "q", "127.0.0.1:1"))
    assert "no node in the metadata matches 'master'" in await refused(a, "test network with master")
    assert "node type" in await refused(a, "test network with nonsense")
    assert "with <node type>" in await refused(a, "test network operator")


async def test_network_metadata_compares_versions(nodes):
    a = await nodes("alpha", TCP)
    b = await nodes("beta", TCP)
    await ok(a, node_policy("operator", "op-a", addr(a)))
    await ok(a, node_policy("operator", "op-b", addr(b)))
    shutil.copy(a.dictionary["blockchain_file"], b.dictionary["blockchain_file"])
    await ok(b, "blockchain load metadata")
    reply = await ok(a, "test network metadata version")
    ours = (await ok(a, "get metadata version")).render()
    assert reply.render().startswith(f"Local metadata version: {ours}")
    rows = {r["Node Name"]: r for r in table(reply)}
    assert rows["op-b"]["Metadata Version"] == ours and rows["op-b"]["Same"] == "yes"
    await ok(b, 'blockchain add {"query": {"name": "q-b", "company": "t"}}')
    rows = {r["Node Name"]: r for r in table(await ok(a, "test network metadata with operator"))}
    assert rows["op-b"]["Same"] == "NO" and rows["op-a"]["Same"] == "yes"
    assert rows["op-b"]["Metadata Version"] == (await ok(b, "get metadata version")).render()


# --- test cluster ------------------------------------------------------------------------------


async def cluster_node(nodes, name: str, *extra: str) -> Node:
    return await nodes(name, TCP, "connect dbms almgm where type = sqlite", "connect dbms lsl where type = sqlite",
                       *extra)


async def add_cluster(node: Node, ports: dict[str, int]) -> None:
    await ok(node, 'blockchain add {"cluster": {"id": "c1", "name": "c-one", "company": "t", '
                   '"table": [{"dbms": "lsl", "name": "ping"}]}}')
    for i, (name, port) in enumerate(sorted(ports.items()), start=1):
        await ok(node, f'blockchain add {{"operator": {{"id": "{name}", "name": "{name}", "company": "t", '
                       f'"ip": "127.0.0.1", "port": {port}, "cluster": "c1", "member": {i}}}}}')


async def test_cluster_setup_and_databases(nodes):
    a = await cluster_node(nodes, "a", "connect dbms extra where type = sqlite")
    b = await cluster_node(nodes, "b")
    ports = {"opa": int(addr(a).split(":")[1]), "opb": int(addr(b).split(":")[1])}
    for node in (a, b):
        await add_cluster(node, ports)
    before = dict((await ok(a, "test cluster setup")).data)
    assert before["Operator"].startswith("Not running") and before["Cluster ID"] == ""
    assert before["almgm.tsd_info"] == "Not Defined"
    for node, name in ((a, "opa"), (b, "opb")):
        await ok(node, f"run operator where policy = {name}")
    await ok(a, "create table tsd_info where dbms = almgm")
    setup = (await ok(a, "test cluster setup where format = json")).json_data()
    assert setup["Operator"] == "Running" and setup["Distributor"].startswith("Not running")
    assert setup["Operator Name"] == "opa" and setup["Member ID"] == "1" and setup["Cluster ID"] == "c1"
    assert setup["Cluster policy"] == "c-one" and setup["Cluster operators"].startswith("2: 1 127.0.0.1:")
    assert setup["almgm.tsd_info"] == "Defined"

    reply = await ok(a, "test cluster databases where timeout = 2 seconds")
    assert reply.columns == ["DBMS", f"Member 1 {addr(a)}", f"Member 2 {addr(b)}"]
    assert reply.rows == [["almgm", "+", "+"], ["extra", "+", ""], ["lsl", "+", "+"]]
    await b.stopService()
    reply = await ok(a, "test cluster databases where timeout = 2 seconds")
    assert reply.rows[0] == ["almgm", "+", "?"]
    assert reply.rows[-1][0] == "(no answer)" and "not reachable" in reply.rows[-1][2]


async def test_cluster_databases_needs_a_cluster_operator(nodes):
    node = await nodes("plain")
    assert "not an operator of a cluster" in await refused(node, "test cluster databases")


# --- addresses, pools, threads, metadata info ------------------------------------------------------


async def test_get_ip_list_marks_the_dictionary_addresses(nodes):
    node = await nodes("ips")
    rows = table(await ok(node, "get ip list"))
    assert {"Interface": "lo", "Family": "IPv4", "Address": "127.0.0.1", "Dictionary Key": "ip, external_ip"} in rows
    node.dictionary["external_ip"] = "203.0.113.9"
    rows = table(await ok(node, "get ip list"))
    assert rows[-1] == {"Interface": "(not local)", "Family": "IPv4", "Address": "203.0.113.9",
                        "Dictionary Key": "external_ip"}


async def test_pools_show_the_real_thread_pool(nodes):
    node = await nodes("pools")
    assert table(await ok(node, "get tcp pool"))[0]["Configured"] == "not running"
    await ok(node, TCP)
    release = threading.Event()
    pool = reactor.getThreadPool()
    pool.callInThread(release.wait, 10)
    try:
        await poll(lambda: len(pool.working) >= 1, 5, what="the blocked job to run")
        row = table(await ok(node, "get tcp pool where format = json"))[0]
        assert row["Pool"] == "reactor thread pool" and row["Configured"] == 6
        assert row["Busy"] >= 1 and row["Threads"] >= row["Busy"] and row["Max"] == pool.max
    finally:
        release.set()
    await poll(lambda: not pool.working, 5, what="the job to finish")
    assert table(await ok(node, "get rest pool"))[0]["Configured"] == "not running"
    assert table(await ok(node, "get operator pool"))[0]["Configured"] == "not running"
    await ok(node, "connect dbms almgm where type = sqlite")
    await ok(node, "run operator where threads = 3")
    row = table(await ok(node, "get operator pool"))[0]
    assert row["Pool"] == "operator" and row["Configured"] == 3 and row["Max"] == 6


async def test_system_threads_name_the_reactor_and_the_dbms_threads(nodes):
    node = await nodes("threads", "connect dbms lsl where type = sqlite")
    await ok(node, 'sql lsl "select 1"')
    rows = table(await ok(node, "get system threads"))
    assert rows[0]["Thread"] == threading.current_thread().name and rows[0]["Role"].startswith("reactor (")
    assert any(r["Role"].startswith("dbms lsl") for r in rows)


async def test_metadata_info_counts_policies_by_type(nodes):
    node = await nodes("meta")
    for line in ('blockchain add {"operator": {"name": "o1", "company": "t"}}',
                 'blockchain add {"operator": {"name": "o2", "company": "t"}}',
                 'blockchain add {"master": {"name": "m", "company": "t"}}'):
        await ok(node, line)
    info = (await ok(node, "get metadata info where format = json")).json_data()
    assert info["Policies"] == 3 and info["Policies by type"] == {"master": 1, "operator": 2}
    assert info["Version"] == (await ok(node, "get metadata version")).render()
    assert info["File size"] == os.path.getsize(node.dictionary["blockchain_file"])
    assert info["Source"].startswith("file") and info["Skipped lines"] == 0
    text = (await ok(node, "get metadata info")).render()
    assert "Policies: operator" in text


# --- the pure helpers ----------------------------------------------------------------------------


def test_parse_if_inet6_and_fib_trie():
    inet6 = ("00000000000000000000000000000001 01 80 10 80       lo\n"
             "fe8000000000000000fc00fffe000001 04 40 20 80     eth0\nbad line\n")
    assert diag.parse_if_inet6(inet6) == [("lo", "IPv6", "::1"), ("eth0", "IPv6", "fe80::fc:ff:fe00:1")]
    trie = ("Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.1.2.3\n        /32 host LOCAL\n"
            "     |-- 10.1.2.255\n        /32 link BROADCAST\nLocal:\n     |-- 10.1.2.3\n        /32 host LOCAL\n")
    assert diag.parse_fib_trie(trie) == ["10.1.2.3"]


def test_ip_rows_and_presence_grid():
    rows = diag.ip_rows([("eth0", "IPv4", "10.0.0.5")], {"ip": "10.0.0.5", "external_ip": "198.51.100.1"})
    assert rows == [["eth0", "IPv4", "10.0.0.5", "ip"], ["(not local)", "IPv4", "198.51.100.1", "external_ip"]]
    columns, grid = diag.presence_grid([("m1", {"a", "b"}), ("m2", {"b"}), ("m3", "timed out")])
    assert columns == ["DBMS", "m1", "m2", "m3"]
    assert grid == [["a", "+", "", "?"], ["b", "+", "+", "?"], ["(no answer)", "", "", "timed out"]]


def test_node_targets_filter_by_type_or_address(tmp_path):
    ledger = Ledger(str(tmp_path / "l.json"))
    ledger.install([{"query": {"id": "q1", "name": "q", "ip": "10.0.0.2", "port": 2}},
                    {"master": {"id": "m1", "name": "m", "ip": "10.0.0.1", "port": 1}}], b"")
    assert [t["name"] for t in diag.node_targets(ledger)] == ["m", "q"]
    assert diag.node_targets(ledger, only="10.0.0.2:2") == [{"address": "10.0.0.2:2", "type": "query", "name": "q"}]
