"""The web page's routes on the REST port: `/` for a browser, and `/web/...` for its data and actions.

Mounted by `front/rest.py`: a GET of `/` whose `Accept` asks for HTML (and that carries no
command) is the page; everything under `/web/` is here.  Reads (`/web/live`, `/web/rates`,
`/web/network`) need what any REST read needs (a session, or credentials when the server has
them); writes (`/web/command`, `/web/query`) need the page's session *and* its CSRF token in the
`X-AnyLog-CSRF` header, and a same-origin `Origin` when the browser sends one.  Every command
runs through `node.execute` with the caller's REST origin, under the server's timeout and read-only
rule, so the page can do exactly what its user could do with curl, and no more.
"""

from __future__ import annotations

import hashlib
import time

import orjson
from klein import Klein
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from werkzeug.exceptions import MethodNotAllowed, NotFound

from anylog_tw.base import errors
from anylog_tw.base.errors import AnyLogError
from anylog_tw.base.grammar import quote
from anylog_tw.base.names import is_name
from anylog_tw.front.rest_request import ReadOnlyError, RequestError, check_read_only
from anylog_tw.front.web import live
from anylog_tw.front.web.page import LoginElement, PageElement, package_dir, render
from anylog_tw.front.web.replies import query_payload, reply_payload
from anylog_tw.front.web.session import COOKIE, CSRF_HEADER, Session, Sessions, cookie_header

