"""Attacks on the REST door (issue 14, audit C1, M2, M5): each is refused with a status and a message
that says what to do, and leaves nothing behind on disk, in the dictionary or in the processes.

Real sockets on port 0; the roles (reader, writer, admin) come from a users file written with the
module's own tool, and are tried for real."""

from __future__ import annotations

import base64
import json
import os

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.defer import Deferred

from anylog_tw.front import rest_users
from anylog_tw.front.rest_auth import Credentials
from tests.integration.rest_support import Client, start_node, url, watch_files

ROWS = b'{"timestamp": "2026-11-28 10:00:01", "value": 1}\n'
SECRET = "network-key-that-must-stay-secret"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def error_of(body: bytes) -> dict:
    return json.loads(body)["error"]


@pytest_twisted.async_yield_fixture
async def open_node(tmp_path):
    """A node as conf/demo.al starts it: REST on loopback, no credentials."""
    node = await start_node(tmp_path)
    node.environ = dict(node.environ, ANYLOG_NETWORK_KEY=SECRET)  # this node's own: never the test process's
    client = Client(node)
    yield node, client
    await client.close()
    await node.stopService()


@pytest_twisted.async_yield_fixture
async def users_node(tmp_path):
    """A node whose REST users are a reader, a writer and an admin from a users file."""
    path = str(tmp_path / "users.txt")
    for name, role in (("rita", "reader"), ("walt", "writer"), ("ada", "admin")):
        rest_users.add_user(path, name, role, f"{name}-password")
    node = await start_node(tmp_path, f"users = {path}")
    client = Client(node)
    yield node, client
    await client.close()
    await node.stopService()


# -- no credentials: loopback, read + write, never admin -------------------------------------------


async def test_unauthenticated_run_manhole_is_refused_and_nothing_listens(open_node):
    node, client = open_node
    code, _, body = await client.command("run manhole where port = 0 and user = a and password = b", method="POST")
    err = error_of(body)
    assert code == 403 and "grant" in err["message"] and "run manhole" in err["message"]
    assert node.process("Manhole") is None


async def test_file_copy_of_etc_passwd_is_refused_and_writes_nothing(open_node, tmp_path):
    node, client = open_node
    target = tmp_path / "stolen"
    code, _, body = await client.command(f"file copy /etc/passwd {target}", method="POST")
    assert code == 403 and "grant" in error_of(body)["message"]
    assert not target.exists()


async def test_get_files_etc_shows_nothing_of_etc(open_node):
    _, client = open_node
    code, _, body = await client.command("get files /etc")
    assert code in (400, 403) and b"passwd" not in body
    assert "home" in error_of(body)["message"] or "grant" in error_of(body)["message"]


async def test_echo_of_the_environment_over_get_does_not_leak_the_network_key(open_node):
    _, client = open_node
    code, _, body = await client.command("echo $ANYLOG_NETWORK_KEY")
    assert SECRET.encode() not in body
    code, _, body = await client.command("echo $ANYLOG_NETWORK_KEY", method="POST")  # write: no $VAR either
    assert SECRET.encode() not in body


async def test_no_credentials_grants_write_but_not_admin(open_node):
    node, client = open_node
    code, _, body = await client.call("PUT", "/", {"dbms": "d", "table": "t"}, ROWS)
    assert code == 200 and len(watch_files(node)) == 1
    code, _, body = await client.command("run console where port = 0", method="POST")
    assert code == 403 and "'admin'" in error_of(body)["message"]
    assert node.process("Console") is None


# -- browsers -------------------------------------------------------------------------------------


async def test_no_cors_header_and_no_preflight_for_an_unlisted_origin(open_node):
    _, client = open_node
    code, headers, _ = await client.call("GET", "/", {"command": "get status", "Origin": "https://evil.example"})
    assert code == 200 and headers.getRawHeaders("access-control-allow-origin") is None
    code, headers, body = await client.call("OPTIONS", "/", {"Origin": "https://evil.example",
                                                             "Access-Control-Request-Method": "POST",
                                                             "Access-Control-Request-Headers": "command"})
    assert code == 403 and "cors = https://evil.example" in error_of(body)["message"]
    assert headers.getRawHeaders("access-control-allow-headers") is None


