"""The node's consoles: a telnet command shell, the stdin prompt, and a Python manhole.

The telnet console runs as the node's administrator when it listens on loopback without
credentials; with credentials (`run console ... and user = .. and password = ..`, or a users
file) every session logs in first (Twisted cred, the same checker as REST's) and its commands
run with the logged-in user's role.  All three are thin: they read lines, hand complete commands to `Node.execute`, and write the
rendered reply.  Commands from one session run one after another, in the order typed, while
other sessions and the rest of the node go on.
"""

from __future__ import annotations

import hmac

from twisted.conch import manhole, recvline
from twisted.conch.insults import insults
from twisted.conch.telnet import (
    ECHO,
    LINEMODE,
    NAWS,
    SGA,
    AuthenticatingTelnetProtocol,
    ITelnetProtocol,
    TelnetBootstrapProtocol,
    TelnetTransport,
)
from twisted.cred import checkers, credentials, error, portal
from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from anylog_tw.base.grammar import CommandAccumulator
from anylog_tw.base.origin import STDIN, Origin
from anylog_tw.base.process import ListeningProcess
from anylog_tw.front.rest_auth import Identity
from anylog_tw.net.limits import find_ticket

MAX_LOGIN_TRIES = 3


class QuietTelnetBootstrap(TelnetBootstrapProtocol):
    """Telnet set-up that takes a client's refusal of an option as an answer, not a critical error.

    Simple clients (nc, scripts, some telnets) refuse line mode or window size; Twisted's
    bootstrap logs each refusal as a failure.  The session works without them.
    """

    def connectionMade(self):
        self.transport.negotiationMap[NAWS] = self.telnet_NAWS
        self.transport.negotiationMap[LINEMODE] = self.telnet_LINEMODE
        for opt in (LINEMODE, NAWS, SGA):
            self.transport.do(opt).addErrback(self._refused, opt)
        self.transport.will(ECHO).addErrback(self._refused, ECHO)
        self.protocol = self.protocolFactory(*self.protocolArgs, **self.protocolKwArgs)
        factory = getattr(self, "factory", None)
        if factory is not None:
            self.protocol.factory = factory
        self.protocol.makeConnection(self)

    def _refused(self, failure, opt):
        self._log.debug("telnet option {opt!r} not agreed: {why}", opt=opt, why=failure.getErrorMessage())


def prompt(node) -> str:
    return f"AL {node.name} > "


class _SerialRunner:
    """Runs a session's commands one at a time, in order, and writes each reply."""

    def __init__(self, node, origin: Origin, write):
        self.node = node
        self.origin = origin
        self.write = write
        self._last: defer.Deferred = defer.succeed(None)
        self.accumulator = CommandAccumulator()

    def feed(self, line: str) -> defer.Deferred | None:
        command = self.accumulator.feed(line)
        if not command:
            return None
        self._last = self._last.addCallback(lambda _: defer.Deferred.fromCoroutine(self.node.execute(command, self.origin)))
        self._last.addCallback(lambda reply: self.write(reply.render()))
        return self._last


