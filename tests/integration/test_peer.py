"""Two nodes in one process over real sockets on 127.0.0.1: commands, replies, files, keys, TLS."""

from __future__ import annotations

import hashlib
import os

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults

from anylog_tw.base.errors import PeerError, Timeout
from anylog_tw.net.peers import Peers
from anylog_tw.node import Node
from tests.helpers import poll


async def start_node(tmp_path, name: str, *setup: str) -> Node:
    node = Node(str(tmp_path / name), name=name, reactor=reactor, environ={})
    node.startService()
    for line in setup:
        reply = await node.execute(line)
        assert reply.ok, reply.text
    reply = await node.execute("run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true")
    assert reply.ok, reply.text
    return node


def addr(node: Node) -> str:
    return "%s:%d" % node.process("TCP").external_address


@pytest_twisted.async_yield_fixture
async def pair(tmp_path):
    a = await start_node(tmp_path, "alpha")
    b = await start_node(tmp_path, "beta")
    yield a, b
    await a.stopService()
    await b.stopService()


async def test_run_client_gets_the_remote_status(pair):
    """`run client (ip:port) get status` returns the remote node's own status line."""
    a, b = pair
    reply = await a.execute(f"run client ({addr(b)}) get status")
    assert reply.ok, reply.text
    assert reply.render() == f"beta@{addr(b)} running"


async def test_get_status_shows_tcp_identity(pair):
    a, _ = pair
    reply = await a.execute("get status")
    assert reply.render() == f"alpha@{addr(a)} running"


async def test_many_commands_in_flight_share_one_connection(pair):
    """500 concurrent commands all come back matched to their ids, over a single connection."""
    a, b = pair
    peers = a.component(Peers)
    replies = await gatherResults([Deferred.fromCoroutine(peers.command(addr(b), f"echo n{i}"))
                                   for i in range(500)])
    assert [r.text for r in replies] == [f"n{i}" for i in range(500)]
    assert len([p for p in peers.live if p.role == "client"]) == 1


async def test_reply_kinds_survive_the_wire(pair):
    """Tables, JSON and errors come back as equal Replies, rendered as the user asked."""
    a, b = pair
    peers = a.component(Peers)
    table = await peers.command(addr(b), "get processes")
    local = await b.execute("get processes")
    assert table.is_table and table.columns == local.columns and table.rows == local.rows
    as_json = await a.execute(f"run client ({addr(b)}) get processes where format = json")
    assert as_json.render() == local.render("json")
    err = await peers.command(addr(b), "no such command")
    assert not err.ok and err.error_code == "unknown_command" and "unknown command" in err.text


async def test_big_reply_body(pair):
    """A reply of tens of MB arrives whole."""
    a, b = pair
    b.dictionary["big"] = "x" * (20 * 1024 * 1024)
    reply = await a.component(Peers).command(addr(b), "echo !big")
    assert reply.ok and len(reply.text) == 20 * 1024 * 1024
    # A big table (parsed off the reactor thread on arrival) renders as it does locally.
    table = await a.component(Peers).command(addr(b), "get dictionary big")
    assert table.is_table and table.rows == [["big", "x" * (20 * 1024 * 1024)]]


async def test_one_way_events(pair):
    """peers.send_event reaches the handler registered with on_event, with its args and body."""
    a, b = pair
    got = []
    b.component(Peers).on_event("test_ping", lambda peer, args, body: got.append((peer, args, body)))
    await a.component(Peers).send_event(addr(b), "test_ping", {"n": 1}, b"payload")
    await a.component(Peers).send_event(addr(b), "nobody_listens", {})
    await poll(lambda: got, 5, what="the event")
    assert got == [(addr(a), {"n": 1}, b"payload")]


async def test_remote_references_and_assignment(pair):
    """`!key` resolves here, `!!key` on the remote node; `x = run client ...` stores the reply."""
    a, b = pair
    a.dictionary["who"] = "local-value"
    b.dictionary["who"] = "remote-value"
    reply = await a.execute(f"run client ({addr(b)}) echo !who !!who")
    assert reply.text == "local-value remote-value"
    reply = await a.execute(f"x = run client {addr(b)} get node name")
    assert reply.ok and a.dictionary["x"] == "beta"


