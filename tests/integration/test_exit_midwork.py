"""`exit <process>` while the process is in the middle of its work: one regression test per process.

Each test starts real work, stops the process while that work is in flight, and checks that the stop
answers, that the work was finished or left untouched for the next start, and (through the janitor
fixture) that nothing was logged as an error: no "Unhandled error in Deferred", no AttributeError.
"""

from __future__ import annotations

import json
import os

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol

from anylog_tw.net import auth, wire
from anylog_tw.net.peers import Peers
from anylog_tw.node import Node
from anylog_tw.storage.engines import Databases
from tests.helpers import ok, poll
from tests.integration.rest_support import Client, start_node, test_registry

ROWS = 60_000


def big_json(n: int = ROWS) -> bytes:
    return b"".join(b'{"seq": %d, "value": %d.5, "device": "d%d"}\n' % (i, i, i % 7) for i in range(n))


def drop(watch: str, name: str, data: bytes) -> None:
    tmp = os.path.join(watch, "." + name + ".part")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(watch, name))


def tree(path: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(r, f), path) for r, _, fs in os.walk(path) for f in fs)


async def plain_node(tmp_path, name="n", registry=None) -> Node:
    node = Node(str(tmp_path / name), name=name, reactor=reactor, environ={},
                registry=registry or test_registry())
    node.startService()
    return node


class Peer(Protocol):
    """A hand-made keyless peer: says hello, then sends what it is told."""

    def __init__(self):
        self.decoder = wire.Decoder()
        self.frames: list[dict] = []
        self.lost: Deferred = Deferred()

    def connectionMade(self):
        self.transport.write(wire.encode({"kind": "hello", "id": 0, "name": "p", "nonce": auth.new_nonce(),
                                          "role": "client"}))

    def dataReceived(self, data):
        self.frames += [e[1] for e in self.decoder.feed(data) if e[0] == wire.FRAME]

    def connectionLost(self, reason=None):
        self.lost.callback(None)


async def peer_of(node: Node) -> Peer:
    port = node.process("TCP").external_address[1]
    peer = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Peer())
    await poll(lambda: any(p.authenticated for p in node.component(Peers).live), what="the handshake")
    return peer


# -- one test per process ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_exit_operator_with_a_file_in_hand_finishes_the_file(tmp_path):
    node = await plain_node(tmp_path)
    try:
        dbs = node.component(Databases)
        await dbs.connect("almgm", "sqlite")
        await dbs.connect("lsl", "sqlite")
        await ok(node, "run operator where threads = 1")
        op = node.process("Operator")
        drop(node.dictionary["watch_dir"], "lsl.big.json", big_json())
        await poll(lambda: op.in_hand, what="the file in hand")
        await ok(node, "exit operator")
        _, rows = await dbs.get("lsl").query("select count(*) from big")
        assert rows[0][0] == ROWS  # finished, as the help says
        assert tree(node.dictionary["watch_dir"]) == [] and tree(node.dictionary["err_dir"]) == []
        assert len(tree(node.dictionary["archive_dir"])) == 1
    finally:
        await node.stopService()


class Mute(Protocol):
    """A "master" that accepts connections and never says a word."""


@pytest_twisted.ensureDeferred
async def test_exit_synchronizer_while_a_sync_waits_on_the_master(tmp_path):
    mute = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory.forProtocol(Mute))
    node = await plain_node(tmp_path)
    try:
        master = f"127.0.0.1:{mute.getHost().port}"
        await ok(node, f"run blockchain sync where source = master and time = 60 seconds and dest = file and "
                       f"connection = {master}")
        sync = node.process("Blockchain Sync")
        await poll(lambda: sync.periodic.busy, what="the sync in flight")
        started = reactor.seconds()
        await ok(node, "exit synchronizer")
        assert reactor.seconds() - started < 2.0  # not the 10-20 s of the peer's timeouts
        assert node.process("Blockchain Sync") is None
    finally:
        await node.stopService()
        await mute.stopListening()


@pytest_twisted.ensureDeferred
async def test_exit_tcp_while_a_peer_command_runs_and_a_file_streams_in(tmp_path):
    node = await plain_node(tmp_path)
    try:
        await ok(node, "run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true")
        runner, sender = await peer_of(node), await peer_of(node)
        runner.transport.write(wire.encode_cmd(1, "test sleep 0.3"))
        sender.transport.write(wire.encode_header({"kind": "file", "id": 2, "name": "lsl.t.json", "size": 10_000,
                                                   "dest": "watch", "md5": "0" * 32}) + b"x" * 5000)
        await poll(lambda: node.component(Peers).live and any(p._receiving for p in node.component(Peers).live),
                   what="the file to start arriving")
        await ok(node, "exit tcp")
        await runner.lost
        await sender.lost
        await poll(lambda: node.component(Peers).live == set(), what="every connection closed")
        await task_sleep(0.4)  # the command ends after its connection: its reply goes nowhere, quietly
        assert tree(node.dictionary["watch_dir"]) == [] and tree(node.dictionary["tmp_dir"]) == []
    finally:
        await node.stopService()


async def task_sleep(seconds: float) -> None:
    from twisted.internet import task

    await task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_exit_rest_while_a_request_is_answered(tmp_path):
    node = await start_node(tmp_path)
    client = Client(node)
    try:
        pending = Deferred.fromCoroutine(client.command("test sleep 0.3"))
        await poll(lambda: node.process("REST").factory.channels, what="the request")
        await task_sleep(0.05)
        await ok(node, "exit rest")
        await poll(lambda: node.process("REST") is None, what="REST to stop")
        try:
            await pending
        except Exception:
            pass  # the connection was closed under it: that is the point
        await task_sleep(0.4)  # the command ends with nobody to answer: no error
    finally:
        await client.close()
        await node.stopService()


