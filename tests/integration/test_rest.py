"""The REST server over real sockets: AnyLog's header contract, PUT data, limits, auth, TLS, metrics."""

from __future__ import annotations

import json
import os
import subprocess

import orjson
import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.web.test.requesthelper import DummyRequest

from anylog_tw.base.process import NodeProcess
from anylog_tw.node import Node
from tests.helpers import poll
from tests.integration.rest_support import Client, md5_name, read_watch, start_node, url, watch_files

ROWS = [{"timestamp": "2026-11-28 10:00:01", "device": "dev-1", "value": 1.5},
        {"timestamp": "2026-11-28 10:00:02", "device": "dev-2", "value": 2.5}]


@pytest_twisted.async_yield_fixture
async def node(tmp_path):
    node = await start_node(tmp_path)
    yield node
    await node.stopService()


@pytest_twisted.async_yield_fixture
async def client(node):
    c = Client(node)
    yield c
    await c.close()


def error_of(body: bytes) -> dict:
    data = json.loads(body)
    assert set(data) == {"error"} and set(data["error"]) == {"code", "message"}
    return data["error"]


# -- commands -------------------------------------------------------------------------------------


async def test_get_status_as_text_and_json_on_one_kept_alive_connection(node, client):
    """Text replies are text/plain, JSON replies application/json; both on the same connection."""
    code, headers, body = await client.command("get status")
    assert code == 200 and body == b"demo@127.0.0.1 running"
    assert headers.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]
    code, headers, body = await client.command("get status where format = json")
    assert code == 200 and headers.getRawHeaders("content-type") == ["application/json"]
    assert json.loads(body)["assigned_name"] == "demo@127.0.0.1"
    assert len(node.process("REST").factory.channels) == 1


async def test_wrong_verb_is_a_400_naming_the_right_one(client):
    code, _, body = await client.command("flush buffers", method="GET")
    err = error_of(body)
    assert code == 400 and "POST" in err["message"] and "flush buffers" in err["message"]
    code, _, body = await client.command("flush buffers", method="POST")
    assert code == 200
    code, _, body = await client.command("get status", method="POST")  # POST runs every command
    assert code == 200 and body.endswith(b"running")


async def test_unknown_command_is_a_404_with_hints(client):
    code, _, body = await client.command("get statuss")
    err = error_of(body)
    assert code == 404 and err["code"] == "unknown_command" and "get status" in err["message"]


async def test_bad_option_and_bad_syntax_are_400(client):
    code, _, body = await client.command("get status where format = yaml")
    assert code == 400 and "format" in error_of(body)["message"]
    code, _, body = await client.command('get status where format = "json')
    assert code == 400 and error_of(body)["code"] == "bad_syntax"


async def test_url_forms_and_the_curl_ping(client):
    """/?command=..., AnyLog's /?User-Agent=..?command=.. form, and a GET with no command at all."""
    for path in ("/?command=get%20status", "/?User-Agent=AnyLog/1.23?command=get%20status",
                 "/?command=get+status&destination=local", "/"):
        code, _, body = await client.call("GET", path)
        assert (code, body) == (200, b"demo@127.0.0.1 running"), path


async def test_json_body_and_text_body_forms(client):
    code, _, body = await client.call("POST", "/", {"Content-Type": "application/json"},
                                      orjson.dumps({"command": "get status where format = json"}))
    assert code == 200 and json.loads(body)["status"] == "running"
    # Body lines are commands run first: here a dictionary assignment the header command reads.
    code, _, body = await client.call("POST", "/", {"command": "echo value is !rest_value"},
                                      b"<rest_value = 42>\n# a comment\n")
    assert (code, body) == (200, b"value is 42")
    code, _, body = await client.call("POST", "/", {"command": "body"}, b"echo one\necho two\n")  # the last line
    assert (code, body) == (200, b"two")
    code, _, body = await client.call("POST", "/", {}, b"echo one\n")  # what any web page can send: refused
    assert code == 415 and "command" in error_of(body)["message"]
    code, _, body = await client.call("POST", "/", {"Content-Type": "application/json"}, b'{"nothing": 1}')
    assert code == 400 and "command" in error_of(body)["message"]
    code, _, body = await client.call("POST", "/", {"command": ""})
    assert code == 400 and "no command" in error_of(body)["message"]