async def test_cors_answers_only_the_listed_origins(tmp_path):
    node = await start_node(tmp_path, "cors = https://grafana.example")
    client = Client(node)
    try:
        code, headers, _ = await client.call("GET", "/", {"command": "get status",
                                                          "Origin": "https://grafana.example"})
        assert code == 200 and headers.getRawHeaders("access-control-allow-origin") == ["https://grafana.example"]
        code, headers, _ = await client.call("OPTIONS", "/", {"Origin": "https://grafana.example"})
        assert code == 204 and "command" in headers.getRawHeaders("access-control-allow-headers")[0]
        code, headers, _ = await client.call("GET", "/", {"command": "get status", "Origin": "https://evil.example"})
        assert headers.getRawHeaders("access-control-allow-origin") is None
    finally:
        await client.close()
        await node.stopService()


async def test_a_rebound_dns_name_gets_421_and_runs_nothing(open_node):
    node, client = open_node
    port = node.process("REST").address[1]
    code, _, body = await client.call("PUT", "/", {"Host": f"rebind.evil.example:{port}", "dbms": "d", "table": "t"},
                                      ROWS)
    assert code == 421 and "hosts = rebind.evil.example" in error_of(body)["message"]
    assert watch_files(node) == []
    code, _, _ = await client.call("GET", "/", {"Host": f"localhost:{port}", "command": "get status"})
    assert code == 200


async def test_configured_host_names_are_accepted(tmp_path):
    node = await start_node(tmp_path, "hosts = node.example")
    client = Client(node)
    try:
        code, _, _ = await client.call("GET", "/", {"Host": "node.example:1", "command": "get status"})
        assert code == 200
    finally:
        await client.close()
        await node.stopService()


