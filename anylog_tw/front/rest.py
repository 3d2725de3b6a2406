"""The REST server: AnyLog's header contract on a Klein app, plus /health, /metrics and /openapi.json.

`RestApi` is the app (a class with `app = Klein()`, routes as methods).  Every command goes
through `node.execute`, like the console's; this module only reads requests (`rest_request`),
checks credentials and verbs, waits with a timeout, and turns a Reply into an HTTP answer:
`application/json` when the reply is JSON, `text/plain; charset=utf-8` otherwise, with a
Content-Length so connections stay alive.  Every error is JSON `{"error": {"code", "message"}}`
with a real status (400, 401, 403, 404, 405, 408, 409, 413, 415, 421; 500 only for bugs, logged
with its traceback, never shown).  Who may do what is front/rest_auth.py (identities and roles) and
`RestApi.origin`; what keeps a browser page out is front/rest_browser.py (Host, CORS, POST bodies).  A slow command does not hold anything: other requests are answered
while it runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
from klein import Klein
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from werkzeug.exceptions import MethodNotAllowed, NotFound

from anylog_tw import __version__
from anylog_tw.base.deadline import with_deadline
from anylog_tw.base.errors import AnyLogError, Timeout
from anylog_tw.base.metrics import CONTENT_TYPE as METRICS_TYPE
from anylog_tw.base.metrics import Metrics
from anylog_tw.base.origin import Origin
from anylog_tw.front.grafana import GRAFANA_PATHS, GrafanaApi
from anylog_tw.front.rest_auth import Credentials, Identity
from anylog_tw.front.rest_browser import Cors, HostCheck, check_post_commands, node_addresses
from anylog_tw.front.rest_calls import OTHER, RestCalls
from anylog_tw.front.rest_openapi import openapi_document
from anylog_tw.front.rest_put import put_data
from anylog_tw.front.rest_request import (
    ReadOnlyError,
    RequestError,
    agent_product,
    check_method,
    check_read_only,
    read_request,
)
from anylog_tw.front.rest_root import Root
from anylog_tw.front.rest_site import DEFAULT_MAX_BODY
from anylog_tw.front.rest_stream import send_stream
from anylog_tw.front.web.app import WebApp, wants_page

JSON_TYPE = b"application/json"
TEXT_TYPE = b"text/plain; charset=utf-8"
METHODS = ["GET", "POST", "PUT", "OPTIONS", "HEAD", "DELETE", "PATCH"]
ALLOWED = b"GET, POST, PUT, OPTIONS, HEAD"
CORS_HEADERS = (b"Content-Type, Authorization, Accept, User-Agent, AnyLog-Agent, command, destination, timeout, "
                b"subset, dbms, table, source, instructions, type, mode")


_METHOD_NAMES = {m.encode(): m for m in METHODS}
ANONYMOUS_GRANT = "write"  # no credentials configured: loopback callers put data in, never administer


@dataclass(frozen=True)
class RestConfig:
    """How `run rest server` configured this server (shown by `get rest server info`)."""

    timeout: float = 20.0  # seconds a command may take; 0 waits forever
    threads: int = 5  # accepted for AnyLog scripts: nothing here blocks a thread per request
    read_only: bool = False
    max_body: int = DEFAULT_MAX_BODY
    ssl: bool = False
    external: str = ""  # ip:port the server announces
    interface: str = "127.0.0.1"  # where it listens ("" = every interface)
    auth_none: bool = False  # `auth = none`: listens beyond loopback with no authentication, on purpose
    cors: tuple[str, ...] = ()  # browser origins answered with CORS headers
    hosts: tuple[str, ...] = ()  # extra names the Host header may carry


def _headers(request) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v[-1].decode("utf-8", "replace")
            for k, v in request.requestHeaders.getAllRawHeaders()}


def _peer(request) -> str:
    peer = request.getClientAddress()
    return f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"


class RestApi:
    """The routes of one REST server of one node."""

    app = Klein()
    log = Logger()

    def __init__(self, node, config: RestConfig | None = None, credentials: Credentials | None = None):
        self.node = node
        self.config = config or RestConfig()
        self.credentials = credentials or Credentials(in_thread=node.in_thread)
        self.hosts = HostCheck(self.config.interface, self.config.hosts,
                               lambda: node_addresses(node, self.config.external))
        self.cors = Cors(self.config.cors)
        self.metrics = node.component(Metrics)
        self.calls = node.component(RestCalls)
        self._openapi: bytes | None = None
        self._counters: dict[tuple[str, str, int], object] = {}
        self._timers: dict[str, object] = {}

    # -- answering ------------------------------------------------------------------------------

    def _send(self, request, route: str, started: float, status: int, body: bytes, ctype: bytes,
              error: str | None = None) -> bytes:
        request.setResponseCode(status)
        headers = request.responseHeaders
        headers.setRawHeaders(b"content-type", [ctype])
        headers.setRawHeaders(b"content-length", [b"%d" % len(body)])
        if self.cors.origins:
            self.cors_headers(request)
        method = _METHOD_NAMES.get(request.method, OTHER)  # a client may send any word: keep the labels few
        key = (route, method, status)
        counter = self._counters.get(key)
        if counter is None:  # label lookups cost more than the count: keep the children
            counter = self._counters[key] = self.metrics.rest_calls.labels(route=route, method=method,
                                                                          status=str(status))
        counter.inc()
        timer = self._timers.get(route)
        if timer is None:
            timer = self._timers[route] = self.metrics.rest_seconds.labels(route=route)
        timer.observe(time.perf_counter() - started)
        if route == "/":
            caller = getattr(request, "anylog_agent", "unknown")
            self.calls.record(caller, method, getattr(request, "anylog_peer", None) or _peer(request), error)
        return body

    def _error(self, request, route: str, started: float, status: int, code: str, message: str) -> bytes:
        body = orjson.dumps({"error": {"code": code, "message": message}})
        return self._send(request, route, started, status, body, JSON_TYPE, error=message)

    def _fail(self, request, route: str, started: float, e: Exception, failure: Failure | None = None) -> bytes:
        if isinstance(e, AnyLogError):
            if e.status == 401:
                request.setHeader(b"www-authenticate", self.credentials.challenge())
            return self._error(request, route, started, e.status, e.code, e.message)
        self.log.failure("REST {method} {route} failed", failure, method=request.method, route=route)
        return self._error(request, route, started, 500, "internal",
                           f"internal error: {type(e).__name__} (the traceback is in the node's log)")

    def cors_headers(self, request) -> None:
        """Access-Control-Allow-Origin for a listed origin only (none is listed by default)."""
        allowed = self.cors.allow(request.getHeader(b"origin"))
        if allowed is not None:
            request.responseHeaders.setRawHeaders(b"access-control-allow-origin", [allowed])
            request.responseHeaders.setRawHeaders(b"vary", [b"Origin"])

    def _identify(self, request):
        """Identity | None at once (cached or cheap), or a Deferred of it (a users-file password)."""
        if not self.credentials.required:
            return None
        return self.credentials.check(request.getHeader(b"authorization"))

    # -- the AnyLog contract ----------------------------------------------------------------------

    @app.route("/", methods=METHODS)
    def root(self, request):
        """The AnyLog route: bytes when the answer is ready at once (most commands), else a Deferred."""
        started = time.perf_counter()
        method = _METHOD_NAMES.get(request.method) or request.method.decode("latin-1").upper()
        try:
            if method == "OPTIONS":
                return self._options(request, started)
            if method not in ("GET", "HEAD", "POST", "PUT"):
                request.setHeader(b"allow", ALLOWED)
                return self._error(request, "/", started, 405, "method_not_allowed",
                                   f"{method} is not used here: GET runs commands that change nothing, POST any "
                                   f"command, PUT sends data")
            found = self._identify(request)
            if isinstance(found, Deferred):
                found.addCallback(lambda identity: self._serve(request, method, identity, started))
                found.addErrback(lambda failure: self._fail(request, "/", started, failure.value, failure))
                return found
            return self._serve(request, method, found, started)
        except Exception as e:
            return self._fail(request, "/", started, e)

    def _serve(self, request, method: str, identity: Identity | None, started: float):
        """The request of a caller who proved `identity` (None: no credentials configured)."""
        try:
            headers = _headers(request)
            if method == "PUT":
                request.anylog_agent = agent_product(headers)
                if self.config.read_only:
                    raise _read_only_put()
                self.origin(request, identity, "PUT").require("write", "PUT data")
                return Deferred.fromCoroutine(self._put(request, headers, started))
            if method == "POST":
                body = request.content.read()
                check_post_commands(headers, bool(body.strip()))
                if headers.get("command", "").strip().lower() == "data":
                    self.origin(request, identity, "POST").require("write", "POST data")
                    return self._post_data(request, headers, body, started)  # REST as a message broker
            else:
                body = b""
            verb = "GET" if method == "HEAD" else method
            query = request.uri.split(b"?", 1)[1].decode("utf-8", "replace") if b"?" in request.uri else ""
            asked = read_request(verb, headers, query, body)
            request.anylog_agent = asked.agent
            registry = self.node.registry
            for text in asked.all_commands:
                check_method(registry, verb, text)
                if self.config.read_only:
                    check_read_only(registry, text)
            request.anylog_peer = _peer(request)
            origin = self.origin(request, identity, verb)
            if asked.body_commands:
                d = Deferred.fromCoroutine(self._run_body(asked, origin))
            else:
                d = Deferred.fromCoroutine(self.node.execute(asked.command, origin))
            if d.called:  # the reply is ready: answer without another callback round
                reply = d.result
                if isinstance(reply, Failure):
                    d.addErrback(lambda _: None)  # handled here, not "unhandled" at garbage collection
                return self._answer(reply, request, started)
            timeout = asked.timeout if asked.timeout is not None else self.config.timeout
            if asked.destination is not None and timeout:
                timeout += 1.0  # let `run client` report the peers that did not answer before we give up
            if timeout:
                d = self._within(d, timeout, asked.local_command)
            d.addBoth(self._answer, request, started)
            return d
        except Exception as e:
            return self._fail(request, "/", started, e)

    def _answer(self, reply, request, started: float) -> bytes:
        """A Reply (or a failure) as the HTTP answer."""
        if isinstance(reply, Failure):
            return self._fail(request, "/", started, reply.value, reply)
        if not reply.ok:
            return self._error(request, "/", started, reply.status, reply.error_code or "error", reply.text or "")
        ctype = JSON_TYPE if reply.renders_json() else TEXT_TYPE
        if getattr(reply, "stream", None) is not None:  # a pass-through query answer, sent as it comes
            return Deferred.fromCoroutine(self._stream(reply, request, started, ctype))
        return self._send(request, "/", started, 200, reply.render().encode("utf-8"), ctype)

    async def _stream(self, reply, request, started: float, ctype: bytes) -> bytes:
        if self.cors.origins:
            self.cors_headers(request)
        await send_stream(request, reply.stream, ctype)
        self._send(request, "/", started, 200, b"", ctype)  # counts the call (the headers are out already)
        return b""

    async def _put(self, request, headers: dict[str, str], started: float) -> bytes:
        try:
            result = await put_data(self.node, headers, request.content.read())
            return self._send(request, "/", started, 200, orjson.dumps(result), JSON_TYPE)
        except Exception as e:
            return self._fail(request, "/", started, e)

    def _post_data(self, request, headers: dict[str, str], body: bytes, started: float) -> bytes:
        """`command: data`: the body is a message for the `broker = rest` client of the User-Agent."""
        from anylog_tw.msg.clients import MsgClients
        from anylog_tw.msg.rest_broker import post_data

        request.anylog_agent = agent_product(headers)
        if self.config.read_only:
            raise _read_only_put()
        result = post_data(self.node.component(MsgClients), request.anylog_agent, headers.get("topic", "").strip(),
                           body)
        return self._send(request, "/", started, 200, orjson.dumps(result), JSON_TYPE)

    async def _run_body(self, asked, origin: Origin):
        """Body commands first (a failing one answers), then the command."""
        for text in asked.body_commands:
            reply = await self.node.execute(text, origin)
            if not reply.ok:
                return reply
        return await self.node.execute(asked.command, origin)

    def _within(self, d: Deferred, timeout: float, text: str) -> Deferred:
        """The reply, or a Timeout after `timeout` seconds (the command goes on; its reply is dropped)."""
        def expired():
            raise Timeout(f"'{text[:80]}' did not answer within {timeout:g} seconds (raise the "
                          f"'timeout' header, or the server's timeout)")

        return with_deadline(d, timeout, self.node.reactor, expired)

    def _options(self, request, started: float) -> bytes:
        """A preflight is answered only for a listed origin (403 otherwise); a tool's OPTIONS gets Allow."""
        request.anylog_agent = "options"
        allowed = self.cors.preflight(request.getHeader(b"origin"))
        request.setHeader(b"allow", ALLOWED)
        if allowed is not None:
            request.setHeader(b"access-control-allow-methods", ALLOWED)
            request.setHeader(b"access-control-allow-headers", CORS_HEADERS)
            request.setHeader(b"access-control-max-age", b"600")
        self._send(request, "/", started, 204, b"", TEXT_TYPE)
        request.responseHeaders.removeHeader(b"content-type")
        request.responseHeaders.removeHeader(b"content-length")
        return b""

    # -- beyond AnyLog ----------------------------------------------------------------------------

    @app.route("/health", methods=["GET", "HEAD"])
    def health(self, request):
        started = time.perf_counter()
        body = orjson.dumps({"status": "ok", "node": self.node.name, "version": __version__,
                             "uptime": round(self.node.uptime(), 3)})
        return self._send(request, "/health", started, 200, body, JSON_TYPE)

    @app.route("/api/status", methods=["GET", "HEAD"])
    async def api_status(self, request):
        """EdgeLake answers `get status` here; so do we (JSON)."""
        started = time.perf_counter()
        try:
            identity = await self.identify(request)
            reply = await self.node.execute("get status where format = json", self.origin(request, identity, "GET"))
            return self._send(request, "/api/status", started, 200, reply.render().encode("utf-8"), JSON_TYPE)
        except Exception as e:
            return self._fail(request, "/api/status", started, e)

    @app.route("/metrics", methods=["GET", "HEAD"])
    async def prometheus(self, request):
        started = time.perf_counter()
        try:
            await self.identify(request)
            return self._send(request, "/metrics", started, 200, self.metrics.render(), METRICS_TYPE.encode())
        except Exception as e:
            return self._fail(request, "/metrics", started, e)

    @app.route("/openapi.json", methods=["GET", "HEAD"])
    async def openapi(self, request):
        started = time.perf_counter()
        try:
            await self.identify(request)
            if self._openapi is None:
                self._openapi = orjson.dumps(openapi_document(self.node, self.config, self.credentials))
            return self._send(request, "/openapi.json", started, 200, self._openapi, JSON_TYPE)
        except Exception as e:
            return self._fail(request, "/openapi.json", started, e)

    # -- routing errors ---------------------------------------------------------------------------

    @app.handle_errors(NotFound)
    def not_found(self, request, failure):
        path = request.path.decode("utf-8", "replace")[:100]
        return self._error(request, "other", time.perf_counter(), 404, "not_found",
                           f"no route {path}: send commands to / (header 'command'), or use /health, /metrics, "
                           f"/openapi.json")

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(self, request, failure):
        request.setHeader(b"allow", b"GET, HEAD")
        method = request.method.decode("latin-1")
        path = request.path.decode("utf-8", "replace")[:100]
        return self._error(request, "other", time.perf_counter(), 405, "method_not_allowed",
                           f"{path} answers GET only, not {method}")

    # -- shared with the page (front/web) and the Grafana data source (front/grafana) ---------------

    send = _send
    within = _within

    def identify(self, request) -> Deferred:
        """Who a request is, from its Authorization header: an Identity, or None when the server has no
        credentials; fails with AuthError (401) when credentials are needed and missing or wrong."""
        return maybeDeferred(self._identify, request)

    def login(self, user: str, password: str) -> Deferred:
        """The identity a login form proves, or None: a user of the server (configured or from the users
        file), or its token typed as the password."""
        return self.credentials.login(user, password)

    def origin(self, request, identity: Identity | None, verb: str) -> Origin:
        """The origin the request's commands run with: the identity's role (no credentials configured:
        write, never admin).  A GET holds at most read, whoever asks: a page can make a browser send a
        GET unasked, and a GET's `sql` then runs read-only in the engine.  So does every request to a
        `read only = true` server: its up-front check (`check_read_only`) gives the clear message, the
        grant makes the engine refuse what that check cannot see (a data-modifying CTE, say)."""
        peer = _peer(request)
        if identity is None:
            grant, label, user = ANONYMOUS_GRANT, f"REST {peer}", ""
        else:
            grant, label, user = identity.grant, f"REST {identity.user}@{peer}", identity.user
        if (verb == "GET" or self.config.read_only) and grant != "read":
            grant = "read"
        return Origin(label, grant, "rest", user)

    def auth_text(self) -> str:
        """How this server authenticates, for `get processes`, `get rest server info` and `test node`."""
        if self.config.auth_none:
            return "NONE (auth = none: anyone who reaches it can read and write)"
        if self.credentials.required:
            return self.credentials.describe()
        return "loopback only (no credentials: read and write, never admin)"

    def resource(self):
        """The site's root (`rest_root.Root`): which part of the node answers each path."""

        web, grafana = WebApp(self), GrafanaApi(self)
        return Root(self, self.app.resource(), web.resource(), grafana.resource(), wants_page, GRAFANA_PATHS)


def _read_only_put() -> AnyLogError:
    return ReadOnlyError("this REST server is read only: PUT data is refused (use a REST server without "
                         "'read only = true')")


__all__ = ["RestApi", "RestConfig", "RestCalls", "RequestError"]