@pytest_twisted.ensureDeferred
async def test_exit_publisher_while_a_file_is_shipped(tmp_path):
    from tests.integration.test_publisher import Net, cluster, files_in, operator

    net = Net(tmp_path)
    try:
        await net.operator_node("op1", "lsl")
        pub = await net.node("pub")
        await net.share(cluster("c1", ("lsl", "ping")), operator("op1", "c1", net.ports["op1"], 1))
        await ok(pub, "run publisher where rescan = 1 second")
        drop(pub.dictionary["watch_dir"], "lsl.ping.json", big_json(200_000))
        publisher = pub.process("Publisher")
        await poll(lambda: publisher.total_in_flight, what="the file on its way")
        await ok(pub, "exit publisher")
        watch, bkup = files_in(pub.dictionary["watch_dir"]), files_in(pub.dictionary["bkup_dir"])
        delivered = files_in(net.ops["op1"].dictionary["watch_dir"]) + tree(net.ops["op1"].dictionary["archive_dir"])
        # shipped and kept as a backup, or left for the next start: never both, never neither
        assert (watch == [] and len(bkup) == 1 and delivered) or (watch == ["lsl.ping.json"] and bkup == [])
    finally:
        await net.close()


@pytest_twisted.ensureDeferred
async def test_exit_scheduler_while_a_task_runs(tmp_path):
    node = await plain_node(tmp_path)
    try:
        await ok(node, "run scheduler 1")
        await ok(node, "schedule time = 1 hour and name = slow and scheduler = 1 task test sleep 0.3")
        running = ensureDeferred(node.execute("task run where scheduler = 1 and name = slow"))
        await poll(lambda: _task_running(node), what="the task to start")
        await ok(node, "exit scheduler 1")
        reply = await running  # the run in flight ends and reports, whatever the scheduler does meanwhile
        assert reply.ok or "stopped" in reply.text, reply.text
    finally:
        await node.stopService()


def _task_running(node) -> bool:
    from anylog_tw.services.scheduler_service import Schedulers

    return any(t.running for s in node.component(Schedulers).all() for t in s.tasks())


@pytest_twisted.ensureDeferred
async def test_exit_ha_while_a_push_is_in_flight(tmp_path):
    from tests.integration.test_ha import FAST, add_policies, addr
    from tests.integration.test_ha import drop as ha_drop
    from tests.integration.test_ha import start_node as ha_node

    a, b = await ha_node(tmp_path, "a"), await ha_node(tmp_path, "b")
    try:
        ports = {"opa": addr(a)[1], "opb": addr(b)[1]}
        for node in (a, b):
            await add_policies(node, ports)
        for node, name in ((a, "opa"), (b, "opb")):
            await ok(node, f"run operator where policy = {name} and rescan = 1 second")
        await ok(a, f"run ha where {FAST}")
        for i in range(20):
            ha_drop(a, f"lsl.ping.m{i}.json", i, 200)
        ha = a.process("HA")
        await poll(lambda: ha.push.status_rows(reactor.seconds())[0]["Files pending"] < 20
                   if ha.push.status_rows(reactor.seconds()) else False, 20, what="the push to start")
        await ok(a, "exit ha")
        assert a.process("HA") is None
        await ok(a, f"run ha where {FAST}")  # what was in flight is resent
        await ok(b, f"run ha where {FAST}")
        from tests.integration.test_ha import wait_count

        await wait_count(b, "select count(*) from ping", 20 * 200, "every row on B, once", timeout=30)
    finally:
        for node in (a, b):
            await node.stopService()


@pytest_twisted.ensureDeferred
async def test_exit_streamer_and_stop_with_rows_buffered_writes_them(tmp_path):
    node = await start_node(tmp_path)
    client = Client(node)
    try:
        await ok(node, "run streamer")
        body = b"\n".join(json.dumps({"seq": i}).encode() for i in range(500))
        code, _, _ = await client.call("PUT", "/", {"dbms": "lsl", "table": "s", "mode": "streaming"}, body)
        assert code == 200
        await ok(node, "exit streamer")
        await client.close()
        await node.stopService()  # buffered rows become a file for the operator, not lost
        files = tree(node.dictionary["watch_dir"])
        assert len(files) == 1 and files[0].startswith("lsl.s.")
        with open(os.path.join(node.dictionary["watch_dir"], files[0]), "rb") as f:
            assert f.read().count(b"\n") + 1 >= 500
    finally:
        if node.running:
            await client.close()
            await node.stopService()


class Telnet(Protocol):
    def __init__(self):
        self.received = b""
        self.lost: Deferred = Deferred()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason=None):
        self.lost.callback(None)


@pytest_twisted.ensureDeferred
async def test_exit_console_from_a_session_while_another_session_runs_a_command(tmp_path):
    node = await plain_node(tmp_path)
    try:
        await ok(node, "run console where port = 0")
        port = node.process("Console").address[1]
        busy = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Telnet())
        boss = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Telnet())
        busy.transport.write(b"test sleep 0.3\r\n")
        await poll(lambda: b"AL n" in boss.received, what="the prompt")
        boss.transport.write(b"exit console\r\n")
        await busy.lost
        await boss.lost
        await task_sleep(0.4)  # the sleeping command ends after its session: nothing to write to, quietly
        assert node.process("Console") is None
    finally:
        await node.stopService()
