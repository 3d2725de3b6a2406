"""The Grafana data source replayed: request bodies as Grafana's JSON data source sends them
(tests/fixtures/grafana), against a real node over a real socket, on SQLite and PostgreSQL; the
replies are checked against Grafana's expected shapes and against the data."""

from __future__ import annotations

import calendar
import json
import pathlib
import time

import jsonschema
import pytest
import pytest_twisted

from tests.helpers import ok
from tests.integration.rest_support import Client, start_node
from tests.integration.test_storage_engines import ENGINES
from tests.pg import PSQL, drop_pg_database
from tests.pg import new_database

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures" / "grafana"

# Grafana's shapes (the JSON data source's API definition): a series, a table, an error.
SERIES = {"type": "object", "required": ["target", "datapoints"], "properties": {
    "target": {"type": "string"},
    "datapoints": {"type": "array", "items": {"type": "array", "minItems": 2, "maxItems": 2,
                                              "prefixItems": [{"type": ["number", "null"]}, {"type": "integer"}]}}}}
TABLE = {"type": "object", "required": ["type", "columns", "rows"], "properties": {
    "type": {"const": "table"},
    "columns": {"type": "array", "items": {"type": "object", "required": ["text", "type"], "properties": {
        "text": {"type": "string"}, "type": {"enum": ["time", "string", "number"]}}}},
    "rows": {"type": "array", "items": {"type": "array"}}}}
ERROR = {"type": "object", "required": ["message", "status"], "additionalProperties": False,
         "properties": {"message": {"type": "string", "minLength": 1}, "status": {"type": "string"}}}
NAMES = {"type": "array", "items": {"type": "string"}, "minItems": 1}
METRICS = {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["value", "payloads"], "properties": {
    "value": {"type": "string"}, "payloads": {"type": "array", "items": {"type": "object", "required": ["name"]}}}}}
OPTIONS = {"type": "array", "items": {"type": "object", "required": ["value"]}}