async def test_destination_forms_and_multi_node_blocks(tmp_path, pair):
    """(ip port), (!ip !port), several nodes as [From Node] blocks and as one JSON object."""
    a, b = pair
    c = await start_node(tmp_path, "gamma")
    try:
        ip, port = addr(b).split(":")
        a.dictionary.update(bip=ip, bport=port)
        assert (await a.execute(f"run client ({ip} {port}) get node name")).text == "beta"
        assert (await a.execute("run client (!bip !bport) get node name")).text == "beta"
        reply = await a.execute(f"run client ({addr(b)}, {addr(c)}) get node name")
        assert reply.render() == f"[From Node {addr(b)}]\nbeta\n\n[From Node {addr(c)}]\ngamma"
        reply = await a.execute(f"run client ({addr(b)}, {addr(c)}) get status where format = json")
        data = reply.json_data()
        assert set(data) == {addr(b), addr(c)} and data[addr(c)]["assigned_name"] == f"gamma@{addr(c)}"
    finally:
        await c.stopService()


async def test_unreachable_peer_fails_fast_unless_subset(tmp_path, pair):
    """A dead address fails the command at once; with subset = true the others' replies are kept."""
    a, b = pair
    dead = await start_node(tmp_path, "dead")
    dead_addr = addr(dead)
    await dead.stopService()
    start = reactor.seconds()
    reply = await a.execute(f"run client ({addr(b)}, {dead_addr}) get node name")
    assert not reply.ok and dead_addr in reply.text and "subset" in reply.text
    assert reactor.seconds() - start < 3
    reply = await a.execute(f"run client ({addr(b)}, {dead_addr} and subset = true) get node name")
    assert reply.ok and "beta" in reply.text and f"[From Node {dead_addr}]" in reply.text
    reply = await a.execute(f"run client {dead_addr} get node name")
    assert not reply.ok and "not reachable" in reply.text
    conns = await a.execute("get connections where format = json")
    states = {p["Peer"]: p["Status"] for p in conns.json_data()["peers"]}
    assert states[dead_addr] == "not responding"


async def test_timeout_inside_parentheses(pair):
    """A peer that does not answer in time gives a Timeout error naming it."""
    a, b = pair
    from anylog_tw.base.registry import REGISTRY, command

    if REGISTRY.get("test peer hang") is None:
        @command("test peer hang", usage="test peer hang", text="never answers (tests only)", examples=(),
                 keywords=("test",), grant="read")
        def _hang(call):
            return Deferred()

    reply = await a.execute(f"run client ({addr(b)} and timeout = 0.2) test peer hang")
    assert not reply.ok and "did not answer" in reply.text
    with pytest.raises(Timeout):
        await a.component(Peers).command(addr(b), "test peer hang", timeout=0.1)
    # The connection still serves other requests.
    assert (await a.component(Peers).command(addr(b), "get node name")).text == "beta"


async def test_connection_loss_fails_waiters_and_reconnects(pair):
    """Breaking the connection fails what waits on it; the peer is redialled with backoff."""
    a, b = pair
    peers = a.component(Peers)
    peers.backoff_initial = 0.05
    assert (await peers.command(addr(b), "get node name")).text == "beta"
    [proto] = [p for p in peers.live if p.role == "client"]
    waiting = Deferred.fromCoroutine(peers.command(addr(b), "test peer hang" if
                                                   a.registry.get("test peer hang") else "get node name"))
    proto.transport.abortConnection()
    with pytest.raises(PeerError):
        await waiting
    await poll(lambda: peers.states[addr(b)].status == "active" and peers.states[addr(b)].conn is not None
               and peers.states[addr(b)].conn is not proto, 5, what="reconnect")
    assert (await peers.command(addr(b), "get node name")).text == "beta"


async def test_exit_tcp_and_restart(pair):
    a, b = pair
    assert (await b.execute("exit tcp")).ok
    assert b.process("TCP") is None
    assert not (await b.execute("exit tcp")).ok
    reply = await a.execute(f"run client {addr(a)} get node name")
    assert reply.ok  # a talks to itself
    assert (await a.execute("run tcp server where external_port = 0")).ok is False  # already running


# --- files ------------------------------------------------------------------------------------


