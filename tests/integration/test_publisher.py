"""The publisher on the real reactor: a publisher node and two operator nodes (clusters c1 and c2) in
one process, over real sockets on port 0, with real SQLite databases behind the operators.

Each test drops files in the publisher's watch dir and polls (with a deadline) until the rows are
in the operators' databases, the watch dir is empty and the files are in bkup_dir.
"""

from __future__ import annotations

import gzip
import json
import os

import pytest_twisted
from twisted.internet import reactor

from anylog_tw.base.filename import file_hash
from anylog_tw.ingest import routing
from anylog_tw.metadata.layer import metadata
from anylog_tw.node import Node
from anylog_tw.storage.engines import Databases
from tests.helpers import poll


def rows_of(i: int, n: int = 5) -> bytes:
    return b"".join(json.dumps({"seq": i * 100 + k, "value": k * 0.5, "device": f"d{i}"}).encode() + b"\n"
                    for k in range(n))


def drop(node: Node, name: str, data: bytes, watch: str | None = None) -> str:
    watch = watch or node.dictionary["watch_dir"]
    tmp = os.path.join(watch, "." + name + ".part")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(watch, name))
    return name


def cluster(cid: str, *tables: tuple[str, str]) -> dict:
    return {"cluster": {"id": cid, "name": cid, "company": "test",
                        "table": [{"dbms": d, "name": t} for d, t in tables]}}


def operator(oid: str, cid: str, port: int, member: int) -> dict:
    return {"operator": {"id": oid, "name": oid, "ip": "127.0.0.1", "port": port, "cluster": cid,
                         "member": member, "company": "test"}}


class Net:
    """The nodes of one test and the policies they share."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.nodes: list[Node] = []
        self.ops: dict[str, Node] = {}
        self.ports: dict[str, int] = {}
        self.pub: Node | None = None

    async def node(self, name: str) -> Node:
        node = Node(str(self.tmp_path / name), name=name, reactor=reactor)
        node.startService()
        self.nodes.append(node)
        return node

    async def operator_node(self, name: str, *dbms: str) -> Node:
        node = await self.node(name)
        reply = await node.execute("run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true")
        assert reply.ok, reply.render()
        self.ports[name] = node.process("TCP").external_address[1]
        dbs = node.component(Databases)
        await dbs.connect("almgm", "sqlite")
        for d in dbms:
            await dbs.connect(d, "sqlite")
        self.ops[name] = node
        return node

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    async def share(self, *policies: dict, nodes=None) -> None:
        """Add the policies to the ledger of every node (as a synchronizer would)."""
        for node in nodes or self.nodes:
            meta = await metadata(node)
            for p in policies:
                await meta.add(json.loads(json.dumps(p)))

    async def start_operator(self, name: str, policy: str) -> None:
        reply = await self.ops[name].execute(f"run operator where policy = {policy} and rescan = 1 second")
        assert reply.ok, reply.render()

    async def close(self) -> None:
        for node in reversed(self.nodes):
            await node.stopService()


@pytest_twisted.async_yield_fixture
async def net(tmp_path):
    n = Net(tmp_path)
    yield n
    await n.close()


async def two_clusters(net: Net, *publisher_options: str) -> Node:
    """op1 in c1 hosting lsl.ping and lsl.both, op2 in c2 hosting lsl.pong and lsl.both; a publisher."""
    await net.operator_node("op1", "lsl")
    await net.operator_node("op2", "lsl")
    net.pub = await net.node("pub")
    await net.share(cluster("c1", ("lsl", "ping"), ("lsl", "both")), cluster("c2", ("lsl", "pong"), ("lsl", "both")),
                    operator("op1", "c1", net.ports["op1"], 1), operator("op2", "c2", net.ports["op2"], 2))
    await net.start_operator("op1", "op1")
    await net.start_operator("op2", "op2")
    options = " and ".join(("rescan = 1 second",) + publisher_options)
    reply = await net.pub.execute(f"run publisher where {options}")
    assert reply.ok, reply.render()
    return net.pub


async def count(node: Node, table: str, dbms: str = "lsl") -> int:
    db = node.component(Databases).get(dbms)
    if not await db.has_table(table):
        return 0
    _, rows = await db.query(f"select count(*) from {table}")
    return rows[0][0]


def files_in(path: str) -> list[str]:
    return sorted(f for f in os.listdir(path) if not f.startswith(".")) if os.path.isdir(path) else []


async def delivered(net: Net, timeout: float = 20.0) -> None:
    """The publisher's watch dir is empty and nothing is in hand; the operators ingested everything."""
    pub = net.pub.process("Publisher")
    await poll(lambda: not files_in(pub.watch_dir) and not pub.known, timeout, what="the publisher to deliver")
    for node in net.ops.values():
        op = node.process("Operator")
        if op is not None and op.running:
            watch = node.dictionary["watch_dir"]
            await poll(lambda: not files_in(watch) and not op.in_hand and not op.queue, timeout,
                       what=f"{node.name} to ingest")


