"""The node: one process of the network, and the one way to make it do anything.

The console, REST, peers, scheduled tasks and startup scripts all call `Node.execute(text,
origin)` and get a `Deferred[Reply]`; nothing else dispatches commands.  The node is also the
root `MultiService`: every background process (`run tcp server`, `run operator` ...) is a child
service named as `get processes` shows it.
"""

from __future__ import annotations

import inspect
import os
import re
import socket
from typing import Any, Callable

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from anylog_tw.base import grammar, layout
from anylog_tw.base.errors import AnyLogError, CommandError, GrammarError, ServiceError
from anylog_tw.base.call import Call, no_environment
from anylog_tw.base.eventlog import EventLog, clip, masked
from anylog_tw.base.grammar import EQ, JSON, STRING, Token
from anylog_tw.base.metrics import Metrics
from anylog_tw.base.origin import LOCAL, GrantError, Origin
from anylog_tw.base.origin import script as script_origin
from anylog_tw.base.registry import Registry, command_grant, is_assignment, token_text
from anylog_tw.base.reply import JSON_FORMAT, Reply
from anylog_tw.commands import load_commands
from anylog_tw.ingest.streamer import Streamer
from anylog_tw.metadata.layer import Metadata
from anylog_tw.net.peers import Peers
from anylog_tw.services.scheduler_service import Schedulers, attach
from anylog_tw.storage.engines import Databases

# The rows of `get processes`, in order; other running processes are listed after them.
PROCESS_ROWS = ("TCP", "REST", "Operator", "Publisher", "Blockchain Sync", "Scheduler", "HA", "Console")

# The node's shared parts, made in this order when the node is built and closed in the reverse
# order when it stops, after every background process has stopped: the metrics registry first
# (everything counts into it), then the databases, the metadata (which may keep its ledger in a
# database), the peer connections (the metadata asks peers through them), the streaming buffers
# (they write files for the operator) and the schedulers (their tasks run commands over all of it).
PARTS = (Metrics, Databases, Metadata, Peers, Streamer, Schedulers)

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_ERROR = 16 * 1024  # characters of an error reply (an error that quotes a huge input says where it starts)


