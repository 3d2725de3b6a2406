"""Grafana's JSON data source on the REST port: POST /search, /metrics, /query (and the optional routes).

Grafana (the simPod JSON data source, or the older simple-json one) is pointed at the node's REST
URL.  Its "Save & test" is a GET of `/`, which the AnyLog route answers (`get status`, 200).  The
routes here read Grafana's bodies, turn each panel target into statements (`grafana_sql`), run
them as `sql` commands through `node.execute` with the caller's REST origin (so the grant and the
timeout are the REST server's), and answer in Grafana's shapes.

Where a query runs: on the network (`run client (...) sql`) when the payload names `servers`,
`include` or `extend`, or when the metadata says clusters host the table and this node talks to
peers (a query node); otherwise on this node, when it has the dbms.  Errors: a target that fails
becomes `{"target", "datapoints": [], "error"}` and the others still run; when every target fails,
or the request itself is wrong, the answer is a 400 `{"message", "status"}`, which Grafana shows
on the panel (a 200 that is not a list would break the panel instead).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from klein import Klein
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from werkzeug.exceptions import MethodNotAllowed, NotFound

from anylog_tw.base.errors import AnyLogError
from anylog_tw.base.grammar import quote
from anylog_tw.front import grafana_sql as gs
from anylog_tw.front.rest_request import GET_OR_POST, command_kind
from anylog_tw.metadata import policies
from anylog_tw.metadata.layer import Metadata

JSON_TYPE = b"application/json"
GRAFANA_PATHS = frozenset({b"/search", b"/metrics", b"/query", b"/metric-payload-options", b"/annotations",
                           b"/tag-keys", b"/tag-values", b"/variable"})
DBMS_HEADER = "al.dbms."
NO_TABLE = "Error: No table connected"


def default_dbms(request) -> str:
    """The dbms the data source names in a custom header `al.dbms.<name>` (its value is ignored)."""
    for name, _ in request.requestHeaders.getAllRawHeaders():
        low = name.decode("latin-1").lower()
        if low.startswith(DBMS_HEADER) and len(low) > len(DBMS_HEADER):
            return low[len(DBMS_HEADER):]
    return ""


def _records(reply) -> list[dict]:
    """The rows of an `sql` reply ({"Query": [...]}); an empty result has none."""
    data = reply.json_data()
    if isinstance(data, dict):
        rows = data.get("Query") or []
        return [r for r in rows if isinstance(r, dict)]
    return []


class GrafanaApi:
    """The data source routes of one REST server."""

    app = Klein()
    log = Logger()

    def __init__(self, api):
        self.api = api
        self.node = api.node

    # -- answering ------------------------------------------------------------------------------

    def _send(self, request, route: str, started: float, data: Any, status: int = 200) -> bytes:
        return self.api.send(request, route, started, status, orjson.dumps(data, default=str), JSON_TYPE)

    def _error(self, request, route: str, started: float, e: Exception) -> bytes:
        if not isinstance(e, AnyLogError):
            self.log.failure("grafana {route} failed", route=route)
            e = AnyLogError(f"internal error: {type(e).__name__} (the traceback is in the node's log)")
            e.status = 500
        if e.status == 401:
            request.setHeader(b"www-authenticate", self.api.credentials.challenge())
        return self._send(request, route, started, {"message": e.message, "status": f"{e.code} ({e.status})"},
                          e.status)

    def _body(self, request) -> dict:
        raw = request.content.read()
        if not raw.strip():
            return {}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise gs.GrafanaError(f"the body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise gs.GrafanaError("the body must be a JSON object")
        return body

    async def _caller(self, request) -> str:
        """The origin of a Grafana request: its credentials checked (401), the REST origin.

        Grafana's calls are POSTs that only read (queries, lists); they run as reads."""
        identity = await maybeDeferred(self.api.identify, request)
        request.anylog_origin = self.api.origin(request, identity, "GET")
        return request.anylog_origin

    async def _run(self, request, text: str):
        d = Deferred.fromCoroutine(self.node.execute(text, request.anylog_origin))
        if self.api.config.timeout:
            d = self.api.within(d, self.api.config.timeout, text)
        reply = await d
        if not reply.ok:
            error = AnyLogError(reply.text or "failed")
            error.code, error.status = reply.error_code or "error", reply.status
            raise error
        return reply

    # -- what the node has ----------------------------------------------------------------------

    async def _engines(self, request) -> dict[str, str]:
        """{connected dbms: engine} from `get databases`."""
        reply = await self._run(request, "get databases where format = json")
        data = reply.json_data()
        return {str(d.get("Logical DBMS")): str(d.get("Database Type")) for d in data if isinstance(d, dict)} \
            if isinstance(data, list) else {}

    async def _table_names(self, request, dbms: str) -> list[str]:
        """`dbms.table` from the table policies and the local dbms (one dbms's tables when given)."""
        names: set[str] = set()
        reply = await self._run(request, "blockchain get table")
        for policy in reply.json_data() or []:
            inner = next(iter(policy.values())) if isinstance(policy, dict) and policy else {}
            if isinstance(inner, dict) and inner.get("dbms") and inner.get("name"):
                names.add(f"{inner['dbms']}.{inner['name']}")
        reply = await self._run(request, "get tables where dbms = * and format = json")
        for row in reply.json_data() or []:
            if isinstance(row, dict) and row.get("Database") not in ("almgm", "system_query", None):
                names.add(f"{row['Database']}.{row['Table name']}")
        if dbms:
            return sorted(n.split(".", 1)[1] for n in names if n.split(".", 1)[0] == dbms)
        return sorted(names)

    async def _on_network(self, t: gs.Target) -> bool:
        if t.servers or t.include or t.extend:
            return True
        if self.node.process("TCP") is None:
            return False
        metadata = await self.node.component(Metadata).ready()
        return bool(policies.clusters_hosting(metadata.ledger, t.dbms, t.table)) if t.table else False

    # -- routes ---------------------------------------------------------------------------------

    @app.route("/search", methods=["POST"])
    async def search(self, request):
        return await self._list(request, "/search", rich=False)

    @app.route("/metrics", methods=["POST"])
    async def metrics(self, request):
        return await self._list(request, "/metrics", rich=True)

    async def _list(self, request, route: str, rich: bool) -> bytes:
        started = time.perf_counter()
        try:
            await self._caller(request)
            self._body(request)
            names = await self._table_names(request, default_dbms(request))
            if not names:
                return self._send(request, route, started, [NO_TABLE])
            if not rich:
                return self._send(request, route, started, names)
            return self._send(request, route, started, [{"value": n, "label": n, "payloads": PAYLOADS} for n in names])
        except Exception as e:
            return self._error(request, route, started, e)

    @app.route("/metric-payload-options", methods=["POST"])
    async def payload_options(self, request):
        """Column names for time_column and value_column, read from the local table when there is one."""
        started = time.perf_counter()
        try:
            await self._caller(request)
            body = self._body(request)
            if body.get("name") not in ("time_column", "value_column"):
                return self._send(request, "/metric-payload-options", started, [])
            metric = str(body.get("metric") or "")
            dbms, _, table = metric.rpartition(".")
            dbms = dbms or default_dbms(request)
            engines = await self._engines(request)
            if dbms not in engines or not table:
                return self._send(request, "/metric-payload-options", started, [])
            reply = await self._run(request, f"get table columns where dbms = {quote(dbms)} and table = "
                                             f"{quote(table)} and format = json")
            columns = [r.get("Column Name") for r in reply.json_data() or [] if isinstance(r, dict)]
            return self._send(request, "/metric-payload-options", started,
                              [{"label": c, "value": c} for c in columns if c])
        except Exception as e:
            return self._error(request, "/metric-payload-options", started, e)

    @app.route("/annotations", methods=["POST"])
    @app.route("/tag-keys", methods=["POST"])
    @app.route("/tag-values", methods=["POST"])
    @app.route("/variable", methods=["POST"])
    async def nothing(self, request):
        """Optional routes of the data source: nothing to offer (no annotations or ad hoc filters)."""
        started = time.perf_counter()
        try:
            await self._caller(request)
            return self._send(request, request.path.decode("latin-1"), started, [])
        except Exception as e:
            return self._error(request, "/annotations", started, e)

    @app.route("/query", methods=["POST"])
    async def query(self, request):
        started = time.perf_counter()
        try:
            await self._caller(request)
            body = self._body(request)
            targets = body.get("targets")
            if not isinstance(targets, list):
                raise gs.GrafanaError("the body has no 'targets' list: is this Grafana's /query?")
            span = body.get("range") or {}
            start, end = gs.parse_time(span.get("from"), "from"), gs.parse_time(span.get("to"), "to")
            if end < start:
                raise gs.GrafanaError("range.to is before range.from")
            interval_ms = _interval_ms(body)
            points = body.get("maxDataPoints")
            points = int(points) if isinstance(points, (int, float)) and points > 0 else None
            dbms = default_dbms(request)
            out: list[dict] = []
            errors: list[str] = []
            for target in targets:
                if isinstance(target, dict) and target.get("hide"):
                    continue
                name = str(target.get("target") or "") if isinstance(target, dict) else ""
                try:
                    t = gs.read_target(target, dbms)
                    out += await self._answer(request, t, start, end, interval_ms, points)
                except AnyLogError as e:
                    errors.append(e.message)
                    out.append({"target": name, "refId": str(target.get("refId") or "") if isinstance(target, dict)
                                else "", "datapoints": [], "error": e.message})
            if errors and len(errors) == len(out):
                raise gs.GrafanaError("; ".join(dict.fromkeys(errors)))
            return self._send(request, "/query", started, out)
        except Exception as e:
            return self._error(request, "/query", started, e)

    async def _answer(self, request, t: gs.Target, start, end, interval_ms, points) -> list[dict]:
        if t.kind == "info":
            return [await self._info(request, t)]
        if await self._on_network(t):
            statement = gs.network_statement(t, start, end, interval_ms, points)
            rows = _records(await self._run(request, self._network_command(t, statement)))
        else:
            engine = (await self._engines(request)).get(t.dbms)
            if engine is None:
                raise gs.GrafanaError(f"dbms {t.dbms!r} is not connected on this node, and the metadata names no "
                                      f"cluster hosting {t.dbms}.{t.table} (connect it, or query a query node)")
            statement = gs.local_statements(t, engine, start, end, interval_ms, points)
            rows = _records(await self._run(request, f"sql {t.dbms} format = json {quote(statement)}"))
            if t.kind == "period":
                last = gs.epoch_ms(rows[0].get("timestamp")) if rows else None
                if last is None:
                    return []
                rows = _records(await self._run(request, f"sql {t.dbms} format = json " + quote(gs.period_statement(
                    t, gs.parse_time(rows[0]["timestamp"], "timestamp"), gs.period_window(t, start, end)))))
        if t.kind in ("period", "aggregations"):
            rows = [r for r in rows if r.get("timestamp") is not None]
        if t.fmt == "table":
            return [gs.table_of_records(t, rows)]
        return gs.timeseries(t, rows)

    def _network_command(self, t: gs.Target, statement: str) -> str:
        options = ["format = json", "timezone = utc"]
        if t.include:
            options.append(f"include = ({', '.join(t.include)})")
        if t.extend:
            options.append(f"extend = ({', '.join(t.extend)})")
        return f"run client ({', '.join(t.servers)}) sql {t.dbms} {' and '.join(options)} {quote(statement)}"

    async def _info(self, request, t: gs.Target) -> dict:
        """`info`: a command that changes nothing, shown as a table."""
        name, readonly = command_kind(self.node.registry, t.details)
        if not (readonly or name in GET_OR_POST):
            raise gs.GrafanaError(f"'{t.details[:60]}' changes the node: a dashboard shows only commands that read")
        reply = await self._run(request, t.details)
        if reply.is_table:
            return gs.table(list(reply.columns), reply.rows, t.ref)
        data = reply.json_data()
        if isinstance(data, list) and all(isinstance(r, dict) for r in data):
            return gs.table_of_records(t, data)
        if isinstance(data, dict):
            return gs.table(["key", "value"], [[k, v if not isinstance(v, (dict, list)) else orjson.dumps(v).decode()]
                                               for k, v in data.items()], t.ref)
        return gs.table(["text"], [[line] for line in str(data).splitlines()], t.ref)

    # -- routing errors -------------------------------------------------------------------------

    @app.handle_errors(NotFound)
    @app.handle_errors(MethodNotAllowed)
    def bad_route(self, request, failure):
        e = AnyLogError(f"{request.path.decode('latin-1')[:100]} is not a route of the Grafana data source")
        e.status = 404
        return self._error(request, "other", time.perf_counter(), e)

    def resource(self):
        return self.app.resource()