async def test_destination_turns_the_command_into_run_client(node, client):
    """A destination sends the command through `run client (<dest>)` (the peer area runs it)."""
    seen = []
    real = node.execute

    def spy(text, origin="local"):
        seen.append(text)
        return real(text, origin)

    node.execute = spy
    await client.command("get status", destination="10.0.0.9:32048, 10.0.0.10:32048", subset="true")
    await client.command("get status", destination="network")
    await client.command("get status", destination="local")
    await client.command("get status", destination="10.0.0.9:32048", timeout="3")
    assert seen == ["run client (10.0.0.9:32048, 10.0.0.10:32048 and subset = true) get status",
                    "run client () get status", "get status", "run client (10.0.0.9:32048 and timeout = 3) get status"]
    code, _, body = await client.command("get status", timeout="soon")
    assert code == 400 and "timeout" in error_of(body)["message"]


async def test_destination_runs_the_command_on_a_peer(node, client, tmp_path):
    """With a peer's TCP address as destination, the reply is the peer's own; a GET of a change is refused."""
    peer = Node(str(tmp_path / "peer"), name="peer", reactor=reactor, environ={})
    peer.startService()
    try:
        reply = await peer.execute("run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true")
        assert reply.ok, reply.text
        address = "%s:%d" % peer.process("TCP").external_address
        code, _, body = await client.command("get status", destination=address)
        assert (code, body.decode()) == (200, f"peer@{address} running")
        code, _, body = await client.command("reset error log", destination=address)
        assert code == 400 and "POST" in error_of(body)["message"]
    finally:
        await peer.stopService()


async def test_slow_command_times_out_with_408_and_does_not_block_others(node, client):
    slow = client.command("test sleep 0.5", timeout="0.1")
    code, _, body = await client.command("test sleep 0.3")  # another request on its own connection
    assert (code, body) == (200, b"slept")
    code, _, body = await slow
    assert code == 408 and error_of(body)["code"] == "timeout"
    await poll(lambda: any(e[3] == "test sleep 0.5" for e in node.events.entries()), timeout=3,
               what="the slow command to end")


async def test_options_and_unused_verbs(client):
    code, headers, body = await client.call("OPTIONS", "/")
    assert code == 204 and body == b""
    assert headers.getRawHeaders("allow") == ["GET, POST, PUT, OPTIONS, HEAD"]
    assert headers.getRawHeaders("access-control-allow-headers") is None  # no CORS unless 'cors' lists origins
    for verb in ("DELETE", "PATCH"):
        code, headers, body = await client.call(verb, "/", {"command": "get status"})
        assert code == 405 and error_of(body)["code"] == "method_not_allowed"
        assert headers.getRawHeaders("allow") == ["GET, POST, PUT, OPTIONS, HEAD"]
    code, _, body = await client.call("GET", "/no/such/route")
    assert code == 404 and "/health" in error_of(body)["message"]
    code, _, body = await client.call("POST", "/health")
    assert code == 405


# -- data in -------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["array", "object", "ndjson-lf", "ndjson-crlf"])
async def test_put_file_mode_writes_one_file_named_by_its_md5(node, client, form):
    rows = ROWS[:1] if form == "object" else ROWS
    body = {"array": json.dumps(rows), "object": json.dumps(rows[0]),
            "ndjson-lf": "\n".join(json.dumps(r) for r in rows) + "\n",
            "ndjson-crlf": "\r\n".join(json.dumps(r) for r in rows) + "\r\n"}[form].encode()
    code, headers, reply = await client.call("PUT", "/", {"dbms": "Bench", "table": "readings", "mode": "file",
                                                          "User-Agent": "AnyLog/1.23"}, body)
    assert code == 200 and headers.getRawHeaders("content-type") == ["application/json"]
    answer = json.loads(reply)
    assert answer["AnyLog.status"] == "Success"
    [name] = watch_files(node)
    data = read_watch(node, name)
    assert answer["AnyLog.hash"] == md5_name("bench", "readings", data)
    assert name == f"bench.readings.0.{answer['AnyLog.hash']}.0.json"
    assert [json.loads(line) for line in data.splitlines()] == rows
    assert os.listdir(node.dictionary["prep_dir"]) == []


async def test_put_the_same_data_twice_is_a_409_and_keeps_one_file(node, client):
    headers = {"dbms": "d", "table": "t", "source": "dev7", "instructions": "map1"}
    code, _, _ = await client.call("PUT", "/", headers, json.dumps(ROWS).encode())
    assert code == 200
    code, _, body = await client.call("PUT", "/", headers, json.dumps(ROWS).encode())
    assert code == 409 and error_of(body)["code"] == "duplicate"
    [name] = watch_files(node)
    assert name.startswith("d.t.dev7.") and name.endswith(".map1.json")


