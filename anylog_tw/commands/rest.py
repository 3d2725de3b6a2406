"""`run rest server`, `exit rest`, `get rest calls`, `get rest server info`."""

from __future__ import annotations

import os

from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from anylog_tw.base.errors import CommandError, OptionError, ServiceError
from anylog_tw.base.registry import FORMAT, Option, command
from anylog_tw.base.reply import Reply
from anylog_tw.base.timefmt import format_utc
from anylog_tw.commands._limits import limit_options, read_limits
from anylog_tw.front.rest_auth import Credentials
from anylog_tw.front.rest_browser import is_loopback, split_list
from anylog_tw.front.rest_calls import MAX_ROWS, RestCalls, method_label
from anylog_tw.front.rest_users import load_users
from anylog_tw.front.rest_request import DEFAULT_MAX_BODY
from anylog_tw.net.endpoints import BACKLOG, listen_guarded
from anylog_tw.net.limits import ConnectionGuard, ConnectionLimits

REST = "REST"  # the process name (REST), kept here so this module stays light to import
_log = Logger()
HOW_TO_AUTH = ("give 'user = .. and password = ..' (password = $ENV_VAR keeps it out of the script), "
               "'token = ..', or 'users = <file>' (python -m anylog_tw.front.rest_users add <file> <name> <role>); "
               "see docs/security.md")


def _server():
    """The REST server's modules, imported on first use: Klein and Werkzeug add about 5.7 MB of RSS
    to a node (measured: importing front.rest after node), which a node without REST should not pay."""
    from anylog_tw.front import rest, rest_site

    return rest, rest_site

DEFAULT_PORT = 32049
REST_LIMITS = ConnectionLimits(max_connections=1024, max_per_address=256, idle_timeout=20.0)
LOOPBACK = "127.0.0.1"


def listen_address(opts: dict, args: list[str]) -> tuple[str, int, str]:
    """(interface, port, announced ip:port) from AnyLog's options: pure, so it is tested alone.

    Both IPs given: listen on the internal one; one given: on that one; `bind = false`: on every
    interface.  The port is the internal one, else the external one, else 32049.
    """
    ip = args[0] if len(args) > 0 else None
    port_text = args[1] if len(args) > 1 else None
    external_ip = opts.get("external_ip") or ip or ""
    internal_ip = opts.get("internal_ip") or ""
    port = opts.get("internal_port")
    if port is None:
        port = opts.get("external_port")
    if port is None and port_text is not None:
        try:
            port = int(port_text)
        except ValueError:
            raise OptionError(f"the port is {port_text!r}: give a number (run rest server <ip> <port> [timeout])") \
                from None
    if port is None:
        port = DEFAULT_PORT
    if not 0 <= port <= 65535:
        raise OptionError(f"port {port} is out of range (0 to 65535; 0 picks a free port)")
    interface = internal_ip or external_ip or LOOPBACK
    if opts.get("bind") is False:
        interface = ""
    announced_port = opts.get("external_port") if opts.get("external_port") is not None else port
    return interface, port, f"{external_ip or interface or LOOPBACK}:{announced_port}"


async def read_credentials(node, opts: dict) -> Credentials:
    """The identities a server (REST or console) accepts, from its options; the users file is read once."""
    if bool(opts.get("user")) != bool(opts.get("password")):
        raise OptionError("basic auth needs both 'user' and 'password'")
    users = await node.in_thread(load_users, opts["users"]) if opts.get("users") else None
    if opts.get("users") and not users:
        raise OptionError(f"the users file {opts['users']} has no users: add one with "
                          f"'python -m anylog_tw.front.rest_users add {opts['users']} <name> <role>'")
    return Credentials(user=opts.get("user") or "", password=opts.get("password") or "",
                       role=opts.get("role") or "admin", token=opts.get("token") or "",
                       token_role=opts.get("token_role") or "admin", users=users, in_thread=node.in_thread)


