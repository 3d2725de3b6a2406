"""The base of every background process a node runs (`run X` starts one, `exit X` stops it)."""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger


class NodeProcess(Service):
    """A named background process.

    `name` is the row it fills in `get processes` (TCP, REST, Operator ...); `details()` is the
    text of that row's Details column.  A process reaches the node's reactor, dictionary and
    databases through `self.node`, which stays set for the whole of an asynchronous stop: Twisted
    clears `parent` as soon as `exit X` disowns the service, while the file in hand, the sync in
    flight or the last reply still needs the node.
    """

    log = Logger()
    name: str = ""
    exit_command: str = ""  # how a user stops it, quoted in "already running" errors
    _node = None

    def setServiceParent(self, parent):
        self._node = parent  # before: a running parent starts the service inside setServiceParent
        Service.setServiceParent(self, parent)

    @property
    def node(self):
        return self._node

    @property
    def reactor(self):
        return self._node.reactor

    def details(self) -> str:
        return ""


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

    def startService(self) -> None:
        NodeProcess.startService(self)
        host, port = self.address
        # With port 0 the kernel chose the port: the log is where scripts and tests learn it.
        self.log.info("{process} listening on {host}:{port}", process=self.name, host=host, port=port)

    def close_connections(self) -> None:
        """Subclasses close their live connections here."""

    def stopService(self):
        NodeProcess.stopService(self)
        self.close_connections()
        return maybeDeferred(self.port.stopListening)