@pytest.mark.parametrize("headers, body, words", [
    ({"dbms": "d"}, b'{"a": 1}', "table header"),
    ({"table": "t"}, b'{"a": 1}', "dbms header"),
    ({"dbms": "d", "table": "t"}, b"hello world\n", "line 1 is not JSON"),
    ({"dbms": "d", "table": "t"}, b"", "empty"),
    ({"dbms": "d", "table": "t", "mode": "batch"}, b'{"a": 1}', "file or streaming"),
    ({"dbms": "d", "table": "t", "type": "csv"}, b"a,b", "only json"),
    ({"dbms": "d.x", "table": "t"}, b'{"a": 1}', "dbms"),
    ({"dbms": "d", "table": "t", "source": "a/b"}, b'{"a": 1}', "source"),
])
async def test_put_errors_name_the_problem_and_write_nothing(node, client, headers, body, words):
    code, _, reply = await client.call("PUT", "/", headers, body)
    assert code == 400 and words in error_of(reply)["message"]
    assert watch_files(node) == []


async def test_put_streaming_buffers_rows_until_flushed(node, client):
    headers = {"dbms": "d", "table": "s", "mode": "streaming"}
    for row in ROWS:
        code, _, reply = await client.call("PUT", "/", headers, json.dumps(row).encode())
        assert code == 200 and json.loads(reply) == {"AnyLog.status": "Success", "AnyLog.hash": "0"}
    assert watch_files(node) == []
    code, _, body = await client.command("get streaming where format = json")
    assert json.loads(body)["tables"]["d.s"]["Cached rows"] == 2
    code, _, body = await client.command("flush buffers", method="POST")
    assert (code, body) == (200, b"Flushed 1 buffer")
    [name] = watch_files(node)
    assert [json.loads(line) for line in read_watch(node, name).splitlines()] == ROWS


async def test_put_big_ndjson_body_is_parsed_off_the_reactor_and_written_whole(node, client):
    rows = [{"seq": i, "payload": "x" * 50} for i in range(20000)]
    body = b"\n".join(orjson.dumps(r) for r in rows)
    code, _, reply = await client.call("PUT", "/", {"dbms": "d", "table": "big"}, body)
    assert code == 200
    [name] = watch_files(node)
    assert read_watch(node, name).count(b"\n") == len(rows)


async def test_put_goes_to_the_publisher_watch_dir_when_one_runs(node, client, tmp_path):
    class Publisher(NodeProcess):
        name = "Publisher"
        watch_dir = str(tmp_path / "pub-watch")

    os.makedirs(Publisher.watch_dir)
    node.add_process(Publisher())
    code, _, _ = await client.call("PUT", "/", {"dbms": "d", "table": "t"}, b'{"a": 1}')
    assert code == 200
    assert watch_files(node) == [] and len(os.listdir(Publisher.watch_dir)) == 1
    await node.stop_process("Publisher")


# -- limits ----------------------------------------------------------------------------------------


class RawClient(Protocol):
    def __init__(self):
        self.data = b""
        self.closed = False

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.closed = True


async def raw_request(node, payload: bytes) -> RawClient:
    host, port = node.process("REST").address
    proto = RawClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, host, port), proto)
    proto.transport.write(payload)
    await poll(lambda: proto.closed, what="the server to answer and close")
    return proto