def secure_default(interface: str, port: int, credentials: Credentials, opts: dict, what: str = "the REST server",
                   how: str = HOW_TO_AUTH) -> bool:
    """Whether the server runs without authentication beyond loopback on purpose (`auth = none`);
    refuses to start one that would do so by default."""
    if opts.get("auth") == "none" and credentials.required:
        raise OptionError("'auth = none' and credentials contradict each other: drop one")
    if credentials.required or is_loopback(interface or "0.0.0.0"):
        return False
    if opts.get("auth") == "none":
        return True
    raise CommandError(f"{what} would listen on {interface or 'every interface'}:{port} without authentication: "
                       f"{how}; or listen on 127.0.0.1, or say 'auth = none' to let anyone who reaches it in")


def _tls_files(node, opts: dict) -> tuple[str, str]:
    cert, key = opts.get("cert"), opts.get("key")
    if not cert and opts.get("server_org"):
        pem = node.dirs.get("pem_dir", "")
        org = opts["server_org"]
        cert = os.path.join(pem, f"server-{org}-public-key.crt")
        key = key or os.path.join(pem, f"server-{org}-private-key.key")
    if not cert or not key:
        raise OptionError("ssl = true needs 'cert' and 'key' (PEM files), or 'server_org' naming "
                          "server-<org>-public-key.crt and server-<org>-private-key.key in !pem_dir")
    return cert, key