class Node(MultiService):
    """A node: its name, home, dictionary, logs and background processes."""

    log = Logger()

    def __init__(self, home: str, name: str = "anylog-node", reactor=None, registry: Registry | None = None,
                 environ: dict | None = None, scripts: tuple[str, ...] | list[str] = (),
                 on_exit: Callable[[], None] | None = None):
        MultiService.__init__(self)
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.home = os.path.abspath(home)
        self.name = name
        self.registry = registry if registry is not None else load_commands()
        self.environ = environ if environ is not None else os.environ
        self.scripts = list(scripts)
        self.events = EventLog(1000, clock=reactor.seconds)
        self.errors = EventLog(1000, clock=reactor.seconds)
        self.started_at = reactor.seconds()
        self.commands_run = 0
        self._components: dict[type, Any] = {}
        self._stopping: Deferred | None = None
        self._on_exit = on_exit
        hostname = socket.gethostname()
        self.dictionary: dict[str, str] = {
            "node_name": name,
            "hostname": hostname,
            "ip": "127.0.0.1",
            "external_ip": "127.0.0.1",
        }
        self.dictionary.update(layout.work_dictionary(self.home))
        # Where the node reads and writes, fixed: the processes read these, never the dictionary, so a
        # later `watch_dir = /` by any caller cannot move them (the owner moves one: `_assign`).
        self.dirs = layout.snapshot(self.dictionary)
        self._build_parts()

    def in_thread(self, fn: Callable, *args: Any) -> Deferred:
        """Run blocking `fn(*args)` in the reactor's thread pool (inline on a memory reactor in unit tests)."""
        if hasattr(self.reactor, "getThreadPool"):
            return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn, *args)
        return maybeDeferred(fn, *args)

    # -- the node's shared parts ---------------------------------------------------------------

    def _build_parts(self) -> None:
        """Make the shared parts, in `PARTS` order, and wire what a lower layer needs from a higher one."""
        for cls in PARTS:
            self._components[cls] = cls(self)
        peers = self._components[Peers]
        self._components[Metadata].connect_ask(lambda address, text: peers.command(address, text, timeout=20.0))

    def component(self, cls: type) -> Any:
        """The node's one instance of a shared part (`PARTS`), or of a small state holder made on first use.

        The state holders made on first use (publisher distribution, REST call counts ...) have
        nothing to close; everything that holds connections, files or timers is in `PARTS`.
        """
        inst = self._components.get(cls)
        if inst is None:
            inst = self._components[cls] = cls(self)
        return inst

    # -- dictionary --------------------------------------------------------------------------

    def lookup(self, key: str) -> str | None:
        return self.dictionary.get(key)

    def substitute(self, text: str) -> str:
        """`!key` and `$VAR` as the owner sees them (the node's own code and scripts)."""
        return grammar.substitute(text, self.dictionary.get, self.environ.get)

    def substituter(self, origin: Origin) -> Callable[[str], str]:
        """`substitute` for a caller: `$VAR` reads the node's environment, and `!key` a secret key
        (`!rest_password`), only for admin and owner, as these hold what a reader must not echo back."""
        if origin.expands_env:
            return self.substitute
        return lambda text: grammar.substitute(text, self._public_lookup, no_environment)

    def lookup_for(self, origin: Origin) -> Callable[[str], str | None]:
        """The `!key` lookup for a caller (see `substituter`)."""
        return self.dictionary.get if origin.expands_env else self._public_lookup

    def _public_lookup(self, key: str) -> str | None:
        if layout.is_secret_key(key) and key in self.dictionary:
            raise GrammarError(f"'!{key}' holds a secret: it is resolved only for admin and owner callers")
        return self.dictionary.get(key)

    def set_key(self, key: str, value: str, origin: Origin) -> None:
        """Store a dictionary value for a caller, with the grant the key needs (`layout.key_grant`)."""
        self.check_key(key, origin)
        if key in layout.WORK_KEYS:
            self.move_work_directory(key, value)
        self.dictionary[key] = value

    def check_key(self, key: str, origin: Origin, doing: str = "") -> None:
        """Refuse setting `key` to a caller without the grant it needs (`doing` says how it was asked)."""
        needed = layout.key_grant(key)
        why = {"owner": " (a work directory: the owner moves it, in the startup script)",
               "admin": " (a key that names a path, a secret or the node's address)"}.get(needed, "")
        origin.require(needed, f"{doing + ' ' if doing else ''}'{key} = ..'{why}")

    def move_work_directory(self, key: str, path: str) -> None:
        """The owner moves a work directory: the snapshot gets the new path. Processes that are running
        keep the directory they started with; the ones started after use the new one."""
        entries = dict(self.dirs)
        entries[key] = path
        self.dirs = layout.snapshot(entries)

    def check_grant(self, text: str, origin: Origin, what: str, unknown: str | None = None) -> None:
        """Refuse, before anything runs, a command text that `origin` could not run itself: for the
        commands that carry another command to run later or elsewhere (`schedule`, `run client`).

        `unknown` is the grant a command this registry does not know needs: `run client` says admin
        (a newer node's command, or a typo: nobody relays what nobody checked); a schedule of one
        fails when it runs."""
        text = text.strip()
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1].strip()
        tokens = grammar.tokenize(text)
        if is_assignment(tokens):
            self.check_key(tokens[0].value, origin, what)
            tokens = tokens[2:]
        match = self.registry.match(tokens)
        if match is not None:
            origin.require(command_grant(match[0]), f"{what} '{match[0].name}'")
        elif unknown is not None and tokens:
            origin.require(unknown, f"{what} '{text.split(None, 1)[0][:40]}' (a command this node does not know)")

    def set_name(self, name: str) -> None:
        self.name = name
        self.dictionary["node_name"] = name

    # -- running commands --------------------------------------------------------------------

    async def execute(self, text: str, origin: Origin = LOCAL) -> Reply:
        """Run one command and return its Reply; errors are replies, tracebacks go to the log.

        The one way in, as a coroutine: callers in a coroutine await it, Twisted callers wrap it
        (`Deferred.fromCoroutine`), and the peer protocol drives it without a Deferred when it does
        not wait (`net/drive.py`: most peer commands finish at once).
        """
        if not isinstance(origin, Origin):  # a front door that forgot to say who asks gets nothing
            raise TypeError(f"Node.execute needs an Origin, not {type(origin).__name__} {origin!r}")
        try:
            reply = await self._dispatch(text, origin)
        except AnyLogError as e:
            # An error may quote its input, and input can be a 64 MB REST body: answer with the start of it.
            reply = Reply.of_error(clip(e.message, MAX_ERROR), e.code, e.status)
        except Exception as e:
            self.log.failure("command {command!r} from {origin} failed", command=clip(masked(text)), origin=origin)
            reply = Reply.of_error(
                f"internal error running '{text[:80]}': {type(e).__name__}: {e} (the traceback is in the log)",
                "internal", 500)
        self.commands_run += 1
        if reply.ok:
            self.events.add(origin.label, masked(text), "ok")
        else:
            logged = masked(text)
            self.events.add(origin.label, logged, "error")
            self.errors.add(origin.label, logged, masked(reply.text or ""))
        return reply

    async def _dispatch(self, text: str, origin: Origin) -> Reply:
        text = text.strip()
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1].strip()
        if not text or text.startswith("#"):
            return Reply.of_text("")
        target = grammar.split_output_target(text) if text[0] == "[" else None
        if target is not None:  # `[file = f, key = k, show = true] = rest get ...`: `show` is AnyLog's progress bar
            pairs, command = target
            pairs = [(k, self.substituter(origin)(v)) for k, v in pairs if k != "show"]  # before quoting hides the !key
            return await self._dispatch(grammar.with_options(command, pairs), origin)
        tokens = grammar.tokenize(text)
        if is_assignment(tokens):
            return await self._assign(tokens[0].value, tokens[2:], text, origin)
        match = self.registry.match(tokens)
        if match is None:
            if len(tokens) >= 3 and tokens[0].is_word("set") and tokens[2].kind == EQ:
                return await self._assign(tokens[1].value, tokens[3:], text, origin)
            raise self.registry.unknown(list(tokens))
        cmd, used = match
        if not origin.allows(cmd.grant):  # the one check, before anything of it runs (Registry.add saw a grant)
            raise GrantError(f"'{cmd.name}'", cmd.grant, origin)
        call = Call(self, cmd, tokens[used:], text, origin)
        result = cmd.handler(call)
        if inspect.isawaitable(result):
            result = await result
        reply = Reply.coerce(result)
        if call.wants_json:
            reply.fmt = JSON_FORMAT
        return reply

    async def _assign(self, key: str, value: tuple[Token, ...], text: str, origin: Origin) -> Reply:
        """`key = value`, `key = ""` (delete) and `key = <command>` (store the command's output)."""
        if not _KEY.match(key):
            raise GrammarError(f"{key!r} cannot be a dictionary key: use letters, digits and '_'")
        if not value:
            raise GrammarError(f"'{key} =' needs a value (write '{key} = \"\"' to delete the key)")
        self.check_key(key, origin)  # before the value's command runs
        if len(value) == 1 and value[0].kind == STRING and value[0].value == "":
            if key in layout.WORK_KEYS:
                raise CommandError(f"'{key}' is a work directory of the node: it can be moved, not deleted")
            self.dictionary.pop(key, None)
            return Reply.of_text("")
        if self.registry.starts_command(value):
            reply = await self._dispatch(text[value[0].start:], origin)
            if not reply.ok:
                return reply
            stored = reply.render()
        elif len(value) == 1 and value[0].kind == JSON:
            env = self.environ.get if origin.expands_env else no_environment
            stored = grammar.substitute_json(value[0].value, self.lookup_for(origin), env)
        else:
            stored = " ".join(token_text(t, self.substituter(origin)) for t in value)
        self.set_key(key, stored, origin)
        return Reply.of_text("")

    # -- scripts -----------------------------------------------------------------------------

    async def run_script(self, path: str, origin: Origin | None = None) -> tuple[int, int]:
        """Run a script's commands in order: (commands run, commands failed).

        A failing line is logged with its file and line number and the script goes on, as a
        node that half-configured itself is more useful than one that stopped at line 3.
        """
        with open(path, encoding="utf-8") as f:
            text = f.read()
        ran = failed = 0
        try:
            for lineno, command in grammar.split_script(text):
                line = script_origin(path, lineno)
                if origin is not None:  # a script some caller asked for runs with that caller's grant
                    label = line.label if origin.kind in ("local", "stdin", "script") else f"{origin} ({line})"
                    line = origin.narrowed(origin.grant, label)
                reply = await self.execute(command, line)
                ran += 1
                if not reply.ok:
                    failed += 1
                    self.log.error("{path}:{lineno}: {command}: {error}", path=path, lineno=lineno,
                                   command=masked(command), error=masked(reply.text or ""))
        except GrammarError as e:
            failed += 1
            self.errors.add(origin.label if origin else f"script {path}", "", e.message)
            self.log.error("{path}: {error}", path=path, error=e.message)
        return ran, failed

    def resolve_script(self, path: str) -> str:
        """A script path as given, or relative to the node's `local_scripts` directory."""
        if os.path.isfile(path):
            return path
        candidate = os.path.join(self.dirs.get("local_scripts", ""), path)
        if os.path.isfile(candidate):
            return candidate
        raise CommandError(f"script file '{path}' not found (looked in the current directory and "
                           f"{self.dirs.get('local_scripts')})")

    # -- background processes ----------------------------------------------------------------

    def process(self, name: str):
        return self.namedServices.get(name)

    def check_free(self, name: str) -> None:
        """Raise if the process `name` runs: `run X` asks before it binds a port or opens files."""
        running = self.namedServices.get(name)
        if running is not None:
            how = getattr(running, "exit_command", "") or f"exit {name.lower()}"
            raise ServiceError(f"{name} is already running (stop it first with '{how}')")

    def add_process(self, service) -> None:
        """Start a background process; starting one that runs already is an error."""
        self.check_free(service.name)
        service.setServiceParent(self)

    async def stop_process(self, name: str) -> None:
        service = self.namedServices.get(name)
        if service is None:
            raise ServiceError(f"{name} is not running")
        await maybeDeferred(service.disownServiceParent)

    def stop_process_now(self, name: str) -> Deferred:
        """`stop_process` as a Deferred, for callLater and other plain callbacks."""
        d = Deferred.fromCoroutine(self.stop_process(name))
        d.addErrback(lambda f: self.log.failure("stopping {name} failed", f, name=name))
        return d

    def processes(self) -> list[tuple[str, Any]]:
        """(row name, service or None) for `get processes`: the fixed rows, then any others."""
        rows = [(name, self.namedServices.get(name)) for name in PROCESS_ROWS]
        rows += [(name, svc) for name, svc in self.namedServices.items() if name not in PROCESS_ROWS]
        return rows

    # -- life cycle --------------------------------------------------------------------------

    def startService(self) -> None:
        layout.create_work_directories(self.home)
        attach(self)  # the "Scheduler" process: scheduler 0 (system) always runs
        MultiService.startService(self)
        self.started_at = self.reactor.seconds()
        if self.scripts:
            self.reactor.callWhenRunning(self._start_scripts)
        else:
            self.reactor.callWhenRunning(self._ready)

    def _start_scripts(self) -> Deferred:
        async def run_all() -> None:
            for path in self.scripts:
                try:
                    await self.run_script(path)
                except OSError as e:
                    self.log.error("cannot read script {path}: {error}", path=path, error=e)
            self._ready()

        return Deferred.fromCoroutine(run_all())

    def _ready(self) -> None:
        self.log.info("node {name} ready in {home}", name=self.name, home=self.home)

    async def _stop(self) -> None:
        """Stop every background process (they may still use the parts), then close the parts in
        the reverse of `PARTS` order, each after the one before it has finished closing.  Users' queries
        are stopped first: none of them is worth waiting for, and a process may wait behind one."""
        self._components[Databases].interrupt("the node is stopping")
        await maybeDeferred(MultiService.stopService, self)
        for component in reversed(list(self._components.values())):
            close = getattr(component, "close", None)
            if close is not None:
                try:
                    await maybeDeferred(close)
                except Exception:
                    self.log.failure("closing {component} failed", component=component)

    def stopService(self) -> Deferred:
        return Deferred.fromCoroutine(self._stop())

    def shutdown(self) -> None:
        """`exit node`: stop the reactor after the reply is on its way; the process exits 0."""
        if self._on_exit is not None:
            self._on_exit()
        else:
            self.reactor.callLater(0, self.reactor.stop)

    def uptime(self) -> float:
        return self.reactor.seconds() - self.started_at

    def __repr__(self) -> str:
        return f"<Node {self.name} at {self.home}>"