class CommandShell(recvline.HistoricRecvLine):
    """A telnet session: AnyLog commands with history (arrow keys) and line editing."""

    log = Logger()

    def __init__(self, node, identity: Identity | None = None):
        recvline.HistoricRecvLine.__init__(self)
        self.node = node
        self.identity = identity
        self.runner: _SerialRunner | None = None

    @property
    def ps(self):
        return (prompt(self.node).encode(), b"... ")

    def connectionMade(self):
        peer = self.terminal.transport.getPeer() if hasattr(self.terminal, "transport") else None
        where = f"{peer.host}:{peer.port}" if peer is not None and hasattr(peer, "host") else ""
        if self.identity is None:  # no credentials: loopback (or `auth = none`), the node's administrator
            origin = Origin(f"console {where}".strip(), "admin", "console")
        else:
            origin = Origin(f"console {self.identity.user}@{where}", self.identity.grant, "console", self.identity.user)
        self.runner = _SerialRunner(self.node, origin, self._write_reply)
        recvline.HistoricRecvLine.connectionMade(self)
        factory = getattr(self, "factory", None)
        if factory is not None:
            factory.sessions.add(self)

    def connectionLost(self, reason):
        factory = getattr(self, "factory", None)
        if factory is not None:
            factory.sessions.discard(self)
        recvline.HistoricRecvLine.connectionLost(self, reason)

    def initializeScreen(self):
        self.terminal.write(f"anylog-tw node {self.node.name}: type 'help' for commands, 'quit' to leave.".encode())
        self.terminal.nextLine()
        self.pn = 0
        self.terminal.write(self.ps[self.pn])
        self.setInsertMode()

    def terminalSize(self, width, height):
        # The default erases the screen, and with it the banner; only remember the size.
        self.width, self.height = width, height

    def _write_reply(self, text: str) -> None:
        for line in text.split("\n"):
            self.terminal.write(line.encode("utf-8", "replace"))
            self.terminal.nextLine()
        self.pn = 0
        self.drawInputLine()

    def lineReceived(self, line: bytes):
        ticket = find_ticket(self.terminal)
        ticket.idle()  # a line typed: the session is past its first-command deadline
        ticket.touch()
        text = line.decode("utf-8", "replace")
        if text.strip().lower() in ("quit", "bye") and not self.runner.accumulator.pending:
            self.terminal.loseConnection()
            return
        if self.runner.feed(text) is None:
            self.pn = 1 if self.runner.accumulator.pending else 0
            self.drawInputLine()


class ShellFactory(protocol.ServerFactory):
    """Builds telnet sessions running `CommandShell`; knows its live sessions to close them on stop.

    With `credentials` that require a login, a session starts at a login prompt and gets the shell
    (with the user's role) only once the portal accepts it."""

    def __init__(self, node, credentials=None, auth_none: bool = False):
        self.node = node
        self.credentials = credentials
        self.auth_none = auth_none
        self.sessions: set[CommandShell] = set()
        self.portal = None
        if credentials is not None and credentials.required:
            self.portal = portal.Portal(_ShellRealm(self), [CredentialsChecker(credentials)])

    def make_shell(self, identity: Identity | None = None) -> CommandShell:
        shell = CommandShell(self.node, identity)
        shell.factory = self
        return shell

    def buildProtocol(self, addr):
        if self.portal is not None:
            transport = TelnetTransport(PasswordLogin, self.portal)
        else:
            transport = TelnetTransport(QuietTelnetBootstrap, insults.ServerProtocol, self.make_shell)
        transport.factory = self
        return transport

    def auth_text(self) -> str:
        if self.auth_none:
            return "NONE (auth = none: anyone who reaches it is the node's administrator)"
        if self.portal is not None:
            return f"login ({self.credentials.describe()})"
        return "loopback only (admin)"

    def close_sessions(self) -> None:
        for session in list(self.sessions):
            session.terminal.loseConnection()


@implementer(checkers.ICredentialsChecker)
class CredentialsChecker:
    """A console login checked like a REST one (the configured user or the users file): the Identity."""

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, creds):
        self.creds = creds

    def requestAvatarId(self, login):
        d = self.creds.login(login.username.decode("utf-8", "replace"), login.password.decode("utf-8", "replace"))

        def judged(identity):
            if identity is None:
                raise error.UnauthorizedLogin("wrong user or password")
            return identity

        return d.addCallback(judged)


@implementer(portal.IRealm)
class _ShellRealm:
    def __init__(self, factory: ShellFactory):
        self.factory = factory

    def requestAvatar(self, identity, mind, *interfaces):
        if ITelnetProtocol not in interfaces:
            raise NotImplementedError("the console only speaks telnet")
        proto = QuietTelnetBootstrap(insults.ServerProtocol, self.factory.make_shell, identity)
        return ITelnetProtocol, proto, lambda: None


class ConsoleService(ListeningProcess):
    """`run console`: the telnet command shell, on a loopback port by default."""

    name = "Console"
    exit_command = "exit console"

    def details(self) -> str:
        host, port = self.address
        return f"Listening on: {host}:{port}, Sessions: {len(self.factory.sessions)}, Auth: {self.factory.auth_text()}"

    def close_connections(self) -> None:
        self.factory.close_sessions()


