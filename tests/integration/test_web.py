"""The node's page over real sockets: who gets the page, its data endpoints, and what a write needs."""

from __future__ import annotations

import json
import re

import pytest_twisted

from anylog_tw.base.metrics import Metrics
from tests.helpers import ok
from tests.integration.rest_support import Client, start_node, url

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest_twisted.async_yield_fixture
async def node(tmp_path):
    node = await start_node(tmp_path, name="webnode")
    await ok(node, "connect dbms lsl_demo where type = sqlite")
    await ok(node, 'sql lsl_demo "create table ping_sensor (timestamp TIMESTAMP, value REAL)"')
    await ok(node, "sql lsl_demo \"insert into ping_sensor values ('2026-11-28 10:00:00', 1.5), "
                   "('2026-11-28 10:01:00', 2.5)\"")
    yield node
    await node.stopService()


@pytest_twisted.async_yield_fixture
async def client(node):
    c = Client(node)
    yield c
    await c.close()


async def open_page(client) -> tuple[str, str]:
    """(session cookie, CSRF token) of a fresh page."""
    code, headers, body = await client.call("GET", "/", BROWSER)
    assert code == 200, body
    cookie = headers.getRawHeaders("set-cookie")[0].split(";")[0]
    token = re.search(rb'<meta name="csrf-token" content="([^"]+)"', body).group(1).decode()
    return cookie, token


async def post_form(client, path: str, body: bytes, **headers):
    """A form POST whose redirect is not followed (the test reads the 303 itself)."""
    response = await client.http.request("POST", url(client.node, path), data=body, allow_redirects=False,
                                         headers={"Content-Type": "application/x-www-form-urlencoded", **headers})
    return response.code, response.headers, await response.content()


def write_headers(cookie: str, token: str | None, **extra) -> dict:
    headers = {"Cookie": cookie, "Content-Type": "application/json", **extra}
    if token is not None:
        headers["X-AnyLog-CSRF"] = token
    return headers


async def test_a_browser_gets_the_page_and_everyone_else_the_anylog_route(client):
    code, headers, body = await client.call("GET", "/", BROWSER)
    assert code == 200 and headers.getRawHeaders("content-type") == ["text/html; charset=utf-8"]
    assert body.startswith(b"<!DOCTYPE html>") and b'<h1 id="node-name">webnode</h1>' in body
    assert b'data-process="REST"' in body and b'data-table="lsl_demo.ping_sensor"' in body
    assert b"script-src 'self'" in headers.getRawHeaders("content-security-policy")[0].encode()
    assert headers.getRawHeaders("access-control-allow-origin") is None
    assert "HttpOnly" in headers.getRawHeaders("set-cookie")[0]
    # curl, Grafana's test, AnyLog's clients: unchanged
    assert (await client.call("GET", "/"))[2] == b"webnode@127.0.0.1 running"
    assert (await client.call("GET", "/", {**BROWSER, "command": "get node name"}))[2] == b"webnode"
    assert (await client.call("GET", "/?command=get%20node%20name", BROWSER))[2] == b"webnode"


async def test_the_assets_ship_with_the_package_and_are_cached(client):
    code, headers, body = await client.call("GET", "/web/static/app.js")
    assert code == 200 and headers.getRawHeaders("content-type") == ["text/javascript; charset=utf-8"]
    assert b"X-AnyLog-CSRF" in body
    etag = headers.getRawHeaders("etag")[0]
    code, _, body = await client.call("GET", "/web/static/app.js", {"If-None-Match": etag})
    assert code == 304 and body == b""
    code, _, _ = await client.call("GET", "/web/static/uPlot.iife.min.js")
    assert code == 200
    code, _, body = await client.call("GET", "/web/static/../rest.py")
    assert code == 404


async def test_live_rates_and_network_are_json_read_with_the_nodes_own_commands(client, node):
    node.component(Metrics).ingest_history.add("lsl_demo", "ping_sensor", rows=40, files=2)
    code, _, body = await client.call("GET", "/web/live")
    live = json.loads(body)
    assert code == 200 and live["status"]["status"] == "running" and live["processes"]["REST"]["Status"] == "Running"
    assert live["tables"]["tables"][0]["rows"] == 40 and "series" not in live["tables"]["tables"][0]
    assert live["peers"] == []
    rates = json.loads((await client.call("GET", "/web/rates"))[2])
    assert rates["bucket"] == 10 and len(rates["tables"][0]["series"]) == 360 and rates["tables"][0]["series"][-1] == 40
    await ok(node, 'blockchain insert where policy = {"cluster": {"name": "east", "company": "acme", "table": '
                   '[{"dbms": "lsl_demo", "name": "ping_sensor"}]}} and local = true')
    network = json.loads((await client.call("GET", "/web/network"))[2])
    assert network["svg"].startswith("<svg") and "cluster east" in network["svg"]
    assert ["lsl_demo", "ping_sensor"] in network["local_tables"]
    assert "blockchain get" in node.events.entries()[-2][3]  # the page's reads are the node's commands


