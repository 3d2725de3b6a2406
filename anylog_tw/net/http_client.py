"""The outbound HTTP client behind `rest get|post|put|delete|view`.

AnyLog's `rest` command takes every `key = value` of its where clause that is not one of its own
options as an HTTP header (`command = "get status"`, `User-Agent = AnyLog/1.23`, `dbms = lsl_demo`),
so one line can drive another node's REST server or any web service.  Reading those options into a
request, and turning a reply into what the command answers, are pure functions here; the exchange
itself (one deadline for all of it, a bound on how much of a reply is kept) is `http_exchange.py`,
loaded only when a node calls out.
"""

from __future__ import annotations

import ast
import base64
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.web.http_headers import Headers

from anylog_tw.base import values
from anylog_tw.base.errors import CommandError, GrammarError, OptionError, PeerError

DEFAULT_TIMEOUT = 20.0  # seconds for the whole exchange (AnyLog's GET waits 20 s)
MAX_BODY = 64 * 1024 * 1024  # the largest reply kept unless `max body` says otherwise
ERROR_EXCERPT = 200  # characters of an error reply's body quoted in the message

VERBS = ("get", "post", "put", "delete")
# The client's own options; every other key is a header.  `headers = {...}` sends a header whose
# name is taken here (e.g. a `timeout` header for a remote AnyLog node).
OWN_OPTIONS = frozenset({"url", "body", "headers", "user", "password", "timeout", "max body", "file", "key",
                         "overwrite", "format", "validate", "method"})
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # an HTTP header name (RFC 9110 token)
_JSON_TYPE = re.compile(r"^(application|text)/(json|[\w.+-]*\+json)\s*(;|$)", re.IGNORECASE)


class ReplyTooLarge(Exception):
    """The reply's body is over the limit; raised while reading, so the rest is never buffered."""

    def __init__(self, limit: int):
        super().__init__(limit)
        self.limit = limit


@dataclass(frozen=True)
class Request:
    """One HTTP request and the limits it is sent under."""

    method: str  # GET, POST, PUT, DELETE
    url: str
    headers: tuple[tuple[str, str], ...]  # as sent, names in the canonical case
    body: bytes | None
    timeout: float
    max_body: int


@dataclass(frozen=True)
class Output:
    """What the command does with the reply."""

    file: str | None = None  # write the reply there (atomically) instead of answering it
    key: str | None = None  # answer (or write) only this key of a JSON object
    overwrite: bool = False
    fmt: str | None = None  # "json": render the answer as JSON
    validate: bool = False  # answer only "true"/"false": does the URL reply 200?


# --- reading the where clause -----------------------------------------------------------------


