"""AnyLog's REST header contract, as pure functions: which commands a request asks for, and may it.

A request names its command in the `command` header, in the URL (`/?command=...`, AnyLog also
packs headers as `/?User-Agent=AnyLog/1.23?command=...`) or in a JSON body
(`{"command": ...}` or `{"dbms": ..., "sql": ...}`).  A text body holds commands run first
(a dictionary assignment the header command uses, `<...>` for several lines).  `destination`
sends the command to peers through `run client`.  Nothing here touches the network or the node:
the REST resource gives headers, query and body, and gets a `RestRequest` or a `RequestError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import unquote_plus

import orjson

from anylog_tw.base import grammar, values
from anylog_tw.base.errors import AnyLogError, GrammarError
from anylog_tw.base.grammar import STRING, WORD, split_output_target, with_options
from anylog_tw.base.registry import Registry

DEFAULT_MAX_BODY = 64 * 1024 * 1024  # the largest request body taken unless `max body` says otherwise

# Commands that may come by GET or POST whatever their registry entry says (AnyLog's table).
GET_OR_POST = frozenset({"sql", "print", "echo", "wait"})
_QUERY_SQL = re.compile(r"^\s*\(?\s*(select|with|show|explain|describe|desc|pragma\s+table_info)\b", re.I)


class RequestError(AnyLogError):
    """The request is malformed (a bad header, a wrong verb, a body that is not commands)."""

    code = "bad_request"
    status = 400


class ReadOnlyError(AnyLogError):
    code = "read_only"
    status = 403


@dataclass
class RestRequest:
    """What one request asks the node to run."""

    command: str  # the command as the node runs it (wrapped in `run client` for a destination)
    local_command: str  # the command as the user wrote it
    agent: str = "unknown"  # the client product from User-Agent / AnyLog-Agent, lower case
    destination: str | None = None
    timeout: float | None = None
    subset: bool = False
    body_commands: list[str] = field(default_factory=list)

    @property
    def all_commands(self) -> list[str]:
        return self.body_commands + [self.local_command]


def url_fields(uri_query: str) -> dict[str, str]:
    """Header-like fields of a URL query: `a=1&b=2`, and AnyLog's `a=1?b=2` form."""
    out: dict[str, str] = {}
    for part in re.split(r"[?&]", uri_query):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            continue
        out[unquote_plus(key).strip().lower()] = unquote_plus(value)
    return out


def agent_product(fields: dict[str, str]) -> str:
    """`AnyLog/1.23` -> `anylog`; AnyLog-Agent wins over User-Agent (browsers cannot set the latter)."""
    raw = fields.get("anylog-agent") or fields.get("user-agent") or ""
    product = raw.split("/", 1)[0].strip().lower()
    return product or "unknown"


def _json_body(body: bytes) -> dict | None:
    text = body.strip()
    if not text.startswith(b"{"):
        return None
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _body_commands(body: bytes) -> list[str]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("the body is not UTF-8 text: a POST body holds commands, one a line") from None
    try:
        return [cmd for _, cmd in grammar.split_script(text)]
    except GrammarError as e:
        raise RequestError(f"the body's commands do not parse: {e.message}") from None


def _parse_timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RequestError(f"the timeout header is {text!r}: give seconds, e.g. 'timeout: 30' (0 waits forever)") \
            from None
    if value < 0 or value != value:
        raise RequestError(f"the timeout header is {text!r}: it cannot be negative")
    return value


def _parse_subset(text: str) -> bool:
    try:
        return values.parse_bool(text)
    except GrammarError:
        raise RequestError(f"the subset header is {text!r}: use true or false") from None


def read_request(method: str, headers: dict[str, str], query: str, body: bytes) -> RestRequest:
    """The commands a GET or POST asks for (`headers` keys lower case; `query` the raw URL query).

    Priority: headers, then URL fields, then a JSON body.  A GET without any command is a ping,
    answered by `get status` (as AnyLog answers curl).
    """
    fields = {**url_fields(query), **headers} if query else headers  # not changed below without a copy
    body_commands: list[str] = []
    command = fields.get("command", "").strip()
    if body.strip() and method == "POST":
        obj = _json_body(body) if not command else None
        if obj is not None:
            fields = dict(fields)
            obj = {str(k).lower(): v for k, v in obj.items()}
            for key, value in obj.items():
                if key not in fields and isinstance(value, (str, int, float, bool)):
                    fields[key] = str(value).lower() if isinstance(value, bool) else str(value)
            command = fields.get("command", "").strip()
            if not command and "sql" in obj and "dbms" in obj:
                command = f"sql {obj['dbms']} format = json {grammar.quote(str(obj['sql']))}"
            if not command:
                raise RequestError("the JSON body has no 'command' (or 'dbms' and 'sql'): e.g. "
                                   "{\"command\": \"get status\"}")
        else:
            body_commands = _body_commands(body)
            if command.lower() == "body":  # AnyLog: `command: body` means the body is the command
                command = ""
            if not command:
                if not body_commands:
                    raise RequestError("the POST has no command: send a 'command' header or commands in the body")
                command = body_commands.pop()
    if not command:
        if method == "GET":
            command = "get status"
        else:
            raise RequestError(f"the {method} has no command: send it in the 'command' header "
                               f"(e.g. -H 'command: get status'), in the URL (/?command=...) or in a JSON body")
    destination = fields.get("destination", "").strip() or None
    if destination is not None and destination.lower() == "local":
        destination = None
    timeout = _parse_timeout(fields["timeout"]) if fields.get("timeout", "").strip() else None
    subset = _parse_subset(fields["subset"]) if fields.get("subset", "").strip() else False
    return RestRequest(command=client_command(command, destination, subset, timeout), local_command=command,
                       agent=agent_product(fields), destination=destination, timeout=timeout, subset=subset,
                       body_commands=body_commands)