async def test_a_command_runs_with_the_pages_session_and_token_only(client):
    cookie, token = await open_page(client)
    body = json.dumps({"command": "get processes"}).encode()
    code, _, reply = await client.call("POST", "/web/command", write_headers(cookie, token), body)
    payload = json.loads(reply)
    assert code == 200 and payload["kind"] == "table" and payload["columns"] == ["Process", "Status", "Details"]
    code, _, reply = await client.call("POST", "/web/command", write_headers(cookie, None), body)
    assert code == 403 and json.loads(reply)["error"]["code"] == "csrf"
    code, _, reply = await client.call("POST", "/web/command", write_headers(cookie, "x" * 43), body)
    assert code == 403
    code, _, reply = await client.call("POST", "/web/command", write_headers("anylog_session=stale", token), body)
    assert code == 401
    evil = write_headers(cookie, token, Origin="http://evil.example")
    code, _, reply = await client.call("POST", "/web/command", evil, body)
    assert code == 403 and "evil.example" in json.loads(reply)["error"]["message"]
    plain = {"Cookie": cookie, "X-AnyLog-CSRF": token, "Content-Type": "text/plain"}
    code, _, reply = await client.call("POST", "/web/command", plain, body)
    assert code == 400 and "application/json" in json.loads(reply)["error"]["message"]


async def test_command_replies_keep_their_kind_and_errors_say_why(client):
    cookie, token = await open_page(client)

    async def run(text):
        code, _, reply = await client.call("POST", "/web/command", write_headers(cookie, token),
                                           json.dumps({"command": text}).encode())
        assert code == 200
        return json.loads(reply)

    assert (await run("get status")) == {"ok": True, "kind": "text", "text": "webnode@127.0.0.1 running"}
    assert (await run("get status where format = json"))["kind"] == "json"
    failed = await run("get statu")
    assert failed["ok"] is False and failed["status"] == 404 and "did you mean" in failed["error"]["message"]


async def test_the_query_box_answers_rows_and_a_chart(client):
    cookie, token = await open_page(client)
    body = json.dumps({"dbms": "lsl_demo", "sql": "select timestamp, value from ping_sensor order by timestamp",
                       "destination": "local"}).encode()
    code, _, reply = await client.call("POST", "/web/query", write_headers(cookie, token), body)
    payload = json.loads(reply)
    assert code == 200 and payload["columns"] == ["timestamp", "value"] and len(payload["rows"]) == 2
    assert payload["chart"]["y"] == [[1.5, 2.5]] and payload["statistics"]["Count"] == 2
    assert payload["command"].startswith("sql lsl_demo format = json")
    bad = json.dumps({"dbms": "x; drop", "sql": "select 1"}).encode()
    code, _, reply = await client.call("POST", "/web/query", write_headers(cookie, token), bad)
    assert code == 400 and "connected dbms" in json.loads(reply)["error"]["message"]


async def test_with_credentials_the_page_asks_for_a_login(tmp_path):
    node = await start_node(tmp_path, "user = admin and password = s3cret", name="locked")
    client = Client(node)
    try:
        code, _, body = await client.call("GET", "/", BROWSER)
        assert code == 200 and b'id="login-form"' in body and b"data-process" not in body
        assert (await client.call("GET", "/web/live"))[0] == 401
        code, _, body = await post_form(client, "/web/login", b"user=admin&password=wrong")
        assert code == 401 and b"Wrong user or password" in body
        assert node.errors.entries()[-1][3] == "web login"
        code, headers, _ = await post_form(client, "/web/login", b"user=admin&password=s3cret")
        assert code == 303 and headers.getRawHeaders("location") == ["/"]
        cookie = headers.getRawHeaders("set-cookie")[0].split(";")[0]
        code, _, body = await client.call("GET", "/", {**BROWSER, "Cookie": cookie})
        assert code == 200 and b'data-process="REST"' in body and b'id="logout-form"' in body
        assert (await client.call("GET", "/web/live", {"Cookie": cookie}))[0] == 200
        # curl with the credentials may read the live data too
        assert (await client.call("GET", "/web/live", {"Authorization": "Basic YWRtaW46czNjcmV0"}))[0] == 200
        token = re.search(rb'name="csrf" value="([^"]+)"', body).group(1)
        code, _, _ = await post_form(client, "/web/logout", b"csrf=" + token, Cookie=cookie)
        assert code == 303 and (await client.call("GET", "/web/live", {"Cookie": cookie}))[0] == 401
    finally:
        await client.close()
        await node.stopService()


async def test_a_read_only_server_refuses_commands_that_change_the_node_from_the_page_too(tmp_path):
    node = await start_node(tmp_path, "read only = true", name="ro")
    client = Client(node)
    try:
        cookie, token = await open_page(client)
        code, _, reply = await client.call("POST", "/web/command", write_headers(cookie, token),
                                           json.dumps({"command": "reset error log"}).encode())
        payload = json.loads(reply)
        assert code == 200 and payload["ok"] is False and payload["status"] == 403
        assert "read only" in payload["error"]["message"]
    finally:
        await client.close()
        await node.stopService()
