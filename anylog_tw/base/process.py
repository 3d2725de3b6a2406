"""The base of every background process a node runs (`run X` starts one, `exit X` stops it)."""

from __future__ import annotations

from twisted.application.service import Service
from twisted.logger import Logger


class NodeProcess(Service):
    """A named background process.

    `name` is the row it fills in `get processes` (TCP, REST, Operator ...); `details()` is the
    text of that row's Details column.  The node is the service parent, so a process reaches
    the node's reactor, dictionary and databases through `self.node`.
    """

    log = Logger()
    name: str = ""
    exit_command: str = ""  # how a user stops it, quoted in "already running" errors

    @property
    def node(self):
        return self.parent

    @property
    def reactor(self):
        return self.parent.reactor

    def details(self) -> str:
        return ""

    def status(self) -> dict:
        """Per-process state for `get ...` commands; subclasses extend it."""
        return {"Status": "Running" if self.running else "Stopped", "Details": self.details()}


class ListeningProcess(NodeProcess):
    """A process that owns a listening port (TCP, REST, console ...).

    The `run ...` command binds the port first and hands it over, so a port already in use is an
    error the user sees at once, instead of a failure logged after "started".  Stopping the
    process stops listening, and `close_connections` ends the sessions it accepted.
    """

    def __init__(self, port, factory=None):
        self.port = port
        self.factory = factory

    @property
    def address(self) -> tuple[str, int]:
        host = self.port.getHost()
        return host.host, host.port

    def close_connections(self) -> None:
        """Subclasses close their live connections here."""

    def stopService(self):
        from twisted.internet.defer import maybeDeferred

        NodeProcess.stopService(self)
        self.close_connections()
        return maybeDeferred(self.port.stopListening)