def check_url(url: str) -> str:
    """An http or https URL with a host; anything else (file:, ftp:, a bare host) is refused."""
    if not url or any(c.isspace() for c in url):
        raise OptionError(f"url {url!r} is not a URL: write it as http://host:port/path (quote it if it has spaces)")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError as e:
        raise OptionError(f"url {url!r} is not a valid URL: {e}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise OptionError(f"url {url!r}: only http:// and https:// URLs can be called")
    if not parts.hostname:
        raise OptionError(f"url {url!r} has no host: write it as http://host:port/path")
    return url


def parse_headers_option(text: str) -> list[tuple[str, str]]:
    """`headers = {"Content-Type": "application/json"}`, or AnyLog's Python-style `{'k': 'v'}`."""
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = ast.literal_eval(text)  # literals only: never evaluates code
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise OptionError(f"headers = {text[:80]!r} is not a JSON object: write e.g. "
                              "headers = {\"Content-Type\": \"application/json\"}") from None
    if not isinstance(data, dict):
        raise OptionError(f"headers = {text[:80]!r} must be an object of header names and values")
    out = []
    for name, value in data.items():
        if isinstance(value, (dict, list, tuple)) or value is None:
            raise OptionError(f"header {name!r} in 'headers' must have a text or number value, not {value!r}")
        out.append((str(name), str(value).lower() if isinstance(value, bool) else str(value)))
    return out


def _check_header(name: str, value: str) -> None:
    if not _TOKEN.match(name):
        raise OptionError(f"{name!r} is not a valid HTTP header name (letters, digits and -_.!#$%&'*+^`|~; "
                          f"no spaces)")
    if any(c in value for c in "\r\n\x00"):
        raise OptionError(f"the value of header {name!r} holds a line break; a header is one line")


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _positive(name: str, amount: float, example: str) -> None:
    if amount <= 0:
        raise OptionError(f"{name} must be more than 0 (e.g. {name} = {example})")


def build_request(verb: str, options: list[tuple[str, str]]) -> tuple[Request, Output]:
    """`rest <verb> where ...` as (request, output).

    `options` are the where clause's (key, text) pairs in order, keys lower-cased, values with
    dictionary references resolved.  Raises OptionError naming the option at fault.
    """
    own: dict[str, str] = {}
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, text in options:
        if key in seen:
            raise OptionError(f"option '{key}' is given twice")
        seen.add(key)
        if key in OWN_OPTIONS:
            own[key] = text
        else:
            headers.append((key, text))
    method = verb.upper()
    if verb == "view":
        method = own.pop("method", "get").strip().upper()
        if method.lower() not in VERBS:
            raise OptionError(f"method = {method.lower()!r}: rest view shows a request of method get, post, put "
                              f"or delete")
    elif "method" in own:
        raise OptionError(f"'rest {verb}' has no option 'method' (it is for 'rest view')")
    if "url" not in own:
        raise OptionError(f"'rest {verb}' needs 'url' (rest {verb} where url = http://host:port/path ...)")
    url = check_url(own["url"].strip())
    try:
        timeout = values.parse_seconds(own["timeout"]) if "timeout" in own else DEFAULT_TIMEOUT
        max_body = values.parse_size(own["max body"]) if "max body" in own else MAX_BODY
        overwrite = values.parse_bool(own["overwrite"]) if "overwrite" in own else False
        validate = values.parse_bool(own["validate"]) if "validate" in own else False
    except GrammarError as e:
        raise OptionError(str(e)) from None
    _positive("timeout", timeout, "30 seconds")
    _positive("max body", max_body, "10MB")
    fmt = own.get("format", "").strip().lower() or None
    if fmt not in (None, "json", "text"):
        raise OptionError(f"format = {fmt!r}: use json or text")
    if validate and method != "GET":
        raise OptionError("validate = true is for 'rest get' only")
    body = own.get("body")
    if body is not None and method == "GET":
        raise OptionError("a GET sends no body: use 'rest post' or 'rest put' to send 'body'")
    if ("user" in own) != ("password" in own):
        raise OptionError("basic authentication needs both 'user' and 'password'")

    # headers = {...} first, the where clause's own header options override them
    merged = Headers()
    for name, value in parse_headers_option(own["headers"]) if "headers" in own else []:
        _check_header(name, value)
        merged.setRawHeaders(name, [value])
    for name, value in headers:
        _check_header(name, value)
        merged.setRawHeaders(name, [value])
    if "user" in own:
        merged.setRawHeaders("Authorization", [basic_auth(own["user"], own["password"])])
    if body is not None and not merged.hasHeader("Content-Type"):
        merged.setRawHeaders("Content-Type", ["text/plain; charset=utf-8"])  # AnyLog's default is text/plain
    # Headers encodes text as UTF-8; decoding the same way hands treq back the text it re-encodes
    sent = tuple((name.decode("utf-8"), value.decode("utf-8"))
                 for name, vals in merged.getAllRawHeaders() for value in vals)
    request = Request(method=method, url=url, headers=sent,
                      body=None if body is None else body.encode("utf-8"), timeout=timeout, max_body=max_body)
    key = own.get("key")
    output = Output(file=own.get("file"), key=key.strip() if key is not None else None, overwrite=overwrite,
                    fmt=fmt, validate=validate)
    if output.validate and (output.file or output.key):
        raise OptionError("validate = true answers true or false: it takes no 'file' or 'key'")
    return request, output


_URL_PASSWORD = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/@:]*):[^/@]*@")


def shown_url(url: str) -> str:
    """The URL as messages and `rest view` show it: a password in it (`user:secret@host`) masked."""
    return _URL_PASSWORD.sub(r"\1:***@", url)


def describe_request(request: Request) -> dict[str, Any]:
    """What `rest view` shows: the request as it would go out, with the password masked."""
    headers = {}
    for name, value in request.headers:
        if name.lower() == "authorization" and value.startswith("Basic "):
            try:
                user = base64.b64decode(value[6:]).decode("utf-8").split(":", 1)[0]
            except ValueError:
                user = "?"
            value = f"Basic {user}:***"
        elif name.lower() == "authorization":
            value = value.split(" ", 1)[0] + " ***"
        headers[name] = value
    body = None if request.body is None else request.body.decode("utf-8", "replace")
    return {"method": request.method, "url": shown_url(request.url), "headers": headers, "body": body,
            "timeout": request.timeout, "max_body": request.max_body}


# --- reading the reply ------------------------------------------------------------------------


def is_json_type(content_type: str | None) -> bool:
    return bool(content_type) and _JSON_TYPE.match(content_type) is not None


def _charset(content_type: str | None) -> str:
    m = re.search(r"charset\s*=\s*\"?([\w.:-]+)", content_type or "", re.IGNORECASE)
    return m.group(1) if m else "utf-8"


