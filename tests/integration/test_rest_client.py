"""`rest get|post|put|delete|view`: the node as an HTTP client, against a real local server on port 0
(a small twisted.web resource that echoes, stalls and misbehaves on demand) and against the
node's own REST server."""

from __future__ import annotations

import base64
import json
import os
import subprocess

import pytest
import pytest_twisted
from twisted.internet import defer, error, reactor, threads
from twisted.protocols.policies import WrappingFactory
from twisted.web import resource, server

from anylog_tw.base.errors import OptionError
from anylog_tw.net import http_client
from anylog_tw.node import Node
from tests.helpers import ok, poll


class Remote(resource.Resource):
    """The far end: answers by path, and remembers every request it got."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.seen: list[dict] = []
        self.stalled: list = []

    def render(self, request):
        path = request.path.decode()
        body = request.content.read()
        headers = {k.decode().lower(): v[-1].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        self.seen.append({"method": request.method.decode(), "uri": request.uri.decode(), "headers": headers,
                          "body": body.decode("utf-8", "replace")})
        if path == "/text":
            request.setHeader("content-type", "text/plain; charset=utf-8")
            return "héllo".encode()
        if path == "/json":
            request.setHeader("content-type", "application/json")
            return json.dumps({"results": [{"a": 1}, {"a": 2, "b": "x"}], "n": 2}).encode()
        if path == "/echo":
            request.setHeader("content-type", "application/json")
            return json.dumps(self.seen[-1]).encode()
        if path == "/missing":
            request.setResponseCode(404)
            request.setHeader("content-type", "text/plain")
            return b"no such\nthing here " + b"x" * 500
        if path == "/redirect":
            request.redirect(b"/text")
            return b""
        if path == "/big":  # Content-Length known up front
            return b"x" * int(request.args[b"n"][0])
        if path == "/chunked":  # no Content-Length: the limit must hold while reading
            for _ in range(int(request.args[b"n"][0]) // 1000):
                request.write(b"y" * 1000)
            request.finish()
            return server.NOT_DONE_YET
        if path == "/stall":
            self.stalled.append(request)
            return server.NOT_DONE_YET
        request.setResponseCode(500)
        return b"unexpected path"


@pytest_twisted.async_yield_fixture
async def remote():
    """(base url, resource, wrapping factory) of a server on 127.0.0.1, port 0."""
    res = Remote()
    factory = WrappingFactory(server.Site(res))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}", res, factory
    await poll(lambda: not factory.protocols, what="the client to close its connections")
    await port.stopListening()


@pytest_twisted.async_yield_fixture
async def node(tmp_path):
    node = Node(str(tmp_path / "home"), name="rc", reactor=reactor)
    node.startService()
    yield node
    await node.stopService()


async def error_text(node, text: str) -> str:
    reply = await node.execute(text)
    assert not reply.ok, f"{text} should fail: {reply.render()}"
    assert "Traceback" not in reply.text and "\n" not in reply.text
    return reply.text


# -- replies --------------------------------------------------------------------------------------


async def test_text_reply_is_answered_as_text(node, remote):
    base, _, _ = remote
    reply = await ok(node, f"rest get where url = {base}/text")
    assert reply.render() == "héllo"
    assert (await ok(node, f"rest get where url = {base}/text and format = json")).render() == '"héllo"'


async def test_json_reply_is_json_and_can_be_assigned(node, remote):
    """A JSON reply is data: `where format = json` and `x = rest get ...` keep it as JSON."""
    base, _, _ = remote
    reply = await ok(node, f"rest get where url = {base}/json")
    assert reply.data == {"results": [{"a": 1}, {"a": 2, "b": "x"}], "n": 2}
    await ok(node, f"info = rest get where url = {base}/json")
    assert json.loads(node.dictionary["info"])["n"] == 2
    reply = await ok(node, f"rest get where url = {base}/json and key = results")
    assert reply.data == [{"a": 1}, {"a": 2, "b": "x"}]


async def test_where_keys_go_as_headers_and_headers_json_adds_more(node, remote):
    """AnyLog's contract: non-option keys are headers; `headers = {...}` also sends option-named ones."""
    base, _, _ = remote
    reply = await ok(node, f'rest get where url = {base}/echo and command = "get status" and '
                           f'User-Agent = AnyLog/1.23 and headers = {{"X-Extra": 7, "timeout": "30"}} '
                           f'and timeout = 5 seconds')
    seen = reply.data["headers"]
    assert seen["command"] == "get status" and seen["user-agent"] == "AnyLog/1.23"
    assert seen["x-extra"] == "7" and seen["timeout"] == "30"
    assert reply.data["method"] == "GET" and reply.data["body"] == ""