async def test_a_text_plain_post_body_is_refused_with_415_and_runs_nothing(open_node):
    node, client = open_node
    code, _, body = await client.call("POST", "/", {"Content-Type": "text/plain"}, b"planted = 1\n")
    err = error_of(body)
    assert code == 415 and "command" in err["message"] and "application/json" in err["message"]
    assert "planted" not in node.dictionary
    code, _, body = await client.call("POST", "/?command=get%20status", {"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 415
    # The AnyLog header contract keeps working: the command header is something a page cannot send unasked.
    code, _, body = await client.call("POST", "/", {"command": "get status", "User-Agent": "AnyLog/1.23"})
    assert code == 200 and body.endswith(b"running")


# -- secure defaults --------------------------------------------------------------------------------


async def test_rest_beyond_loopback_without_authentication_refuses_to_start(tmp_path):
    node = await start_node(tmp_path)
    try:
        await node.stop_process("REST")
        reply = await node.execute("run rest server where internal_ip = 0.0.0.0 and internal_port = 0")
        assert not reply.ok
        assert "without authentication" in reply.text and "users = <file>" in reply.text and "auth = none" in reply.text
        assert node.process("REST") is None
        reply = await node.execute("run rest server where internal_ip = 0.0.0.0 and internal_port = 0 and auth = none")
        assert reply.ok and "WITHOUT authentication" in reply.text
        assert "auth = none" in (await node.execute("get processes")).render()
        info = (await node.execute("get rest server info where format = json")).json_data()
        assert info["identities"].startswith("NONE")
    finally:
        await node.stopService()


async def test_rest_beyond_loopback_with_credentials_starts(tmp_path):
    node = await start_node(tmp_path)
    try:
        await node.stop_process("REST")
        reply = await node.execute("run rest server where internal_ip = 0.0.0.0 and internal_port = 0 and token = "
                               "tok-abcdefgh and token_role = reader")
        assert reply.ok, reply.text
        assert "token (reader)" in (await node.execute("get processes")).render()
    finally:
        await node.stopService()


# -- roles over sockets -----------------------------------------------------------------------------


async def test_wrong_or_missing_credentials_are_401_and_run_nothing(users_node):
    node, client = users_node
    code, headers, body = await client.call("PUT", "/", {"dbms": "d", "table": "t"}, ROWS)
    assert code == 401 and headers.getRawHeaders("www-authenticate") == ['Basic realm="anylog"']
    code, _, body = await client.call("PUT", "/", {"dbms": "d", "table": "t",
                                                   "Authorization": basic("walt", "wrong-password")}, ROWS)
    assert code == 401 and "wrong user or password" in error_of(body)["message"]
    assert watch_files(node) == []


async def test_reader_reads_but_cannot_put_data(users_node):
    node, client = users_node
    auth = basic("rita", "rita-password")
    code, _, body = await client.command("get status", authorization=auth)
    assert code == 200 and body.endswith(b"running")
    code, _, body = await client.call("PUT", "/", {"dbms": "d", "table": "t", "Authorization": auth}, ROWS)
    assert code == 403 and "'write'" in error_of(body)["message"]
    assert watch_files(node) == []


async def test_writer_puts_data_but_cannot_administer(users_node):
    node, client = users_node
    auth = basic("walt", "walt-password")
    code, _, _ = await client.call("PUT", "/", {"dbms": "d", "table": "t", "Authorization": auth}, ROWS)
    assert code == 200 and len(watch_files(node)) == 1
    code, _, body = await client.command("run console where port = 0", method="POST", authorization=auth)
    assert code == 403 and "'admin'" in error_of(body)["message"] and "walt" in error_of(body)["message"]
    assert node.process("Console") is None


async def test_admin_administers_but_never_opens_the_manhole(users_node):
    node, client = users_node
    auth = basic("ada", "ada-password")
    code, _, body = await client.command("run console where port = 0", method="POST", authorization=auth)
    assert code == 200, body
    assert node.process("Console") is not None
    code, _, body = await client.command("run manhole where port = 0 and user = a and password = bbbbbbbb",
                                         method="POST", authorization=auth)
    assert code == 403 and "'owner'" in error_of(body)["message"]
    assert node.process("Manhole") is None
    # A GET holds read whatever the role: $VAR stays unexpanded even for an admin.
    node.environ = dict(node.environ, ANYLOG_NETWORK_KEY=SECRET)  # this node's own: never the test process's
    code, _, body = await client.command("echo $ANYLOG_NETWORK_KEY", authorization=auth)
    assert SECRET.encode() not in body


async def test_the_web_login_accepts_users_file_users(users_node):
    node, client = users_node
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    async def login(body: bytes):
        response = await client.http.request("POST", url(node, "/web/login"), headers=form, data=body,
                                             allow_redirects=False)
        await response.content()
        return response.code, response.headers.getRawHeaders("set-cookie")

    code, cookie = await login(b"user=rita&password=rita-password")
    assert code == 303 and "anylog_session=" in cookie[0]
    code, cookie = await login(b"user=rita&password=nope")
    assert code == 401 and cookie is None


# -- the users file and the cache --------------------------------------------------------------------


def test_users_file_keeps_only_scrypt_hashes_and_refuses_plain_text(tmp_path):
    path = str(tmp_path / "u.txt")
    rest_users.add_user(path, "alice", "writer", "correct horse")
    text = open(path).read()
    assert "correct horse" not in text and ":writer:scrypt$" in text
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    (tmp_path / "plain.txt").write_text("bob:admin:hunter22\n")
    try:
        rest_users.load_users(str(tmp_path / "plain.txt"))
    except rest_users.UsersFileError as e:
        assert "plain text" in e.message and "plain.txt:1" in e.message
    else:
        raise AssertionError("a plain-text password was accepted")


async def test_a_plain_text_users_file_keeps_the_server_from_starting(tmp_path):
    (tmp_path / "plain.txt").write_text("bob:admin:hunter22\n")
    node = await start_node(tmp_path)
    try:
        await node.stop_process("REST")
        reply = await node.execute(f"run rest server where internal_ip = 127.0.0.1 and internal_port = 0 and "
                               f"users = {tmp_path / 'plain.txt'}")
        assert not reply.ok and "plain text" in reply.text and node.process("REST") is None
    finally:
        await node.stopService()


def test_a_verified_header_is_cached_so_scrypt_runs_once():
    runs = []

    def in_thread(fn, *args):
        runs.append(fn)
        d = Deferred()
        d.callback(fn(*args))
        return d

    user = rest_users.User("u", "reader", rest_users.hash_password("pw-123456"))
    creds = Credentials(users={"u": user}, in_thread=in_thread)
    header = basic("u", "pw-123456").encode()
    first = creds.check(header)
    assert isinstance(first, Deferred) and first.result.grant == "read"
    again = creds.check(header)
    assert not isinstance(again, Deferred) and again.user == "u" and len(runs) == 1
    wrong = creds.check(basic("u", "pw-wrong").encode())
    assert wrong.result.type.__name__ == "AuthError" if hasattr(wrong.result, "type") else False
    wrong.addErrback(lambda _: None)
    assert len(runs) == 2  # a wrong password is never cached as good


async def test_raw_socket_without_host_header_http10_still_answers(open_node):
    """HTTP/1.0 clients send no Host: they are not browsers, so they pass the Host check."""
    node, _ = open_node
    host, port = node.process("REST").address
    got = Deferred()

    class Raw(Protocol):
        data = b""

        def dataReceived(self, data):
            self.data += data

        def connectionLost(self, reason):
            got.callback(self.data)

    proto = await connectProtocol(TCP4ClientEndpoint(reactor, host, port), Raw())
    proto.transport.write(b"GET / HTTP/1.0\r\ncommand: get status\r\n\r\n")
    data = await got
    assert data.startswith(b"HTTP/1.0 200") and data.endswith(b"running")