def decode_text(body: bytes, content_type: str | None) -> str:
    try:
        return body.decode(_charset(content_type), "replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", "replace")


def reply_value(body: bytes, content_type: str | None) -> Any:
    """The reply as the command answers it: parsed JSON for a JSON reply, else text.

    A reply labelled JSON that does not parse is answered as text rather than failing: what
    the server sent is still worth seeing.
    """
    if is_json_type(content_type):
        try:
            return json.loads(body)
        except ValueError:
            pass
    return decode_text(body, content_type)


def select_key(value: Any, key: str | None, url: str) -> Any:
    """`key = results`: the value under that key of a JSON object reply."""
    if key is None:
        return value
    if not isinstance(value, dict):
        kind = "text" if isinstance(value, str) else type(value).__name__
        raise CommandError(f"key = {key!r}: the reply of {shown_url(url)} is {kind}, not a JSON object")
    if key not in value:
        keys = ", ".join(list(map(str, value))[:10]) or "none"
        raise CommandError(f"key = {key!r}: the reply of {shown_url(url)} has no such key (its keys: {keys})")
    return value[key]


def file_content(value: Any, body: bytes, keyed: bool) -> tuple[bytes, int | None]:
    """The bytes a reply is saved as, and how many rows they hold (None: not rows).

    A JSON list is written one element per line, AnyLog's form and the one the operator takes
    as rows; any other value picked by `key` as one line (JSON, or its text); a whole reply that
    is not a list as it came.
    """
    if isinstance(value, list):
        lines = [json.dumps(v, ensure_ascii=False, separators=(",", ":")) for v in value]
        return ("\n".join(lines) + "\n" if lines else "").encode("utf-8"), len(lines)
    if keyed:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return (text + "\n").encode("utf-8"), None
    return body, None


def excerpt(body: bytes, content_type: str | None, limit: int = ERROR_EXCERPT) -> str:
    """The start of a body on one line, for an error message."""
    text = " ".join(decode_text(body[: limit * 4], content_type).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def status_error(verb: str, url: str, code: int, phrase: str, body: bytes, content_type: str | None) -> PeerError:
    start = excerpt(body, content_type)
    return PeerError(f"rest {verb} {shown_url(url)}: HTTP {code} {phrase}".rstrip() + (f": {start}" if start else ""))


def failure_message(verb: str, url: str, exc: BaseException, timeout: float) -> str:
    """A failed exchange as one line: what went wrong, in words a user acts on."""
    from twisted.internet import defer, error
    from twisted.web import client
    from twisted.web.error import InfiniteRedirection, RedirectWithNoLocation

    if isinstance(exc, ReplyTooLarge):
        what = (f"the reply is over {exc.limit:,} bytes and was dropped (raise 'max body', e.g. max body = "
                f"{max(1, exc.limit * 2 // 1024 // 1024)}MB, or ask for less)")
    elif isinstance(exc, (defer.TimeoutError, defer.CancelledError, error.TimeoutError)):
        what = f"no complete reply within {timeout:g} seconds (raise 'timeout' if the server is slow)"
    elif isinstance(exc, error.ConnectionRefusedError):
        what = "connection refused (is the server running, on that port?)"
    elif isinstance(exc, error.DNSLookupError):
        what = "the host name cannot be resolved (check the URL)"
    elif isinstance(exc, error.NoRouteError):
        what = "no route to the host"
    elif isinstance(exc, client.SchemeNotSupported):
        what = "only http:// and https:// URLs can be called"
    elif isinstance(exc, (client.ResponseNeverReceived, client.RequestTransmissionFailed)):
        tls = [r.value for r in exc.reasons if type(r.value).__module__.startswith("OpenSSL")]
        what = f"the TLS handshake failed ({_tls_reason(tls[0])})" if tls else \
            "the server closed the connection without replying"
    elif isinstance(exc, client.ResponseFailed):
        what = "the reply was cut off"
    elif isinstance(exc, InfiniteRedirection):
        what = "too many redirects"
    elif isinstance(exc, RedirectWithNoLocation):
        what = "a redirect without a Location"
    elif isinstance(exc, error.ConnectError):
        what = f"cannot connect ({_one_line(exc)})"
    else:
        what = f"{type(exc).__name__}: {_one_line(exc)}"
    return f"rest {verb} {shown_url(url)}: {what}"


def _tls_reason(exc: BaseException) -> str:
    """OpenSSL's reasons (`[(library, function, reason), ...]`) without the tuple noise."""
    errors = exc.args[0] if exc.args and isinstance(exc.args[0], list) else None
    reasons = [str(e[-1]) for e in errors or () if isinstance(e, tuple) and e and e[-1]]
    return "; ".join(reasons) if reasons else _one_line(exc)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
