"""`twistd anylog`: options and the node's service tree."""

from __future__ import annotations

import os
import sys

from twisted.application.service import Service
from twisted.python import usage

from anylog_tw.base.layout import create_work_directories
from anylog_tw.front.console import StdioShell
from anylog_tw.net.peers import Peers
from anylog_tw.node import Node

DEFAULT_HOME = "anylog-data"


class Options(usage.Options):
    synopsis = "[--home DIR] [--name NAME] [--script FILE ...] [--no-stdin]"
    longdesc = ("Start an anylog-tw node. Scripts are files of AnyLog commands run in order at start-up; "
                "ANYLOG_HOME works like --home.")
    optParameters = [
        ["home", "d", None, "the node's home: work directories, databases, ledger (default $ANYLOG_HOME or "
                            f"./{DEFAULT_HOME})"],
        ["name", None, "anylog-node", "the node's name"],
        ["network-key-file", None, None, "a file holding the network key peers must prove (kept off the command "
                                          "line; $ANYLOG_NETWORK_KEY works too)"],
    ]
    optFlags = [["no-stdin", None, "do not read commands from the terminal"]]

    def __init__(self):
        usage.Options.__init__(self)
        self["scripts"] = []

    def opt_script(self, path):
        """a script of AnyLog commands to run at start-up (repeatable, run in order)"""
        self["scripts"].append(path)

    opt_s = opt_script

    def postOptions(self):
        self["home"] = os.path.abspath(self["home"] or os.environ.get("ANYLOG_HOME") or DEFAULT_HOME)
        missing = [p for p in self["scripts"] if not os.path.isfile(p)]
        if missing:
            raise usage.UsageError(f"script not found: {', '.join(missing)}")
        self["scripts"] = [os.path.abspath(p) for p in self["scripts"]]
        path = self["network-key-file"]
        if path:
            try:
                with open(path, encoding="utf-8") as f:
                    self["network-key"] = f.read().strip()
            except OSError as e:
                raise usage.UsageError(f"cannot read the network key file {path}: {e.strerror}")
            if not self["network-key"]:
                raise usage.UsageError(f"the network key file {path} is empty")


class StdinConsole(Service):
    """The `AL <name> >` prompt on the terminal; unnamed, so it is not a row of `get processes`."""

    def __init__(self, node):
        self.node = node
        self._stdio = None

    def startService(self):
        from twisted.internet import stdio


        Service.startService(self)
        self._stdio = stdio.StandardIO(StdioShell(self.node), reactor=self.node.reactor)

    def stopService(self):
        Service.stopService(self)
        if self._stdio is not None:
            self._stdio.loseConnection()


def makeService(options):
    create_work_directories(options["home"])
    node = Node(options["home"], name=options["name"], scripts=options["scripts"])
    if options.get("network-key"):

        node.component(Peers).set_network_key(options["network-key"])
    if not options["no-stdin"] and sys.stdin is not None and sys.stdin.isatty():
        StdinConsole(node).setServiceParent(node)
    return node