def client_command(command: str, destination: str | None, subset: bool = False, timeout: float | None = None) -> str:
    """The command run for a destination: `network` -> `run client ()`, a list -> `run client (list)`.

    `subset` and a timeout go inside the parentheses, where `run client` reads them.
    """
    if destination is None:
        return command
    dest = "" if destination.lower() == "network" else destination.strip()
    if dest.startswith("(") and dest.endswith(")"):
        dest = dest[1:-1].strip()
    extra = (["subset = true"] if subset else []) + ([f"timeout = {timeout:g}"] if timeout else [])
    if extra:
        dest = " and ".join(([dest] if dest else []) + extra)
    return f"run client ({dest}) {command}"


# --- what a command may do over REST ------------------------------------------------------------


def _tokens(text: str):
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return grammar.tokenize(text)


def is_query_sql(tokens) -> bool:
    """An `sql` command whose statement only reads (select, with, show, explain ...)."""
    strings = [t.value for t in tokens[1:] if t.kind == STRING]
    if strings:
        statement = strings[-1]
    else:
        words = [t.value for t in tokens[1:] if t.kind == WORD]
        lowered = [w.lower() for w in words]
        starts = [i for i, w in enumerate(lowered) if _QUERY_SQL.match(w)]
        statement = " ".join(words[starts[0]:]) if starts else ""
    return bool(_QUERY_SQL.match(statement)) and ";" not in statement.rstrip().rstrip(";")


@lru_cache(maxsize=4096)
def command_kind(registry: Registry, text: str) -> tuple[str, bool]:
    """(command name or '' if unknown, whether it leaves the node unchanged).

    An assignment (`x = ...`) changes the dictionary; `sql` reads when its statement is a query.
    Raises GrammarError if the text does not parse.  Cached: dashboards send the same few
    commands again and again (commands are registered at import, before any request).
    """
    target = split_output_target(text.strip()) if text.strip().startswith("[") else None
    if target is not None:  # `[file = f] = <command>` is that command with those options: judge it
        return command_kind(registry, with_options(target[1], target[0]))
    tokens = _tokens(text)
    if not tokens:
        return "", True
    if len(tokens) >= 2 and tokens[0].kind == WORD and tokens[1].kind == "eq":
        return "assignment", False
    if tokens[0].is_word("sql"):  # judged by its statement, registered yet or not
        return "sql", is_query_sql(tokens)
    match = registry.match(tokens)
    if match is None:
        if len(tokens) >= 3 and tokens[0].is_word("set") and tokens[2].kind == "eq":
            return "assignment", False  # `set key = value`, as the node reads it
        return "", True  # unknown: running it changes nothing (the node answers 404 with hints)
    cmd, _ = match
    return cmd.name, cmd.readonly


def check_method(registry: Registry, method: str, text: str) -> None:
    """A GET may only run commands that change nothing; a wrong verb is a 400 that says which to use.

    POST runs every command (as AnyLog's current docs say).
    """
    if method != "GET":
        return
    name, readonly = command_kind(registry, text)
    if readonly or name in GET_OR_POST:
        return
    raise RequestError(f"'{name}' changes the node: send it with POST, not GET "
                       f"(curl -X POST -H 'command: {text[:60]}' ...)")


def check_read_only(registry: Registry, text: str) -> None:
    """On a read-only server, refuse commands that change the node (and sql that writes)."""
    name, readonly = command_kind(registry, text)
    if not readonly:
        what = "sql that writes" if name == "sql" else f"'{name}'"
        raise ReadOnlyError(f"this REST server is read only: {what} changes the node and is refused "
                            f"(use the console, or a REST server without 'read only = true')")