class StdioShell(LineReceiver):
    """The prompt on the terminal the node was started from (only when stdin is a terminal)."""

    delimiter = b"\n"

    def __init__(self, node):
        self.node = node
        self.runner = None

    def connectionMade(self):
        self.runner = _SerialRunner(self.node, STDIN, self._write_reply)
        self.transport.write(prompt(self.node).encode())

    def _write_reply(self, text: str) -> None:
        if text:
            self.transport.write(text.encode("utf-8", "replace") + b"\n")
        self.transport.write(prompt(self.node).encode())

    def lineReceived(self, line: bytes):
        if self.runner.feed(line.decode("utf-8", "replace")) is None:
            self.transport.write(b"... " if self.runner.accumulator.pending else prompt(self.node).encode())


# --- the Python manhole -----------------------------------------------------------------------


@implementer(checkers.ICredentialsChecker)
class SinglePasswordChecker:
    """One user, one password, compared in constant time."""

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, user: str, password: str):
        self._user = user.encode()
        self._password = password.encode()

    def requestAvatarId(self, creds):
        user_ok = hmac.compare_digest(creds.username, self._user)
        password_ok = hmac.compare_digest(creds.password, self._password)
        if user_ok and password_ok:
            return defer.succeed(creds.username)
        return defer.fail(error.UnauthorizedLogin("wrong user or password"))


class PasswordLogin(AuthenticatingTelnetProtocol):
    """Telnet login that works with clients that refuse to let the server hide the password.

    Twisted's version waits for the client to agree to echo changes before it checks the
    password, so with a client that refuses (nc, scripts) the login silently never happens.
    """

    def telnet_User(self, line):
        self.username = line.rstrip(b"\r")
        self.transport.will(ECHO).addErrback(lambda failure: None)
        self.transport.write(b"Password: ")
        return "Password"

    def telnet_Password(self, line):
        username, password = self.username, line.rstrip(b"\r")
        del self.username
        d = self.transport.wont(ECHO)
        d.addErrback(lambda failure: None)
        d.addCallback(lambda _: self.portal.login(credentials.UsernamePassword(username, password), None,
                                                  ITelnetProtocol))
        d.addCallbacks(self._cbLogin, self._ebLogin)
        return "Discard"

    def _ebLogin(self, failure):
        """A wrong login: ask again, and hang up after a few tries."""
        self.tries = getattr(self, "tries", 0) + 1
        if self.tries >= MAX_LOGIN_TRIES:
            self.transport.write(b"\r\nAuthentication failed: too many tries\r\n")
            self.transport.loseConnection()
            return
        AuthenticatingTelnetProtocol._ebLogin(self, failure)


@implementer(portal.IRealm)
class _ManholeRealm:
    def __init__(self, namespace: dict):
        self.namespace = namespace

    def requestAvatar(self, avatar_id, mind, *interfaces):
        if ITelnetProtocol not in interfaces:
            raise NotImplementedError("the manhole only speaks telnet")
        proto = QuietTelnetBootstrap(insults.ServerProtocol, manhole.ColoredManhole, self.namespace)
        return ITelnetProtocol, proto, lambda: None


def manhole_factory(node, user: str, password: str) -> protocol.ServerFactory:
    """Telnet with a login, then a Python REPL with `node` and `reactor` in scope."""
    namespace = {"node": node, "reactor": node.reactor}
    p = portal.Portal(_ManholeRealm(namespace), [SinglePasswordChecker(user, password)])
    factory = protocol.ServerFactory()
    factory.protocol = lambda: TelnetTransport(PasswordLogin, p)
    return factory


class ManholeService(ListeningProcess):
    """`run manhole`: a Python REPL into the live node, behind a user and password."""

    name = "Manhole"
    exit_command = "exit manhole"

    def details(self) -> str:
        host, port = self.address
        return f"Python manhole on {host}:{port}"