async def test_header_values_beyond_ascii_go_out_as_utf8(node, remote):
    base, _, _ = remote
    reply = await ok(node, f'rest get where url = {base}/echo and command = "echo héllo wörld"')
    assert reply.data["headers"]["command"] == "echo héllo wörld"


async def test_python_style_headers_option_from_anylogs_docs(node, remote):
    base, _, _ = remote
    reply = await ok(node, f"rest get where url = {base}/echo and headers = \"{{'Accept': 'text/csv'}}\"")
    assert reply.data["headers"]["accept"] == "text/csv"


async def test_post_sends_body_and_basic_auth(node, remote):
    base, _, _ = remote
    node.dictionary["msg"] = '{"text": "hi there"}'
    reply = await ok(node, f"rest post where url = {base}/echo and body = !msg and user = al and password = s3cret")
    assert reply.data["method"] == "POST" and reply.data["body"] == '{"text": "hi there"}'
    headers = reply.data["headers"]
    assert headers["authorization"] == "Basic " + base64.b64encode(b"al:s3cret").decode()
    assert headers["content-type"] == "text/plain; charset=utf-8"  # AnyLog's default
    reply = await ok(node, f'rest post where url = {base}/echo and body = {{"v": 1}} and '
                           f'Content-Type = application/json')
    assert json.loads(reply.data["body"]) == {"v": 1} and reply.data["headers"]["content-type"] == "application/json"


async def test_put_and_delete_use_their_verbs(node, remote):
    base, _, _ = remote
    reply = await ok(node, f"rest put where url = {base}/echo and dbms = lsl_demo and table = ping and "
                           f"body = '[{{\"v\": 1}}]'")
    assert reply.data["method"] == "PUT" and reply.data["headers"]["dbms"] == "lsl_demo"
    assert json.loads(reply.data["body"]) == [{"v": 1}]
    assert (await ok(node, f"rest delete where url = {base}/echo")).data["method"] == "DELETE"


async def test_unquoted_url_keeps_its_query_string(node, remote):
    """The tokenizer splits words at `=`; the URL is read from the line as typed."""
    base, _, _ = remote
    reply = await ok(node, f"rest get where url = {base}/echo?a=1&b=two and command = x")
    assert reply.data["uri"] == "/echo?a=1&b=two" and reply.data["headers"]["command"] == "x"


async def test_redirect_is_followed(node, remote):
    base, _, _ = remote
    assert (await ok(node, f"rest get where url = {base}/redirect")).render() == "héllo"


async def test_validate_answers_true_or_false(node, remote):
    base, _, _ = remote
    assert (await ok(node, f"rest get where url = {base}/text and validate = true")).render() == "true"
    assert (await ok(node, f"rest get where url = {base}/missing and validate = true")).render() == "false"


# -- failures -------------------------------------------------------------------------------------


async def test_http_error_names_url_status_and_start_of_body(node, remote):
    base, _, _ = remote
    text = await error_text(node, f"rest get where url = {base}/missing")
    assert text.startswith(f"rest get {base}/missing: HTTP 404 Not Found: no such thing here xxx")
    assert text.endswith("...") and len(text) < 300


async def test_connection_refused_is_one_line(node):
    port = reactor.listenTCP(0, server.Site(resource.Resource()), interface="127.0.0.1")
    number = port.getHost().port
    await port.stopListening()
    text = await error_text(node, f"rest get where url = http://127.0.0.1:{number}/")
    assert text == f"rest get http://127.0.0.1:{number}/: connection refused (is the server running, on that port?)"
    assert (await ok(node, f"rest get where url = http://127.0.0.1:{number}/ and validate = true")).render() == "false"


async def test_timeout_covers_a_reply_that_never_comes(node, remote):
    """The deadline holds for the whole exchange, and the connection is dropped (the fixture checks)."""
    base, res, _ = remote
    text = await error_text(node, f"rest get where url = {base}/stall and timeout = 0.3")
    assert text == f"rest get {base}/stall: no complete reply within 0.3 seconds (raise 'timeout' if the server is slow)"
    assert len(res.stalled) == 1


@pytest.mark.parametrize("path", ["big", "chunked"])
async def test_reply_over_max_body_is_refused(node, remote, path):
    """Over the limit, with or without a Content-Length, the reply is dropped, not buffered."""
    base, _, _ = remote
    text = await error_text(node, f"rest get where url = {base}/{path}?n=300000 and max body = 100KB")
    assert "the reply is over 102,400 bytes and was dropped" in text
    reply = await ok(node, f"rest get where url = {base}/{path}?n=50000 and max body = 100KB")
    assert len(reply.render()) == 50000