async def test_body_over_the_limit_is_a_413_at_once(tmp_path):
    node = await start_node(tmp_path, "max body = 1KB")
    try:
        # Content-Length over the limit: refused before the body is sent.
        head = b"PUT / HTTP/1.1\r\nHost: x\r\ndbms: d\r\ntable: t\r\nContent-Length: 5000\r\n\r\n"
        proto = await raw_request(node, head)
        assert proto.data.startswith(b"HTTP/1.1 413 ")
        assert error_of(proto.data.split(b"\r\n\r\n", 1)[1])["code"] == "too_large"
        # A chunked body that grows past the limit.
        chunk = b"x" * 800
        chunked = b"PUT / HTTP/1.1\r\nHost: x\r\ndbms: d\r\ntable: t\r\nTransfer-Encoding: chunked\r\n\r\n" + \
            (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 2 + b"0\r\n\r\n"
        proto = await raw_request(node, chunked)
        assert proto.data.startswith(b"HTTP/1.1 413 ")
        assert watch_files(node) == []
        c = Client(node)
        code, _, _ = await c.call("PUT", "/", {"dbms": "d", "table": "t"}, b'{"a": 1}')  # under the limit
        await c.close()
        assert code == 200
    finally:
        await node.stopService()


# -- security --------------------------------------------------------------------------------------


async def test_basic_auth_guards_every_route_but_health(tmp_path):
    node = await start_node(tmp_path, "user = admin and password = s3cret")
    c = Client(node)
    try:
        for path in ("/", "/metrics", "/openapi.json", "/api/status"):
            code, headers, body = await c.call("GET", path, {"command": "get status"})
            assert code == 401 and headers.getRawHeaders("www-authenticate") == ['Basic realm="anylog"'], path
            assert error_of(body)["code"] == "unauthorized"
        code, _, _ = await c.call("GET", "/health")
        assert code == 200
        code, _, body = await c.call("GET", "/", {"command": "get status", "Authorization": "Basic YWRtaW46czNjcmV0"})
        assert (code, body) == (200, b"demo@127.0.0.1 running")
        code, _, body = await c.call("GET", "/", {"command": "get status", "Authorization": "Basic YWRtaW46d3Jvbmc="})
        assert code == 401 and "wrong user or password" in error_of(body)["message"]
        code, _, _ = await c.call("PUT", "/", {"dbms": "d", "table": "t"}, b'{"a": 1}')
        assert code == 401 and watch_files(node) == []
    finally:
        await c.close()
        await node.stopService()


async def test_bearer_token(tmp_path):
    node = await start_node(tmp_path, "token = abc123")
    c = Client(node)
    try:
        code, _, _ = await c.call("GET", "/", {"command": "get status", "Authorization": "Bearer abc123"})
        assert code == 200
        code, headers, _ = await c.call("GET", "/", {"command": "get status", "Authorization": "Bearer nope"})
        assert code == 401 and headers.getRawHeaders("www-authenticate") == ['Bearer realm="anylog"']
    finally:
        await c.close()
        await node.stopService()


async def test_read_only_server_refuses_changes_and_put(tmp_path):
    node = await start_node(tmp_path, "read only = true")
    c = Client(node)
    try:
        code, _, body = await c.command("reset error log", method="POST")
        assert code == 403 and error_of(body)["code"] == "read_only"
        for text in ("[ ] = set victim = 2", "[ show = true] = reset error log"):  # the bracket hides nothing
            code, _, body = await c.command(text, method="POST")
            assert code == 403 and error_of(body)["code"] == "read_only", text
        assert "victim" not in node.dictionary
        code, _, body = await c.call("POST", "/", {"command": "echo !x"}, b"<x = 1>")
        assert code == 403  # the assignment in the body changes the dictionary
        code, _, body = await c.call("PUT", "/", {"dbms": "d", "table": "t"}, b'{"a": 1}')
        assert code == 403 and watch_files(node) == []
        code, _, body = await c.command("get status", method="POST")
        assert code == 200
        # Every caller of a read-only server holds read, so what the up-front check misses the engine refuses.
        request = DummyRequest([b""])
        assert node.process("REST").api.origin(request, None, "POST").grant == "read"
    finally:
        await c.close()
        await node.stopService()


def _self_signed(tmp_path) -> tuple[str, str]:
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


async def test_https_with_cert_and_key(tmp_path):
    cert, key = _self_signed(tmp_path)
    node = await start_node(tmp_path, f"ssl = true and cert = {cert} and key = {key}")
    try:
        host, port = node.process("REST").address
        out = await threads.deferToThread(
            subprocess.run, ["curl", "-sS", "--cacert", cert, "-H", "command: get status",
                             f"https://{host}:{port}/"], capture_output=True, timeout=20)
        assert out.stdout == b"demo@127.0.0.1 running", out.stderr
        assert "SSL: True" in (await node.execute("get processes")).render()
    finally:
        await node.stopService()


async def test_ssl_without_files_is_refused(tmp_path):
    node = await start_node(tmp_path)
    try:
        reply = await node.execute("run rest server where internal_port = 0 and ssl = true")
        assert not reply.ok  # REST runs already
        await node.execute("exit rest")
        await poll(lambda: node.process("REST") is None, what="REST to stop")
        reply = await node.execute("run rest server where internal_port = 0 and ssl = true")
        assert not reply.ok and "cert" in reply.text
        reply = await node.execute(f"run rest server where internal_port = 0 and ssl = true and cert = {tmp_path}/none "
                               f"and key = {tmp_path}/none")
        assert not reply.ok and "cannot read" in reply.text
    finally:
        await node.stopService()


# -- the server's own commands and routes ----------------------------------------------------------


async def test_health_metrics_openapi(node, client):
    await client.command("get status")
    await client.command("nope nope")
    code, headers, body = await client.call("GET", "/health")
    assert code == 200 and json.loads(body)["node"] == "demo"
    code, headers, body = await client.call("GET", "/metrics")
    text = body.decode()
    assert code == 200 and headers.getRawHeaders("content-type")[0].startswith("text/plain")
    assert 'anylog_rest_calls_total{method="GET",route="/",status="200"} 1.0' in text
    assert 'anylog_rest_calls_total{method="GET",route="/",status="404"} 1.0' in text
    assert "anylog_queue_depth" in text or "anylog_uptime_seconds" in text
    code, _, body = await client.call("GET", "/openapi.json")
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.") and {"/", "/health", "/metrics", "/openapi.json"} <= set(doc["paths"])
    names = {p["name"] for p in doc["paths"]["/"]["get"]["parameters"]}
    assert {"command", "destination", "timeout", "subset"} <= names


async def test_rest_commands(node, client):
    await client.command("get status")
    await client.command("exit node")  # a wrong verb: counted as an error
    reply = await node.execute("get rest calls where format = json")
    rows = json.loads(reply.render())
    [row] = [r for r in rows if r["Caller"] == "anylog" and r["Call"] == "GET"]
    assert row["Processed"] == 2 and row["Errors"] == 1 and "POST" in row["Last Error"]
    info = json.loads((await node.execute("get rest server info where format = json")).render())
    assert info["timeout"] == 20 and info["backlog"] >= 1024 and info["authentication"] == "none"
    reply = await node.execute("run rest server where internal_port = 0")
    assert not reply.ok and reply.status == 409


async def test_exit_rest_closes_kept_alive_connections(tmp_path):
    """(`exit rest` needs admin: a caller with the server's admin token.)"""
    node = await start_node(tmp_path, "token = admin-token-1234")
    client = Client(node)
    try:
        await _exit_rest_closes(node, client)
    finally:
        await client.close()
        await node.stopService()


async def _exit_rest_closes(node, client):
    await client.command("get status", authorization="Bearer admin-token-1234")
    assert len(node.process("REST").factory.channels) == 1
    site = node.process("REST").factory
    code, _, body = await client.command("exit rest", method="POST", authorization="Bearer admin-token-1234")
    assert (code, body) == (200, b"REST server stopping")
    await poll(lambda: node.process("REST") is None and not site.channels, what="REST to stop")
    assert not (await node.execute("get rest server info")).ok


async def test_run_rest_server_positional_form_and_port_in_use(tmp_path):
    node = await start_node(tmp_path)
    try:
        port = node.process("REST").address[1]
        await node.execute("exit rest")
        await poll(lambda: node.process("REST") is None, what="REST to stop")
        reply = await node.execute(f"run rest server 127.0.0.1 {port} 7")
        assert reply.ok, reply.render()
        assert node.process("REST").api.config.timeout == 7 and node.process("REST").address[1] == port
        other = await start_node(tmp_path / "other", name="other")
        await other.execute("exit rest")
        await poll(lambda: other.process("REST") is None, what="REST to stop")
        reply = await other.execute(f"run rest server where internal_ip = 127.0.0.1 and internal_port = {port}")
        assert not reply.ok and "cannot listen" in reply.text
        await other.stopService()
    finally:
        await node.stopService()


async def test_every_url_of_the_reply_is_json_or_text(node, client):
    """help (text) and get processes where format = json (JSON) get the right type."""
    code, headers, body = await client.command("help get status")
    assert code == 200 and headers.getRawHeaders("content-type")[0].startswith("text/plain")
    code, headers, body = await client.command("get processes where format = json")
    assert json.loads(body)["REST"]["Status"] == "Running"
    assert url(node).startswith("http://127.0.0.1:")


async def test_head_answers_like_get_without_a_body(client):
    code, headers, body = await client.call("HEAD", "/", {"command": "get status"})
    assert (code, body) == (200, b"")
    assert headers.getRawHeaders("content-length") == [str(len(b"demo@127.0.0.1 running"))]
    code, _, body = await client.call("HEAD", "/", {"command": "reset error log"})
    assert (code, body) == (400, b"")
    code, _, body = await client.call("GET", "/api/status")
    assert code == 200 and json.loads(body)["status"] == "running"
