"""`run console` / `exit console` and `run manhole` / `exit manhole`."""

from __future__ import annotations

from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from anylog_tw.base.errors import CommandError, ServiceError
from anylog_tw.base.registry import Option, command
from anylog_tw.commands._limits import limit_options, read_limits
from anylog_tw.commands.rest import read_credentials, secure_default
from anylog_tw.front.console import ConsoleService, ManholeService, ShellFactory, manhole_factory
from anylog_tw.net.endpoints import listen_guarded, tcp_server_endpoint
from anylog_tw.net.limits import ConnectionGuard, ConnectionLimits

LOOPBACK = "127.0.0.1"
_log = Logger()
HOW_TO_LOGIN = ("give 'user = .. and password = ..' (password = $ENV_VAR keeps it out of the script) or "
                "'users = <file>' (python -m anylog_tw.front.rest_users add <file> <name> <role>); see docs/security.md")
# Sessions are people at a terminal: few, and given minutes to type their first command.
CONSOLE_LIMITS = ConnectionLimits(max_connections=16, max_per_address=16, idle_timeout=300.0)


async def listen(node, ip: str, port: int, factory, what: str, gate=None):
    try:
        if gate is not None:
            return await listen_guarded(node.reactor, ip, port, factory, gate)
        return await tcp_server_endpoint(node.reactor, ip, port).listen(factory)
    except CannotListenError as e:
        raise CommandError(f"{what} cannot listen on {ip}:{port}: {e.socketError}") from None


@command("run console", usage="run console [where ip = 127.0.0.1 and port = 32051 and max connections = 16 and "
                              "max per address = 16 and idle timeout = 300 and user = U and password = W and "
                              "role = admin and users = F and auth = none]",
         text="Start the telnet command console: several sessions at once, with history (arrow keys) and line "
              "editing. Connect with 'telnet 127.0.0.1 32051'; 'quit' ends a session. Commands are the same as "
              "on every other interface. Without credentials it listens on loopback only and a session is the node's "
              "administrator; with 'user' and 'password' (role admin unless 'role' says reader or writer) or a "
              "users file (the REST server's format), a session logs in first and runs with its user's role (three "
              "wrong logins hang up). On another interface it refuses to start without credentials unless "
              "'auth = none' says so on purpose. At most 'max connections' sessions are open; a session that types "
              "no command within 'idle timeout' seconds is closed.",
         examples=("run console", "run console where ip = 127.0.0.1 and port = 32051",
                   "run console where ip = !ip and port = 32051 and users = !rest_users"),
         keywords=("cli", "background processes"), grant="admin",
         options=(Option("ip", default=LOOPBACK, help="interface to listen on"),
                  Option("port", kind="int", default=32051, help="TCP port (0 picks a free one)"),
                  Option("user", help="login user (with password)"),
                  Option("password", help="login password (write $ENV_VAR to keep it out of the script)"),
                  Option("role", choices=("reader", "writer", "admin"), default="admin", help="the role of 'user'"),
                  Option("users", help="users file: name:role:scrypt-hash lines (python -m anylog_tw.front.rest_users)"),
                  Option("auth", choices=("none", "required"), default="required",
                         help="'none' listens beyond loopback without a login, on purpose (a warning)"),
                  *limit_options(CONSOLE_LIMITS)))
async def run_console(call):
    node = call.node
    node.check_free(ConsoleService.name)
    limits = read_limits(call.opts)
    credentials = await read_credentials(node, call.opts)
    auth_none = secure_default(call.opts["ip"], call.opts["port"], credentials, call.opts, "the console", HOW_TO_LOGIN)
    factory = ShellFactory(node, credentials, auth_none)
    gate = node.component(ConnectionGuard).gate(ConsoleService.name, limits)
    port = await listen(node, call.opts["ip"], call.opts["port"], factory, "the console", gate)
    service = ConsoleService(port, factory)
    service.gate = gate
    node.add_process(service)
    host, number = service.address
    if auth_none:
        _log.warn("the console on {where} has no login (auth = none): anyone who reaches it administers the node",
                  where=f"{host}:{number}")
        return f"Console listening on {host}:{number} WITHOUT a login (auth = none)"
    return f"Console listening on {host}:{number}"


@command("exit console", usage="exit console", text="Stop the telnet console and close its sessions.",
         examples=("exit console",), keywords=("cli", "background processes"), grant="admin")
async def exit_console(call):
    node = call.node
    if node.process(ConsoleService.name) is None:
        raise ServiceError("Console is not running")
    # Let the reply reach a session that asked for its own console to close.
    node.reactor.callLater(0, node.stop_process_now, ConsoleService.name)
    return "Console stopping"


@command("run manhole", usage="run manhole where port = P and user = U and password = W [and ip = 127.0.0.1]",
         text="Start a Python REPL into the live node, for debugging (owner only: the node's own prompt or a startup "
              "script, never REST, the console or a peer): telnet to the port and log in; 'node' and "
              "'reactor' are in scope. It listens on loopback unless 'ip' says otherwise and never runs without a "
              "password.",
         examples=("run manhole where port = 32052 and user = admin and password = s3cret",),
         keywords=("debug", "background processes"), grant="owner",
         options=(Option("port", kind="int", required=True), Option("user", required=True),
                  Option("password", required=True), Option("ip", default=LOOPBACK)))
async def run_manhole(call):
    node = call.node
    node.check_free(ManholeService.name)
    if not call.opts["password"] or not call.opts["user"]:
        raise CommandError("the manhole needs a non-empty user and password")
    factory = manhole_factory(node, call.opts["user"], call.opts["password"])
    port = await listen(node, call.opts["ip"], call.opts["port"], factory, "the manhole")
    service = ManholeService(port, factory)
    node.add_process(service)
    host, number = service.address
    return f"Manhole listening on {host}:{number}"


@command("exit manhole", usage="exit manhole", text="Stop the Python manhole.",
         examples=("exit manhole",), keywords=("debug", "background processes"), grant="owner")
async def exit_manhole(call):
    await call.node.stop_process(ManholeService.name)
    return "Manhole stopped"