def _tls_options(cert: str, key: str):
    """Server TLS options from PEM files; a bad or mismatched pair is an error naming the files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from twisted.internet import ssl

    try:
        with open(cert, "rb") as f:
            cert_pem = f.read()
        with open(key, "rb") as f:
            key_pem = f.read()
    except OSError as e:
        raise CommandError(f"cannot read the TLS files: {e.filename}: {e.strerror}") from None
    try:
        options = ssl.CertificateOptions(privateKey=serialization.load_pem_private_key(key_pem, None),
                                         certificate=x509.load_pem_x509_certificate(cert_pem))
        options.getContext()  # checks that the key matches the certificate
        return options
    except Exception as e:  # OpenSSL's errors are many and obscure: name the files instead
        raise CommandError(f"cannot use the certificate {cert} with the key {key}: {e}") from None


_OPTIONS = (
    Option("external_ip", help="the IP the node announces"),
    Option("external_port", kind="int", help="the port the node announces (and listens on without internal_port)"),
    Option("internal_ip", help="the IP to listen on"),
    Option("internal_port", kind="int", help="the port to listen on"),
    Option("bind", kind="bool", default=True, help="false listens on every interface"),
    Option("timeout", kind="seconds", default=20.0, help="seconds a command may take (0 waits forever)"),
    Option("threads", kind="int", default=5, help="accepted for AnyLog scripts; requests do not hold threads"),
    Option("ssl", kind="bool", default=False, help="serve HTTPS"),
    Option("cert", help="certificate PEM file (ssl)"),
    Option("key", help="private key PEM file (ssl)"),
    Option("ca_org", help="accepted for AnyLog scripts"),
    Option("server_org", help="names server-<org>-public-key.crt / -private-key.key in !pem_dir (ssl)"),
    Option("user", help="basic auth user (with password)"),
    Option("password", help="basic auth password (write $ENV_VAR to keep it out of the script)"),
    Option("role", choices=("reader", "writer", "admin"), default="admin", help="the role of 'user' (admin)"),
    Option("token", help="bearer token"),
    Option("token_role", choices=("reader", "writer", "admin"), default="admin", help="the role of 'token' (admin)"),
    Option("users", help="users file: name:role:scrypt-hash lines (python -m anylog_tw.front.rest_users add)"),
    Option("auth", choices=("none", "required"), default="required",
           help="'none' listens beyond loopback without authentication, on purpose (a warning)"),
    Option("cors", help="browser origins answered with CORS headers, e.g. https://grafana.example (none by default)"),
    Option("hosts", help="extra names the Host header may carry (the node's addresses always may)"),
    Option("read only", kind="bool", default=False, help="refuse commands that change the node, and PUT"),
    Option("max body", kind="size", default=DEFAULT_MAX_BODY, help="the largest body taken (413 above)"),
    *limit_options(REST_LIMITS),
)


@command("run rest server",
         usage="run rest server [ip] [port] [timeout] | run rest server where external_ip = IP and external_port = P "
               "[and internal_ip = IP and internal_port = P and bind = true and timeout = 20 and threads = 5 and "
               "ssl = false and cert = F and key = F and user = U and password = W and token = T and "
               "read only = false and max body = 64MB and max connections = 1024 and max per address = 256 and "
               "idle timeout = 20 and role = admin and token_role = admin and users = F and auth = none and "
               "cors = ORIGINS and hosts = NAMES]",
         text="Start the REST server: AnyLog's header contract (the command in the 'command' header, GET for "
              "commands that change nothing, POST for all, PUT for data), plus /health, /metrics and "
              "/openapi.json. It listens on the internal IP when both are given, on all interfaces with "
              "bind = false, on 127.0.0.1 by default, with a backlog of 1024. user and password (basic, role admin "
              "unless 'role' says reader or writer), token (bearer, 'token_role') or a users file (name:role:scrypt "
              "hash lines, written by 'python -m anylog_tw.front.rest_users add') protect every route but /health; "
              "readers run read commands, writers add data, admins run everything but the Python manhole. Without "
              "credentials the server listens on loopback only and callers read and write but never administer; on "
              "another interface it refuses to start unless 'auth = none' says so on purpose. A GET holds at most "
              "read. The Host header must name the node (or one of 'hosts'), else 421; no CORS header is sent "
              "unless 'cors' lists the browser origins; a POST runs commands only with the 'command' header or "
              "a JSON body (415 otherwise). ssl = true serves HTTPS; read only = true refuses commands "
              "that change the node. At most 'max connections' are open ('max per address' from one IP); a request must "
              "arrive within 'idle timeout' seconds (a big body as long as it keeps coming); when the listener or "
              "the node's file descriptors run short, the connection that waited longest without finishing a "
              "request is dropped first.",
         examples=("run rest server !ip 32049",
                   "run rest server where external_ip = !external_ip and external_port = 32049 and "
                   "internal_ip = !ip and internal_port = 32049 and timeout = 30",
                   "run rest server where internal_ip = 127.0.0.1 and internal_port = 32049 and user = admin and "
                   "password = $ANYLOG_REST_PASSWORD and read only = true",
                   "run rest server where external_ip = !external_ip and external_port = 32049 and bind = false and "
                   "users = !rest_users and cors = https://grafana.example"),
         keywords=("rest", "network", "background processes"), options=_OPTIONS, nargs=(0, 3), grant="admin")
async def run_rest_server(call):
    node = call.node
    opts = call.opts
    node.check_free(REST)
    interface, port, announced = listen_address(opts, call.args)
    timeout = opts["timeout"]
    if len(call.args) > 2 and "timeout" not in call.given:
        try:
            timeout = float(call.args[2])
        except ValueError:
            raise OptionError(f"the timeout is {call.args[2]!r}: give seconds") from None
    if timeout < 0:
        raise OptionError("timeout cannot be negative (0 waits forever)")
    if opts["max body"] <= 0:
        raise OptionError("'max body' must be positive (e.g. 64MB)")
    limits = read_limits(opts)
    rest, rest_site = _server()
    credentials = await read_credentials(node, opts)
    auth_none = secure_default(interface, port, credentials, opts)
    config = rest.RestConfig(timeout=timeout, threads=opts["threads"], read_only=opts["read only"],
                             max_body=opts["max body"], ssl=opts["ssl"], external=announced, interface=interface,
                             auth_none=auth_none, cors=split_list(opts["cors"] or ""),
                             hosts=split_list(opts["hosts"] or ""))
    api = rest.RestApi(node, config, credentials)
    site = rest_site.RestSite(api.resource(), max_body=config.max_body, reactor=node.reactor,
                    on_refused=lambda request: api.metrics.rest_calls.labels(
                        route="/", method=method_label(request.method.decode("latin-1")), status="413").inc())
    tls = _tls_options(*_tls_files(node, opts)) if config.ssl else None
    gate = node.component(ConnectionGuard).gate(REST, limits)
    try:
        listening = await listen_guarded(node.reactor, interface, port, site, gate, tls)
    except CannotListenError as e:
        raise CommandError(f"the REST server cannot listen on {interface or '0.0.0.0'}:{port}: {e.socketError}") \
            from None
    service = rest_site.RestService(listening, site, api, announced)
    service.gate = gate
    node.add_process(service)
    host, number = service.address
    scheme = "https" if config.ssl else "http"
    if auth_none:
        _log.warn("the REST server on {where} has no authentication (auth = none): anyone who reaches it runs "
                  "read and write commands", where=f"{host}:{number}")
        return (f"REST server listening on {scheme}://{host}:{number} WITHOUT authentication (auth = none): "
                f"anyone who reaches it can read and write")
    return f"REST server listening on {scheme}://{host}:{number}"


@command("exit rest", usage="exit rest", text="Stop the REST server and close its connections.",
         examples=("exit rest",), keywords=("rest", "background processes"), grant="admin")
async def exit_rest(call):
    node = call.node
    if node.process(REST) is None:
        raise ServiceError("REST is not running")
    # Let the reply of a REST caller that stops its own server go out first.
    node.reactor.callLater(0, node.stop_process_now, REST)
    return "REST server stopping"




@command("get rest calls", usage="get rest calls [where format = json]",
         text="Count the REST calls per caller (the client product of User-Agent) and verb: processed, errors, the "
              f"last error, the first and last call and the last caller's address. At most {MAX_ROWS} rows are kept: "
              "the callers used least recently, agents that are not a short product name and unusual verbs are "
              "counted under 'other'.",
         examples=("get rest calls", "get rest calls where format = json"),
         keywords=("rest", "monitor"), options=(FORMAT,), readonly=True, grant="read")
def get_rest_calls(call):
    calls = call.node.component(RestCalls)
    rows = []
    for (caller, method), r in sorted(calls.rows.items()):
        rows.append((caller, method, r["processed"], r["errors"], r["last_error"], format_utc(r["first"]),
                     format_utc(r.get("last")), r.get("last_caller", "")))
    return Reply.of_table(("Caller", "Call", "Processed", "Errors", "Last Error", "First Call", "Last Call",
                           "Last Caller"), rows)


@command("get rest server info", usage="get rest server info [where format = json]",
         text="Show how the REST server runs: address, SSL, timeout, threads, authentication, read only, body limit, "
              "open connections and the connection limits.",
         examples=("get rest server info", "get rest server info where format = json"),
         keywords=("rest", "monitor"), options=(FORMAT,), readonly=True, grant="read")
def get_rest_server_info(call):
    service = call.node.process(REST)
    if service is None:
        raise ServiceError("REST is not running (start it with 'run rest server')")
    c = service.api.config
    host, port = service.address
    info = {"connection": f"{host}:{port}", "external": c.external, "is_ssl": c.ssl, "timeout": c.timeout,
            "workers_count": c.threads, "authentication": service.api.credentials.scheme,
            "identities": service.api.auth_text(), "cors": ", ".join(c.cors) or "none",
            "hosts": ", ".join(sorted(service.api.hosts.allowed)),
            "read_only": c.read_only, "max_body": c.max_body, "open_connections": len(service.factory.channels),
            "backlog": BACKLOG}
    if service.gate is not None:
        limits = service.gate.limits
        info.update(max_connections=limits.max_connections, max_per_address=limits.max_per_address,
                    idle_timeout=limits.idle_timeout)
    return Reply.of_table(("Key", "Value"), list(info.items()), data=info)
