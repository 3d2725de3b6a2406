"""`run console` / `exit console` and `run manhole` / `exit manhole`."""

from __future__ import annotations

from twisted.internet.error import CannotListenError

from anylog_tw.base.errors import CommandError, ServiceError
from anylog_tw.base.registry import Option, command
from anylog_tw.commands._limits import limit_options, read_limits
from anylog_tw.front.console import ConsoleService, ManholeService, ShellFactory, manhole_factory
from anylog_tw.net.endpoints import listen_guarded, tcp_server_endpoint
from anylog_tw.net.limits import ConnectionGuard, ConnectionLimits

LOOPBACK = "127.0.0.1"
# Sessions are people at a terminal: few, and given minutes to type their first command.
CONSOLE_LIMITS = ConnectionLimits(max_connections=16, max_per_address=16, idle_timeout=300.0)


async def listen(node, ip: str, port: int, factory, what: str, gate=None):
    try:
        if gate is not None:
            return await listen_guarded(node.reactor, ip, port, factory, gate)
        return await tcp_server_endpoint(node.reactor, ip, port).listen(factory)
    except CannotListenError as e:
        raise CommandError(f"{what} cannot listen on {ip}:{port}: {e.socketError}") from None


@command("run console", grant="admin", usage="run console [where ip = 127.0.0.1 and port = 32051 and max connections = 16 and "
                              "max per address = 16 and idle timeout = 300]",
         text="Start the telnet command console: several sessions at once, with history (arrow keys) and line "
              "editing. Connect with 'telnet 127.0.0.1 32051'; 'quit' ends a session. Commands are the same as "
              "on every other interface. At most 'max connections' sessions are open; a session that types no command "
              "within 'idle timeout' seconds is closed.",
         examples=("run console", "run console where ip = 127.0.0.1 and port = 32051"),
         keywords=("cli", "background processes"),
         options=(Option("ip", default=LOOPBACK, help="interface to listen on"),
                  Option("port", kind="int", default=32051, help="TCP port (0 picks a free one)"),
                  *limit_options(CONSOLE_LIMITS)))
async def run_console(call):
    node = call.node
    node.check_free(ConsoleService.name)
    limits = read_limits(call.opts)
    factory = ShellFactory(node)
    gate = node.component(ConnectionGuard).gate(ConsoleService.name, limits)
    port = await listen(node, call.opts["ip"], call.opts["port"], factory, "the console", gate)
    service = ConsoleService(port, factory)
    service.gate = gate
    node.add_process(service)
    host, number = service.address
    return f"Console listening on {host}:{number}"


@command("exit console", grant="admin", usage="exit console", text="Stop the telnet console and close its sessions.",
         examples=("exit console",), keywords=("cli", "background processes"))
async def exit_console(call):
    node = call.node
    if node.process(ConsoleService.name) is None:
        raise ServiceError("Console is not running")
    # Let the reply reach a session that asked for its own console to close.
    node.reactor.callLater(0, node.stop_process_now, ConsoleService.name)
    return "Console stopping"


@command("run manhole", grant="owner", usage="run manhole where port = P and user = U and password = W [and ip = 127.0.0.1]",
         text="Start a Python REPL into the live node, for debugging: telnet to the port and log in; 'node' and "
              "'reactor' are in scope. It listens on loopback unless 'ip' says otherwise and never runs without a "
              "password.",
         examples=("run manhole where port = 32052 and user = admin and password = s3cret",),
         keywords=("debug", "background processes"),
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


@command("exit manhole", grant="owner", usage="exit manhole", text="Stop the Python manhole.",
         examples=("exit manhole",), keywords=("debug", "background processes"))
async def exit_manhole(call):
    await call.node.stop_process(ManholeService.name)
    return "Manhole stopped"