def write_file(path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.md5(data).hexdigest()


async def test_send_file_lands_in_watch_dir(tmp_path, pair):
    a, b = pair
    src = tmp_path / "readings.json"
    digest = write_file(src, 3 * 1024 * 1024 + 17)
    reply = await a.component(Peers).send_file(addr(b), str(src), dest="watch")
    assert reply.ok
    landed = os.path.join(b.dictionary["watch_dir"], "readings.json")
    assert hashlib.md5(open(landed, "rb").read()).hexdigest() == digest
    assert os.listdir(b.dictionary["tmp_dir"]) == []
    # Sending the same file again (a lost ack) succeeds; a different one under that name is refused.
    assert (await a.component(Peers).send_file(addr(b), str(src))).ok
    other = tmp_path / "other.json"
    write_file(other, 100)
    with pytest.raises(PeerError, match="already exists"):
        await a.component(Peers).send_file(addr(b), str(other), name="readings.json")


@pytest.mark.allow_logged_errors
async def test_bad_md5_and_bad_dest_leave_nothing(tmp_path, pair):
    a, b = pair
    src = tmp_path / "f.json"
    write_file(src, 500_000)
    peers = a.component(Peers)
    with pytest.raises(PeerError, match="md5 mismatch"):
        await peers.send_file(addr(b), str(src), md5="0" * 32)
    with pytest.raises(PeerError, match="'nowhere' is not a file destination"):
        await peers.send_file(addr(b), str(src), dest="nowhere")
    with pytest.raises(PeerError, match="not a valid file name"):
        await peers.send_file(addr(b), str(src), name="../escape.json")
    assert os.listdir(b.dictionary["watch_dir"]) == []
    assert os.listdir(b.dictionary["tmp_dir"]) == []
    # The connection still works after refusals.
    assert (await peers.command(addr(b), "get node name")).text == "beta"
    assert "md5 mismatch" in (await b.execute("get error log")).render()


@pytest.mark.allow_logged_errors
async def test_broken_transfer_leaves_nothing_behind(tmp_path, pair):
    """A connection cut in the middle of a file leaves no file and no temp file on the receiver."""
    a, b = pair
    src = tmp_path / "big.json"
    write_file(src, 30 * 1024 * 1024)
    peers = a.component(Peers)
    proto = await peers.connection(addr(b))
    sending = Deferred.fromCoroutine(peers.send_file(addr(b), str(src)))
    tmp_dir = b.dictionary["tmp_dir"]
    await poll(lambda: os.listdir(tmp_dir), 5, interval=0.001, what="the transfer to start")
    proto.transport.abortConnection()
    with pytest.raises(PeerError):
        await sending
    await poll(lambda: not os.listdir(tmp_dir), 5, what="the temp file to go")
    assert os.listdir(b.dictionary["watch_dir"]) == []


async def test_commands_wait_behind_a_file_and_still_answer(tmp_path, pair):
    a, b = pair
    src = tmp_path / "f.bin"
    write_file(src, 8 * 1024 * 1024)
    peers = a.component(Peers)
    await peers.connection(addr(b))
    results = await gatherResults([
        Deferred.fromCoroutine(peers.send_file(addr(b), str(src))),
        Deferred.fromCoroutine(peers.command(addr(b), "get node name")),
        Deferred.fromCoroutine(peers.send_file(addr(b), str(src), name="g.bin")),
    ])
    assert results[1].text == "beta"
    assert sorted(os.listdir(b.dictionary["watch_dir"])) == ["f.bin", "g.bin"]


# --- network key ------------------------------------------------------------------------------


@pytest.mark.allow_logged_errors
async def test_network_key(tmp_path):
    """Same key: commands run. Missing or wrong key on either side: refused, logged, nothing runs."""
    a = await start_node(tmp_path, "a", "set network key = secret-key-1")
    b = await start_node(tmp_path, "b", "set network key = secret-key-1")
    c = await start_node(tmp_path, "c", "set network key = another-key")
    d = await start_node(tmp_path, "d")
    try:
        assert (await a.execute(f"run client {addr(b)} get node name")).text == "b"
        b.dictionary["marker"] = "untouched"
        for src, dst in ((c, b), (d, b), (b, d)):
            reply = await src.execute(f"run client {addr(dst)} marker = changed")
            assert not reply.ok and "did not accept" in reply.text, reply.text
        assert b.dictionary["marker"] == "untouched"
        assert "network key" in (await b.execute("get error log")).render()
        # An accepted, authenticated connection also carries requests the other way.
        assert (await b.execute(f"run client {addr(a)} get node name")).text == "a"
        assert len([p for p in b.component(Peers).live if p.role == "client"]) == 0
    finally:
        for n in (a, b, c, d):
            await n.stopService()


async def test_set_network_key_errors(pair):
    a, _ = pair
    assert not (await a.execute("set network key = short")).ok
    assert (await a.execute('set network key = ""')).ok


# --- TLS --------------------------------------------------------------------------------------


def make_pki(directory) -> dict:
    """A CA and two node certificates it signs, plus one from a stranger CA (PEM files)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject, key, issuer, issuer_key, ca):
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        return builder.sign(issuer_key, hashes.SHA256())

    def save(stem, obj, key=None):
        (directory / f"{stem}.crt").write_bytes(obj.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            (directory / f"{stem}.key").write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    files = {}
    for ca_name in ("ca", "stranger-ca"):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = cert(ca_name, ca_key, ca_name, ca_key, True)
        save(ca_name, ca_cert)
        for node in (("n1", "n2") if ca_name == "ca" else ("intruder",)):
            key = ec.generate_private_key(ec.SECP256R1())
            save(node, cert(node, key, ca_name, ca_key, False), key)
            files[node] = (str(directory / f"{node}.crt"), str(directory / f"{node}.key"),
                           str(directory / f"{ca_name}.crt"))
    return files


async def start_tls_node(tmp_path, name, files):
    cert, key, ca = files
    node = Node(str(tmp_path / name), name=name, reactor=reactor, environ={})
    node.startService()
    reply = await node.execute(f"run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true "
                           f"and ssl = true and cert = {cert} and key = {key} and ca = {ca}")
    assert reply.ok, reply.text
    return node


@pytest.mark.allow_logged_errors
async def test_mutual_tls(tmp_path):
    """Nodes with certificates from the network CA talk; a certificate from another CA is refused."""
    pki = make_pki(tmp_path)
    n1 = await start_tls_node(tmp_path, "n1", pki["n1"])
    n2 = await start_tls_node(tmp_path, "n2", pki["n2"])
    intruder = await start_tls_node(tmp_path, "intruder", pki["intruder"])
    try:
        assert (await n1.execute(f"run client {addr(n2)} get node name")).text == "n2"
        assert "SSL: True" in (await n1.execute("get processes")).render()
        src = tmp_path / "over-tls.bin"
        digest = write_file(src, 3 * 1024 * 1024)
        assert (await n1.component(Peers).send_file(addr(n2), str(src))).ok
        landed = os.path.join(n2.dictionary["watch_dir"], "over-tls.bin")
        assert hashlib.md5(open(landed, "rb").read()).hexdigest() == digest
        intruder.component(Peers).connect_timeout = 2
        reply = await intruder.execute(f"run client ({addr(n2)} and timeout = 3) get node name")
        assert not reply.ok
        reply = await n1.execute(f"run client ({addr(intruder)} and timeout = 3) get node name")
        assert not reply.ok
    finally:
        for n in (n1, n2, intruder):
            await n.stopService()


async def test_file_send_command(tmp_path, pair):
    a, b = pair
    src = tmp_path / "c.json"
    digest = write_file(src, 12345)
    reply = await a.execute(f"file send {src} {addr(b)} where name = renamed.json")
    assert reply.ok and "renamed.json" in reply.text, reply.text
    landed = os.path.join(b.dictionary["watch_dir"], "renamed.json")
    assert hashlib.md5(open(landed, "rb").read()).hexdigest() == digest
    reply = await a.execute(f"file send {src} {addr(b)} where dest = nowhere")
    assert not reply.ok and "option 'dest' is 'nowhere'; it must be one of: watch" in reply.text
    reply = await a.execute(f"file send {tmp_path}/missing.json {addr(b)}")
    assert not reply.ok and "cannot read" in reply.text
