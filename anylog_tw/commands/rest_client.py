"""`rest get|post|put|delete|view where url = ...`: this node as an HTTP client.

Every where-clause key that is not one of the client's options goes out as a header, as in
AnyLog, so the clause is read here rather than by the registry (the commands are `raw`).  The
request building and reply mapping are in `anylog_tw.net.http_client`; this module reads the
call, sends, and saves a reply to a file through the thread pool.

AnyLog writes a reply to a file with `[file=path, key=k, show=true] = rest get ...`; the node turns
that line into `rest get ... and file = path and key = k` (`grammar.split_output_target`), so the
options are read here like any other.
"""

from __future__ import annotations

import os

from twisted.logger import Logger

from anylog_tw.base import grammar
from anylog_tw.base.errors import CommandError, OptionError, PeerError
from anylog_tw.base.grammar import JSON, STRING
from anylog_tw.base.registry import command
from anylog_tw.base.reply import JSON_FORMAT, Reply
from anylog_tw.commands.files import path_check
from anylog_tw.ingest import fileops
from anylog_tw.net import http_client
from anylog_tw.net.http_exchange import exchange

log = Logger()
KEYWORDS = ("rest", "network")
_THREAD_ABOVE = 64 * 1024  # replies bigger than this are parsed and saved off the reactor thread

_COMMON = ("[and timeout = 20 seconds and max body = 64MB and user = U and password = P "
           "and headers = {\"Name\": \"value\"} and format = json and <header> = <value> ...]")
_EXPLAIN = (
    "Every key of the where clause that is not an option of the client is sent as an HTTP header (command = "
    "\"get status\" and User-Agent = AnyLog/1.23 drive another node's REST server); headers = {...} adds headers "
    "by JSON object, also those named like an option (e.g. a 'timeout' header). user and password send basic "
    "authentication. A JSON reply answers JSON, anything else text; an HTTP status that is not 2xx is an error "
    "naming the URL, the status and the start of the body. The whole exchange must end within 'timeout' "
    "(20 seconds) and a reply over 'max body' (64MB) is dropped. Only http and https URLs. ")
_SAVE = ("file = path writes the reply there instead (atomically; an existing file is kept unless overwrite = "
         "true): a JSON list one element per line, as the operator takes rows; key = k takes that key of a JSON "
         "object first. ")


def where_pairs(call) -> list[tuple[str, str]]:
    """The where clause as (key, text) pairs: quoted values as written, others with `!key` resolved.

    An unquoted value is taken from the line as typed, so `url = http://h/?a=1&b=2` keeps its
    `=` signs (the tokenizer splits words there).
    """
    positional, clause = grammar.split_where(call.tokens)
    usage = f"{call.command.name} where url = http://host:port/path [and <header> = <value> ...]"
    if positional:
        raise OptionError(f"'{call.command.name}' takes its options after 'where' ({usage})")
    if clause is None:
        raise OptionError(f"'{call.command.name}' needs a where clause with the url ({usage})")
    node = call.node
    pairs = []
    for key, tokens in grammar.parse_where(clause):
        if len(tokens) == 1 and tokens[0].kind == STRING:
            text = tokens[0].value
        elif len(tokens) == 1 and tokens[0].kind == JSON:
            text = grammar.substitute_json(tokens[0].value, node.lookup_for(call.origin), call.env)
        else:
            text = call.substitute(call.text[tokens[0].start:tokens[-1].end])
        pairs.append((key, text))
    return pairs


def save_reply(path: str, value, body: bytes, keyed: bool, overwrite: bool) -> tuple[int, int | None]:
    """Write the reply to `path` through a temporary file: (bytes written, rows or None)."""
    if os.path.isdir(path):
        raise CommandError(f"file = {path!r} is a directory: give a file name")
    content, rows = http_client.file_content(value, body, keyed)
    fileops.write_atomically(path, lambda out: out.write(content), overwrite=overwrite)
    return len(content), rows