def _interval_ms(body: dict) -> float | None:
    value = body.get("intervalMs")
    if isinstance(value, (int, float)) and value > 0:
        return float(value)
    scoped = (body.get("scopedVars") or {}).get("__interval_ms") or {}
    value = scoped.get("value") if isinstance(scoped, dict) else None
    try:
        return float(value) if value not in (None, "") and float(value) > 0 else None
    except (TypeError, ValueError):
        return None


# The builder mode's payload fields (simPod JSON data source, /metrics).
PAYLOADS = [
    {"name": "type", "label": "Type", "type": "select", "options": [
        {"label": "increments (time buckets)", "value": "increments"},
        {"label": "period (the last window of data)", "value": "period"},
        {"label": "aggregations (over the whole range)", "value": "aggregations"}]},
    {"name": "time_column", "label": "Time column", "type": "select", "placeholder": "timestamp"},
    {"name": "value_column", "label": "Value column", "type": "multi-select", "placeholder": "value"},
    {"name": "functions", "label": "Functions", "type": "multi-select", "options": [
        {"label": f, "value": f} for f in gs.FUNCTIONS]},
    {"name": "where", "label": "Where", "type": "input", "placeholder": "device_name = 'pump 1'"},
    {"name": "interval", "label": "Interval", "type": "input", "placeholder": "dashboard | optimize | 5 minutes"},
]
