"""Pure parts of the network commands: addresses, destinations, listening rules; and the commands on a unit node."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anylog_tw.base.errors import AnyLogError, OptionError
from anylog_tw.base.reply import Reply
from anylog_tw.commands.network import combine
from anylog_tw.front.tcpserver import listen_plan
from anylog_tw.net.destination import parse_destination
from anylog_tw.net.peers import canonical, parse_address
from tests.helpers import run, unit_node

ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ports = st.integers(1, 65535)


@given(ipv4, ports)
def test_parse_address_round_trip(ip, port):
    assert parse_address(f"{ip}:{port}") == (ip, port)
    assert canonical(f" {ip}:{port} ") == f"{ip}:{port}"


@pytest.mark.parametrize("text", ["10.0.0.1", "10.0.0.1:", ":80", "10.0.0.1:0", "10.0.0.1:70000", "10.0.0.1:8x",
                                  "10.0.0.256:80", "a b:80", "-host:80", "1.2.3:80", ""])
def test_parse_address_refuses(text):
    with pytest.raises(OptionError, match="address|port|neither"):
        parse_address(text)


def test_parse_address_host_names_and_v6():
    assert parse_address("node-1.example:32048") == ("node-1.example", 32048)
    assert parse_address("[::1]:32048") == ("::1", 32048)
    assert canonical("[::1]:32048") == "[::1]:32048"


@given(st.lists(st.tuples(ipv4, ports), min_size=1, max_size=5), st.booleans(), st.sampled_from([", ", " ", " and "]),
       st.booleans())
def test_destination_forms(nodes, colon, sep, with_options):
    parts = [f"{ip}:{port}" if colon else f"{ip} {port}" for ip, port in nodes]
    text = (", " if not colon else sep).join(parts)
    if with_options:
        text += " and subset = true and timeout = 7"
    dest = parse_destination(text)
    expected = list(dict.fromkeys(f"{ip}:{port}" for ip, port in nodes))
    assert dest.addresses == expected
    assert (dest.subset, dest.timeout) == ((True, 7.0) if with_options else (False, 20.0))


@pytest.mark.parametrize("text, message", [
    ("", "lists no node"),
    ("blockchain get operator bring.ip_port", "not supported yet"),
    ("dbms = lsl and table = ping", "only ip:port"),
    ("10.0.0.1:2048 and subset = maybe", "boolean"),
    ("10.0.0.1:2048, timeout = 0", "more than 0"),
    ("10.0.0.1", "not a peer address"),
])
def test_destination_errors(text, message):
    with pytest.raises(AnyLogError, match=message):
        parse_destination(text)


def test_combine_text_blocks_and_json():
    text = combine([("a:1", Reply.of_text("x")), ("b:2", Reply.of_error("down", "peer"))])
    assert text.render() == "[From Node a:1]\nx\n\n[From Node b:2]\nError: down"
    js = combine([("a:1", Reply.of_json({"k": 1})), ("b:2", Reply.of_json([2]))])
    assert js.json_data() == {"a:1": {"k": 1}, "b:2": [2]}


@pytest.mark.parametrize("args, bind_ip, port, ext, internal", [
    (("1.1.1.1", 2048, "10.0.0.1", 3048, True), "10.0.0.1", 3048, ("1.1.1.1", 2048), ("10.0.0.1", 3048)),
    (("1.1.1.1", 2048, None, None, True), "1.1.1.1", 2048, ("1.1.1.1", 2048), ("1.1.1.1", None)),  # None: the bound port
    ((None, None, "10.0.0.1", 3048, True), "10.0.0.1", 3048, ("10.0.0.1", None), ("10.0.0.1", 3048)),
    (("1.1.1.1", 2048, "10.0.0.1", None, False), "", 2048, ("1.1.1.1", 2048), ("10.0.0.1", None)),
    ((None, 2048, None, None, True), "", 2048, ("127.0.0.1", 2048), ("127.0.0.1", None)),
])
def test_listening_rules(args, bind_ip, port, ext, internal):
    plan = listen_plan(*args)
    assert (plan.bind_ip, plan.port) == (bind_ip, port)
    assert (plan.external_ip, plan.external_port) == ext
    assert (plan.internal_ip, plan.internal_port) == internal


def test_listening_rules_need_a_port():
    with pytest.raises(OptionError, match="needs a port"):
        listen_plan("1.1.1.1", None, None, None, True)
    with pytest.raises(OptionError, match="out of range"):
        listen_plan("1.1.1.1", 70000, None, None, True)


def test_commands_on_a_unit_node(tmp_path):
    node = unit_node(tmp_path)
    reply = run(node, "get connections")
    assert reply.ok and "TCP" in reply.render() and "Not declared" in reply.render()
    assert not run(node, "exit tcp").ok
    assert "needs a port" in run(node, "run tcp server where external_ip = 1.2.3.4").text
    assert "both by position" in run(node, "run tcp server 1.2.3.4 where external_ip = 1.2.3.4").text
    assert "ssl = true needs cert, key, ca" in run(node, "run tcp server 1.2.3.4 0 where ssl = true").text
    assert not run(node, "run client get status").ok
    assert "lists no node" in run(node, "run client () get status").text
    assert run(node, "set network key = abcdefgh12").ok
    assert "at least 8" in run(node, "set network key = abc").text


def test_run_tcp_server_positional_on_memory_reactor(tmp_path):
    node = unit_node(tmp_path)
    refused = run(node, "run tcp server 10.1.1.1 20048 127.0.0.1 20049 4")
    assert not refused.ok and "set network key" in refused.text and "auth = none" in refused.text
    assert node.process("TCP") is None and not node.reactor.tcpServers  # nothing listened
    reply = run(node, "run tcp server 10.1.1.1 20048 127.0.0.1 20049 4 where auth = none")
    assert reply.ok, reply.text
    assert "Auth: none (auth = none" in run(node, "get processes").render()
    tcp = node.process("TCP")
    assert tcp.external_address == ("10.1.1.1", 20048) and tcp.internal_address == ("127.0.0.1", 20049)
    assert node.reactor.tcpServers[-1][0] == 20049 and node.reactor.tcpServers[-1][2] >= 1024
    assert run(node, "get status").text.endswith("@10.1.1.1:20048 running")
    assert "Threads Pool: 4" in run(node, "get processes").render()
    assert not run(node, "run tcp server 10.1.1.1 20048").ok  # already running