async def rest_call(call, verb: str) -> Reply:
    request, output = http_client.build_request(verb, where_pairs(call))
    dest = path_check(call)(output.file) if output.file is not None else None

    try:
        response = await exchange(call.node.reactor, request, verb)
    except PeerError as e:
        if output.validate:
            return Reply.of_text("false")
        log.info("{message}", message=e.message)
        raise
    if output.validate:
        return Reply.of_text("true" if response.code == 200 else "false")
    if not 200 <= response.code < 300:
        raise http_client.status_error(verb, request.url, response.code, response.phrase, response.body,
                                       response.content_type)
    big = len(response.body) > _THREAD_ABOVE
    if big:
        value = await call.node.in_thread(http_client.reply_value, response.body, response.content_type)
    else:
        value = http_client.reply_value(response.body, response.content_type)
    value = http_client.select_key(value, output.key, request.url)
    if dest is not None:
        size, rows = await call.node.in_thread(save_reply, dest, value, response.body, output.key is not None,
                                     output.overwrite)
        what = f"{rows:,} rows ({size:,} bytes)" if rows is not None else f"{size:,} bytes"
        return Reply.of_text(f"Wrote {what} from {request.url} to {dest}")
    reply = Reply.of_text(value) if isinstance(value, str) else Reply.of_json(value)
    if output.fmt == "json":
        reply.fmt = JSON_FORMAT
    return reply


def _register(verb: str, text: str, examples: tuple[str, ...]) -> None:
    async def handler(call):
        return await rest_call(call, verb)

    handler.__name__ = f"rest_{verb}"
    save = " [and file = path and key = k and overwrite = true]" if verb == "get" else ""
    validate = " [and validate = true]" if verb == "get" else ""
    body = " [and body = B]" if verb != "get" else ""
    command(f"rest {verb}", grant="admin", usage=f"rest {verb} where url = http(s)://host:port/path{body}{save}{validate} {_COMMON}",
            text=text, examples=examples, keywords=KEYWORDS, raw=True)(handler)


_register("get", "Send an HTTP GET from this node and answer the reply. " + _EXPLAIN + _SAVE +
          "validate = true answers only true (the URL replies 200) or false. Over this node's REST server it needs "
          "POST, as it reaches out and may write a file.",
          ('rest get where url = http://127.0.0.1:32049 and command = "get status" and User-Agent = AnyLog/1.23',
           "info = rest get where url = https://ipinfo.io/json",
           ("rest get where url = https://datahub.io/core/london-air-quality/r/1.json and key = results and "
            "file = !prep_dir/london.readings.json"),
           "rest get where url = http://10.0.0.78:32049 and validate = true"))
_register("post", "Send an HTTP POST from this node with 'body' (text/plain unless a Content-Type header says "
          "otherwise) and answer the reply. " + _EXPLAIN,
          ('rest post where url = http://127.0.0.1:32049 and command = "reset error log" and User-Agent = AnyLog/1.23',
           "rest post where url = !slack_url and body = !message and headers = {\"Content-Type\": \"application/json\"}"))
_register("put", "Send an HTTP PUT from this node with 'body' and answer the reply; dbms, table, mode and type go as "
          "headers, so it feeds another node's REST PUT. " + _EXPLAIN,
          (('rest put where url = http://10.0.0.78:32049 and dbms = lsl_demo and table = ping_sensor and mode = file '
            'and body = \'{"value": 50, "timestamp": "2019-10-14T17:22:13.0510101Z"}\''),))
_register("delete", "Send an HTTP DELETE from this node and answer the reply. " + _EXPLAIN,
          ("rest delete where url = http://10.0.0.90:59880/api/v2/event/age/86400000000000",))


@command("rest view", grant="read", usage="rest view where url = http(s)://host:port/path [and method = get|post|put|delete "
                            "and body = B and user = U and password = P and headers = {...} and format = json "
                            "and <header> = <value> ...]",
         text="Show the request that 'rest <method>' would send with these options (method, URL, headers as they go "
              "out, body, timeout, body limit) without sending anything; a basic-auth password is shown as ***.",
         examples=('rest view where url = http://127.0.0.1:32049 and command = "get status" and User-Agent = AnyLog/1.23',
                   "rest view where method = post and url = http://127.0.0.1:32049 and body = hello and format = json"),
         keywords=KEYWORDS, raw=True, readonly=True)
def rest_view(call):
    request, output = http_client.build_request("view", where_pairs(call))
    described = http_client.describe_request(request)
    if output.fmt == "json":
        return Reply.of_json(described)
    lines = [f"{request.method} {request.url}"]
    lines += [f"{name}: {value}" for name, value in described["headers"].items()]
    if described["body"] is not None:
        lines += ["", described["body"]]
    lines += ["", f"(not sent; timeout {request.timeout:g} seconds, max body {request.max_body:,} bytes)"]
    return Reply.of_text("\n".join(lines))
