"""The publisher without sockets: its file checks (outbox), its commands, and the service on a Clock
with a fake peer layer whose transfers the test acknowledges or fails by hand."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred

from anylog_tw.base.errors import PeerError
from anylog_tw.base.filename import file_hash, parse_file_name
from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.ingest import outbox, routing
from anylog_tw.ingest.distribution import Distribution
from anylog_tw.ingest.publisher import Publisher, PublisherConfig
from tests.helpers import run, unit_node

# --- outbox -------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=1, max_size=2000), st.booleans())
def test_inspect_names_the_file_with_the_operators_hash(tmp_path_factory, data, gz):
    d = tmp_path_factory.mktemp("w")
    name = "lsl.ping.dev1.0.0.json" + (".gz" if gz else "")
    (d / name).write_bytes(gzip.compress(data) if gz else data)
    out = outbox.inspect_file(str(d / name))
    assert out.hash == file_hash("lsl", "ping", [data])
    assert parse_file_name(out.send_name).hash == out.hash
    assert out.send_name.endswith(".json.gz" if gz else ".json") and (out.dbms, out.table) == ("lsl", "ping")
    assert out.md5 == hashlib.md5((d / name).read_bytes()).hexdigest()


@pytest.mark.parametrize("name,data,reason", [
    ("notes.txt", b"x", "name"),
    ("lsl.ping.a.b.c.d.json", b"x", "name"),
    ("lsl.9ping.json", b"x", "name"),
    ("lsl.ping.csv", b"x", "type"),
    ("lsl.ping.0.0.json", b"", "empty"),
    ("lsl.ping.0.0.json.gz", gzip.compress(b"", mtime=0), "empty"),
    ("lsl.ping.0.0.json.gz", b"plain text", "io"),
])
def test_inspect_refuses_bad_files_with_a_reason(tmp_path, name, data, reason):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(IngestError) as e:
        outbox.inspect_file(str(tmp_path / name))
    assert e.value.reason == reason


def test_a_name_with_a_hash_is_sent_as_it_is(tmp_path):
    (tmp_path / "lsl.ping.0.abc.0.json").write_bytes(b"{}")
    out = outbox.inspect_file(str(tmp_path / "lsl.ping.0.abc.0.json"))
    assert (out.hash, out.send_name) == ("abc", "lsl.ping.0.abc.0.json")


@pytest.mark.parametrize("compress", [False, True])
def test_backup_keeps_the_content_and_removes_the_source(tmp_path, compress):
    src = tmp_path / "lsl.ping.0.0.json"
    src.write_bytes(b'{"a": 1}\n')
    final = outbox.backup(str(src), str(tmp_path / "bkup"), "lsl.ping.0.h.0.json", compress)
    assert not src.exists()
    assert final.endswith(".json.gz" if compress else ".json")
    body = gzip.open(final).read() if compress else open(final, "rb").read()
    assert body == b'{"a": 1}\n'
    assert [f for f in os.listdir(tmp_path / "bkup") if f.endswith(".part")] == []


# --- commands -----------------------------------------------------------------------------------


def test_set_and_remove_distribution_rules(tmp_path):
    node = unit_node(tmp_path)
    assert run(node, "set data distribution where dbms = LSL and table = ping and dest = 10.0.0.1:32048").ok
    assert run(node, "set data distribution where dbms = lsl and table = ping and dest = 10.0.0.2:32048 and "
                     "dest = 10.0.0.1:32048").ok
    assert run(node, "set data distribution where dbms = lsl and table = * and dest = 10.0.0.3:32048").ok
    rows = json.loads(run(node, "get publisher distribution where format = json").render())
    assert rows == [{"DBMS": "lsl", "Table": "*", "Destinations": "10.0.0.3:32048"},
                    {"DBMS": "lsl", "Table": "ping", "Destinations": "10.0.0.1:32048, 10.0.0.2:32048"}]
    assert run(node, "set data distribution where dbms = lsl and table = ping and dest = 10.0.0.1:32048 and "
                     "remove = true").ok
    assert node.component(Distribution).rules == {("lsl", "*"): ("10.0.0.3:32048",),
                                                  ("lsl", "ping"): ("10.0.0.2:32048",)}
    assert run(node, "set data distribution where dbms = lsl and table = * and remove = true").ok
    assert list(node.component(Distribution).rules) == [("lsl", "ping")]


@pytest.mark.parametrize("text,message", [
    ("set data distribution where dbms = lsl and table = ping", "needs dest"),
    ("set data distribution where dbms = 1x and table = ping and dest = 1.2.3.4:5", "dbms '1x' is not a valid name"),
    ("set data distribution where dbms = lsl and table = p.q and dest = 1.2.3.4:5", "table 'p.q'"),
    ("set data distribution where dbms = lsl and table = ping and dest = nowhere", "not a peer address"),
    ("set data distribution where dbms = lsl and table = ping and remove = true", "no distribution rule"),
    ("set data distribution where table = ping and dest = 1.2.3.4:5", "needs option 'dbms'"),
])
def test_distribution_errors_say_what_to_fix(tmp_path, text, message):
    reply = run(unit_node(tmp_path), text)
    assert not reply.ok and message in reply.render(), reply.render()


@pytest.mark.parametrize("text,message", [
    ("run publisher where per_operator = 0", "per_operator is 0"),
    ("run publisher where err_dir = /a and error_dir = /b", "err_dir and error_dir"),
    ("run publisher where master_node = x", "master_node"),
    ("run publisher where delete_json = maybe", "delete_json"),
])
def test_run_publisher_option_errors(tmp_path, text, message):
    reply = run(unit_node(tmp_path), text)
    assert not reply.ok and message in reply.render(), reply.render()


def test_get_publisher_when_not_running(tmp_path):
    node = unit_node(tmp_path)
    assert "Not declared" in run(node, "get publisher").render()
    reply = run(node, "get publisher operators")
    assert not reply.ok and "run publisher" in reply.render()
    assert "unknown publisher topic" in run(node, "get publisher nonsense").render()


# --- the service on a Clock ---------------------------------------------------------------------


class FakePeers:
    """Transfers wait for the test: `ack(i)` or `fail(i)` ends the i-th one."""

    def __init__(self):
        self.states = {}
        self.sends: list[tuple[str, str, Deferred]] = []
        self.refuse_connections: set[str] = set()

    async def send_file(self, address, path, dest="watch", name=None, md5=None):
        assert os.path.exists(path)
        assert md5 == hashlib.md5(open(path, "rb").read()).hexdigest()
        d = Deferred()
        self.sends.append((address, name, d))
        return await d

    async def connection(self, address):
        if address in self.refuse_connections:
            raise PeerError(f"peer {address} is not reachable")
        self.states[address] = SimpleNamespace(status="active")
        return object()

    def down(self, address):
        self.states[address] = SimpleNamespace(status="not responding")

    def open(self):
        return [s for s in self.sends if not s[2].called]


def start_publisher(tmp_path, **kw):
    node = unit_node(tmp_path)
    peers = FakePeers()
    dist = node.component(Distribution)
    d = node.dictionary
    config = PublisherConfig(d["watch_dir"], d["bkup_dir"], d["err_dir"], use_inotify=False, rescan=1.0, **kw)
    pub = Publisher(config, None, peers, dist)
    pub.setServiceParent(node)
    pub.startService()
    return node, pub, peers


def put(pub, name, data=b'{"a": 1}\n'):
    with open(os.path.join(pub.watch_dir, name), "wb") as f:
        f.write(data)
    pub.offer(name)


def test_a_file_leaves_the_watch_dir_only_after_the_ack(tmp_path):
    node, pub, peers = start_publisher(tmp_path)
    node.component(Distribution).add("lsl", "ping", ["10.0.0.1:1"])
    put(pub, "lsl.ping.0.0.json")
    (address, name, d), = peers.sends
    assert address == "10.0.0.1:1" and parse_file_name(name).hash != "0"
    assert os.listdir(pub.watch_dir) == ["lsl.ping.0.0.json"]
    pub.offer("lsl.ping.0.0.json")  # reported again while in flight: not sent twice
    assert len(peers.sends) == 1
    d.callback(None)
    assert os.listdir(pub.watch_dir) == [] and os.listdir(pub.config.bkup_dir) == [name]
    assert pub.stats.files_sent == 1 and not pub.known
    pub.stopService()


def test_transfers_per_operator_are_bounded(tmp_path):
    node, pub, peers = start_publisher(tmp_path, per_operator=2, max_in_flight=3)
    node.component(Distribution).add("lsl", "a", ["10.0.0.1:1"])
    node.component(Distribution).add("lsl", "b", ["10.0.0.2:1"])
    for i in range(5):
        put(pub, f"lsl.a.{i}.0.0.json", b"%d" % i)
        put(pub, f"lsl.b.{i}.0.0.json", b"%d" % i)
    inflight = lambda: sorted(a for a, _, d in peers.open())  # noqa: E731
    assert inflight() == ["10.0.0.1:1", "10.0.0.1:1", "10.0.0.2:1"]  # 2 per operator, 3 overall
    for _ in range(10):
        peers.open()[0][2].callback(None)
        assert len(peers.open()) <= 3 and max(inflight().count(a) for a in set(inflight()) or [""]) <= 2
    assert not peers.open() and pub.stats.files_sent == 10 and os.listdir(pub.watch_dir) == []
    pub.stopService()


def test_a_failed_operator_hands_its_files_to_the_next_destination(tmp_path):
    node, pub, peers = start_publisher(tmp_path, per_operator=8)
    dests = ["10.0.0.1:1", "10.0.0.2:1"]
    node.component(Distribution).add("lsl", "ping", dests)
    for i in range(6):
        put(pub, f"lsl.ping.{i}.0.0.json", b"%d" % i)
    first = [(a, n, d) for a, n, d in peers.open() if a == "10.0.0.1:1"]
    assert first, "the ranking gives 10.0.0.1 some of the files"
    peers.down("10.0.0.1:1")
    first[0][2].errback(PeerError("connection lost"))
    for _, _, d in first[1:]:
        d.errback(PeerError("connection lost"))
    assert {a for a, _, _ in peers.open()} == {"10.0.0.2:1"} and len(peers.open()) == 6
    for _, _, d in peers.open():
        d.callback(None)
    assert pub.stats.files_sent == 6 and pub.stats.failures == len(first)
    assert pub.stats.operators["10.0.0.1:1"].last_error.endswith("connection lost")
    pub.stopService()


def test_pending_files_are_retried_with_backoff_and_probes(tmp_path):
    node, pub, peers = start_publisher(tmp_path, retry_initial=1.0, retry_max=4.0)
    clock = node.reactor
    node.component(Distribution).add("lsl", "ping", ["10.0.0.1:1"])
    peers.down("10.0.0.1:1")
    peers.refuse_connections.add("10.0.0.1:1")
    put(pub, "lsl.ping.0.0.json")
    assert peers.sends == [] and list(pub.pending) == ["lsl.ping.0.0.json"]
    delays = []
    for _ in range(4):
        call = pub._retry_call
        delays.append(round(call.getTime() - clock.seconds(), 3))
        clock.advance(delays[-1])
    assert delays == [1.0, 2.0, 4.0, 4.0]  # doubling, capped at retry
    assert peers.sends == []
    peers.refuse_connections.clear()  # the operator is back: the next probe finds it
    clock.advance(pub._retry_call.getTime() - clock.seconds())
    (address, _, d), = peers.sends
    d.callback(None)
    assert os.listdir(pub.watch_dir) == [] and not pub.pending and pub._retry_call is None
    pub.stopService()


def test_bad_files_go_to_the_error_dir(tmp_path):
    node, pub, peers = start_publisher(tmp_path)
    put(pub, "lsl.ping.0.0.json", b"")
    put(pub, "bad name.json", b"x")
    assert peers.sends == [] and os.listdir(pub.watch_dir) == []
    errs = sorted(os.listdir(pub.config.err_dir))
    assert [e.split(".err_")[1].split(".")[0] for e in errs] == ["name", "empty"]
    assert pub.stats.bad_files == 2 and len(node.errors) == 2
    pub.stopService()


def test_routing_uses_the_live_view_of_the_peers(tmp_path):
    node, pub, peers = start_publisher(tmp_path)
    assert pub.live("10.0.0.9:1")  # never tried: worth a try
    peers.down("10.0.0.9:1")
    assert not pub.live("10.0.0.9:1")
    assert not pub.live("not an address")
    rules = {("lsl", "ping"): ("10.0.0.9:1", "10.0.0.8:1")}
    r = routing.route("lsl", "ping", "0" * 32, rules, routing.Topology(), pub.live)
    assert r.target == "10.0.0.8:1"
    pub.stopService()


def test_rest_put_and_the_streamer_write_into_the_publishers_watch_dir(tmp_path):
    from anylog_tw.ingest.dropfile import ingest_dirs

    node, pub, _ = start_publisher(tmp_path)
    assert ingest_dirs(node)[0] == pub.watch_dir == pub.config.watch_dir
    assert "Watching: " + pub.watch_dir in pub.details()
    pub.stopService()