@pytest.mark.parametrize("line, message", [
    ("rest get where url = ftp://127.0.0.1/x", "only http:// and https:// URLs"),
    ("rest get where url = file:///etc/passwd", "only http:// and https:// URLs"),
    ("rest get where url = http:///nohost", "has no host"),
    ("rest get where command = x", "'rest get' needs 'url'"),
    ("rest get", "needs a where clause with the url"),
    ("rest get http://127.0.0.1", "takes its options after 'where'"),
    ("rest get where url = http://127.0.0.1 and body = x", "a GET sends no body"),
    ("rest get where url = http://127.0.0.1 and timeout = 0", "timeout must be more than 0"),
    ("rest get where url = http://127.0.0.1 and timeout = soon", "is not a time"),
    ("rest get where url = http://127.0.0.1 and user = al", "needs both 'user' and 'password'"),
    ("rest get where url = http://127.0.0.1 and url = http://127.0.0.2", "given twice"),
    ('rest get where url = http://127.0.0.1 and headers = {"bad name": 1}', "not a valid HTTP header name"),
    ('rest get where url = http://127.0.0.1 and headers = {"X": "a\\nb"}', "holds a line break"),
    ("rest get where url = http://127.0.0.1 and headers = nope", "is not a JSON object"),
    ("rest post where url = http://127.0.0.1 and method = put", "has no option 'method'"),
    ("rest get where url = http://127.0.0.1 and format = xml", "use json or text"),
])
async def test_bad_input_is_refused_before_anything_is_sent(node, line, message):
    assert message in await error_text(node, line)


# -- saving to a file ----------------------------------------------------------------------------


async def test_file_gets_rows_atomically_and_is_not_overwritten_by_mistake(node, remote, tmp_path):
    base, _, _ = remote
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "london.readings.json"
    reply = await ok(node, f"rest get where url = {base}/json and key = results and file = {dest}")
    assert reply.render() == f"Wrote 2 rows (24 bytes) from {base}/json to {dest}"
    assert dest.read_text() == '{"a":1}\n{"a":2,"b":"x"}\n'
    text = await error_text(node, f"rest get where url = {base}/text and file = {dest}")
    assert "exists" in text and "overwrite = true" in text
    assert dest.read_text() == '{"a":1}\n{"a":2,"b":"x"}\n'
    await ok(node, f"rest get where url = {base}/text and file = {dest} and overwrite = true")
    assert dest.read_bytes() == "héllo".encode()
    assert os.listdir(out) == ["london.readings.json"]  # no temporary file left behind


async def test_file_errors_leave_nothing(node, remote, tmp_path):
    base, _, _ = remote
    text = await error_text(node, f"rest get where url = {base}/text and file = {tmp_path}/nowhere/x.json")
    assert "does not exist" in text and "nowhere" in text
    text = await error_text(node, f"rest get where url = {base}/json and key = nope and file = {tmp_path}/x.json")
    assert "key = 'nope'" in text and "results, n" in text
    text = await error_text(node, f"rest get where url = {base}/missing and file = {tmp_path}/y.json")
    assert "HTTP 404" in text
    assert sorted(os.listdir(tmp_path)) == ["home"]


# -- rest view -----------------------------------------------------------------------------------


async def test_view_shows_the_request_and_sends_nothing(node, remote):
    base, res, _ = remote
    reply = await ok(node, f'rest view where method = post and url = {base}/echo and command = "get status" '
                           f"and body = hello and user = al and password = s3cret")
    lines = reply.render().split("\n")
    assert lines[0] == f"POST {base}/echo"
    assert "Command: get status" in lines and "Authorization: Basic al:***" in lines
    assert "Content-Type: text/plain; charset=utf-8" in lines and "hello" in lines
    assert "s3cret" not in reply.render()
    reply = await ok(node, f"rest view where url = {base}/x and format = json")
    assert reply.data["method"] == "GET" and reply.data["headers"] == {} and reply.data["timeout"] == 20
    assert res.seen == []


# -- against this node's own REST server ----------------------------------------------------------


async def test_against_the_nodes_own_rest_server(node):
    await ok(node, "run rest server where external_ip = 127.0.0.1 and external_port = 0 and bind = true")
    host, port = node.process("REST").address
    reply = await ok(node, f'rest get where url = http://{host}:{port} and command = "get status" and '
                           f"User-Agent = AnyLog/1.23")
    assert reply.render() == "rc@127.0.0.1 running"
    reply = await ok(node, f'rest get where url = http://{host}:{port} and command = "get status where format = json"')
    assert reply.data["status"] == "running"
    text = await error_text(node, f'rest get where url = http://{host}:{port} and command = "reset error log"')
    assert text.startswith(f"rest get http://{host}:{port}: HTTP 400 Bad Request: ") and "send it with POST" in text
    await ok(node, f'rest post where url = http://{host}:{port} and command = "flush buffers"')
    calls = (await ok(node, "get rest calls where format = json")).json_data()
    assert ("anylog", "GET") in {(c["Caller"], c["Call"]) for c in calls}  # counted under its User-Agent