def ms(text: str) -> int:
    """Epoch milliseconds of a UTC time written as the node stores it."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S")) * 1000


def check(instance, schema) -> None:
    jsonschema.validate(instance, schema, cls=jsonschema.Draft202012Validator)


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


# Two hours of one reading a minute from pump-1 (value = minutes since 10:00) and one every ten
# minutes from pump-2 (value 100), inside the fixtures' range (2026-11-28 10:00 to 12:00 UTC).
ROWS = [(f"2026-11-28 {10 + m // 60:02d}:{m % 60:02d}:00", float(m), "pump-1") for m in range(120)] + \
       [(f"2026-11-28 {10 + m // 60:02d}:{m % 60:02d}:30", 100.0, "pump-2") for m in range(0, 120, 10)]


@pytest_twisted.async_yield_fixture(params=ENGINES)
async def node(request, tmp_path):
    node = await start_node(tmp_path, name="graf")
    database = None
    if request.param == "sqlite":
        await ok(node, "connect dbms lsl_demo where type = sqlite")
    else:
        database = new_database("gf")
        await ok(node, f"connect dbms lsl_demo where {PSQL} and database = {database}")
    await ok(node, 'sql lsl_demo "create table ping_sensor (timestamp TIMESTAMP, value DOUBLE PRECISION, device TEXT)"')
    values = ", ".join(f"('{t}', {v}, '{d}')" for t, v, d in ROWS)
    await ok(node, f'sql lsl_demo "insert into ping_sensor values {values}"')
    yield node
    await node.stopService()
    if database:
        drop_pg_database(database)


@pytest_twisted.async_yield_fixture
async def client(node):
    c = Client(node)
    yield c
    await c.close()


async def replay(client, name: str):
    f = fixture(name)
    code, headers, body = await client.call(f["method"], f["path"], f["headers"], json.dumps(f["body"]).encode())
    assert headers.getRawHeaders("content-type") == ["application/json"], body
    return f["shape"], code, json.loads(body)


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.json")))
async def test_every_recorded_request_gets_a_reply_in_grafanas_shape(client, name):
    shape, code, reply = await replay(client, name)
    if shape == "error":
        assert code == 400
        check(reply, ERROR)
        return
    assert code == 200, reply
    if shape == "names":
        check(reply, NAMES)
    elif shape == "metrics":
        check(reply, METRICS)
    elif shape == "options":
        check(reply, OPTIONS)
    elif shape == "empty":
        assert reply == []
    else:
        assert isinstance(reply, list) and reply
        for item in reply:
            if shape == "partial" and item.get("error"):
                check(item, SERIES)
                assert item["datapoints"] == []
            else:
                check(item, TABLE if shape == "table" else SERIES)


async def test_increments_bucket_the_range_by_the_panel_interval(client):
    _, _, reply = await replay(client, "query_increments")
    by_name = {s["target"]: s["datapoints"] for s in reply}
    assert sorted(by_name) == ["ping_sensor avg(value)", "ping_sensor count(value)", "ping_sensor max(value)",
                               "ping_sensor min(value)"]
    assert [v for v, _ in by_name["ping_sensor count(value)"]] == [11] * 12  # ten minutes: 10 + 1 readings
    assert [v for v, _ in by_name["ping_sensor min(value)"]] == [min(float(m), 100.0) for m in range(0, 120, 10)]
    assert [v for v, _ in by_name["ping_sensor max(value)"]] == [100.0] * 10 + [109.0, 119.0]
    stamps = [ms for _, ms in by_name["ping_sensor max(value)"]]
    assert stamps[0] == ms("2026-11-28 10:09:00")  # the bucket's last reading (AnyLog's max(timestamp))
    assert stamps == sorted(stamps)


async def test_the_default_dbms_comes_from_the_custom_header(client):
    _, _, with_header = await replay(client, "search_with_dbms_header")
    _, _, without = await replay(client, "search_all")
    assert with_header == ["ping_sensor"] and without == ["lsl_demo.ping_sensor"]
    _, _, options = await replay(client, "metric_payload_options")
    assert {"label": "value", "value": "value"} in options


async def test_period_aggregations_info_and_sql_answer_what_the_data_says(client):
    _, _, period = await replay(client, "query_period")
    counts = {s["target"]: s["datapoints"] for s in period}
    # the last reading is at 11:59:00; the 30 minutes up to it hold 30 of pump-1's and 3 of pump-2's
    assert counts["ping_sensor count(value)"] == [[33, ms("2026-11-28 11:59:00")]]
    _, _, agg = await replay(client, "query_aggregations")
    values = {s["target"]: s["datapoints"][0][0] for s in agg}
    assert values == {"ping_sensor avg(value)": 59.5, "ping_sensor count(value)": 120,
                      "ping_sensor range(value)": 119.0}
    _, _, [info] = await replay(client, "query_info")
    assert info["columns"][0] == {"text": "Process", "type": "string"}
    assert ["REST", "Running"] == info["rows"][1][:2]
    _, _, [series] = await replay(client, "query_sql")
    assert series["target"] == "ping_sensor value" and len(series["datapoints"]) == 120


async def test_a_failing_target_says_why_and_the_others_still_answer(client):
    _, _, reply = await replay(client, "query_one_target_fails")
    good, bad = reply[:-1], reply[-1]
    assert len(good) == 3 and all(len(s["datapoints"]) == 12 for s in good)
    assert bad["refId"] == "B" and "no_such_table" in bad["error"]
    _, code, error = await replay(client, "query_bad_payload")
    assert code == 400 and "median" in error["message"]


async def test_a_target_that_writes_is_refused_and_credentials_are_asked(client, node):
    body = fixture("query_info")["body"]
    body["targets"][0]["payload"]["details"] = "reset error log"
    code, _, reply = await client.call("POST", "/query", {"Content-Type": "application/json"}, json.dumps(body).encode())
    assert code == 400 and "changes the node" in json.loads(reply)["message"]
    code, _, reply = await client.call("POST", "/query", {"Content-Type": "application/json"}, b"[1, 2]")
    assert code == 400 and json.loads(reply)["message"] == "the body must be a JSON object"


async def test_with_credentials_grafana_must_send_them(tmp_path):
    node = await start_node(tmp_path, "user = graf and password = s3cret", name="locked")
    client = Client(node)
    try:
        code, headers, body = await client.call("POST", "/search", {"Content-Type": "application/json"}, b"{}")
        assert code == 401 and headers.getRawHeaders("www-authenticate") == ['Basic realm="anylog"']
        check(json.loads(body), ERROR)
        code, _, body = await client.call("POST", "/search", {"Authorization": "Basic Z3JhZjpzM2NyZXQ="}, b"{}")
        assert code == 200 and json.loads(body) == ["Error: No table connected"]
        code, _, body = await client.call("GET", "/", {"Authorization": "Basic Z3JhZjpzM2NyZXQ="})
        assert code == 200  # Grafana's "Save & test"
    finally:
        await client.close()
        await node.stopService()


def dashboard() -> dict:
    """The dashboard JSON of docs/grafana.md (the first ```json block)."""
    text = (pathlib.Path(__file__).parent.parent.parent / "docs" / "grafana.md").read_text()
    block = text.split("```json\n", 1)[1].split("\n```", 1)[0]
    return json.loads(block)


async def test_the_dashboard_in_the_docs_imports_and_each_panel_gets_data(client):
    board = dashboard()
    assert board["__inputs"][0]["pluginId"] == "simpod-json-datasource" and board["uid"]
    base = fixture("query_increments")
    for panel in board["panels"]:
        body = dict(base["body"], panelId=panel["id"])
        body["targets"] = [dict(t, datasource={"type": "simpod-json-datasource", "uid": "node"})
                           for t in panel["targets"]]
        headers = {k: v for k, v in base["headers"].items() if not k.startswith("Al.")}
        code, _, reply = await client.call("POST", "/query", headers, json.dumps(body).encode())
        reply = json.loads(reply)
        assert code == 200 and reply and not any(item.get("error") for item in reply), (panel["title"], reply)
        for item in reply:
            check(item, TABLE if panel["type"] == "table" else SERIES)
            assert item.get("rows") or item.get("datapoints"), panel["title"]