async def test_a_table_hosted_by_one_cluster_lands_there_and_files_are_backed_up(net):
    """Every file of lsl.ping reaches op1 (cluster c1), none reaches op2; each leaves the watch dir for bkup_dir."""
    pub = await two_clusters(net)
    names = [drop(pub, f"lsl.ping.dev{i}.0.0.json", rows_of(i)) for i in range(12)]
    await delivered(net)
    assert await count(net.ops["op1"], "ping") == 60
    assert await count(net.ops["op2"], "ping") == 0
    bkup = files_in(pub.dictionary["bkup_dir"])
    assert len(bkup) == 12
    # Backed up under the name they were sent with: the hash filled in, the operator's way.
    want = {n.replace(".0.0.json", f".{file_hash('lsl', 'ping', [rows_of(i)])}.0.json") for i, n in enumerate(names)}
    assert set(bkup) == want
    reply = await pub.execute("get publisher where format = json")
    state = json.loads(reply.render())
    assert state["Summary"]["Files sent"] == 12 and state["Summary"]["Bad files"] == 0
    assert [(o["Operator"], o["Files"]) for o in state["Operators"]] == [(net.address("op1"), 12)]
    assert state["Pending"] == []


async def test_a_table_hosted_by_two_clusters_is_split_as_the_rule_says(net):
    """lsl.both is partitioned: each file goes to the cluster its hash ranks first, so both get some."""
    pub = await two_clusters(net, "delete_json = true")
    expected = {"c1": 0, "c2": 0}
    for i in range(30):
        data = rows_of(i, 2)
        drop(pub, f"lsl.both.dev{i}.0.0.json", data)
        expected[routing.rank(file_hash("lsl", "both", [data]), ["c1", "c2"])[0]] += 2
    await delivered(net)
    got = {"c1": await count(net.ops["op1"], "both"), "c2": await count(net.ops["op2"], "both")}
    assert got == expected
    assert got["c1"] > 0 and got["c2"] > 0
    assert files_in(pub.dictionary["bkup_dir"]) == []  # delete_json


async def test_bad_files_go_to_the_error_dir_with_the_reason_and_nothing_is_sent(net):
    pub = await two_clusters(net)
    drop(pub, "lsl.ping.json.bin", b"{}\n")  # not a data file name
    drop(pub, "lsl.ping.1.2.3.4.json", b"{}\n")  # 6 segments
    drop(pub, "9lsl.ping.0.0.json", b"{}\n")  # dbms fails the name rules
    drop(pub, "lsl.ping.empty.0.0.json", b"")
    drop(pub, "lsl.ping.badgz.0.0.json.gz", b"not gzip at all")
    drop(pub, "lsl.ping.good.0.0.json", rows_of(1))
    await delivered(net)
    errors = files_in(pub.dictionary["err_dir"])
    reasons = sorted(name.split(".err_")[1].split(".")[0] for name in errors)
    assert reasons == ["empty", "io", "name", "name", "type"], errors
    assert await count(net.ops["op1"], "ping") == 5
    state = json.loads((await pub.execute("get publisher summary where format = json")).render())
    assert state["Bad files"] == 5 and state["Files sent"] == 1
    assert "cannot be read as gzip" in state["Last error"] or state["Last error"]
    assert len(files_in(net.ops["op1"].dictionary["err_dir"])) == 0


async def test_gzipped_files_and_compressed_backups(net):
    pub = await two_clusters(net, "compress_json = true")
    drop(pub, "lsl.ping.gz1.0.0.json.gz", gzip.compress(rows_of(3)))
    drop(pub, "lsl.ping.plain.0.0.json", rows_of(4))
    await delivered(net)
    assert await count(net.ops["op1"], "ping") == 10
    bkup = files_in(pub.dictionary["bkup_dir"])
    assert len(bkup) == 2 and all(b.endswith(".json.gz") for b in bkup)
    with gzip.open(os.path.join(pub.dictionary["bkup_dir"], [b for b in bkup if ".plain." in b][0])) as f:
        assert f.read() == rows_of(4)