JSON_TYPE = b"application/json"
HTML_TYPE = b"text/html; charset=utf-8"
# The page loads only its own scripts and styles and talks only to its node.
CSP = (b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
MAX_COMMAND = 64 * 1024


def wants_page(request) -> bool:
    """A browser asking for `/`: Accept names text/html, and no command in the headers or the URL."""
    accept = request.getHeader(b"accept") or b""
    if b"text/html" not in accept:
        return False
    if request.getHeader(b"command") is not None:
        return False
    query = request.uri.split(b"?", 1)[1] if b"?" in request.uri else b""
    return b"command=" not in query.lower()


class CsrfError(AnyLogError):
    code = "csrf"
    status = 403


class LoginNeeded(AnyLogError):
    code = "unauthorized"
    status = 401


ASSET_TYPES = {".js": b"text/javascript; charset=utf-8", ".css": b"text/css; charset=utf-8",
               ".svg": b"image/svg+xml", ".LICENSE": b"text/plain; charset=utf-8"}


def load_assets() -> dict[bytes, tuple[bytes, bytes, bytes]]:
    """The shipped assets, read once: {name: (content type, ETag, bytes)}; they are small (~60 KB)."""
    out = {}
    folder = package_dir("static")
    for child in folder.children():
        ctype = ASSET_TYPES.get(child.splitext()[1])
        if ctype is not None:
            data = child.getContent()
            out[child.basename().encode()] = (ctype, b'"%s"' % hashlib.sha256(data).hexdigest()[:16].encode(), data)
    return out


def _peer(request) -> str:
    peer = request.getClientAddress()
    return f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"


def _own_origin(request) -> bytes:
    return (b"https" if request.isSecure() else b"http") + b"://" + (request.getHeader(b"host") or b"")


def _json_body(request) -> dict:
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type != JSON_TYPE:
        raise RequestError("send the body as JSON (Content-Type: application/json)")
    body = request.content.read()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise RequestError(f"the body is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise RequestError("the body must be a JSON object")
    return data


class WebApp:
    """The page of one REST server (its sessions end with it)."""

    app = Klein()
    log = Logger()

    def __init__(self, api):
        self.api = api
        self.node = api.node
        self.sessions = Sessions(self.node.reactor.seconds)
        self.assets = load_assets()

    # -- answering ------------------------------------------------------------------------------

    def _send(self, request, route: str, started: float, status: int, body: bytes, ctype: bytes) -> bytes:
        self.api.send(request, route, started, status, body, ctype)
        headers = request.responseHeaders
        headers.removeHeader(b"access-control-allow-origin")  # the page is same-origin only
        headers.setRawHeaders(b"cache-control", [b"no-store"])
        headers.setRawHeaders(b"x-content-type-options", [b"nosniff"])
        headers.setRawHeaders(b"referrer-policy", [b"same-origin"])  # no-referrer would make Origin "null"
        if ctype == HTML_TYPE:
            headers.setRawHeaders(b"content-security-policy", [CSP])
            headers.setRawHeaders(b"x-frame-options", [b"DENY"])
        return body

    def _json(self, request, route: str, started: float, data, status: int = 200) -> bytes:
        return self._send(request, route, started, status, orjson.dumps(data, default=str), JSON_TYPE)

    def _error(self, request, route: str, started: float, e: Exception) -> bytes:
        if isinstance(e, AnyLogError):
            return self._json(request, route, started, {"ok": False, "error": {"code": e.code, "message": e.message}},
                              e.status)
        self.log.failure("web {route} failed", route=route)
        return self._json(request, route, started, {"ok": False, "error": {
            "code": "internal", "message": f"internal error: {type(e).__name__} (the traceback is in the node's log)"}},
            500)

    # -- who is asking --------------------------------------------------------------------------

    def _session(self, request) -> Session | None:
        session = self.sessions.get(request.getCookie(COOKIE))
        if session is not None and self.api.credentials.required and not session.user:
            return None  # an anonymous session from before credentials were set
        return session

    async def _reader(self, request) -> str:
        """A read needs a session, or the REST server's credentials when it has them: the origin."""
        session = self._session(request)
        identity = session.identity if session is not None else await maybeDeferred(self.api.identify, request)
        return self.api.origin(request, identity, "GET")

    def _writer(self, request) -> str:
        """A write needs the page's session, its CSRF token, and a same-origin request: the origin."""
        session = self._session(request)
        if session is None:
            raise LoginNeeded("no session: open (or reload) the node's page" +
                              (" and log in" if self.api.credentials.required else ""))
        origin = request.getHeader(b"origin")
        if origin is not None and origin != _own_origin(request):
            raise CsrfError(f"a request from {origin.decode('latin-1')[:100]} may not act on this node's page")
        if not session.token_ok(request.getHeader(CSRF_HEADER)):
            raise CsrfError("the page's token is missing or stale: reload the page")
        return self.api.origin(request, session.identity, "POST")

    # -- the page -------------------------------------------------------------------------------

    @app.route("/", methods=["GET", "HEAD"])
    async def page(self, request):
        started = time.perf_counter()
        try:
            session = self._session(request)
            if session is None and self.api.credentials.required:
                return await self._login_page(request, started, "", 200)
            if session is None:
                session = self.sessions.new()
                request.setHeader(b"set-cookie", cookie_header(session, request.isSecure()))
            data = await self._first_render(self.api.origin(request, session.identity, "GET"))
            data["csrf"], data["user"] = session.csrf, session.user
            body = await render(PageElement(data))
            return self._send(request, "/", started, 200, body, HTML_TYPE)
        except Exception as e:
            return self._error(request, "/", started, e)

    async def _first_render(self, origin: str) -> dict:
        data = await live.live(self.node, origin)
        data["node"] = self.node.name
        data["network"] = await live.network(self.node, origin, data["status"], data["peers"])
        data["tables_rows"] = live.table_rows(data["tables"], data["network"]["local_tables"])
        data["databases"] = await live.databases(self.node, origin)
        return data

    async def _login_page(self, request, started: float, message: str, status: int) -> bytes:
        credentials = self.api.credentials
        token_only = bool(credentials.token) and not credentials.password
        body = await render(LoginElement(self.node.name, message, token_only))
        return self._send(request, "/", started, status, body, HTML_TYPE)

    @app.route("/web/login", methods=["POST"])
    async def login(self, request):
        started = time.perf_counter()
        user = (request.args.get(b"user") or [b""])[0]
        password = (request.args.get(b"password") or [b""])[0]
        origin = request.getHeader(b"origin")
        if origin is not None and origin != _own_origin(request):
            return await self._login_page(request, started, "Log in from the node's own page.", 403)
        if not self.api.credentials.required:
            return self._redirect(request, started)
        identity = await maybeDeferred(self.api.login, user.decode("utf-8", "replace"),
                                       password.decode("utf-8", "replace"))
        if identity is None:
            self.node.errors.add(f"REST {_peer(request)}", "web login", "wrong user or password")
            return await self._login_page(request, started, "Wrong user or password.", 401)
        who = user.decode("utf-8", "replace") or str(identity)
        session = self.sessions.new(who, identity)
        request.setHeader(b"set-cookie", cookie_header(session, request.isSecure()))
        return self._redirect(request, started)

    @app.route("/web/logout", methods=["POST"])
    def logout(self, request):
        started = time.perf_counter()
        session = self._session(request)
        token = (request.args.get(b"csrf") or [b""])[0] or request.getHeader(CSRF_HEADER)
        if session is not None and session.token_ok(token):
            self.sessions.drop(session.sid)
            request.setHeader(b"set-cookie", cookie_header(None, request.isSecure()))
        return self._redirect(request, started)

    def _redirect(self, request, started: float) -> bytes:
        request.setHeader(b"location", b"/")
        return self._send(request, "/web/login", started, 303, b"", HTML_TYPE)

    @app.route("/web/static/<name>", methods=["GET", "HEAD"])
    def asset(self, request, name):
        """A shipped asset, cached by the browser for an hour (assets change only with the package)."""
        started = time.perf_counter()
        found = self.assets.get(name.encode("utf-8", "replace"))
        if found is None:
            return self._error(request, "/web/static", started, errors.NotFound(f"no asset {name[:100]}"))
        ctype, etag, data = found
        request.setHeader(b"etag", etag)
        if request.getHeader(b"if-none-match") == etag:
            self._send(request, "/web/static", started, 304, b"", ctype)
            request.responseHeaders.removeHeader(b"content-length")
            return b""
        self._send(request, "/web/static", started, 200, data, ctype)
        request.setHeader(b"cache-control", b"public, max-age=3600")
        return data

    # -- live data ------------------------------------------------------------------------------

    @app.route("/web/live", methods=["GET"])
    async def live_data(self, request):
        started = time.perf_counter()
        try:
            origin = await self._reader(request)
            return self._json(request, "/web/live", started, await live.live(self.node, origin))
        except Exception as e:
            return self._error(request, "/web/live", started, e)

    @app.route("/web/rates", methods=["GET"])
    async def rates(self, request):
        started = time.perf_counter()
        try:
            origin = await self._reader(request)
            return self._json(request, "/web/rates", started, await live.rates(self.node, origin))
        except Exception as e:
            return self._error(request, "/web/rates", started, e)

    @app.route("/web/network", methods=["GET"])
    async def network(self, request):
        started = time.perf_counter()
        try:
            origin = await self._reader(request)
            return self._json(request, "/web/network", started, await live.network(self.node, origin))
        except Exception as e:
            return self._error(request, "/web/network", started, e)

    # -- actions --------------------------------------------------------------------------------

    async def _run(self, origin: str, text: str):
        """Run one command for the page, with the REST server's read-only rule and timeout."""
        if self.api.config.read_only:
            check_read_only(self.node.registry, text)
        d = Deferred.fromCoroutine(self.node.execute(text, origin))
        timeout = self.api.config.timeout
        if timeout:
            d = self.api.within(d, timeout, text)
        return await d

    @app.route("/web/command", methods=["POST"])
    async def command(self, request):
        started = time.perf_counter()
        try:
            origin = self._writer(request)
            text = _json_body(request).get("command")
            if not isinstance(text, str) or not text.strip():
                raise RequestError("the body needs a 'command' (e.g. {\"command\": \"get status\"})")
            if len(text) > MAX_COMMAND:
                raise RequestError(f"the command is over {MAX_COMMAND:,} characters")
            reply = await self._run(origin, text.strip())
            return self._json(request, "/web/command", started, reply_payload(reply))
        except ReadOnlyError as e:
            return self._json(request, "/web/command", started,
                              {"ok": False, "error": {"code": e.code, "message": e.message}, "status": e.status})
        except Exception as e:
            return self._error(request, "/web/command", started, e)

    @app.route("/web/query", methods=["POST"])
    async def query(self, request):
        started = time.perf_counter()
        try:
            origin = self._writer(request)
            body = _json_body(request)
            dbms, sql = str(body.get("dbms") or "").strip().lower(), str(body.get("sql") or "").strip()
            if not is_name(dbms):
                raise RequestError(f"choose a connected dbms (not {dbms[:64]!r})")
            if not sql:
                raise RequestError("write a statement, e.g. select * from <table> limit 10")
            text = f"sql {dbms} format = json {quote(sql)}"
            if body.get("destination") == "network":
                text = f"run client () {text}"
            reply = await self._run(origin, text)
            if not reply.ok:
                payload = reply_payload(reply)
            else:
                payload = query_payload(reply.json_data())
            payload["command"] = text
            return self._json(request, "/web/query", started, payload)
        except Exception as e:
            return self._error(request, "/web/query", started, e)

    # -- routing errors -------------------------------------------------------------------------

    @app.handle_errors(NotFound)
    def not_found(self, request, failure):
        path = request.path.decode("utf-8", "replace")[:100]
        return self._error(request, "other", time.perf_counter(), errors.NotFound(f"no page {path} (the node's page is /)"))

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(self, request, failure):
        path = request.path.decode("utf-8", "replace")[:100]
        e = AnyLogError(f"{path} does not answer {request.method.decode('latin-1')}")
        e.status, e.code = 405, "method_not_allowed"
        return self._error(request, "other", time.perf_counter(), e)

    def resource(self):
        return self.app.resource()
