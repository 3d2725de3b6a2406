"""The synchronizer's commands: `run blockchain sync`, `get synchronizer`, `exit synchronizer`."""

from __future__ import annotations

from anylog_tw.base.errors import OptionError, PeerError, ServiceError
from anylog_tw.base.registry import FORMAT, Option, command
from anylog_tw.base.reply import Reply
from anylog_tw.commands.metadata import KEYWORDS
from anylog_tw.metadata import policies as policy_helpers
from anylog_tw.metadata.layer import metadata
from anylog_tw.metadata.sync import Synchronizer


@command("run blockchain sync", grant="admin",
         usage="run blockchain sync [where source = master and time = 30 seconds and dest = file and "
               "connection = ip:port]",
         text="Start the synchronizer: every 'time' it asks the master for its metadata version and, when it "
              "differs, fetches the ledger and swaps it in atomically (the previous file kept as .old); local "
              "policies the master lacks are pushed again. 'connection' defaults to the master policy's address. "
              "'source = dbms' (on a master) rebuilds the ledger file from its blockchain.ledger table. With no "
              "options, syncs now and answers when the local copy is current (or with the failure).",
         examples=("run blockchain sync where source = master and time = 30 seconds and dest = file and "
                   "connection = !master_node",
                   "run blockchain sync"),
         keywords=KEYWORDS + ("background processes",),
         options=(Option("source", choices=("master", "dbms", "blockchain")), Option("time", kind="seconds"),
                  Option("dest", repeat=True), Option("connection"), Option("platform")))
async def run_blockchain_sync(call):
    node = call.node
    running = node.process(Synchronizer.name)
    if not call.given:
        if running is None:
            raise ServiceError("the synchronizer is not running: start it with 'run blockchain sync where source = "
                               "master and time = 30 seconds and dest = file and connection = ip:port'")
        # Scripts rely on it: once it answers, the local copy is as current as the master's.
        await running.sync_now()
        if running.state != "Synchronized":
            raise PeerError(f"sync with {running.connection or running.source} failed: {running.last_failure}")
        return f"Synchronized with {running.connection or running.source}"
    node.check_free(Synchronizer.name)
    opts = call.opts
    for name in ("source", "time", "dest"):
        if name not in call.given:
            raise OptionError(f"'run blockchain sync' needs option '{name}' (usage: {call.command.usage})")
    if opts["source"] == "blockchain":
        raise OptionError("blockchain platforms are not supported: use 'source = master'")
    if opts["time"] < 1:
        raise OptionError("option 'time' must be at least 1 second")
    dests = tuple(d.lower() for d in opts["dest"])
    bad = [d for d in dests if d not in ("file", "dbms")]
    if bad:
        raise OptionError(f"option 'dest' is {bad[0]!r}; it must be file or dbms")
    connection = opts["connection"] or ""
    if opts["source"] == "master" and not connection:
        meta = await metadata(node)
        connection = policy_helpers.master_address(meta.ledger) or ""
        if not connection:
            raise OptionError("give 'connection = ip:port' (there is no master policy to take it from)")
    sync = Synchronizer(opts["source"], opts["time"], connection, dests)
    node.add_process(sync)
    return f"Blockchain Sync started: every {opts['time']:g} seconds from {opts['source']}" + (
        f" using {connection}" if connection else "")


@command("get synchronizer", grant="read", usage="get synchronizer [where format = json]",
         text="The synchronizer's state: source, connection, interval, metadata version, calls, loads, policies, "
              "and the last failure.",
         examples=("get synchronizer", "get synchronizer where format = json"),
         keywords=KEYWORDS + ("monitor",), options=(FORMAT,), readonly=True)
async def get_synchronizer(call):
    sync = call.node.process(Synchronizer.name)
    if sync is None:
        raise ServiceError("the synchronizer is not running (start it with 'run blockchain sync where ...')")
    await metadata(call.node)
    info = sync.info()
    return Reply.of_table(("Key", "Value"), list(info.items()), data=info)


@command("exit synchronizer", grant="admin", usage="exit synchronizer", text="Stop the synchronizer; the local copy stays.",
         examples=("exit synchronizer",), keywords=KEYWORDS + ("background processes",))
async def exit_synchronizer(call):
    await call.node.stop_process(Synchronizer.name)
    return "Blockchain Sync stopped"