# -- the pure parts --------------------------------------------------------------------------------


def test_build_request_sends_canonical_header_names_and_keeps_options_out():
    request, output = http_client.build_request("put", [
        ("url", "https://h:1/p"), ("user-agent", "AnyLog/1.23"), ("dbms", "d"), ("timeout", "2 minutes"),
        ("max body", "1MB"), ("body", "x"), ("file", "/tmp/f"), ("key", "k")])
    assert request.method == "PUT" and request.timeout == 120 and request.max_body == 1024 * 1024
    assert dict(request.headers) == {"User-Agent": "AnyLog/1.23", "Dbms": "d",
                                     "Content-Type": "text/plain; charset=utf-8"}
    assert output.file == "/tmp/f" and output.key == "k" and request.body == b"x"
    with pytest.raises(OptionError, match="validate = true is for 'rest get' only"):
        http_client.build_request("post", [("url", "http://h"), ("validate", "true")])


def test_file_content_writes_lists_as_rows_and_text_as_received():
    assert http_client.file_content([{"a": 1}, 2], b"ignored", False) == (b'{"a":1}\n2\n', 2)
    assert http_client.file_content({"a": 1}, b'{"a": 1}', False) == (b'{"a": 1}', None)
    assert http_client.file_content({"a": 1}, b"ignored", True) == (b'{"a":1}\n', None)
    assert http_client.file_content([], b"[]", False) == (b"", 0)


def test_reply_value_follows_the_content_type():
    assert http_client.reply_value(b'{"a": 1}', "application/json; charset=utf-8") == {"a": 1}
    assert http_client.reply_value(b'{"a": 1}', "application/problem+json") == {"a": 1}
    assert http_client.reply_value(b'{"a": 1}', "text/plain") == '{"a": 1}'
    assert http_client.reply_value(b"not json", "application/json") == "not json"
    assert http_client.reply_value("é".encode("latin-1"), "text/plain; charset=latin-1") == "é"


@pytest.mark.parametrize("exc, words", [
    (error.DNSLookupError("nowhere.invalid"), "the host name cannot be resolved"),
    (defer.TimeoutError(), "no complete reply within 3 seconds"),
    (http_client.ReplyTooLarge(1024), "over 1,024 bytes"),
    (ValueError("odd\nthing"), "ValueError: odd thing"),
])
def test_failures_are_worded_on_one_line(exc, words):
    message = http_client.failure_message("get", "http://h/", exc, 3.0)
    assert message.startswith("rest get http://h/: ") and words in message and "\n" not in message


async def test_https_certificates_are_verified(node, tmp_path):
    """A self-signed node certificate is not trusted: a one-line TLS error, not a silent success."""
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    await threads.deferToThread(
        subprocess.run, ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    await ok(node, f"run rest server where internal_ip = 127.0.0.1 and internal_port = 0 and ssl = true and "
                   f"cert = {cert} and key = {key}")
    host, port = node.process("REST").address
    text = await error_text(node, f'rest get where url = https://{host}:{port} and command = "get status"')
    assert text == f"rest get https://{host}:{port}: the TLS handshake failed (certificate verify failed)"


async def test_anylogs_bracket_form_saves_the_reply(node, remote, tmp_path):
    """`[file = F, key = K, show = true] = rest get where url = ...` is the same as `... and file = F and key = K`."""
    base, _, _ = remote
    dest = tmp_path / "with space" / "london.readings.json"
    dest.parent.mkdir()
    node.dictionary["out_file"] = str(dest)
    reply = await ok(node, f"[file = !out_file, key = results, show = true] = rest get where url = {base}/json")
    assert reply.render() == f"Wrote 2 rows (24 bytes) from {base}/json to {dest}"
    assert dest.read_text() == '{"a":1}\n{"a":2,"b":"x"}\n'
    assert "not key = value" in await error_text(node, f"[file] = rest get where url = {base}/json")
    assert "file" in await error_text(node, "[file = x.json] = get status")  # a command without the option


def test_a_password_in_the_url_is_masked_wherever_the_url_is_shown():
    from anylog_tw.net.http_client import shown_url

    assert shown_url("http://al:s3cret@h:1/x?a=b@c") == "http://al:***@h:1/x?a=b@c"
    assert shown_url("https://h/x") == "https://h/x" and shown_url("http://al@h/") == "http://al@h/"