async def test_an_operator_down_keeps_files_pending_until_it_returns_then_each_lands_once(net):
    """op1 stops listening while files keep coming; they wait; when it listens again all arrive, once."""
    pub = await two_clusters(net, "retry = 1 second")
    for i in range(5):
        drop(pub, f"lsl.ping.before{i}.0.0.json", rows_of(i))
    await delivered(net)
    op1 = net.ops["op1"]
    assert (await op1.execute("exit tcp")).ok
    for i in range(5, 15):
        drop(pub, f"lsl.ping.during{i}.0.0.json", rows_of(i))
    publisher = pub.process("Publisher")
    await poll(lambda: len(publisher.pending) == 10, 15, what="ten pending files")
    pending = json.loads((await pub.execute("get publisher pending where format = json")).render())
    assert pending == [{"DBMS": "lsl", "Table": "ping", "Files": 10,
                        "Waiting because": f"every operator of cluster c1 is down ({net.address('op1')})"}]
    assert len(files_in(publisher.watch_dir)) == 10
    reply = await op1.execute(f"run tcp server where external_ip = 127.0.0.1 and external_port = {net.ports['op1']} "
                          f"and bind = true")
    assert reply.ok, reply.render()
    await delivered(net, 30)
    assert await count(op1, "ping") == 75
    _, rows = await op1.component(Databases).get("lsl").query("select count(distinct seq) from ping")
    assert rows[0][0] == 75
    assert await count(net.ops["op2"], "ping") == 0


async def test_no_operator_at_all_waits_for_the_metadata(net):
    """With no cluster and no operator in the metadata the file waits; the policies arriving route it at once."""
    await net.operator_node("op1", "lsl")
    net.pub = pub = await net.node("pub")
    await net.share(operator("op1", "c1", net.ports["op1"], 1), nodes=[net.ops["op1"]])
    await net.start_operator("op1", "op1")
    assert (await pub.execute("run publisher where retry = 600 seconds and rescan = 1 second")).ok
    drop(pub, "lsl.fresh.a.0.0.json", rows_of(1))
    publisher = pub.process("Publisher")
    await poll(lambda: publisher.pending, 10, what="a pending file")
    (_, r), = publisher.pending.values()
    assert r.how == "none" and "no cluster hosts lsl.fresh" in r.reason
    # The metadata arrives (a sync would do this): an operator in a cluster, the table hosted by nobody.
    await net.share(cluster("c1"), operator("op1", "c1", net.ports["op1"], 1), nodes=[pub])
    await delivered(net)
    assert await count(net.ops["op1"], "fresh") == 5


async def test_distribution_rules_come_first_and_can_be_removed(net):
    pub = await two_clusters(net)
    reply = await pub.execute(f"set data distribution where dbms = lsl and table = * and dest = {net.address('op2')}")
    assert reply.ok, reply.render()
    listing = json.loads((await pub.execute("get publisher distribution where format = json")).render())
    assert listing == [{"DBMS": "lsl", "Table": "*", "Destinations": net.address("op2")}]
    drop(pub, "lsl.ping.ruled.0.0.json", rows_of(1))
    await delivered(net)
    assert (await count(net.ops["op2"], "ping"), await count(net.ops["op1"], "ping")) == (5, 0)
    assert (await pub.execute("set data distribution where dbms = lsl and table = * and remove = true")).ok
    drop(pub, "lsl.ping.after.0.0.json", rows_of(2))
    await delivered(net)
    assert (await count(net.ops["op2"], "ping"), await count(net.ops["op1"], "ping")) == (5, 5)


async def test_a_restarted_publisher_resumes_what_is_pending(net):
    """Files left in the watch dir while the publisher was stopped are sent when it runs again."""
    pub = await two_clusters(net, "retry = 1 second")
    assert (await pub.execute("exit publisher")).ok
    for i in range(6):
        drop(pub, f"lsl.pong.r{i}.0.0.json", rows_of(i))
    assert (await pub.execute("run publisher where rescan = 1 second")).ok
    await delivered(net)
    assert await count(net.ops["op2"], "pong") == 30


async def test_publisher_and_operator_cannot_share_a_watch_dir(net):
    node = await net.operator_node("op1", "lsl")
    assert (await node.execute("run operator")).ok
    reply = await node.execute("run publisher")
    assert not reply.ok and "cannot share a watch dir" in reply.render()
    reply = await node.execute(f"run publisher where watch_dir = {net.tmp_path / 'pubwatch'}")
    assert reply.ok, reply.render()
    assert "Publisher" in (await node.execute("get processes")).render()


async def test_a_file_sent_again_after_a_lost_removal_is_not_ingested_twice(net):
    """As if the publisher died between the ack and the move to bkup_dir: the same file comes back to
    the watch dir, is sent again under the same hashed name, and the operator refuses the duplicate."""
    pub = await two_clusters(net)
    data = rows_of(7)
    drop(pub, "lsl.ping.again.0.0.json", data)
    await delivered(net)
    op1 = net.ops["op1"]
    assert await count(op1, "ping") == 5
    drop(pub, "lsl.ping.again.0.0.json", data)
    await delivered(net)
    await poll(lambda: files_in(op1.dictionary["err_dir"]), 10, what="the duplicate in op1's error dir")
    assert await count(op1, "ping") == 5
    assert [".err_duplicate." in f for f in files_in(op1.dictionary["err_dir"])] == [True]
    assert net.pub.process("Publisher").stats.files_sent == 2
